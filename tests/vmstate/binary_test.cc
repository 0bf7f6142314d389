// Binary visitors: output compared byte for byte with QEMU's encoding (expected bytes written by
// hand from migration/vmstate.c and savevm.c), and input rejecting bad data.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/vmstate/binary_input.h"
#include "engine/vmstate/binary_output.h"
#include "engine/vmstate/input.h"
#include "engine/vmstate/walker.h"
#include "tests/vmstate/fixtures.h"

namespace ferry::vmstate::test {
namespace {

using Bytes = std::vector<uint8_t>;

// The body of kDevVmsd for fill_dev(d, 2), version 3, flag set, only "dev/sub" needed.
const Bytes kDevBody = {
    0x01,                                            // flag (bool: one byte)
    0xab,                                            // u8
    0x12, 0x34,                                      // u16, big-endian
    0xde, 0xad, 0xbe, 0xef,                          // u32
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,  // u64
    0xfe,                                            // i8 -2
    0xfe, 0xd4,                                      // i16 -300
    0xff, 0xfe, 0xee, 0x90,                          // i32 -70000
    0xff, 0xff, 0xff, 0xfe, 0xd5, 0xfa, 0x0e, 0x00,  // i64 -5000000000
    0x01, 0x02, 0x03, 0x04, 0x05,                    // buf[5]
    0x00, 0x01, 0x80, 0x00, 0xff, 0xff,              // arr: u16[3]
    0x00, 0x00, 0x00,                                // VMSTATE_UNUSED(3): zeros
    0x02,                                            // n8
    0x00, 0x00, 0x00, 0x07, 0x01, 0x00, 0x00, 0x00,  // var8: n8 x u32
    0x00, 0x03,                                      // n16
    0xff, 0xff, 0x00, 0x02, 0x80, 0x00,              // var16: n16 x i16
    0x00, 0x00, 0x00, 0x01,                          // n32
    0x99,                                            // var32: n32 x u8
    0x11, 0x22, 0x33, 0xff, 0xff, 0xff, 0xff,        // inner {a, b, c}
    0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x03,        // inners[0]
    0x04, 0x00, 0x05, 0xff, 0xff, 0xff, 0xfa,        // inners[1]
    0x01,                                            // ninners
    0x09, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x0b,        // vinners[0]
    0x21, 0x43, 0x21, 0x7f, 0xff, 0xff, 0xff,        // *ptr
    0x00, 0x00, 0x00, 0x22,                          // v2_only (version 3 >= 2)
    0x00, 0x00, 0x00, 0x33,                          // gated (flag set)
    // reqs, vmstate_save_qtailq: 1 before each element, 0 at the end
    0x01, 0x00, 0x00, 0x01, 0x00, 0xc0, 0xc1, 0xc2, 0x00,
    0x01, 0x00, 0x00, 0x01, 0x01, 0xc0, 0xc1, 0xc2, 0x01,
    0x00,
    // vmstate_subsection_save: QEMU_VM_SUBSECTION, len, name, be32 version, state
    0x05, 0x07, 'd', 'e', 'v', '/', 's', 'u', 'b', 0x00, 0x00, 0x00, 0x02,
    0x00, 0x00, 0x00, 0x44,
};

Bytes dev_section(uint32_t section_id, uint32_t instance_id, uint32_t version, const Bytes& body) {
  Bytes b = {'Q', 'E', 'V', 'M', 0, 0, 0, 3,  // QEMU_VM_FILE_MAGIC, QEMU_VM_FILE_VERSION
             0x04};                           // QEMU_VM_SECTION_FULL
  auto be32 = [&](uint32_t v) {
    for (int i = 3; i >= 0; --i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  be32(section_id);
  b.push_back(3);
  b.insert(b.end(), {'d', 'e', 'v'});
  be32(instance_id);
  be32(version);
  b.insert(b.end(), body.begin(), body.end());
  b.push_back(0x7e);  // QEMU_VM_SECTION_FOOTER
  be32(section_id);
  b.push_back(0x00);  // QEMU_VM_EOF (migration/savevm.h)
  return b;
}

struct DevHolder {
  Dev d{};
  ~DevHolder() { ferry_vms_release(&kDevVmsd, &d); }
};

TEST(VmstateBinary, BodyIsQemuEncodingByteForByte) {
  DevHolder h;
  fill_dev(h.d, 2);
  Bytes out;
  BinaryOutput v(out);
  ASSERT_TRUE(save_state(kDevVmsd, &h.d, v).ok());
  EXPECT_EQ(hex(out), hex(kDevBody));
  EXPECT_EQ(h.d.pre_save_calls, 1);
}

TEST(VmstateBinary, SectionFramingIsQemuSectionFull) {
  DevHolder h;
  fill_dev(h.d, 2);
  Bytes out;
  ASSERT_TRUE(save_to(Encoding::kBinary, kDevVmsd, &h.d, out, {7, 1}).ok());
  EXPECT_EQ(hex(out), hex(dev_section(7, 1, 3, kDevBody)));
}

TEST(VmstateBinary, GatedFieldsAndNeededSubsections) {
  DevHolder h;
  fill_dev(h.d, 0);
  h.d.flag = false;     // drops `gated`
  h.d.sub_value = 0;    // drops dev/sub
  h.d.sub2_value = 0x1234;  // adds dev/sub2
  Bytes out;
  BinaryOutput v(out);
  ASSERT_TRUE(save_state(kDevVmsd, &h.d, v).ok());
  // ... v2_only, (no gated), empty list = 00, then dev/sub2 version 1 with a be16.
  const Bytes tail = {0x00, 0x00, 0x00, 0x22, 0x00, 0x05, 0x08, 'd', 'e', 'v', '/', 's', 'u',
                      'b', '2', 0x00, 0x00, 0x00, 0x01, 0x12, 0x34};
  ASSERT_GE(out.size(), tail.size());
  EXPECT_EQ(hex(Bytes(out.end() - static_cast<long>(tail.size()), out.end())), hex(tail));
  EXPECT_EQ(out[0], 0x00);  // flag false
}

TEST(VmstateBinary, LoadsQemuBytesAndRunsPostLoad) {
  DevHolder h;
  fill_dev(h.d, 2);
  DevHolder got;
  SectionIds ids;
  Encoding enc;
  const Bytes stream = dev_section(7, 1, 3, kDevBody);
  Status st = load_any(kDevVmsd, &got.d, stream, &ids, &enc);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(enc, Encoding::kBinary);
  EXPECT_EQ(ids.section_id, 7u);
  EXPECT_EQ(ids.instance_id, 1u);
  EXPECT_EQ(diff_dev(h.d, got.d), "");
  EXPECT_EQ(got.d.post_load_calls, 1);
  EXPECT_EQ(got.d.post_load_version, 3);
}

TEST(VmstateBinary, OlderVersionOmitsVersionGatedField) {
  // Version 1 stream: no v2_only field; dev/sub is version-checked independently.
  Bytes body = kDevBody;
  const size_t v2_at = 103;  // offset of v2_only in kDevBody
  ASSERT_EQ(body[v2_at + 3], 0x22);
  body.erase(body.begin() + v2_at, body.begin() + v2_at + 4);
  DevHolder got;
  Status st = load_any(kDevVmsd, &got.d, dev_section(1, 0, 1, body));
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(got.d.v2_only, 0u);
  EXPECT_EQ(got.d.gated, 0x33u);
  EXPECT_EQ(got.d.post_load_version, 1);
}

TEST(VmstateBinary, RejectsEveryTruncation) {
  const Bytes stream = dev_section(7, 1, 3, kDevBody);
  for (size_t n = 0; n < stream.size(); ++n) {
    DevHolder got;
    Status st = load_any(kDevVmsd, &got.d, std::span(stream.data(), n));
    ASSERT_FALSE(st.ok()) << "prefix " << n;
    if (n >= 4) {
      EXPECT_EQ(st.code(), Errc::kTruncated) << n << ": " << st.message();
      EXPECT_NE(st.message().find("offset"), std::string::npos) << st.message();
    } else {
      EXPECT_EQ(st.code(), Errc::kUnknownFormat) << st.message();
    }
  }
}

TEST(VmstateBinary, TruncatedMessageNamesOffsetAndField) {
  const Bytes stream = dev_section(7, 1, 3, kDevBody);
  DevHolder got;
  // Cut inside u32 (body offset 4 = stream offset 4+8+1+4+4+4+4 = 29).
  Status st = load_any(kDevVmsd, &got.d, std::span(stream.data(), 31));
  ASSERT_EQ(st.code(), Errc::kTruncated);
  EXPECT_NE(st.message().find("truncated u32 at offset 29"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("field 'u32' of 'dev'"), std::string::npos) << st.message();
}

TEST(VmstateBinary, UnknownSubsectionIsAnErrorNamingIt) {
  Bytes body = kDevBody;
  // Rename dev/sub -> dev/sux (same length).
  auto it = std::search(body.begin(), body.end(), std::begin("dev/sub"), std::end("dev/sub") - 1);
  ASSERT_NE(it, body.end());
  it[6] = 'x';
  DevHolder got;
  Status st = load_any(kDevVmsd, &got.d, dev_section(1, 0, 3, body));
  EXPECT_EQ(st.code(), Errc::kUnknownSubsection);
  EXPECT_NE(st.message().find("'dev/sux'"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("in 'dev'"), std::string::npos) << st.message();
}

TEST(VmstateBinary, ForeignSubsectionNameIsAnErrorNamingIt) {
  Bytes body = kDevBody;
  auto it = std::search(body.begin(), body.end(), std::begin("dev/sub"), std::end("dev/sub") - 1);
  ASSERT_NE(it, body.end());
  std::memcpy(&*it, "cpu/sub", 7);  // not prefixed by "dev": QEMU leaves it to the caller
  DevHolder got;
  Status st = load_any(kDevVmsd, &got.d, dev_section(1, 0, 3, body));
  EXPECT_EQ(st.code(), Errc::kUnknownSubsection);
  EXPECT_NE(st.message().find("'cpu/sub'"), std::string::npos) << st.message();
}

TEST(VmstateBinary, VersionTooNewOrTooOld) {
  {
    DevHolder got;
    Status st = load_any(kDevVmsd, &got.d, dev_section(1, 0, 4, kDevBody));
    EXPECT_EQ(st.code(), Errc::kVersionTooNew) << st.message();
    EXPECT_NE(st.message().find("version 4 is newer than the supported version 3"),
              std::string::npos)
        << st.message();
  }
  {
    DevHolder got;
    Status st = load_any(kDevVmsd, &got.d, dev_section(1, 0, 0, kDevBody));
    EXPECT_EQ(st.code(), Errc::kVersionTooOld) << st.message();
  }
  {
    // Subsection dev/sub version 3 > its version_id 2.
    Bytes body = kDevBody;
    auto it = std::search(body.begin(), body.end(), std::begin("dev/sub"), std::end("dev/sub") - 1);
    it[10] = 3;
    DevHolder got;
    Status st = load_any(kDevVmsd, &got.d, dev_section(1, 0, 3, body));
    EXPECT_EQ(st.code(), Errc::kVersionTooNew) << st.message();
    EXPECT_NE(st.message().find("subsection 'dev/sub' version 3"), std::string::npos)
        << st.message();
  }
}

TEST(VmstateBinary, VariableArrayCountLargerThanAllocated) {
  Bytes body = kDevBody;
  const size_t n8_at = 45;
  ASSERT_EQ(body[n8_at], 0x02);
  body[n8_at] = 5;  // var8 has 4 elements
  DevHolder got;
  Status st = load_any(kDevVmsd, &got.d, dev_section(1, 0, 3, body));
  EXPECT_EQ(st.code(), Errc::kCountTooLarge) << st.message();
  EXPECT_NE(st.message().find("array 'var8' count 5 is larger than its 4 allocated elements"),
            std::string::npos)
      << st.message();
  // Saving a bad count is refused too.
  DevHolder h;
  fill_dev(h.d, 0);
  h.d.n16 = 9;
  Bytes out;
  BinaryOutput v(out);
  EXPECT_EQ(save_state(kDevVmsd, &h.d, v).code(), Errc::kCountTooLarge);
}

TEST(VmstateBinary, FramingErrors) {
  const Bytes good = dev_section(1, 0, 3, kDevBody);
  struct Case {
    size_t at;
    uint8_t value;
    Errc code;
    const char* text;
  } cases[] = {
      {0, 'X', Errc::kUnknownFormat, "neither"},
      {7, 2, Errc::kBadTag, "stream version 2"},
      {8, 0x02, Errc::kBadTag, "section type 0x02"},
      {14, 'x', Errc::kNameMismatch, "'xev'"},
      {good.size() - 6, 0x7f, Errc::kBadTag, "expected the section footer"},
      {good.size() - 2, 9, Errc::kBadTag, "section footer id 9"},
      {good.size() - 1, 0x11, Errc::kBadTag, "expected EOF"},
  };
  for (const Case& c : cases) {
    Bytes b = good;
    b[c.at] = c.value;
    DevHolder got;
    Status st = load_any(kDevVmsd, &got.d, b);
    EXPECT_EQ(st.code(), c.code) << c.at << ": " << st.message();
    EXPECT_NE(st.message().find(c.text), std::string::npos) << st.message();
  }
  Bytes trailing = good;
  trailing.push_back(0);
  DevHolder got;
  EXPECT_EQ(load_any(kDevVmsd, &got.d, trailing).code(), Errc::kTrailingData);
}

TEST(VmstateBinary, HookErrorsPropagate) {
  DevHolder h;
  fill_dev(h.d, 0);
  h.d.fail_pre_save = -5;
  Bytes out;
  Status st = save_to(Encoding::kBinary, kDevVmsd, &h.d, out);
  EXPECT_EQ(st.code(), Errc::kHookFailed);
  EXPECT_NE(st.message().find("pre_save of 'dev' failed (-5)"), std::string::npos)
      << st.message();

  DevHolder got;
  got.d.fail_post_load = -22;
  st = load_any(kDevVmsd, &got.d, dev_section(1, 0, 3, kDevBody));
  EXPECT_EQ(st.code(), Errc::kHookFailed);
  EXPECT_NE(st.message().find("post_load of 'dev' (version 3) failed (-22)"), std::string::npos)
      << st.message();
}

TEST(VmstateBinary, NullStructPointerCannotBeSaved) {
  DevHolder h;
  fill_dev(h.d, 0);
  std::free(h.d.ptr);
  h.d.ptr = nullptr;
  Bytes out;
  Status st = save_to(Encoding::kBinary, kDevVmsd, &h.d, out);
  EXPECT_EQ(st.code(), Errc::kNullPointer);
  EXPECT_NE(st.message().find("'ptr'"), std::string::npos) << st.message();
}

TEST(VmstateBinary, LoadIntoExistingPointerReusesIt) {
  DevHolder got;
  auto* existing = static_cast<Inner*>(std::calloc(1, sizeof(Inner)));
  got.d.ptr = existing;
  ASSERT_TRUE(load_any(kDevVmsd, &got.d, dev_section(1, 0, 3, kDevBody)).ok());
  EXPECT_EQ(got.d.ptr, existing);
  EXPECT_EQ(got.d.ptr->c, 0x7fffffff);
}

}  // namespace
}  // namespace ferry::vmstate::test
