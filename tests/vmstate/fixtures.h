// Shared test device: every field kind, versions, subsections, hooks, a QTAILQ list.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/vmstate/errors.h"
#include "ferry/vmstate.h"

namespace ferry::vmstate::test {

struct Inner {
  uint8_t a;
  uint16_t b;
  int32_t c;
};

struct Req {
  FerryVmsTailqEntry link;
  uint8_t retry;  // the marker-field of SCSI-like loops
  uint32_t tag;
  uint8_t cdb[4];
};

struct Dev {
  bool flag;
  uint8_t u8;
  uint16_t u16;
  uint32_t u32;
  uint64_t u64;
  int8_t i8;
  int16_t i16;
  int32_t i32;
  int64_t i64;
  uint8_t buf[5];
  uint16_t arr[3];
  uint8_t n8;
  uint32_t var8[4];
  uint16_t n16;
  int16_t var16[4];
  uint32_t n32;
  uint8_t var32[6];
  Inner inner;
  Inner inners[2];
  uint8_t ninners;
  Inner vinners[3];
  Inner* ptr;
  uint32_t v2_only;     // since version 2
  uint32_t gated;       // field_exists: only when flag is set
  FerryVmsTailqHead reqs;  // QTAILQ of Req, QEMU's marker format
  uint32_t sub_value;   // subsection "dev/sub" (needed when sub_value != 0)
  uint16_t sub2_value;  // subsection "dev/sub2" (needed when sub2_value != 0)
  int pre_save_calls;
  int post_load_calls;
  int post_load_version;
  int fail_pre_save;    // hook returns this
  int fail_post_load;
};

extern const FerryVmsDescription kInnerVmsd;
extern const FerryVmsDescription kReqVmsd;
extern const FerryVmsDescription kDevVmsd;      // version 3, minimum 1
extern const FerryVmsDescription kDevSubVmsd;   // "dev/sub"
extern const FerryVmsList kDevReqList;

// A Dev with every field set (lists: `nreqs` elements from malloc).
void fill_dev(Dev& d, int nreqs = 2);
// Field-by-field comparison (not hooks); returns "" when equal, else the first difference.
std::string diff_dev(const Dev& a, const Dev& b);

std::string hex(std::span<const uint8_t> bytes);

// Writes bytes to a file in the test's temp dir; returns the path.
std::string write_temp(const std::string& name, std::span<const uint8_t> bytes);

}  // namespace ferry::vmstate::test
