/* migrate.c: ferry's C API on both sides of the guest's migration. */
#define _GNU_SOURCE
#include "migrate.h"

#include <ferry/ferry.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "layout.h"
#include "util.h"

#define RAM_BLOCK_NAME "pc.ram"

static ferry_ram_block ram_block(vm* vm, uint32_t flags) {
  ferry_ram_block block = {RAM_BLOCK_NAME, vm->mem, vm->mem_size, GUEST_PAGE_SIZE, flags};
  return block;
}

static int ferry_failed(const char* call, ferry_status status) {
  report_error("%s failed (%s): %s", call, ferry_status_name(status), ferry_last_error());
  return -1;
}

/* ---- source ---- */

typedef struct source_hooks {
  vcpu* vcpu;
  vmm_info* info;
  uint32_t iterations;
  uint64_t wire_bytes;
} source_hooks;

/* The blackout starts here: the time is sent to the destination in the vmm device. */
static int hook_stop_guest(void* opaque) {
  source_hooks* h = opaque;
  h->info->stop_time_ns = monotonic_ns();
  if (vcpu_stop(h->vcpu)) return -1;
  struct kvm_regs regs;
  if (ioctl(h->vcpu->fd, KVM_GET_REGS, &regs) < 0) {
    report_errno("KVM_GET_REGS after stopping the guest");
    vcpu_resume(h->vcpu); /* ferry takes a failed stop_guest as "still running" */
    return -1;
  }
  h->info->counter_at_stop = regs.r13;
  return 0;
}

static void hook_resume_guest(void* opaque) {
  source_hooks* h = opaque;
  printf("migration failed after the guest stopped: the guest runs on here\n");
  vcpu_resume(h->vcpu);
}

static void hook_throttle(void* opaque, uint32_t percent) {
  source_hooks* h = opaque;
  printf("throttle: %" PRIu32 "%%\n", percent);
  vcpu_set_throttle(h->vcpu, percent);
}

static void hook_on_iteration(void* opaque, const ferry_iteration_stats* s) {
  source_hooks* h = opaque;
  h->iterations = s->iteration + 1;
  h->wire_bytes += s->wire_bytes;
  printf("iteration %" PRIu32 ": final=%" PRIu32 " dirty_pages=%" PRIu64 " normal_pages=%" PRIu64
         " zero_pages=%" PRIu64 " wire_bytes=%" PRIu64 " seconds=%.3f remaining_dirty_pages=%" PRIu64
         " throttle=%" PRIu32 "\n",
         s->iteration, s->final_pass, s->dirty_pages, s->normal_pages, s->zero_pages,
         s->wire_bytes, s->seconds, s->remaining_dirty_pages, s->throttle_percent);
  fflush(stdout);
}

static int register_devices_source(ferry_source* src, vcpu_devices* devices) {
  vcpu_device list[VCPU_DEVICE_COUNT];
  vcpu_devices_list(devices, list);
  for (size_t i = 0; i < VCPU_DEVICE_COUNT; ++i) {
    ferry_status st = ferry_source_add_device(src, list[i].idstr, 0, list[i].vmsd, list[i].opaque);
    if (st != FERRY_OK) return ferry_failed("ferry_source_add_device", st);
  }
  return 0;
}

static int setup_source(ferry_source** out, vm* vm, vcpu_devices* devices,
                        const migration_settings* s, source_hooks* h) {
  ferry_options opts;
  ferry_options_init(&opts);
  opts.channels = s->channels;
  opts.downtime_limit_ms = s->downtime_limit_ms;
  opts.bandwidth_limit_bytes_per_s = s->bandwidth_limit;
  ferry_status st = ferry_source_new(&opts, out);
  if (st != FERRY_OK) return ferry_failed("ferry_source_new", st);
  ferry_ram_block block = ram_block(vm, 0);
  st = ferry_source_add_ram_kvm(*out, &block, vm->vm_fd, vm->slot, FERRY_KVM_MANUAL_PROTECT);
  if (st != FERRY_OK) return ferry_failed("ferry_source_add_ram_kvm", st);
  if (register_devices_source(*out, devices)) return -1;
  ferry_hooks hooks = {hook_stop_guest, hook_resume_guest, hook_throttle, hook_on_iteration, h};
  st = ferry_source_set_hooks(*out, &hooks);
  if (st != FERRY_OK) return ferry_failed("ferry_source_set_hooks", st);
  return 0;
}

static void print_source_summary(const source_hooks* h, double total_s, uint64_t end_ns) {
  printf("total_time_s: %.3f\n", total_s);
  printf("blackout_ms: %.1f (source: stop_guest to ferry_source_run returning)\n",
         (double)(end_ns - h->info->stop_time_ns) / 1e6);
  printf("iterations: %" PRIu32 "\n", h->iterations);
  printf("wire_bytes: %" PRIu64 "\n", h->wire_bytes);
  printf("guest_counter_at_stop: %" PRIu64 "\n", h->info->counter_at_stop);
}

int migrate_source(vm* vm, vcpu* vcpu, vcpu_devices* devices, const migration_settings* s) {
  source_hooks h = {vcpu, vcpu_devices_vmm_info(devices), 0, 0};
  ferry_source* src = NULL;
  int rc = setup_source(&src, vm, devices, s, &h);
  if (rc == 0) {
    ferry_status st = ferry_source_connect(src, s->uri);
    if (st != FERRY_OK) rc = ferry_failed("ferry_source_connect", st);
  }
  if (rc == 0) {
    printf("migrating to %s: channels=%" PRIu32 " downtime_limit_ms=%" PRIu32 "\n", s->uri,
           s->channels, s->downtime_limit_ms);
    fflush(stdout);
    uint64_t start = monotonic_ns();
    ferry_status st = ferry_source_run(src);
    uint64_t end = monotonic_ns();
    if (st != FERRY_OK) {
      rc = ferry_failed("ferry_source_run", st);
    } else {
      print_source_summary(&h, (double)(end - start) / 1e9, end);
    }
  }
  ferry_source_free(src);
  return rc;
}

/* ---- destination ---- */

/* The number after "key": in ferry's stats JSON (0 if absent). The keys looked up are unique in
 * the document, so a plain search does; the library has no JSON reader in its C API. */
static double json_number(const char* json, const char* key) {
  char quoted[64];
  snprintf(quoted, sizeof quoted, "\"%s\"", key);
  const char* at = strstr(json, quoted);
  if (!at) return 0.0;
  at += strlen(quoted);
  while (*at == ' ' || *at == ':' || *at == '\n') ++at;
  return strtod(at, NULL);
}

int destination_listen(destination* d, vm* vm, vcpu_devices* devices,
                       const migration_settings* s) {
  memset(d, 0, sizeof *d);
  ferry_options opts;
  ferry_options_init(&opts);
  opts.channels = 0; /* as the source says */
  ferry_status st = ferry_destination_new(&opts, &d->ferry);
  if (st != FERRY_OK) return ferry_failed("ferry_destination_new", st);
  /* Fresh anonymous memory: zero pages need no write (and stay unallocated). */
  ferry_ram_block block = ram_block(vm, FERRY_RAM_KNOWN_ZERO);
  st = ferry_destination_add_ram(d->ferry, &block);
  if (st != FERRY_OK) return ferry_failed("ferry_destination_add_ram", st);
  vcpu_device list[VCPU_DEVICE_COUNT];
  vcpu_devices_list(devices, list);
  for (size_t i = 0; i < VCPU_DEVICE_COUNT; ++i) {
    st = ferry_destination_add_device(d->ferry, list[i].idstr, 0, list[i].vmsd, list[i].opaque);
    if (st != FERRY_OK) return ferry_failed("ferry_destination_add_device", st);
  }
  st = ferry_destination_listen(d->ferry, s->uri);
  if (st != FERRY_OK) return ferry_failed("ferry_destination_listen", st);
  char* address = NULL;
  st = ferry_destination_address(d->ferry, &address);
  if (st != FERRY_OK) return ferry_failed("ferry_destination_address", st);
  printf("listening on %s\n", address);
  fflush(stdout);
  ferry_free(address);
  return 0;
}

int destination_receive(destination* d) {
  ferry_status st = ferry_destination_run(d->ferry);
  char* json = NULL;
  if (ferry_destination_stats_json(d->ferry, &json) == FERRY_OK && json) {
    d->total_seconds = json_number(json, "total-time") / 1000.0;
    d->wire_bytes = (uint64_t)json_number(json, "transferred");
    d->iterations = (uint64_t)json_number(json, "iteration-count");
  }
  ferry_free(json);
  if (st != FERRY_OK) return ferry_failed("ferry_destination_run", st);
  return 0;
}

void destination_close(destination* d) {
  ferry_destination_free(d->ferry);
  d->ferry = NULL;
}
