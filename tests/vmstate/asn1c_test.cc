// The BER that BerOutput writes, checked by an independent ASN.1 implementation: asn1c compiles
// engine/vmstate/ferry_vmstate.asn1 into ferry_vmstate_asn1_check (tests/vmstate/CMakeLists.txt),
// which must decode every stream completely and find the module's constraints satisfied. Skips
// when asn1c was not installed at configure time.
#include <gtest/gtest.h>

#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "engine/vmstate/ber_output.h"
#include "engine/vmstate/input.h"
#include "engine/vmstate/walker.h"
#include "tests/vmstate/c_description.h"
#include "tests/vmstate/fixtures.h"

#ifndef FERRY_VMSTATE_ASN1_CHECK
#define FERRY_VMSTATE_ASN1_CHECK ""
#endif

namespace ferry::vmstate::test {
namespace {

using Bytes = std::vector<uint8_t>;

#define SKIP_WITHOUT_ASN1C()                                                                  \
  if (std::strlen(FERRY_VMSTATE_ASN1_CHECK) == 0)                                             \
  GTEST_SKIP() << "asn1c was not found when CMake configured the build (apt-get install -y " \
                  "asn1c, then re-run cmake): the independent BER schema check is skipped"

struct RunResult {
  int status;
  std::string output;
};

RunResult run_check(const std::vector<std::string>& args) {
  std::string cmd = FERRY_VMSTATE_ASN1_CHECK;
  for (const std::string& a : args) cmd += " '" + a + "'";
  cmd += " 2>&1";
  RunResult r{-1, ""};
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[512];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  r.status = pclose(p);
  return r;
}

struct DevHolder {
  Dev d{};
  ~DevHolder() { ferry_vms_release(&kDevVmsd, &d); }
};

// A queue with one list per loop format (tail queues of Req).
struct Queues {
  FerryVmsTailqHead marker, marked, counted;
};
constexpr FerryVmsContainer kTailq = FERRY_VMS_TAILQ_CONTAINER(Req, link);
const FerryVmsList kMarker = {FERRY_VMS_LOOP_MARKER, 0, &kTailq, &kReqVmsd, sizeof(Req),
                              &ferry_vms_malloc_allocator, 0, 0};
const FerryVmsList kMarked = {FERRY_VMS_LOOP_MARKER_FIELD, offsetof(Req, retry), &kTailq,
                              &kReqVmsd, sizeof(Req), &ferry_vms_malloc_allocator, 0, 0};
const FerryVmsList kCounted = {FERRY_VMS_LOOP_COUNT32, 0, &kTailq, &kReqVmsd, sizeof(Req),
                               &ferry_vms_malloc_allocator, 0, 0};
constexpr FerryVmsField kQueuesFields[] = {
    FERRY_VMS_LIST(Queues, marker, kMarker), FERRY_VMS_LIST(Queues, marked, kMarked),
    FERRY_VMS_LIST(Queues, counted, kCounted), FERRY_VMS_END_OF_FIELDS()};
const FerryVmsDescription kQueuesVmsd = {"queues", 1, 1, nullptr, nullptr, nullptr, kQueuesFields,
                                         nullptr};

struct QueuesHolder {
  Queues q{};
  explicit QueuesHolder(int n) {
    for (FerryVmsTailqHead* h : {&q.marker, &q.marked, &q.counted}) {
      for (int i = 0; i < n; ++i) {
        auto* r = static_cast<Req*>(std::calloc(1, sizeof(Req)));
        r->tag = static_cast<uint32_t>(i) * 0x01010101u;
        r->retry = static_cast<uint8_t>(i % 2 ? 2 : 1);
        ferry_vms_tailq_ops.append(&kTailq, h, r);
      }
    }
  }
  ~QueuesHolder() { ferry_vms_release(&kQueuesVmsd, &q); }
};

std::vector<std::pair<std::string, Bytes>> ber_corpus() {
  std::vector<std::pair<std::string, Bytes>> files;
  for (int variant = 0; variant < 3; ++variant) {
    DevHolder h;
    fill_dev(h.d, variant * 2);
    if (variant == 1) {
      h.d.flag = false;
      h.d.sub_value = 0;
    }
    if (variant == 2) h.d.sub2_value = 0xbeef;
    Bytes b;
    EXPECT_TRUE(save_to(Encoding::kBer, kDevVmsd, &h.d, b, {9, 0xffffffffu}).ok());
    files.emplace_back("dev" + std::to_string(variant) + ".ber", b);
  }
  for (int n : {0, 1, 5}) {
    QueuesHolder h(n);
    Bytes b;
    EXPECT_TRUE(save_to(Encoding::kBer, kQueuesVmsd, &h.q, b).ok());
    files.emplace_back("queues" + std::to_string(n) + ".ber", b);
  }
  {
    void* c = c_device_new();
    c_device_fill(c);
    Bytes b;
    EXPECT_TRUE(save_to(Encoding::kBer, *c_device_description(), c, b).ok());
    files.emplace_back("cdev.ber", b);
    c_device_free(c);
  }
  return files;
}

TEST(VmstateAsn1c, AcceptsEverySectionBerOutputWrites) {
  SKIP_WITHOUT_ASN1C();
  std::vector<std::string> args;
  for (auto& [name, bytes] : ber_corpus()) args.push_back(write_temp(name, bytes));
  RunResult r = run_check(args);
  EXPECT_EQ(r.status, 0) << r.output;
  size_t oks = 0;
  for (size_t at = 0; (at = r.output.find("OK ", at)) != std::string::npos; ++at) ++oks;
  EXPECT_EQ(oks, args.size()) << r.output;
}

TEST(VmstateAsn1c, AcceptsBodiesAsStruct) {
  SKIP_WITHOUT_ASN1C();
  DevHolder h;
  fill_dev(h.d, 3);
  h.d.sub2_value = 1;
  Bytes b;
  BerOutput out(b);
  ASSERT_TRUE(save_state(kDevVmsd, &h.d, out).ok());
  RunResult r = run_check({"-t", "Struct", "-x", write_temp("dev_body.ber", b)});
  EXPECT_EQ(r.status, 0) << r.output;
  // The XER shows asn1c read our names and values.
  EXPECT_NE(r.output.find("<name>reqs</name>"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("<name>dev/sub2</name>"), std::string::npos) << r.output;
}

TEST(VmstateAsn1c, RejectsBrokenStreams) {
  SKIP_WITHOUT_ASN1C();
  DevHolder h;
  fill_dev(h.d, 2);
  Bytes good;
  ASSERT_TRUE(save_to(Encoding::kBer, kDevVmsd, &h.d, good).ok());
  QueuesHolder q(2);
  Bytes queues;
  ASSERT_TRUE(save_to(Encoding::kBer, kQueuesVmsd, &q.q, queues).ok());

  std::vector<std::pair<std::string, Bytes>> bad;
  bad.emplace_back("truncated.ber", Bytes(good.begin(), good.end() - 3));
  Bytes version = good;
  version[5] = 2;  // formatVersion INTEGER (1)
  bad.emplace_back("format_version.ber", version);
  Bytes name_tag = good;
  name_tag[6] = 0x02;  // section name as INTEGER instead of UTF8String
  bad.emplace_back("name_tag.ber", name_tag);
  Bytes marker = queues;
  const uint8_t marked_item[] = {0x66, 0x80, 0x02, 0x01};
  auto it = std::search(marker.begin(), marker.end(), std::begin(marked_item),
                        std::end(marked_item));
  ASSERT_NE(it, marker.end());
  it[4] = 0;  // marker INTEGER (1..255)
  bad.emplace_back("marker_zero.ber", marker);
  Bytes trailing = good;
  trailing.push_back(0x05);
  bad.emplace_back("trailing.ber", trailing);

  for (auto& [name, bytes] : bad) {
    RunResult r = run_check({write_temp(name, bytes)});
    EXPECT_NE(r.status, 0) << name << ": " << r.output;
    EXPECT_NE(r.output.find("FAIL"), std::string::npos) << r.output;
    // ... and our own reader refuses them as well.
    DevHolder d;
    QueuesHolder qq(0);
    Status st = name == "marker_zero.ber" ? load_any(kQueuesVmsd, &qq.q, bytes)
                                          : load_any(kDevVmsd, &d.d, bytes);
    EXPECT_FALSE(st.ok()) << name;
  }
}

}  // namespace
}  // namespace ferry::vmstate::test
