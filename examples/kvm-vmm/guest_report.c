/* guest_report.c: the guest's control block as the VMM reads it, and test-only damage. */
#define _GNU_SOURCE
#include "guest_report.h"

#include <inttypes.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "layout.h"
#include "util.h"

static uint64_t ctrl_field(const vm* vm, unsigned offset) {
  uint64_t value;
  memcpy(&value, vm->mem + CTRL_ADDR + offset, sizeof value);
  return value;
}

void guest_report_read(const vm* vm, uint32_t result, guest_report* out) {
  out->result = result;
  out->counter = ctrl_field(vm, CTRL_COUNTER);
  out->pages_written = ctrl_field(vm, CTRL_PAGES_WRITTEN);
  out->bad_page = ctrl_field(vm, CTRL_BAD_PAGE);
  out->ledger = ctrl_field(vm, CTRL_LEDGER);
  out->check_ledger = ctrl_field(vm, CTRL_CHECK_LEDGER);
  out->running_sum = ctrl_field(vm, CTRL_RUNNING_SUM);
  out->check_sum = ctrl_field(vm, CTRL_CHECK_SUM);
}

void guest_report_print(const guest_report* r) {
  switch (r->result) {
    case RESULT_PASS:
      printf("self_check: PASS (%" PRIu64 " pages written, ledger 0x%016" PRIx64
             " and counter sum %" PRIu64 " match the pages)\n",
             r->pages_written, r->ledger, r->running_sum);
      break;
    case RESULT_FAIL_PAGE:
      printf("self_check: FAIL (data page %" PRIu64
             " is neither zero nor the pattern of its own counter)\n", r->bad_page);
      break;
    case RESULT_FAIL_LEDGER:
      printf("self_check: FAIL (ledger: running 0x%016" PRIx64 ", recomputed from %" PRIu64
             " pages 0x%016" PRIx64 ")\n", r->ledger, r->pages_written, r->check_ledger);
      break;
    case RESULT_FAIL_SUM:
      printf("self_check: FAIL (counter sum in xmm0: running %" PRIu64 ", recomputed %" PRIu64
             ")\n", r->running_sum, r->check_sum);
      break;
    default:
      printf("self_check: FAIL (the guest reported nothing, result %" PRIu32 ")\n", r->result);
  }
}

int64_t guest_counter(vcpu* v) {
  struct kvm_regs regs;
  if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0) {
    report_errno("KVM_GET_REGS");
    return -1;
  }
  return (int64_t)regs.r13;
}

static int zero_one_written_page(vcpu* v) {
  uint64_t pages = vm_data_pages(v->vm);
  for (uint64_t i = 0; i < pages; ++i) {
    uint64_t p = (i * 7919 + pages / 2) % pages; /* start mid-RAM, visit every page */
    uint8_t* page = v->vm->mem + DATA_ADDR + p * GUEST_PAGE_SIZE;
    uint64_t counter;
    memcpy(&counter, page, sizeof counter);
    if (counter != 0) {
      memset(page, 0, GUEST_PAGE_SIZE);
      printf("corrupt_for_testing: zeroed data page %" PRIu64 " (its counter was %" PRIu64 ")\n",
             p, counter);
      return 0;
    }
  }
  report_error("corrupt-for-testing: the guest has written no page yet");
  return -1;
}

static int flip_xmm0_bit(vcpu* v) {
  struct kvm_fpu fpu;
  if (ioctl(v->fd, KVM_GET_FPU, &fpu) < 0) {
    report_errno("KVM_GET_FPU");
    return -1;
  }
  fpu.xmm[0][0] ^= 1;
  if (ioctl(v->fd, KVM_SET_FPU, &fpu) < 0) {
    report_errno("KVM_SET_FPU");
    return -1;
  }
  printf("corrupt_for_testing: flipped bit 0 of xmm0\n");
  return 0;
}

int corrupt_for_testing(vcpu* v, const char* what) {
  if (strcmp(what, "page") == 0) return zero_one_written_page(v);
  if (strcmp(what, "xmm") == 0) return flip_xmm0_bit(v);
  report_error("--corrupt-for-testing takes page or xmm, not '%s'", what);
  return -1;
}
