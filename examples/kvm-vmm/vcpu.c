/* vcpu.c: the vCPU thread. It runs KVM_RUN in a loop and answers the guest's port I/O; the
 * migration's hooks stop it (immediate_exit + SIGUSR1, see kvm-notes), resume it and throttle it
 * from another thread. */
#define _GNU_SOURCE
#include "vcpu.h"

#include <errno.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "layout.h"
#include "util.h"

#define KICK_SIGNAL SIGUSR1

/* The signal only has to interrupt KVM_RUN (and a pacing sleep): no SA_RESTART, empty body. */
static void on_kick(int sig) { (void)sig; }

static int install_kick_handler(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_kick;
  sigemptyset(&sa.sa_mask);
  if (sigaction(KICK_SIGNAL, &sa, NULL) < 0) {
    report_errno("sigaction(SIGUSR1)");
    return -1;
  }
  return 0;
}

int vcpu_create(vcpu* v, vm* vm) {
  memset(v, 0, sizeof *v);
  v->vm = vm;
  v->fd = -1;
  pthread_mutex_init(&v->lock, NULL);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&v->changed, &attr);
  pthread_condattr_destroy(&attr);
  if (install_kick_handler()) return -1;
  v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, 0);
  if (v->fd < 0) {
    report_errno("KVM_CREATE_VCPU");
    return -1;
  }
  v->run = mmap(NULL, (size_t)vm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
  if (v->run == MAP_FAILED) {
    v->run = NULL;
    report_errno("mmap of the vCPU's kvm_run");
    return -1;
  }
  if (ioctl(v->fd, KVM_SET_CPUID2, vm->cpuid) < 0) {
    report_errno("KVM_SET_CPUID2");
    return -1;
  }
  return 0;
}

/* Long mode, paging on, CPL3 segments (kvm-notes' recipe that runs natively under PVM). */
static int set_boot_sregs(vcpu* v) {
  struct kvm_sregs s;
  if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
    report_errno("KVM_GET_SREGS");
    return -1;
  }
  struct kvm_segment code = {.base = 0, .limit = 0xffffffff, .selector = SEL_USER_CODE,
                             .type = 11, .present = 1, .dpl = 3, .db = 0, .s = 1, .l = 1, .g = 1};
  struct kvm_segment data = {.base = 0, .limit = 0xffffffff, .selector = SEL_USER_DATA,
                             .type = 3, .present = 1, .dpl = 3, .db = 1, .s = 1, .l = 0, .g = 1};
  struct kvm_segment tss = {.base = TSS_ADDR, .limit = TSS_LIMIT, .selector = SEL_TSS, .type = 11,
                            .present = 1, .dpl = 0, .s = 0};
  s.cs = code;
  s.ds = s.es = s.fs = s.gs = s.ss = data;
  s.tr = tss;
  s.gdt.base = GDT_ADDR;
  s.gdt.limit = 7 * 8 - 1;
  s.idt.base = 0;
  s.idt.limit = 0;
  s.cr0 = 0x80050033; /* PG AM WP NE ET MP PE */
  s.cr3 = PML4_ADDR;
  s.cr4 = 0x620;      /* OSXMMEXCPT OSFXSR PAE */
  s.efer = 0x500;     /* LMA LME */
  if (ioctl(v->fd, KVM_SET_SREGS, &s) < 0) {
    report_errno("KVM_SET_SREGS (long mode)");
    return -1;
  }
  return 0;
}

int vcpu_set_boot_state(vcpu* v, uint64_t seed) {
  if (set_boot_sregs(v)) return -1;
  struct kvm_regs r;
  memset(&r, 0, sizeof r);
  r.rip = CODE_ADDR;
  r.rsp = STACK_TOP;
  r.rflags = 0x3002; /* IOPL 3: in/out at CPL3 exit to the VMM (see write_tss for PVM) */
  r.r12 = seed;
  r.r13 = 0;
  r.r14 = vm_data_pages(v->vm);
  r.r15 = DATA_ADDR;
  r.rbx = CTRL_ADDR;
  if (ioctl(v->fd, KVM_SET_REGS, &r) < 0) {
    report_errno("KVM_SET_REGS");
    return -1;
  }
  return 0;
}

/* ---- the thread ------------------------------------------------------------------------- */

static void fail(vcpu* v, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(vcpu* v, const char* fmt, ...) {
  pthread_mutex_lock(&v->lock);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(v->error, sizeof v->error, fmt, ap);
  va_end(ap);
  v->state = VCPU_FAILED;
  pthread_cond_broadcast(&v->changed);
  pthread_mutex_unlock(&v->lock);
  report_error("vCPU: %s", v->error);
}

/* Called with the lock held: the vCPU (re)enters KVM_RUN now; pacing starts afresh so a pause
 * is not made up with a burst. */
static void mark_running_locked(vcpu* v) {
  v->state = VCPU_RUNNING;
  v->started_ns = monotonic_ns();
  v->pace_origin_ns = v->started_ns;
  v->pace_due_ns = 0;
  pthread_cond_broadcast(&v->changed);
}

/* KVM_RUN returned EINTR. If a stop was asked for, park until resumed. True: the thread ends. */
static bool park_if_asked(vcpu* v) {
  pthread_mutex_lock(&v->lock);
  if (v->quit) {
    pthread_mutex_unlock(&v->lock);
    return true;
  }
  if (v->stop_requested) {
    v->state = VCPU_PARKED;
    pthread_cond_broadcast(&v->changed);
    while (v->stop_requested && !v->quit) pthread_cond_wait(&v->changed, &v->lock);
    if (v->quit) {
      pthread_mutex_unlock(&v->lock);
      return true;
    }
    __atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
    mark_running_locked(v);
  }
  pthread_mutex_unlock(&v->lock);
  return false;
}

/* After a batch: sleep until the batch's due time. A batch is due one pacing interval (the dirty
 * rate's time for BATCH_PAGES pages) after the previous one, or as long as the guest took if that
 * was longer; under a throttle of p percent every batch takes 1 / (1 - p) of that, so the vCPU
 * is paused p percent of the wall time, as auto-converge asks. */
static void pace(vcpu* v) {
  uint64_t now = monotonic_ns();
  double ran = (double)(now - v->last_entry_ns);
  double interval = v->pages_per_s > 0 ? BATCH_PAGES * 1e9 / v->pages_per_s : 0.0;
  uint32_t percent = __atomic_load_n(&v->throttle_percent, __ATOMIC_RELAXED);
  double period = interval > ran ? interval : ran;
  v->pace_due_ns += period * 100.0 / (100.0 - (double)percent);
  uint64_t target = v->pace_origin_ns + (uint64_t)v->pace_due_ns;
  if (target > now) {
    sleep_until_ns(target); /* a stop's signal ends it early */
  } else if (now - target > 100000000u) {
    v->pace_due_ns = (double)(now - v->pace_origin_ns); /* far behind: no catch-up burst */
  }
}

/* 0: go on; 1: the guest exited; -1: failed. */
static int handle_io(vcpu* v) {
  struct kvm_run* run = v->run;
  uint8_t* data = (uint8_t*)run + run->io.data_offset;
  bool in = run->io.direction == KVM_EXIT_IO_IN;
  if (run->io.size != 4 || run->io.count != 1) {
    fail(v, "guest port I/O of unexpected shape (port 0x%x, size %u, count %u)", run->io.port,
         run->io.size, run->io.count);
    return -1;
  }
  if (run->io.port == PORT_CMD && in) {
    uint32_t answer = __atomic_load_n(&v->verify_requested, __ATOMIC_ACQUIRE) ? CMD_VERIFY
                                                                              : CMD_CONTINUE;
    memcpy(data, &answer, sizeof answer);
    pace(v);
    return 0;
  }
  if (run->io.port == PORT_RESULT && !in) {
    memcpy(&v->result, data, sizeof v->result);
    return 0;
  }
  if (run->io.port == PORT_EXIT && !in) {
    pthread_mutex_lock(&v->lock);
    v->state = VCPU_DONE;
    pthread_cond_broadcast(&v->changed);
    pthread_mutex_unlock(&v->lock);
    return 1;
  }
  fail(v, "guest %s port 0x%x, which this VMM does not have", in ? "read" : "wrote",
       run->io.port);
  return -1;
}

static uint64_t guest_rip(vcpu* v) {
  struct kvm_regs r;
  return ioctl(v->fd, KVM_GET_REGS, &r) == 0 ? r.rip : 0;
}

static int handle_exit(vcpu* v) {
  struct kvm_run* run = v->run;
  switch (run->exit_reason) {
    case KVM_EXIT_IO:
      return handle_io(v);
    case KVM_EXIT_SHUTDOWN:
      fail(v, "guest shut down (a fault at CPL3 without an IDT) at rip 0x%llx",
           (unsigned long long)guest_rip(v));
      return -1;
    case KVM_EXIT_INTERNAL_ERROR:
      fail(v, "KVM internal error, suberror %u, at rip 0x%llx", run->internal.suberror,
           (unsigned long long)guest_rip(v));
      return -1;
    case KVM_EXIT_FAIL_ENTRY:
      fail(v, "VM entry failed, hardware reason 0x%llx",
           (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
      return -1;
    default:
      fail(v, "unexpected KVM exit reason %u at rip 0x%llx", run->exit_reason,
           (unsigned long long)guest_rip(v));
      return -1;
  }
}

static void* vcpu_thread(void* arg) {
  vcpu* v = arg;
  pthread_mutex_lock(&v->lock);
  mark_running_locked(v);
  pthread_mutex_unlock(&v->lock);
  for (;;) {
    v->last_entry_ns = monotonic_ns();
    if (ioctl(v->fd, KVM_RUN, 0) < 0) {
      if (errno != EINTR) {
        fail(v, "KVM_RUN: %s", strerror(errno));
        break;
      }
      if (park_if_asked(v)) break;
      continue;
    }
    if (handle_exit(v) != 0) break;
  }
  return NULL;
}

/* ---- control from other threads ---------------------------------------------------------- */

static void wait_while_locked(vcpu* v, vcpu_state_kind state) {
  while (v->state == state) pthread_cond_wait(&v->changed, &v->lock);
}

int vcpu_start(vcpu* v, double dirty_bytes_per_s) {
  v->pages_per_s = dirty_bytes_per_s / GUEST_PAGE_SIZE;
  int err = pthread_create(&v->thread, NULL, vcpu_thread, v);
  if (err) {
    errno = err;
    report_errno("creating the vCPU thread");
    return -1;
  }
  v->thread_started = true;
  pthread_mutex_lock(&v->lock);
  wait_while_locked(v, VCPU_IDLE);
  pthread_mutex_unlock(&v->lock);
  return 0;
}

int vcpu_stop(vcpu* v) {
  pthread_mutex_lock(&v->lock);
  if (v->state != VCPU_RUNNING) {
    vcpu_state_kind state = v->state;
    pthread_mutex_unlock(&v->lock);
    report_error("cannot stop the vCPU: it is %s",
                 state == VCPU_DONE ? "done" : state == VCPU_FAILED ? "failed" : "not running");
    return -1;
  }
  v->stop_requested = true;
  __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
  pthread_mutex_unlock(&v->lock);
  pthread_kill(v->thread, KICK_SIGNAL);
  pthread_mutex_lock(&v->lock);
  wait_while_locked(v, VCPU_RUNNING);
  bool parked = v->state == VCPU_PARKED;
  pthread_mutex_unlock(&v->lock);
  return parked ? 0 : -1;
}

void vcpu_resume(vcpu* v) {
  pthread_mutex_lock(&v->lock);
  v->stop_requested = false;
  pthread_cond_broadcast(&v->changed);
  wait_while_locked(v, VCPU_PARKED);
  pthread_mutex_unlock(&v->lock);
}

void vcpu_set_throttle(vcpu* v, uint32_t percent) {
  __atomic_store_n(&v->throttle_percent, percent > 99 ? 99 : percent, __ATOMIC_RELAXED);
}

void vcpu_request_verify(vcpu* v) {
  __atomic_store_n(&v->verify_requested, true, __ATOMIC_RELEASE);
}

int vcpu_wait_done(vcpu* v, double timeout_s) {
  uint64_t deadline = monotonic_ns() + (uint64_t)(timeout_s * 1e9);
  struct timespec ts = {(time_t)(deadline / 1000000000u), (long)(deadline % 1000000000u)};
  pthread_mutex_lock(&v->lock);
  int err = 0;
  while (v->state != VCPU_DONE && v->state != VCPU_FAILED && err != ETIMEDOUT) {
    err = pthread_cond_timedwait(&v->changed, &v->lock, &ts);
  }
  vcpu_state_kind state = v->state;
  pthread_mutex_unlock(&v->lock);
  if (state == VCPU_DONE) return 0;
  if (state != VCPU_FAILED) report_error("the guest did not finish within %.1f s", timeout_s);
  return -1;
}

void vcpu_destroy(vcpu* v) {
  if (v->thread_started) {
    pthread_mutex_lock(&v->lock);
    v->quit = true;
    __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    pthread_cond_broadcast(&v->changed);
    pthread_mutex_unlock(&v->lock);
    pthread_kill(v->thread, KICK_SIGNAL);
    pthread_join(v->thread, NULL);
    v->thread_started = false;
  }
  if (v->run) munmap(v->run, (size_t)v->vm->vcpu_mmap_size);
  if (v->fd >= 0) close(v->fd);
  v->run = NULL;
  v->fd = -1;
  pthread_cond_destroy(&v->changed);
  pthread_mutex_destroy(&v->lock);
}
