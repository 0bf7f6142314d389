/* guest_report.h: what the guest left in its control block, the test-only damage that must make
 * its self-check fail, and the counter in its registers. */
#ifndef KVM_VMM_GUEST_REPORT_H
#define KVM_VMM_GUEST_REPORT_H

#include <stdint.h>

#include "vcpu.h"

typedef struct guest_report {
  uint32_t result;         /* RESULT_* (0: the guest never reported) */
  uint64_t counter;        /* writes so far */
  uint64_t pages_written;  /* pages with a non-zero counter */
  uint64_t bad_page;
  uint64_t ledger, check_ledger;
  uint64_t running_sum, check_sum;
} guest_report;

void guest_report_read(const vm* vm, uint32_t result, guest_report* out);
/* "self_check: PASS (...)" or "self_check: FAIL (why)". */
void guest_report_print(const guest_report* r);

/* The guest's write counter (r13), or -1 after reporting. */
int64_t guest_counter(vcpu* vcpu);

/* Damage for the negative tests, applied on the destination before the vCPU resumes:
 * "page" zeroes one written data page (a lost dirty page: the page looks never written),
 * "xmm" flips a bit of xmm0 (a register lost in transit: the guest's counter sum).
 * 0, or -1 after reporting. */
int corrupt_for_testing(vcpu* vcpu, const char* what);

#endif
