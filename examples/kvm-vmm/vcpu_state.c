/* vcpu_state.c: vmstate descriptions of KVM's vCPU state structs, and the devices that read them
 * from KVM before saving (source) and write them to KVM after loading (destination).
 *
 * Each device struct starts with the kernel's struct (offset 0), so the device's description
 * lists the kernel struct's fields by their offsetof; the vCPU fd follows. Kernel padding and
 * reserved fields are left out. */
#define _GNU_SOURCE
#include "vcpu_state.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "util.h"

#define F(S, m, kind) FERRY_VMS_C_FIELD(S, m, kind)
/* A field under a name of its own (for members of nested or anonymous structs). */
#define NAMED(S, path, label, kind)                                                       \
  { label, kind, FERRY_VMS_SINGLE, offsetof(S, path), sizeof(((S*)0)->path), 0, 0, 0, NULL, \
    NULL, NULL, NULL }
/* Members of the kernel struct `s` in a device struct, named as the kernel names them. */
#define K(S, m, kind) NAMED(S, s.m, #m, kind)
#define K_ARRAY(S, m, kind)                                                                  \
  { #m, kind, FERRY_VMS_ARRAY, offsetof(S, s.m), sizeof(((S*)0)->s.m[0]),                    \
    (uint32_t)(sizeof(((S*)0)->s.m) / sizeof(((S*)0)->s.m[0])), 0, 0, NULL, NULL, NULL, NULL }
#define K_STRUCT(S, m, vmsd_)                                                                \
  { #m, FERRY_VMS_STRUCT, FERRY_VMS_SINGLE, offsetof(S, s.m), sizeof(((S*)0)->s.m), 0, 0, 0, \
    NULL, &(vmsd_), NULL, NULL }
#define DESCRIPTION(name_, fields_, pre_save_, post_load_) \
  {name_, 1, 1, NULL, pre_save_, post_load_, fields_, NULL}

#define MAX_MSRS 512
#define XSAVE_MAX (32 * 1024)

typedef struct regs_dev { struct kvm_regs s; int fd; } regs_dev;
typedef struct sregs_dev { struct kvm_sregs s; int fd; } sregs_dev;
typedef struct fpu_dev { struct kvm_fpu s; int fd; } fpu_dev;
typedef struct xcrs_dev { struct kvm_xcrs s; int fd; } xcrs_dev;
typedef struct events_dev { struct kvm_vcpu_events s; int fd; } events_dev;
typedef struct mp_state_dev { struct kvm_mp_state s; int fd; } mp_state_dev;
typedef struct debugregs_dev { struct kvm_debugregs s; int fd; } debugregs_dev;
typedef struct xsave_dev {
  uint8_t region[XSAVE_MAX] __attribute__((aligned(64))); /* KVM_GET_XSAVE2's bytes */
  uint32_t size;
  int fd;
} xsave_dev;
typedef struct msr_dev {
  uint32_t count;            /* on the wire: the MSRs read on the source */
  uint32_t index[MAX_MSRS];
  uint64_t value[MAX_MSRS];
  int fd;
  uint32_t listed_count;     /* source: KVM_GET_MSR_INDEX_LIST */
  uint32_t listed[MAX_MSRS];
  uint32_t refused_count;    /* destination: KVM_SET_MSRS refused these */
  uint32_t refused[MAX_MSRS];
} msr_dev;
typedef struct vmm_dev { vmm_info s; uint64_t local_mem_size; uint32_t local_xsave_size; } vmm_dev;

struct vcpu_devices {
  vmm_dev vmm;
  regs_dev regs;
  sregs_dev sregs;
  fpu_dev fpu;
  xsave_dev xsave;
  xcrs_dev xcrs;
  msr_dev msrs;
  events_dev events;
  mp_state_dev mp_state;
  debugregs_dev debugregs;
};

/* One KVM ioctl as a vmstate hook result: 0, or -1 with the reason on stderr. */
static int kvm_ioctl(int fd, unsigned long request, void* arg, const char* what) {
  if (ioctl(fd, request, arg) < 0) {
    report_errno("%s", what);
    return -1;
  }
  return 0;
}

/* ---- REGS ---- */
static const FerryVmsField regs_fields[] = {
    K(regs_dev, rax, FERRY_VMS_U64), K(regs_dev, rbx, FERRY_VMS_U64),
    K(regs_dev, rcx, FERRY_VMS_U64), K(regs_dev, rdx, FERRY_VMS_U64),
    K(regs_dev, rsi, FERRY_VMS_U64), K(regs_dev, rdi, FERRY_VMS_U64),
    K(regs_dev, rsp, FERRY_VMS_U64), K(regs_dev, rbp, FERRY_VMS_U64),
    K(regs_dev, r8, FERRY_VMS_U64),  K(regs_dev, r9, FERRY_VMS_U64),
    K(regs_dev, r10, FERRY_VMS_U64), K(regs_dev, r11, FERRY_VMS_U64),
    K(regs_dev, r12, FERRY_VMS_U64), K(regs_dev, r13, FERRY_VMS_U64),
    K(regs_dev, r14, FERRY_VMS_U64), K(regs_dev, r15, FERRY_VMS_U64),
    K(regs_dev, rip, FERRY_VMS_U64), K(regs_dev, rflags, FERRY_VMS_U64),
    FERRY_VMS_C_END,
};
static int regs_pre_save(void* o) {
  regs_dev* d = o;
  return kvm_ioctl(d->fd, KVM_GET_REGS, &d->s, "KVM_GET_REGS");
}
static int regs_post_load(void* o, int version) {
  (void)version;
  regs_dev* d = o;
  return kvm_ioctl(d->fd, KVM_SET_REGS, &d->s, "KVM_SET_REGS");
}
static const FerryVmsDescription regs_vmsd =
    DESCRIPTION("kvm-regs", regs_fields, regs_pre_save, regs_post_load);

/* ---- SREGS: segments and descriptor tables as nested structs ---- */
static const FerryVmsField segment_fields[] = {
    F(struct kvm_segment, base, FERRY_VMS_U64),    F(struct kvm_segment, limit, FERRY_VMS_U32),
    F(struct kvm_segment, selector, FERRY_VMS_U16), F(struct kvm_segment, type, FERRY_VMS_U8),
    F(struct kvm_segment, present, FERRY_VMS_U8),  F(struct kvm_segment, dpl, FERRY_VMS_U8),
    F(struct kvm_segment, db, FERRY_VMS_U8),       F(struct kvm_segment, s, FERRY_VMS_U8),
    F(struct kvm_segment, l, FERRY_VMS_U8),        F(struct kvm_segment, g, FERRY_VMS_U8),
    F(struct kvm_segment, avl, FERRY_VMS_U8),      F(struct kvm_segment, unusable, FERRY_VMS_U8),
    FERRY_VMS_C_END,
};
static const FerryVmsDescription segment_vmsd =
    DESCRIPTION("kvm-segment", segment_fields, NULL, NULL);
static const FerryVmsField dtable_fields[] = {
    F(struct kvm_dtable, base, FERRY_VMS_U64),
    F(struct kvm_dtable, limit, FERRY_VMS_U16),
    FERRY_VMS_C_END,
};
static const FerryVmsDescription dtable_vmsd = DESCRIPTION("kvm-dtable", dtable_fields, NULL, NULL);
static const FerryVmsField sregs_fields[] = {
    K_STRUCT(sregs_dev, cs, segment_vmsd),
    K_STRUCT(sregs_dev, ds, segment_vmsd),
    K_STRUCT(sregs_dev, es, segment_vmsd),
    K_STRUCT(sregs_dev, fs, segment_vmsd),
    K_STRUCT(sregs_dev, gs, segment_vmsd),
    K_STRUCT(sregs_dev, ss, segment_vmsd),
    K_STRUCT(sregs_dev, tr, segment_vmsd),
    K_STRUCT(sregs_dev, ldt, segment_vmsd),
    K_STRUCT(sregs_dev, gdt, dtable_vmsd),
    K_STRUCT(sregs_dev, idt, dtable_vmsd),
    K(sregs_dev, cr0, FERRY_VMS_U64),
    K(sregs_dev, cr2, FERRY_VMS_U64),
    K(sregs_dev, cr3, FERRY_VMS_U64),
    K(sregs_dev, cr4, FERRY_VMS_U64),
    K(sregs_dev, cr8, FERRY_VMS_U64),
    K(sregs_dev, efer, FERRY_VMS_U64),
    K(sregs_dev, apic_base, FERRY_VMS_U64),
    K_ARRAY(sregs_dev, interrupt_bitmap, FERRY_VMS_U64),
    FERRY_VMS_C_END,
};
static int sregs_pre_save(void* o) {
  sregs_dev* d = o;
  return kvm_ioctl(d->fd, KVM_GET_SREGS, &d->s, "KVM_GET_SREGS");
}
static int sregs_post_load(void* o, int version) {
  (void)version;
  sregs_dev* d = o;
  return kvm_ioctl(d->fd, KVM_SET_SREGS, &d->s, "KVM_SET_SREGS");
}
static const FerryVmsDescription sregs_vmsd =
    DESCRIPTION("kvm-sregs", sregs_fields, sregs_pre_save, sregs_post_load);

/* ---- FPU (legacy area; XSAVE below carries the same and more, FPU first so XSAVE wins) ---- */
static const FerryVmsField fpu_fields[] = {
    K(fpu_dev, fpr, FERRY_VMS_BUFFER),        K(fpu_dev, fcw, FERRY_VMS_U16),
    K(fpu_dev, fsw, FERRY_VMS_U16),           K(fpu_dev, ftwx, FERRY_VMS_U8),
    K(fpu_dev, last_opcode, FERRY_VMS_U16),   K(fpu_dev, last_ip, FERRY_VMS_U64),
    K(fpu_dev, last_dp, FERRY_VMS_U64),       K(fpu_dev, xmm, FERRY_VMS_BUFFER),
    K(fpu_dev, mxcsr, FERRY_VMS_U32),         FERRY_VMS_C_END,
};
static int fpu_pre_save(void* o) {
  fpu_dev* d = o;
  return kvm_ioctl(d->fd, KVM_GET_FPU, &d->s, "KVM_GET_FPU");
}
static int fpu_post_load(void* o, int version) {
  (void)version;
  fpu_dev* d = o;
  return kvm_ioctl(d->fd, KVM_SET_FPU, &d->s, "KVM_SET_FPU");
}
static const FerryVmsDescription fpu_vmsd =
    DESCRIPTION("kvm-fpu", fpu_fields, fpu_pre_save, fpu_post_load);

/* ---- XSAVE: KVM_GET_XSAVE2's bytes; the length is the VM's (set in vcpu_devices_new) ---- */
static FerryVmsField xsave_fields[] = {
    {"region", FERRY_VMS_BUFFER, FERRY_VMS_SINGLE, offsetof(xsave_dev, region), 0, 0, 0, 0, NULL,
     NULL, NULL, NULL},
    FERRY_VMS_C_END,
};
static int xsave_pre_save(void* o) {
  xsave_dev* d = o;
  return kvm_ioctl(d->fd, KVM_GET_XSAVE2, d->region, "KVM_GET_XSAVE2");
}
static int xsave_post_load(void* o, int version) {
  (void)version;
  xsave_dev* d = o;
  return kvm_ioctl(d->fd, KVM_SET_XSAVE, d->region, "KVM_SET_XSAVE");
}
static const FerryVmsDescription xsave_vmsd =
    DESCRIPTION("kvm-xsave", xsave_fields, xsave_pre_save, xsave_post_load);

/* ---- XCRS ---- */
static const FerryVmsField xcr_fields[] = {
    F(struct kvm_xcr, xcr, FERRY_VMS_U32),
    F(struct kvm_xcr, value, FERRY_VMS_U64),
    FERRY_VMS_C_END,
};
static const FerryVmsDescription xcr_vmsd = DESCRIPTION("kvm-xcr", xcr_fields, NULL, NULL);
static const FerryVmsField xcrs_fields[] = {
    K(xcrs_dev, nr_xcrs, FERRY_VMS_U32),
    K(xcrs_dev, flags, FERRY_VMS_U32),
    {"xcrs", FERRY_VMS_STRUCT, FERRY_VMS_VARRAY32, offsetof(xcrs_dev, s.xcrs),
     sizeof(struct kvm_xcr), KVM_MAX_XCRS, offsetof(xcrs_dev, s.nr_xcrs), 0, NULL, &xcr_vmsd,
     NULL, NULL},
    FERRY_VMS_C_END,
};
static int xcrs_pre_save(void* o) {
  xcrs_dev* d = o;
  return kvm_ioctl(d->fd, KVM_GET_XCRS, &d->s, "KVM_GET_XCRS");
}
static int xcrs_post_load(void* o, int version) {
  (void)version;
  xcrs_dev* d = o;
  return kvm_ioctl(d->fd, KVM_SET_XCRS, &d->s, "KVM_SET_XCRS");
}
static const FerryVmsDescription xcrs_vmsd =
    DESCRIPTION("kvm-xcrs", xcrs_fields, xcrs_pre_save, xcrs_post_load);

/* ---- MSRs: read all the index list names; set one at a time (KVM_SET_MSRS stops at the first
 * refusal) and remember the refused ones ---- */
static const FerryVmsField msr_fields[] = {
    F(msr_dev, count, FERRY_VMS_U32),
    FERRY_VMS_C_VARRAY32(msr_dev, index, count, FERRY_VMS_U32, sizeof(uint32_t)),
    FERRY_VMS_C_VARRAY32(msr_dev, value, count, FERRY_VMS_U64, sizeof(uint64_t)),
    FERRY_VMS_C_END,
};

/* KVM_GET_MSRS / KVM_SET_MSRS of one MSR: 1 done, 0 refused, -1 error. */
static int msr_ioctl(int fd, unsigned long request, uint32_t index, uint64_t* value) {
  union { /* struct kvm_msrs with room for one entry */
    struct kvm_msrs head;
    uint8_t bytes[sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)];
  } m;
  memset(&m, 0, sizeof m);
  m.head.nmsrs = 1;
  m.head.entries[0].index = index;
  m.head.entries[0].data = *value;
  int n = ioctl(fd, request, &m);
  if (n < 0) return -1;
  *value = m.head.entries[0].data;
  return n;
}

static int msrs_pre_save(void* o) {
  msr_dev* d = o;
  d->count = 0;
  for (uint32_t i = 0; i < d->listed_count; ++i) {
    uint64_t value = 0;
    int n = msr_ioctl(d->fd, KVM_GET_MSRS, d->listed[i], &value);
    if (n < 0) {
      report_errno("KVM_GET_MSRS(0x%x)", d->listed[i]);
      return -1;
    }
    if (n == 1) { /* an MSR KVM lists but cannot read is left out */
      d->index[d->count] = d->listed[i];
      d->value[d->count++] = value;
    }
  }
  return 0;
}

static int msrs_post_load(void* o, int version) {
  (void)version;
  msr_dev* d = o;
  d->refused_count = 0;
  for (uint32_t i = 0; i < d->count; ++i) {
    uint64_t value = d->value[i];
    int n = msr_ioctl(d->fd, KVM_SET_MSRS, d->index[i], &value);
    if (n < 0) {
      report_errno("KVM_SET_MSRS(0x%x)", d->index[i]);
      return -1;
    }
    if (n == 0) d->refused[d->refused_count++] = d->index[i];
  }
  return 0;
}
static const FerryVmsDescription msrs_vmsd =
    DESCRIPTION("kvm-msrs", msr_fields, msrs_pre_save, msrs_post_load);

/* ---- VCPU_EVENTS (flags travel as KVM returned them, so SET takes the same valid bits) ---- */
#define EV(path, label, kind) NAMED(events_dev, s.path, label, kind) /* flattened */
static const FerryVmsField events_fields[] = {
    EV(exception.injected, "exception_injected", FERRY_VMS_U8),
    EV(exception.nr, "exception_nr", FERRY_VMS_U8),
    EV(exception.has_error_code, "exception_has_error_code", FERRY_VMS_U8),
    EV(exception.pending, "exception_pending", FERRY_VMS_U8),
    EV(exception.error_code, "exception_error_code", FERRY_VMS_U32),
    EV(interrupt.injected, "interrupt_injected", FERRY_VMS_U8),
    EV(interrupt.nr, "interrupt_nr", FERRY_VMS_U8),
    EV(interrupt.soft, "interrupt_soft", FERRY_VMS_U8),
    EV(interrupt.shadow, "interrupt_shadow", FERRY_VMS_U8),
    EV(nmi.injected, "nmi_injected", FERRY_VMS_U8),
    EV(nmi.pending, "nmi_pending", FERRY_VMS_U8),
    EV(nmi.masked, "nmi_masked", FERRY_VMS_U8),
    EV(sipi_vector, "sipi_vector", FERRY_VMS_U32),
    EV(flags, "flags", FERRY_VMS_U32),
    EV(smi.smm, "smi_smm", FERRY_VMS_U8),
    EV(smi.pending, "smi_pending", FERRY_VMS_U8),
    EV(smi.smm_inside_nmi, "smi_smm_inside_nmi", FERRY_VMS_U8),
    EV(smi.latched_init, "smi_latched_init", FERRY_VMS_U8),
    EV(triple_fault.pending, "triple_fault_pending", FERRY_VMS_U8),
    EV(exception_has_payload, "exception_has_payload", FERRY_VMS_U8),
    EV(exception_payload, "exception_payload", FERRY_VMS_U64),
    FERRY_VMS_C_END,
};
static int events_pre_save(void* o) {
  events_dev* d = o;
  return kvm_ioctl(d->fd, KVM_GET_VCPU_EVENTS, &d->s, "KVM_GET_VCPU_EVENTS");
}
static int events_post_load(void* o, int version) {
  (void)version;
  events_dev* d = o;
  return kvm_ioctl(d->fd, KVM_SET_VCPU_EVENTS, &d->s, "KVM_SET_VCPU_EVENTS");
}
static const FerryVmsDescription events_vmsd =
    DESCRIPTION("kvm-vcpu-events", events_fields, events_pre_save, events_post_load);

/* ---- MP_STATE ---- */
static const FerryVmsField mp_state_fields[] = {
    K(mp_state_dev, mp_state, FERRY_VMS_U32),
    FERRY_VMS_C_END,
};
static int mp_state_pre_save(void* o) {
  mp_state_dev* d = o;
  return kvm_ioctl(d->fd, KVM_GET_MP_STATE, &d->s, "KVM_GET_MP_STATE");
}
static int mp_state_post_load(void* o, int version) {
  (void)version;
  mp_state_dev* d = o;
  return kvm_ioctl(d->fd, KVM_SET_MP_STATE, &d->s, "KVM_SET_MP_STATE");
}
static const FerryVmsDescription mp_state_vmsd =
    DESCRIPTION("kvm-mp-state", mp_state_fields, mp_state_pre_save, mp_state_post_load);

/* ---- DEBUGREGS ---- */
static const FerryVmsField debugregs_fields[] = {
    K_ARRAY(debugregs_dev, db, FERRY_VMS_U64),
    K(debugregs_dev, dr6, FERRY_VMS_U64),
    K(debugregs_dev, dr7, FERRY_VMS_U64),
    K(debugregs_dev, flags, FERRY_VMS_U64),
    FERRY_VMS_C_END,
};
static int debugregs_pre_save(void* o) {
  debugregs_dev* d = o;
  return kvm_ioctl(d->fd, KVM_GET_DEBUGREGS, &d->s, "KVM_GET_DEBUGREGS");
}
static int debugregs_post_load(void* o, int version) {
  (void)version;
  debugregs_dev* d = o;
  return kvm_ioctl(d->fd, KVM_SET_DEBUGREGS, &d->s, "KVM_SET_DEBUGREGS");
}
static const FerryVmsDescription debugregs_vmsd =
    DESCRIPTION("kvm-debugregs", debugregs_fields, debugregs_pre_save, debugregs_post_load);

/* ---- vmm: first, so a destination of another shape stops before any KVM state is set ---- */
static const FerryVmsField vmm_fields[] = {
    K(vmm_dev, stop_time_ns, FERRY_VMS_U64),
    K(vmm_dev, counter_at_stop, FERRY_VMS_U64),
    K(vmm_dev, mem_size, FERRY_VMS_U64),
    K(vmm_dev, xsave_size, FERRY_VMS_U32),
    FERRY_VMS_C_END,
};
static int vmm_post_load(void* o, int version) {
  (void)version;
  vmm_dev* d = o;
  if (d->s.mem_size != d->local_mem_size) {
    report_error("the source's guest has %llu MiB of RAM, this one %llu MiB",
                 (unsigned long long)(d->s.mem_size >> 20),
                 (unsigned long long)(d->local_mem_size >> 20));
    return -1;
  }
  if (d->s.xsave_size != d->local_xsave_size) {
    report_error("the source's XSAVE state is %u bytes, this KVM's %u", d->s.xsave_size,
                 d->local_xsave_size);
    return -1;
  }
  d->s.loaded = 1;
  return 0;
}
static const FerryVmsDescription vmm_vmsd = DESCRIPTION("vmm", vmm_fields, NULL, vmm_post_load);

/* ---- the set of devices ---- */

static int read_msr_index_list(vcpu_devices* d, int kvm_fd) {
  union { /* struct kvm_msr_list with room for MAX_MSRS indices */
    struct kvm_msr_list head;
    uint8_t bytes[sizeof(struct kvm_msr_list) + MAX_MSRS * sizeof(uint32_t)];
  } list;
  list.head.nmsrs = MAX_MSRS;
  if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &list) < 0) {
    report_errno("KVM_GET_MSR_INDEX_LIST (more than %d MSRs?)", MAX_MSRS);
    return -1;
  }
  d->msrs.listed_count = list.head.nmsrs;
  memcpy(d->msrs.listed, list.head.indices, list.head.nmsrs * sizeof(uint32_t));
  return 0;
}

vcpu_devices* vcpu_devices_new(vcpu* v) {
  if (v->vm->xsave_size > XSAVE_MAX) {
    report_error("KVM's XSAVE state is %u bytes, more than the %u this VMM holds",
                 v->vm->xsave_size, XSAVE_MAX);
    return NULL;
  }
  vcpu_devices* d = calloc(1, sizeof *d);
  if (!d) {
    report_error("out of memory for the vCPU devices");
    return NULL;
  }
  xsave_fields[0].size = v->vm->xsave_size;
  d->xsave.size = v->vm->xsave_size;
  d->vmm.local_mem_size = d->vmm.s.mem_size = v->vm->mem_size;
  d->vmm.local_xsave_size = d->vmm.s.xsave_size = v->vm->xsave_size;
  d->regs.fd = d->sregs.fd = d->fpu.fd = d->xsave.fd = d->xcrs.fd = d->msrs.fd = v->fd;
  d->events.fd = d->mp_state.fd = d->debugregs.fd = v->fd;
  if (read_msr_index_list(d, v->vm->kvm_fd)) {
    free(d);
    return NULL;
  }
  return d;
}

void vcpu_devices_free(vcpu_devices* d) { free(d); }

void vcpu_devices_list(vcpu_devices* d, vcpu_device out[VCPU_DEVICE_COUNT]) {
  /* QEMU's order of writing state back: registers, FPU/XSAVE, XCRs, sregs, MSRs, events. */
  const vcpu_device list[VCPU_DEVICE_COUNT] = {
      {"vmm", &vmm_vmsd, &d->vmm},
      {"cpu0/regs", &regs_vmsd, &d->regs},
      {"cpu0/fpu", &fpu_vmsd, &d->fpu},
      {"cpu0/xsave", &xsave_vmsd, &d->xsave},
      {"cpu0/xcrs", &xcrs_vmsd, &d->xcrs},
      {"cpu0/sregs", &sregs_vmsd, &d->sregs},
      {"cpu0/msrs", &msrs_vmsd, &d->msrs},
      {"cpu0/vcpu-events", &events_vmsd, &d->events},
      {"cpu0/mp-state", &mp_state_vmsd, &d->mp_state},
      {"cpu0/debugregs", &debugregs_vmsd, &d->debugregs},
  };
  memcpy(out, list, sizeof list);
}

vmm_info* vcpu_devices_vmm_info(vcpu_devices* d) { return &d->vmm.s; }

uint32_t vcpu_devices_msr_count(const vcpu_devices* d) {
  return d->msrs.count ? d->msrs.count : d->msrs.listed_count;
}

uint32_t vcpu_devices_msrs_refused(const vcpu_devices* d, const uint32_t** indices) {
  *indices = d->msrs.refused;
  return d->msrs.refused_count;
}
