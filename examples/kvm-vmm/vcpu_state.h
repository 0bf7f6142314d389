/* vcpu_state.h: the vCPU's state as vmstate-described devices, for ferry_source_add_device /
 * ferry_destination_add_device. Each device wraps one KVM state ioctl pair: pre_save reads it
 * from KVM on the source (the vCPU is stopped then), post_load writes it on the destination.
 * Plus a small "vmm" device: the source's stop time and guest counter, and sizes both sides must
 * agree on. */
#ifndef KVM_VMM_VCPU_STATE_H
#define KVM_VMM_VCPU_STATE_H

#include <ferry/vmstate.h>
#include <stddef.h>
#include <stdint.h>

#include "vcpu.h"

typedef struct vmm_info {
  uint64_t stop_time_ns;    /* source: CLOCK_MONOTONIC when stop_guest began */
  uint64_t counter_at_stop; /* source: the guest's write counter (r13) once stopped */
  uint64_t mem_size;
  uint32_t xsave_size;
  uint32_t loaded;          /* destination: set by post_load */
} vmm_info;

typedef struct vcpu_device {
  const char* idstr;
  const FerryVmsDescription* vmsd;
  void* opaque;
} vcpu_device;

#define VCPU_DEVICE_COUNT 10

typedef struct vcpu_devices vcpu_devices;

/* The devices of vCPU v (reads KVM_GET_MSR_INDEX_LIST). NULL after reporting on failure. */
vcpu_devices* vcpu_devices_new(vcpu* v);
void vcpu_devices_free(vcpu_devices* d);
/* The devices in the order both sides register them (the order KVM state is written back). */
void vcpu_devices_list(vcpu_devices* d, vcpu_device out[VCPU_DEVICE_COUNT]);
vmm_info* vcpu_devices_vmm_info(vcpu_devices* d);
/* MSRs: how many the source listed/read, and which the destination's KVM refused to set. */
uint32_t vcpu_devices_msr_count(const vcpu_devices* d);
uint32_t vcpu_devices_msrs_refused(const vcpu_devices* d, const uint32_t** indices);

#endif
