/* migrate.h: the guest's live migration through ferry's C API (ferry/ferry.h). The source side
 * registers the RAM slot with KVM's dirty log and the vCPU devices, stops/resumes/throttles the
 * vCPU from ferry's hooks, and prints one line per iteration and a summary. The destination side
 * listens, prints its address, receives RAM and devices (post_load sets the vCPU state). */
#ifndef KVM_VMM_MIGRATE_H
#define KVM_VMM_MIGRATE_H

#include <stdint.h>

#include "vcpu.h"
#include "vcpu_state.h"

typedef struct migration_settings {
  const char* uri;
  uint32_t channels;          /* source: channels to open */
  uint32_t downtime_limit_ms; /* source */
  uint64_t bandwidth_limit;   /* source: bytes/s, 0 = unlimited */
} migration_settings;

/* Source: migrates the running guest. 0 when the destination confirmed (the vCPU stays parked
 * here); -1 after reporting (the guest runs on here). */
int migrate_source(vm* vm, vcpu* vcpu, vcpu_devices* devices, const migration_settings* s);

typedef struct ferry_destination ferry_destination;

typedef struct destination {
  ferry_destination* ferry;
  double total_seconds;
  uint64_t wire_bytes;
  uint64_t iterations;
} destination;

/* Destination: registers RAM and devices, listens on s->uri and prints "listening on URI". */
int destination_listen(destination* d, vm* vm, vcpu_devices* devices,
                       const migration_settings* s);
/* Accepts and receives until the devices are loaded (the vCPU state is set then). */
int destination_receive(destination* d);
void destination_close(destination* d);

#endif
