// Every field kind through every visitor: binary and BER round trips (section and body), the
// debug text, BER bytes by hand for each kind, integer edge values, versions and subsections.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "engine/vmstate/ber_input.h"
#include "engine/vmstate/ber_output.h"
#include "engine/vmstate/binary_input.h"
#include "engine/vmstate/binary_output.h"
#include "engine/vmstate/debug_output.h"
#include "engine/vmstate/input.h"
#include "engine/vmstate/walker.h"
#include "tests/vmstate/fixtures.h"

namespace ferry::vmstate::test {
namespace {

using Bytes = std::vector<uint8_t>;

struct DevHolder {
  Dev d{};
  ~DevHolder() { ferry_vms_release(&kDevVmsd, &d); }
};

class EveryEncoding : public ::testing::TestWithParam<Encoding> {};

TEST_P(EveryEncoding, SectionRoundTripOfEveryFieldKind) {
  for (int variant = 0; variant < 3; ++variant) {
    DevHolder src;
    fill_dev(src.d, variant == 1 ? 0 : 3);
    if (variant == 1) {
      src.d.flag = false;
      src.d.sub_value = 0;
      src.d.sub2_value = 7;
    }
    if (variant == 2) src.d.sub2_value = 0xffff;  // both subsections
    Bytes bytes;
    ASSERT_TRUE(save_to(GetParam(), kDevVmsd, &src.d, bytes, {3, 4}).ok());
    DevHolder dst;
    SectionIds ids;
    Encoding detected;
    Status st = load_any(kDevVmsd, &dst.d, bytes, &ids, &detected);
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_EQ(detected, GetParam());
    EXPECT_EQ(ids.section_id, 3u);
    EXPECT_EQ(ids.instance_id, 4u);
    if (variant == 1) src.d.gated = 0;  // not sent when flag is false
    EXPECT_EQ(diff_dev(src.d, dst.d), "") << "variant " << variant;
    EXPECT_EQ(dst.d.post_load_calls, 1);
    EXPECT_EQ(src.d.pre_save_calls, 1);
  }
}

TEST_P(EveryEncoding, BodyRoundTrip) {
  DevHolder src;
  fill_dev(src.d, 2);
  Bytes bytes;
  DevHolder dst;
  Status st;
  if (GetParam() == Encoding::kBinary) {
    BinaryOutput out(bytes);
    ASSERT_TRUE(save_state(kDevVmsd, &src.d, out).ok());
    BinaryInput in(bytes);
    st = load_state(kDevVmsd, &dst.d, in, 3);
    EXPECT_TRUE(in.at_end());
  } else {
    BerOutput out(bytes);
    ASSERT_TRUE(save_state(kDevVmsd, &src.d, out).ok());
    BerInput in(bytes);
    st = load_state(kDevVmsd, &dst.d, in, 3);
    EXPECT_EQ(in.offset(), bytes.size());
  }
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(diff_dev(src.d, dst.d), "");
}

TEST_P(EveryEncoding, OlderWriterVersionSkipsGatedField) {
  // A writer at version 1 (same fields) leaves out v2_only; the reader at version 3 accepts it.
  FerryVmsDescription v1 = kDevVmsd;
  v1.version_id = 1;
  DevHolder src;
  fill_dev(src.d, 1);
  Bytes bytes;
  ASSERT_TRUE(save_to(GetParam(), v1, &src.d, bytes).ok());
  DevHolder dst;
  Status st = load_any(kDevVmsd, &dst.d, bytes);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(dst.d.v2_only, 0u);
  EXPECT_EQ(dst.d.post_load_version, 1);
  // ... and a writer newer than the reader is refused.
  FerryVmsDescription v9 = kDevVmsd;
  v9.version_id = 9;
  bytes.clear();
  ASSERT_TRUE(save_to(GetParam(), v9, &src.d, bytes).ok());
  DevHolder dst2;
  EXPECT_EQ(load_any(kDevVmsd, &dst2.d, bytes).code(), Errc::kVersionTooNew);
}

TEST_P(EveryEncoding, UnknownSubsectionNamed) {
  // Writer knows "dev/sub"; a reader without subsections must name it.
  DevHolder src;
  fill_dev(src.d, 0);
  Bytes bytes;
  ASSERT_TRUE(save_to(GetParam(), kDevVmsd, &src.d, bytes).ok());
  FerryVmsDescription nosubs = kDevVmsd;
  nosubs.subsections = nullptr;
  DevHolder dst;
  Status st = load_any(nosubs, &dst.d, bytes);
  EXPECT_EQ(st.code(), Errc::kUnknownSubsection) << st.message();
  EXPECT_NE(st.message().find("'dev/sub'"), std::string::npos) << st.message();
}

INSTANTIATE_TEST_SUITE_P(Vmstate, EveryEncoding,
                         ::testing::Values(Encoding::kBinary, Encoding::kBer),
                         [](const auto& i) { return std::string(encoding_name(i.param)); });

TEST(VmstateDebug, PrintsNamesAndValuesIndented) {
  DevHolder src;
  fill_dev(src.d, 2);
  std::string text;
  DebugOutput out(text);
  ASSERT_TRUE(save_section(kDevVmsd, &src.d, out, {1, 0}).ok());
  const char* expected[] = {
      "section 'dev' (section 1, instance 0, version 3) {\n",
      "\n  struct 'dev' {\n",
      "\n    flag: bool = true\n",
      "\n    u8: u8 = 171 (0xab)\n",
      "\n    u64: u64 = 72623859790382856 (0x102030405060708)\n",
      "\n    i8: i8 = -2\n",
      "\n    i64: i64 = -5000000000\n",
      "\n    buf: buffer[5] = 01 02 03 04 05\n",
      "\n    arr: array[3] {\n      [0]: u16 = 1 (0x1)\n      [1]: u16 = 32768 (0x8000)\n",
      "\n    unused: unused[3]\n",
      "\n    var16: array[3] {\n      [0]: i16 = -1\n",
      "\n    inner: struct 'inner' {\n      a: u8 = 17 (0x11)\n",
      "\n    inners: array[2] {\n      [0]: struct 'inner' {\n",
      "\n    ptr: struct 'inner' {\n",
      "\n    reqs: list (marker, 2 elements) {\n      [0]: struct 'req' {\n        tag: u32 = 256 "
      "(0x100)\n        cdb: buffer[4] = c0 c1 c2 00\n      }\n",
      "\n    subsection 'dev/sub' version 2:\n    struct 'dev/sub' {\n      sub_value: u32 = 68 "
      "(0x44)\n    }\n  }\n}\n",
  };
  for (const char* e : expected) EXPECT_NE(text.find(e), std::string::npos) << e << "\n" << text;
}

// ---- BER bytes by hand, one per field kind.
struct Small {
  bool b;
  uint8_t u8;
  int16_t i16;
  uint64_t u64;
  int64_t i64;
  uint8_t buf[2];
  uint8_t n;
  uint8_t arr[3];
  Inner in;
};
constexpr FerryVmsField kSmallFields[] = {
    FERRY_VMS_FIELD(Small, b),   FERRY_VMS_FIELD(Small, u8),  FERRY_VMS_FIELD(Small, i16),
    FERRY_VMS_FIELD(Small, u64), FERRY_VMS_FIELD(Small, i64), FERRY_VMS_BUFFER(Small, buf),
    FERRY_VMS_UNUSED(2),         FERRY_VMS_FIELD(Small, n),   FERRY_VMS_VARRAY(Small, arr, n),
    FERRY_VMS_STRUCT(Small, in, kInnerVmsd), FERRY_VMS_END_OF_FIELDS(),
};
const FerryVmsDescription kSmallVmsd = {"small", 1, 1, nullptr, nullptr, nullptr, kSmallFields,
                                        nullptr};

Bytes field(const char* name, Bytes value) {
  Bytes b;
  b.push_back(0x30);
  b.push_back(0x80);
  b.push_back(0x0c);
  b.push_back(static_cast<uint8_t>(std::strlen(name)));
  for (const char* p = name; *p; ++p) b.push_back(static_cast<uint8_t>(*p));
  for (uint8_t x : value) b.push_back(x);
  b.push_back(0);
  b.push_back(0);
  return b;
}
Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes b;
  for (const Bytes& p : parts) b.insert(b.end(), p.begin(), p.end());
  return b;
}

TEST(VmstateBer, BytesOfEachKindByHand) {
  Small s{};
  s.b = true;
  s.u8 = 200;
  s.i16 = -2;
  s.u64 = 0x8000000000000000ull;
  s.i64 = -129;
  s.buf[0] = 0xaa;
  s.buf[1] = 0xbb;
  s.n = 2;
  s.arr[0] = 0;
  s.arr[1] = 0x7f;
  s.in = {1, 0x100, -1};
  Bytes out;
  BerOutput v(out);
  ASSERT_TRUE(save_state(kSmallVmsd, &s, v).ok());
  const Bytes expected = cat({
      {0x30, 0x80},                                      // Struct, indefinite
      field("b", {0x01, 0x01, 0xff}),                    // BOOLEAN TRUE
      field("u8", {0x02, 0x02, 0x00, 0xc8}),             // 200 needs a leading 0
      field("i16", {0x02, 0x01, 0xfe}),                  // -2
      field("u64", {0x02, 0x09, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 0}),  // 2^63: 9 octets
      field("i64", {0x02, 0x02, 0xff, 0x7f}),            // -129
      field("buf", {0x04, 0x02, 0xaa, 0xbb}),            // OCTET STRING
      field("unused", {0x45, 0x01, 0x02}),               // [APPLICATION 5] 2
      field("n", {0x02, 0x01, 0x02}),
      field("arr", {0x64, 0x80, 0x02, 0x01, 0x00, 0x02, 0x01, 0x7f, 0x00, 0x00}),  // [APP 4]
      field("in", cat({{0x30, 0x80}, field("a", {0x02, 0x01, 0x01}),
                       field("b", {0x02, 0x02, 0x01, 0x00}), field("c", {0x02, 0x01, 0xff}),
                       {0x00, 0x00}})),
      {0x00, 0x00},
  });
  EXPECT_EQ(hex(out), hex(expected));
  Small back{};
  BerInput in(out);
  Status st = load_state(kSmallVmsd, &back, in, 1);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_TRUE(back.b == s.b && back.u8 == s.u8 && back.i16 == s.i16 && back.u64 == s.u64 &&
              back.i64 == s.i64 && back.n == s.n && back.arr[1] == s.arr[1] &&
              std::memcmp(back.buf, s.buf, 2) == 0 && back.in.a == s.in.a &&
              back.in.b == s.in.b && back.in.c == s.in.c);
}

TEST(VmstateBer, SectionHeaderBytesAndDetection) {
  Small s{};
  Bytes out;
  ASSERT_TRUE(save_to(Encoding::kBer, kSmallVmsd, &s, out, {5, 300}).ok());
  const Bytes head = {0x7f, 0x46, 0x80,                     // [APPLICATION 70], indefinite
                      0x02, 0x01, 0x01,                     // formatVersion 1
                      0x0c, 0x05, 's', 'm', 'a', 'l', 'l',  // name
                      0x02, 0x01, 0x05,                     // sectionId
                      0x02, 0x02, 0x01, 0x2c,               // instanceId 300
                      0x02, 0x01, 0x01,                     // versionId
                      0x30, 0x80};                          // body
  ASSERT_GT(out.size(), head.size());
  EXPECT_EQ(hex(Bytes(out.begin(), out.begin() + static_cast<long>(head.size()))), hex(head));
  EXPECT_EQ(hex(Bytes(out.end() - 4, out.end())), "00 00 00 00");
  EXPECT_EQ(detect_encoding(out), Encoding::kBer);
  Bytes bin;
  ASSERT_TRUE(save_to(Encoding::kBinary, kSmallVmsd, &s, bin).ok());
  EXPECT_EQ(detect_encoding(bin), Encoding::kBinary);
  EXPECT_EQ(detect_encoding(Bytes{0x7f, 0x46, 0x80}), Encoding::kUnknown);
  EXPECT_EQ(detect_encoding(Bytes{0x30, 0x80, 0x30, 0x80}), Encoding::kUnknown);
}

// Integer edge values through both encodings.
struct Ints {
  uint8_t u8;
  uint16_t u16;
  uint32_t u32;
  uint64_t u64;
  int8_t i8;
  int16_t i16;
  int32_t i32;
  int64_t i64;
};
constexpr FerryVmsField kIntsFields[] = {
    FERRY_VMS_UINT8(Ints, u8), FERRY_VMS_UINT16(Ints, u16), FERRY_VMS_UINT32(Ints, u32),
    FERRY_VMS_UINT64(Ints, u64), FERRY_VMS_INT8(Ints, i8), FERRY_VMS_INT16(Ints, i16),
    FERRY_VMS_INT32(Ints, i32), FERRY_VMS_INT64(Ints, i64), FERRY_VMS_END_OF_FIELDS(),
};
const FerryVmsDescription kIntsVmsd = {"ints", 1, 1, nullptr, nullptr, nullptr, kIntsFields,
                                       nullptr};

TEST(VmstateRoundTrip, IntegerEdgeValues) {
  const Ints cases[] = {
      {0, 0, 0, 0, 0, 0, 0, 0},
      {255, 65535, 4294967295u, UINT64_MAX, 127, 32767, INT32_MAX, INT64_MAX},
      {128, 128, 128, 128, -128, -32768, INT32_MIN, INT64_MIN},
      {127, 255, 256, 0x7fffffffffffffffull, -1, -129, -32769, -2147483649ll},
  };
  for (const Ints& c : cases) {
    for (Encoding e : {Encoding::kBinary, Encoding::kBer}) {
      Ints src = c, dst{};
      Bytes bytes;
      ASSERT_TRUE(save_to(e, kIntsVmsd, &src, bytes).ok());
      Status st = load_any(kIntsVmsd, &dst, bytes);
      ASSERT_TRUE(st.ok()) << st.message();
      const bool same = src.u8 == dst.u8 && src.u16 == dst.u16 && src.u32 == dst.u32 &&
                        src.u64 == dst.u64 && src.i8 == dst.i8 && src.i16 == dst.i16 &&
                        src.i32 == dst.i32 && src.i64 == dst.i64;
      EXPECT_TRUE(same) << encoding_name(e) << " " << hex(bytes);
    }
  }
}

TEST(VmstateRoundTrip, BinaryBoolIsAnyNonZeroByteLikeQemu) {
  Small s{};
  Bytes out;
  BinaryOutput v(out);
  ASSERT_TRUE(save_state(kSmallVmsd, &s, v).ok());
  out[0] = 0x7f;
  Small back{};
  BinaryInput in(out);
  ASSERT_TRUE(load_state(kSmallVmsd, &back, in, 1).ok());
  EXPECT_TRUE(back.b);
}

}  // namespace
}  // namespace ferry::vmstate::test
