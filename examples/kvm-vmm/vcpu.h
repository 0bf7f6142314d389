/* vcpu.h: the one vCPU and the thread that runs it: KVM_RUN loop, port I/O (the guest's command,
 * result and exit ports), pacing the guest to a dirty rate, and stop / resume / throttle for the
 * migration hooks. */
#ifndef KVM_VMM_VCPU_H
#define KVM_VMM_VCPU_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vm.h"

struct kvm_run;

typedef enum vcpu_state_kind {
  VCPU_IDLE,    /* created, thread not started */
  VCPU_RUNNING, /* the thread is in (or about to enter) KVM_RUN */
  VCPU_PARKED,  /* stopped by vcpu_stop: out of KVM_RUN, pending I/O completed */
  VCPU_DONE,    /* the guest wrote PORT_EXIT */
  VCPU_FAILED   /* an unexpected exit or a KVM error; see error */
} vcpu_state_kind;

typedef struct vcpu {
  vm* vm;
  int fd;
  struct kvm_run* run;
  pthread_t thread;
  bool thread_started;

  pthread_mutex_t lock;
  pthread_cond_t changed; /* state, started_ns */
  vcpu_state_kind state;
  bool stop_requested;
  bool quit;
  uint64_t started_ns; /* CLOCK_MONOTONIC just before the first KVM_RUN after start/resume */

  /* Pacing: the guest reads PORT_CMD every BATCH_PAGES pages; the thread sleeps so that pages
   * per second stay at pages_per_s (0 = unpaced), times (100 - throttle) percent. */
  double pages_per_s;
  uint64_t pace_origin_ns; /* when the vCPU (re)started */
  double pace_due_ns;      /* when, after the origin, the current batch is due */
  uint64_t last_entry_ns;  /* the last KVM_RUN */
  uint32_t throttle_percent; /* atomic */
  bool verify_requested;     /* atomic: answer CMD_VERIFY */

  uint32_t result;           /* what the guest wrote to PORT_RESULT (0: nothing yet) */
  char error[256];
} vcpu;

/* Creates the vCPU with the VM's CPUID. */
int vcpu_create(vcpu* vcpu, vm* vm);
/* Registers and segments for the guest's entry point (64-bit, CPL3, IOPL 3); seed starts the
 * guest's LCG. */
int vcpu_set_boot_state(vcpu* vcpu, uint64_t seed);
/* Starts the thread; returns once it is about to enter KVM_RUN (started_ns set). */
int vcpu_start(vcpu* vcpu, double dirty_bytes_per_s);
/* Takes the vCPU out of KVM_RUN (immediate_exit + a signal) and waits until it is parked with
 * any pending port I/O completed, so its state can be read. -1 if the guest is not running. */
int vcpu_stop(vcpu* vcpu);
/* Lets a parked vCPU run again; returns once it is about to enter KVM_RUN. */
void vcpu_resume(vcpu* vcpu);
/* Keeps the vCPU paused `percent` (0..99) of the time it would run. */
void vcpu_set_throttle(vcpu* vcpu, uint32_t percent);
/* The next PORT_CMD read answers CMD_VERIFY. */
void vcpu_request_verify(vcpu* vcpu);
/* Waits until the guest exited (0) or failed / timed out (-1, reported). */
int vcpu_wait_done(vcpu* vcpu, double timeout_s);
/* Ends the thread (wherever it is) and releases the vCPU. */
void vcpu_destroy(vcpu* vcpu);

#endif
