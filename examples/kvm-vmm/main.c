/* kvm-vmm: a small KVM VMM whose running guest migrates live between two processes through
 * ferry's C API.
 *
 *   kvm-vmm [--mem 1G] [--dirty-rate 64M] [--run-before 1.0] --migrate-to URI   (source)
 *   kvm-vmm --incoming URI [--run-after 0.5]                                    (destination)
 *   kvm-vmm --check-only [--run-before 1.0]          (no migration: run, then self-check)
 *
 * The guest (guest.S) writes pages and keeps ledgers over them; on the destination it is asked to
 * verify itself at the end, and the process exits 0 only when that self-check passed. */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guest_report.h"
#include "layout.h"
#include "migrate.h"
#include "util.h"
#include "vcpu.h"
#include "vcpu_state.h"
#include "vm.h"

typedef struct options {
  uint64_t mem_size;
  uint64_t dirty_rate; /* bytes/s the guest writes; 0 = unpaced */
  double run_before;
  double run_after;
  const char* migrate_to;
  const char* incoming;
  bool check_only;
  bool prealloc;
  uint64_t channels;
  uint64_t downtime_limit_ms;
  uint64_t bandwidth_limit; /* bytes/s, 0 = unlimited */
  const char* corrupt; /* hidden: "page" or "xmm" */
} options;

static void usage(FILE* out) {
  fprintf(out,
          "usage: kvm-vmm [options] --migrate-to URI   boot the guest, run it, migrate it live\n"
          "       kvm-vmm [options] --incoming URI     receive the guest, run it on, check it\n"
          "       kvm-vmm [options] --check-only       run the guest, then check it (no migration)\n"
          "options:\n"
          "  --mem SIZE             guest RAM, a multiple of 2M (1G)\n"
          "  --dirty-rate SIZE      bytes/s the guest rewrites, 0 = as fast as it can (64M)\n"
          "  --run-before SECONDS   run before migrating (1.0)\n"
          "  --run-after SECONDS    run on the destination before the self-check (0.5)\n"
          "  --channels N           channels the source opens (2)\n"
          "  --downtime-limit MS    converge when the final pass fits (300)\n"
          "  --bandwidth-limit SIZE bytes/s the source may send, 0 = unlimited (0)\n"
          "  --prealloc             allocate all guest RAM at start, not on first touch\n"
          "URIs: tcp:HOST:PORT (port 0 on --incoming: any free port), unix:/path\n");
}

static int bad_value(const char* option, const char* value) {
  report_error("bad value for --%s: '%s'", option, value);
  return -1;
}

enum { OPT_MEM = 1, OPT_RATE, OPT_BEFORE, OPT_AFTER, OPT_TO, OPT_IN, OPT_CHECK, OPT_CHANNELS,
       OPT_DOWNTIME, OPT_BANDWIDTH, OPT_PREALLOC, OPT_CORRUPT, OPT_HELP };

static int apply_option(options* o, int id, const char* name, const char* arg) {
  switch (id) {
    case OPT_MEM: return parse_size(arg, &o->mem_size) ? 0 : bad_value(name, arg);
    case OPT_RATE: return parse_size(arg, &o->dirty_rate) ? 0 : bad_value(name, arg);
    case OPT_BEFORE: return parse_seconds(arg, &o->run_before) ? 0 : bad_value(name, arg);
    case OPT_AFTER: return parse_seconds(arg, &o->run_after) ? 0 : bad_value(name, arg);
    case OPT_TO: o->migrate_to = arg; return 0;
    case OPT_IN: o->incoming = arg; return 0;
    case OPT_CHECK: o->check_only = true; return 0;
    case OPT_CHANNELS: return parse_uint(arg, 1, 64, &o->channels) ? 0 : bad_value(name, arg);
    case OPT_DOWNTIME:
      return parse_uint(arg, 1, 600000, &o->downtime_limit_ms) ? 0 : bad_value(name, arg);
    case OPT_BANDWIDTH: return parse_size(arg, &o->bandwidth_limit) ? 0 : bad_value(name, arg);
    case OPT_PREALLOC: o->prealloc = true; return 0;
    case OPT_CORRUPT: o->corrupt = arg; return 0;
    default: return -1;
  }
}

/* 0 parsed, 1 --help, -1 error (reported). */
static int parse_options(int argc, char** argv, options* o) {
  static const struct option longopts[] = {
      {"mem", required_argument, NULL, OPT_MEM},
      {"dirty-rate", required_argument, NULL, OPT_RATE},
      {"run-before", required_argument, NULL, OPT_BEFORE},
      {"run-after", required_argument, NULL, OPT_AFTER},
      {"migrate-to", required_argument, NULL, OPT_TO},
      {"incoming", required_argument, NULL, OPT_IN},
      {"check-only", no_argument, NULL, OPT_CHECK},
      {"channels", required_argument, NULL, OPT_CHANNELS},
      {"downtime-limit", required_argument, NULL, OPT_DOWNTIME},
      {"bandwidth-limit", required_argument, NULL, OPT_BANDWIDTH},
      {"prealloc", no_argument, NULL, OPT_PREALLOC},
      {"corrupt-for-testing", required_argument, NULL, OPT_CORRUPT},
      {"help", no_argument, NULL, OPT_HELP},
      {NULL, 0, NULL, 0},
  };
  *o = (options){.mem_size = 1ull << 30, .dirty_rate = 64ull << 20, .run_before = 1.0,
                 .run_after = 0.5, .channels = 2, .downtime_limit_ms = 300};
  int id, index = 0;
  while ((id = getopt_long(argc, argv, "", longopts, &index)) != -1) {
    if (id == OPT_HELP) return 1;
    if (id == '?') return -1; /* getopt printed why */
    if (apply_option(o, id, longopts[index].name, optarg)) return -1;
  }
  if (optind < argc) {
    report_error("unexpected argument '%s' (see --help)", argv[optind]);
    return -1;
  }
  int modes = (o->migrate_to != NULL) + (o->incoming != NULL) + o->check_only;
  if (modes != 1) {
    report_error("give exactly one of --migrate-to URI, --incoming URI, --check-only");
    return -1;
  }
  if (o->corrupt && !o->incoming) {
    report_error("--corrupt-for-testing applies to the destination (--incoming) only");
    return -1;
  }
  return 0;
}

/* ---- the guest's machine ---- */

typedef struct machine {
  vm vm;
  vcpu vcpu;
  vcpu_devices* devices;
  bool vcpu_created;
} machine;

static int machine_create(machine* m, const options* o) {
  memset(m, 0, sizeof *m);
  /* Only a source needs KVM's dirty log (see vm_create). */
  if (vm_create(&m->vm, o->mem_size, o->prealloc, o->migrate_to != NULL)) return -1;
  if (vcpu_create(&m->vcpu, &m->vm)) return -1;
  m->vcpu_created = true;
  m->devices = vcpu_devices_new(&m->vcpu);
  return m->devices ? 0 : -1;
}

static void machine_destroy(machine* m) {
  if (m->vcpu_created) vcpu_destroy(&m->vcpu);
  vcpu_devices_free(m->devices);
  vm_destroy(&m->vm);
}

/* Boot image, entry registers, and the vCPU running. */
static int boot_guest(machine* m, const options* o) {
  vm_load_boot_image(&m->vm);
  uint64_t seed = monotonic_ns() ^ ((uint64_t)getpid() << 32);
  if (vcpu_set_boot_state(&m->vcpu, seed)) return -1;
  printf("booted: mem_mib=%" PRIu64 " data_pages=%" PRIu64 " xsave_bytes=%" PRIu32
         " msrs=%" PRIu32 " prealloc=%d seed=0x%016" PRIx64 "\n",
         m->vm.mem_size >> 20, vm_data_pages(&m->vm), m->vm.xsave_size,
         vcpu_devices_msr_count(m->devices), o->prealloc, seed);
  if (vcpu_start(&m->vcpu, (double)o->dirty_rate)) return -1;
  printf("guest running: dirty_rate_mib_s=%.1f (%s)\n", (double)o->dirty_rate / (1 << 20),
         o->dirty_rate ? "paced" : "unpaced");
  fflush(stdout);
  return 0;
}

/* Asks the guest to verify itself and prints its verdict. 0 only when it passed. */
static int run_self_check(machine* m, guest_report* report) {
  uint64_t start = monotonic_ns();
  vcpu_request_verify(&m->vcpu);
  double timeout = 30.0 + 10.0 * (double)(m->vm.mem_size >> 30);
  int rc = vcpu_wait_done(&m->vcpu, timeout);
  guest_report_read(&m->vm, m->vcpu.result, report);
  printf("guest_counter_at_check: %" PRIu64 "\n", report->counter);
  printf("self_check_s: %.2f (the guest reading all its RAM)\n",
         (double)(monotonic_ns() - start) / 1e9);
  guest_report_print(report);
  return rc == 0 && report->result == RESULT_PASS ? 0 : -1;
}

static int run_check_only(machine* m, const options* o) {
  if (boot_guest(m, o)) return -1;
  sleep_seconds(o->run_before);
  guest_report report;
  return run_self_check(m, &report);
}

static int run_source(machine* m, const options* o) {
  if (boot_guest(m, o)) return -1;
  uint64_t boot_ns = m->vcpu.started_ns;
  sleep_seconds(o->run_before);
  migration_settings s = {o->migrate_to, (uint32_t)o->channels, (uint32_t)o->downtime_limit_ms,
                         o->bandwidth_limit};
  if (migrate_source(&m->vm, &m->vcpu, m->devices, &s)) return -1;
  /* What the guest achieved, not what was asked: the host may not keep up with the pacing. */
  const vmm_info* info = vcpu_devices_vmm_info(m->devices);
  double ran_s = (double)(info->stop_time_ns - boot_ns) / 1e9;
  printf("guest_write_rate_mib_s: %.1f (%" PRIu64 " page writes in %.2f s before the stop)\n",
         (double)info->counter_at_stop * GUEST_PAGE_SIZE / (1 << 20) / ran_s,
         info->counter_at_stop, ran_s);
  return 0;
}

static void print_msrs(machine* m) {
  const uint32_t* refused = NULL;
  uint32_t nrefused = vcpu_devices_msrs_refused(m->devices, &refused);
  printf("msrs: %" PRIu32 " received, %" PRIu32 " refused by KVM_SET_MSRS",
         vcpu_devices_msr_count(m->devices), nrefused);
  for (uint32_t i = 0; i < nrefused; ++i) printf("%s0x%" PRIx32, i ? ", " : ": ", refused[i]);
  printf("\n");
}

/* After the devices are loaded: resume here and report the blackout. */
static int resume_received_guest(machine* m, const options* o, const destination* d) {
  const vmm_info* info = vcpu_devices_vmm_info(m->devices);
  if (!info->loaded) {
    report_error("the migration completed without the vmm device");
    return -1;
  }
  print_msrs(m);
  if (o->corrupt && corrupt_for_testing(&m->vcpu, o->corrupt)) return -1;
  int64_t counter = guest_counter(&m->vcpu);
  if (counter < 0 || vcpu_start(&m->vcpu, (double)o->dirty_rate)) return -1;
  printf("total_time_s: %.3f (ferry_destination_run: accepting the source to devices loaded)\n",
         d->total_seconds);
  printf("blackout_ms: %.1f (destination: the source's stop_guest to this vCPU running again;"
         " CLOCK_MONOTONIC is system-wide and both processes are on one host)\n",
         (double)(int64_t)(m->vcpu.started_ns - info->stop_time_ns) / 1e6);
  printf("iterations: %" PRIu64 "\n", d->iterations);
  printf("wire_bytes: %" PRIu64 "\n", d->wire_bytes);
  printf("guest_counter_at_resume: %" PRId64 " (source at stop: %" PRIu64 ")\n", counter,
         info->counter_at_stop);
  fflush(stdout);
  return 0;
}

static int run_destination(machine* m, const options* o) {
  destination d;
  migration_settings s = {o->incoming, 0, 0, 0};
  int rc = destination_listen(&d, &m->vm, m->devices, &s);
  if (rc == 0) rc = destination_receive(&d);
  destination_close(&d);
  if (rc == 0) rc = resume_received_guest(m, o, &d);
  if (rc) return -1;
  sleep_seconds(o->run_after);
  guest_report report;
  return run_self_check(m, &report);
}

int main(int argc, char** argv) {
  options o;
  int parsed = parse_options(argc, argv, &o);
  if (parsed > 0) {
    usage(stdout);
    return 0;
  }
  if (parsed < 0) {
    fprintf(stderr, "usage: see kvm-vmm --help\n");
    return 2;
  }
  machine m;
  int rc = machine_create(&m, &o);
  if (rc == 0) {
    if (o.check_only) rc = run_check_only(&m, &o);
    else if (o.migrate_to) rc = run_source(&m, &o);
    else rc = run_destination(&m, &o);
  }
  machine_destroy(&m);
  fflush(stdout);
  return rc == 0 ? 0 : 1;
}
