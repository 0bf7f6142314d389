#include "tests/vmstate/fixtures.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <unistd.h>

namespace ferry::vmstate::test {
namespace {

int dev_pre_save(void* opaque) {
  auto* d = static_cast<Dev*>(opaque);
  ++d->pre_save_calls;
  return d->fail_pre_save;
}
int dev_post_load(void* opaque, int version_id) {
  auto* d = static_cast<Dev*>(opaque);
  ++d->post_load_calls;
  d->post_load_version = version_id;
  return d->fail_post_load;
}
bool gated_exists(void* opaque, int) { return static_cast<Dev*>(opaque)->flag; }
bool sub_needed(void* opaque) { return static_cast<Dev*>(opaque)->sub_value != 0; }
bool sub2_needed(void* opaque) { return static_cast<Dev*>(opaque)->sub2_value != 0; }

constexpr FerryVmsField kInnerFields[] = {
    FERRY_VMS_UINT8(Inner, a),
    FERRY_VMS_UINT16(Inner, b),
    FERRY_VMS_INT32(Inner, c),
    FERRY_VMS_END_OF_FIELDS(),
};

constexpr FerryVmsField kReqFields[] = {
    FERRY_VMS_UINT32(Req, tag),
    FERRY_VMS_BUFFER(Req, cdb),
    FERRY_VMS_END_OF_FIELDS(),
};

constexpr FerryVmsContainer kReqTailq = FERRY_VMS_TAILQ_CONTAINER(Req, link);

constexpr FerryVmsField kSubFields[] = {
    FERRY_VMS_UINT32(Dev, sub_value),
    FERRY_VMS_END_OF_FIELDS(),
};
constexpr FerryVmsField kSub2Fields[] = {
    FERRY_VMS_UINT16(Dev, sub2_value),
    FERRY_VMS_END_OF_FIELDS(),
};
const FerryVmsDescription kDevSub2Vmsd = {"dev/sub2", 1, 1, &sub2_needed, nullptr, nullptr,
                                          kSub2Fields, nullptr};
const FerryVmsDescription* const kDevSubsections[] = {&kDevSubVmsd, &kDevSub2Vmsd, nullptr};

constexpr FerryVmsField kDevFields[] = {
    FERRY_VMS_BOOL(Dev, flag),
    FERRY_VMS_UINT8(Dev, u8),
    FERRY_VMS_UINT16(Dev, u16),
    FERRY_VMS_UINT32(Dev, u32),
    FERRY_VMS_UINT64(Dev, u64),
    FERRY_VMS_INT8(Dev, i8),
    FERRY_VMS_INT16(Dev, i16),
    FERRY_VMS_INT32(Dev, i32),
    FERRY_VMS_INT64(Dev, i64),
    FERRY_VMS_BUFFER(Dev, buf),
    FERRY_VMS_ARRAY(Dev, arr),
    FERRY_VMS_UNUSED(3),
    FERRY_VMS_UINT8(Dev, n8),
    FERRY_VMS_VARRAY(Dev, var8, n8),
    FERRY_VMS_UINT16(Dev, n16),
    FERRY_VMS_VARRAY(Dev, var16, n16),
    FERRY_VMS_UINT32(Dev, n32),
    FERRY_VMS_VARRAY(Dev, var32, n32),
    FERRY_VMS_STRUCT(Dev, inner, kInnerVmsd),
    FERRY_VMS_STRUCT(Dev, inners, kInnerVmsd),
    FERRY_VMS_UINT8(Dev, ninners),
    FERRY_VMS_STRUCT_VARRAY(Dev, vinners, ninners, kInnerVmsd),
    FERRY_VMS_STRUCT_POINTER(Dev, ptr, kInnerVmsd, &ferry_vms_malloc_allocator),
    ::ferry::vmstate::since(FERRY_VMS_UINT32(Dev, v2_only), 2),
    ::ferry::vmstate::when(FERRY_VMS_UINT32(Dev, gated), &gated_exists),
    FERRY_VMS_LIST(Dev, reqs, kDevReqList),
    FERRY_VMS_END_OF_FIELDS(),
};

}  // namespace

const FerryVmsDescription kInnerVmsd = {"inner", 1, 1, nullptr, nullptr, nullptr, kInnerFields,
                                        nullptr};
const FerryVmsDescription kReqVmsd = {"req", 1, 1, nullptr, nullptr, nullptr, kReqFields, nullptr};
const FerryVmsList kDevReqList = {FERRY_VMS_LOOP_MARKER, 0, &kReqTailq, &kReqVmsd, sizeof(Req),
                                  &ferry_vms_malloc_allocator, 0, 0};
const FerryVmsDescription kDevSubVmsd = {"dev/sub", 2, 1, &sub_needed, nullptr, nullptr,
                                         kSubFields, nullptr};
const FerryVmsDescription kDevVmsd = {"dev", 3, 1, nullptr, &dev_pre_save, &dev_post_load,
                                      kDevFields, kDevSubsections};

void fill_dev(Dev& d, int nreqs) {
  d.flag = true;
  d.u8 = 0xab;
  d.u16 = 0x1234;
  d.u32 = 0xdeadbeef;
  d.u64 = 0x0102030405060708ull;
  d.i8 = -2;
  d.i16 = -300;
  d.i32 = -70000;
  d.i64 = -5000000000ll;
  std::memcpy(d.buf, "\x01\x02\x03\x04\x05", 5);
  d.arr[0] = 1;
  d.arr[1] = 0x8000;
  d.arr[2] = 0xffff;
  d.n8 = 2;
  d.var8[0] = 7;
  d.var8[1] = 0x01000000;
  d.n16 = 3;
  d.var16[0] = -1;
  d.var16[1] = 2;
  d.var16[2] = -32768;
  d.n32 = 1;
  d.var32[0] = 0x99;
  d.inner = {0x11, 0x2233, -1};
  d.inners[0] = {1, 2, 3};
  d.inners[1] = {4, 5, -6};
  d.ninners = 1;
  d.vinners[0] = {9, 10, 11};
  d.ptr = static_cast<Inner*>(std::calloc(1, sizeof(Inner)));
  *d.ptr = {0x21, 0x4321, 0x7fffffff};
  d.v2_only = 0x22;
  d.gated = 0x33;
  d.sub_value = 0x44;
  d.sub2_value = 0;
  for (int i = 0; i < nreqs; ++i) {
    auto* r = static_cast<Req*>(std::calloc(1, sizeof(Req)));
    r->tag = 0x100 + static_cast<uint32_t>(i);
    r->retry = static_cast<uint8_t>(1 + i % 2);
    std::memcpy(r->cdb, "\xc0\xc1\xc2", 3);
    r->cdb[3] = static_cast<uint8_t>(i);
    ferry_vms_tailq_ops.append(&kReqTailq, &d.reqs, r);
  }
}

std::string diff_dev(const Dev& a, const Dev& b) {
#define CMP(x)                                 \
  if (!(a.x == b.x)) return std::string(#x);
#define CMPM(x)                                             \
  if (std::memcmp(&a.x, &b.x, sizeof a.x) != 0) return std::string(#x);
  CMP(flag) CMP(u8) CMP(u16) CMP(u32) CMP(u64) CMP(i8) CMP(i16) CMP(i32) CMP(i64);
  CMPM(buf) CMPM(arr) CMP(n8) CMP(n16) CMP(n32);
  for (unsigned i = 0; i < a.n8 && i < 4; ++i) CMP(var8[i]);
  for (unsigned i = 0; i < a.n16 && i < 4; ++i) CMP(var16[i]);
  for (unsigned i = 0; i < a.n32 && i < 6; ++i) CMP(var32[i]);
  // Inner has a padding byte: compare members, not bytes.
  auto same = [](const Inner& x, const Inner& y) { return x.a == y.a && x.b == y.b && x.c == y.c; };
  if (!same(a.inner, b.inner)) return "inner";
  if (!same(a.inners[0], b.inners[0]) || !same(a.inners[1], b.inners[1])) return "inners";
  CMP(ninners);
  for (unsigned i = 0; i < a.ninners && i < 3; ++i) {
    if (!same(a.vinners[i], b.vinners[i])) return "vinners[" + std::to_string(i) + "]";
  }
  if (!a.ptr != !b.ptr) return "ptr (null)";
  if (a.ptr && !same(*a.ptr, *b.ptr)) return "*ptr";
  CMP(v2_only) CMP(gated) CMP(sub_value) CMP(sub2_value);
  const Req* x = static_cast<const Req*>(a.reqs.first);
  const Req* y = static_cast<const Req*>(b.reqs.first);
  for (int i = 0; x || y; ++i) {
    if (!x || !y) return "reqs length at " + std::to_string(i);
    if (x->tag != y->tag || std::memcmp(x->cdb, y->cdb, 4) != 0) {
      return "reqs[" + std::to_string(i) + "]";
    }
    x = static_cast<const Req*>(x->link.next);
    y = static_cast<const Req*>(y->link.next);
  }
#undef CMP
#undef CMPM
  return "";
}

std::string hex(std::span<const uint8_t> bytes) {
  std::string s;
  char b[4];
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::snprintf(b, sizeof b, "%02x", bytes[i]);
    if (i) s += ' ';
    s += b;
  }
  return s;
}

namespace {
// One directory per test process, removed when the process exits.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    const char* tmp = std::getenv("TMPDIR");
    path = std::filesystem::path(tmp && *tmp ? tmp : "/tmp") /
           ("ferry_vmstate_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};
}  // namespace

std::string write_temp(const std::string& name, std::span<const uint8_t> bytes) {
  static TempDir temp;
  const std::filesystem::path& dir = temp.path;
  auto path = dir / name;
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return path.string();
}

}  // namespace ferry::vmstate::test
