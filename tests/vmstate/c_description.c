/* A device state description written in plain C11 with the C initialisers of vmstate.h. */
#include "tests/vmstate/c_description.h"

#include <stdlib.h>
#include <string.h>

typedef struct CReq {
  FerryVmsTailqEntry link;
  uint32_t id;
} CReq;

typedef struct CInner {
  uint16_t lo;
  uint16_t hi;
} CInner;

typedef struct CDevice {
  uint32_t regs[4];
  bool enabled;
  uint8_t mac[6];
  uint32_t nvals;
  uint32_t vals[8];
  CInner inner;
  FerryVmsTailqHead reqs;
  int post_load_calls;
} CDevice;

static const FerryVmsField creq_fields[] = {
    FERRY_VMS_C_FIELD(CReq, id, FERRY_VMS_U32),
    FERRY_VMS_C_END,
};
static const FerryVmsDescription creq_vmsd = {"creq", 1, 1, NULL, NULL, NULL, creq_fields, NULL};
static const FerryVmsContainer creq_tailq = FERRY_VMS_TAILQ_CONTAINER(CReq, link);
static const FerryVmsList creq_list = {FERRY_VMS_LOOP_MARKER, 0, &creq_tailq, &creq_vmsd,
                                       sizeof(CReq), &ferry_vms_malloc_allocator, 0, 0};

static const FerryVmsField cinner_fields[] = {
    FERRY_VMS_C_FIELD(CInner, lo, FERRY_VMS_U16),
    FERRY_VMS_C_FIELD(CInner, hi, FERRY_VMS_U16),
    FERRY_VMS_C_END,
};
static const FerryVmsDescription cinner_vmsd = {"cinner", 1, 1, NULL, NULL, NULL, cinner_fields,
                                                NULL};

static int cdev_post_load(void* opaque, int version_id) {
  (void)version_id;
  ((CDevice*)opaque)->post_load_calls++;
  return 0;
}

static const FerryVmsField cdev_fields[] = {
    FERRY_VMS_C_ARRAY(CDevice, regs, FERRY_VMS_U32, sizeof(uint32_t)),
    FERRY_VMS_C_FIELD(CDevice, enabled, FERRY_VMS_BOOL),
    FERRY_VMS_C_FIELD(CDevice, mac, FERRY_VMS_BUFFER),
    FERRY_VMS_C_FIELD(CDevice, nvals, FERRY_VMS_U32),
    FERRY_VMS_C_VARRAY32(CDevice, vals, nvals, FERRY_VMS_U32, sizeof(uint32_t)),
    FERRY_VMS_C_STRUCT(CDevice, inner, cinner_vmsd),
    FERRY_VMS_C_LIST(CDevice, reqs, creq_list),
    FERRY_VMS_C_END,
};
static const FerryVmsDescription cdev_vmsd = {"cdev", 1, 1, NULL, NULL, &cdev_post_load,
                                              cdev_fields, NULL};

const FerryVmsDescription* c_device_description(void) { return &cdev_vmsd; }

void* c_device_new(void) { return calloc(1, sizeof(CDevice)); }

void c_device_fill(void* opaque) {
  CDevice* d = (CDevice*)opaque;
  for (uint32_t i = 0; i < 4; ++i) d->regs[i] = 0x10u * (i + 1);
  d->enabled = true;
  memcpy(d->mac, "\x52\x54\x00\x12\x34\x56", 6);
  d->nvals = 2;
  d->vals[0] = 0xcafe;
  d->vals[1] = 0xf00d;
  d->inner.lo = 1;
  d->inner.hi = 2;
  for (uint32_t i = 0; i < 2; ++i) {
    CReq* r = (CReq*)calloc(1, sizeof(CReq));
    r->id = 100 + i;
    ferry_vms_tailq_ops.append(&creq_tailq, &d->reqs, r);
  }
}

int c_device_equal(const void* pa, const void* pb) {
  const CDevice* a = (const CDevice*)pa;
  const CDevice* b = (const CDevice*)pb;
  if (memcmp(a->regs, b->regs, sizeof a->regs) || a->enabled != b->enabled ||
      memcmp(a->mac, b->mac, 6) || a->nvals != b->nvals ||
      memcmp(a->vals, b->vals, a->nvals * sizeof(uint32_t)) || a->inner.lo != b->inner.lo ||
      a->inner.hi != b->inner.hi) {
    return 0;
  }
  const CReq* x = (const CReq*)a->reqs.first;
  const CReq* y = (const CReq*)b->reqs.first;
  for (; x && y; x = (const CReq*)x->link.next, y = (const CReq*)y->link.next) {
    if (x->id != y->id) return 0;
  }
  return x == NULL && y == NULL;
}

void c_device_free(void* dev) {
  ferry_vms_release(&cdev_vmsd, dev);
  free(dev);
}

int c_device_post_load_calls(const void* dev) { return ((const CDevice*)dev)->post_load_calls; }
