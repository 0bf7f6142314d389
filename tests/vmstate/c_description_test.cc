// A description written in C (c_description.c) works with the C++ walker and visitors.
#include <gtest/gtest.h>

#include <vector>

#include "engine/vmstate/binary_output.h"
#include "engine/vmstate/input.h"
#include "engine/vmstate/walker.h"
#include "tests/vmstate/c_description.h"
#include "tests/vmstate/fixtures.h"

namespace ferry::vmstate::test {
namespace {

struct CDev {
  void* p = c_device_new();
  ~CDev() { c_device_free(p); }
};

TEST(VmstateC, BinaryBytesAndRoundTrips) {
  CDev src;
  c_device_fill(src.p);
  std::vector<uint8_t> body;
  BinaryOutput out(body);
  ASSERT_TRUE(save_state(*c_device_description(), src.p, out).ok());
  EXPECT_EQ(hex(body),
            "00 00 00 10 00 00 00 20 00 00 00 30 00 00 00 40 "  // regs
            "01 "                                               // enabled
            "52 54 00 12 34 56 "                                // mac
            "00 00 00 02 00 00 ca fe 00 00 f0 0d "              // nvals, vals
            "00 01 00 02 "                                      // inner
            "01 00 00 00 64 01 00 00 00 65 00");                // reqs (QTAILQ)
  for (Encoding e : {Encoding::kBinary, Encoding::kBer}) {
    std::vector<uint8_t> bytes;
    ASSERT_TRUE(save_to(e, *c_device_description(), src.p, bytes).ok());
    CDev dst;
    Status st = load_any(*c_device_description(), dst.p, bytes);
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_TRUE(c_device_equal(src.p, dst.p)) << encoding_name(e);
    EXPECT_EQ(c_device_post_load_calls(dst.p), 1);
  }
}

}  // namespace
}  // namespace ferry::vmstate::test
