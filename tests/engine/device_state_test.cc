// Device state on the main channel (engine/device): end-to-end migrations over loopback TCP with
// devices of several field kinds, a subsection and a QTAILQ list; refusals (unknown device,
// version too new, missing device); a failing pre_save; and the JSON description (vmdesc),
// checked against the expected shape and decoded by engine/stream like a QEMU stream.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include <nlohmann/json.hpp>

#include "engine/device/device_state.h"
#include "ferry/migration.h"
#include "ferry/bitmap_dirty_source.h"
#include "engine/stream/stream_format.h"
#include "engine/stream/byte_reader.h"
#include "engine/stream/vmdesc.h"
#include "engine/stream/vmstate_decoder.h"
#include "ferry/vmstate.h"
#include "tests/engine/migration_test_util.h"

namespace ferry {
namespace {

struct Inner {
  uint32_t a;
  int16_t b;
};

struct Timer {
  uint64_t ticks;
  int32_t offset;
  bool enabled;
  uint16_t regs[4];
  uint8_t nvals;
  uint32_t vals[8];
  uint8_t mac[6];
  Inner inner;
  uint32_t extra;  // subsection "timer/extra" when non-zero
  // not migrated
  int pre_save_calls;
  int post_load_calls;
  int post_load_version;
  int fail_pre_save;
};

struct Req {
  uint32_t tag;
  uint8_t len;
  FerryVmsTailqEntry link;
};

struct Nic {
  uint32_t status;
  int64_t rx;
  FerryVmsTailqHead queue;
  int post_load_calls;
};

int timer_pre_save(void* o) {
  auto* t = static_cast<Timer*>(o);
  ++t->pre_save_calls;
  return t->fail_pre_save;
}
int timer_post_load(void* o, int version) {
  auto* t = static_cast<Timer*>(o);
  ++t->post_load_calls;
  t->post_load_version = version;
  return 0;
}
bool extra_needed(void* o) { return static_cast<Timer*>(o)->extra != 0; }
int nic_post_load(void* o, int) {
  ++static_cast<Nic*>(o)->post_load_calls;
  return 0;
}

constexpr FerryVmsField kInnerFields[] = {FERRY_VMS_UINT32(Inner, a), FERRY_VMS_INT16(Inner, b),
                                          FERRY_VMS_END_OF_FIELDS()};
const FerryVmsDescription kInnerVmsd = {"inner", 1, 1, nullptr, nullptr, nullptr, kInnerFields,
                                        nullptr};
constexpr FerryVmsField kExtraFields[] = {FERRY_VMS_UINT32(Timer, extra),
                                          FERRY_VMS_END_OF_FIELDS()};
const FerryVmsDescription kExtraVmsd = {"timer/extra", 1, 1, &extra_needed, nullptr, nullptr,
                                        kExtraFields, nullptr};
const FerryVmsDescription* const kTimerSubs[] = {&kExtraVmsd, nullptr};
constexpr FerryVmsField kTimerFields[] = {
    FERRY_VMS_UINT64(Timer, ticks),     FERRY_VMS_INT32(Timer, offset),
    FERRY_VMS_BOOL(Timer, enabled),     FERRY_VMS_ARRAY(Timer, regs),
    FERRY_VMS_UINT8(Timer, nvals),      FERRY_VMS_VARRAY(Timer, vals, nvals),
    FERRY_VMS_BUFFER(Timer, mac),       FERRY_VMS_UNUSED(2),
    FERRY_VMS_STRUCT(Timer, inner, kInnerVmsd), FERRY_VMS_END_OF_FIELDS()};
const FerryVmsDescription kTimerVmsd = {"timer", 3, 2, nullptr, &timer_pre_save, &timer_post_load,
                                        kTimerFields, kTimerSubs};
// The same device from a newer build.
const FerryVmsDescription kTimerV4Vmsd = {"timer", 4, 2, nullptr, &timer_pre_save,
                                          &timer_post_load, kTimerFields, kTimerSubs};

constexpr FerryVmsField kReqFields[] = {FERRY_VMS_UINT32(Req, tag), FERRY_VMS_UINT8(Req, len),
                                        FERRY_VMS_END_OF_FIELDS()};
const FerryVmsDescription kReqVmsd = {"nic-req", 1, 1, nullptr, nullptr, nullptr, kReqFields,
                                      nullptr};
constexpr FerryVmsContainer kReqTailq = FERRY_VMS_TAILQ_CONTAINER(Req, link);
const FerryVmsList kReqList = {FERRY_VMS_LOOP_MARKER, 0, &kReqTailq, &kReqVmsd, sizeof(Req),
                               &ferry_vms_malloc_allocator, 0, 0};
constexpr FerryVmsField kNicFields[] = {FERRY_VMS_UINT32(Nic, status), FERRY_VMS_INT64(Nic, rx),
                                        FERRY_VMS_LIST(Nic, queue, kReqList),
                                        FERRY_VMS_END_OF_FIELDS()};
const FerryVmsDescription kNicVmsd = {"nic", 1, 1, nullptr, nullptr, &nic_post_load, kNicFields,
                                      nullptr};

void fill_timer(Timer& t, uint32_t seed, bool extra) {
  std::memset(&t, 0, sizeof t);
  t.ticks = 0x1234 + seed;
  t.offset = -5 - static_cast<int32_t>(seed);
  t.enabled = true;
  for (int i = 0; i < 4; ++i) t.regs[i] = static_cast<uint16_t>(0x100 * (i + 1) + seed);
  t.nvals = 3;
  for (int i = 0; i < 3; ++i) t.vals[i] = 0xa0000000u + static_cast<uint32_t>(i) + seed;
  for (int i = 0; i < 6; ++i) t.mac[i] = static_cast<uint8_t>(i + 1);
  t.inner = {0xcafe0000u + seed, -2};
  t.extra = extra ? 0x77 + seed : 0;
}

bool same_state(const Timer& a, const Timer& b) {
  return a.ticks == b.ticks && a.offset == b.offset && a.enabled == b.enabled &&
         std::memcmp(a.regs, b.regs, sizeof a.regs) == 0 && a.nvals == b.nvals &&
         std::memcmp(a.vals, b.vals, a.nvals * sizeof(uint32_t)) == 0 &&
         std::memcmp(a.mac, b.mac, sizeof a.mac) == 0 && a.inner.a == b.inner.a &&
         a.inner.b == b.inner.b && a.extra == b.extra;
}

void push_req(Nic& n, uint32_t tag, uint8_t len) {
  auto* r = static_cast<Req*>(
      ferry_vms_malloc_allocator.alloc(&ferry_vms_malloc_allocator, sizeof(Req)));
  r->tag = tag;
  r->len = len;
  ASSERT_EQ(kReqTailq.ops->append(&kReqTailq, &n.queue, r), 0);
}

std::vector<std::pair<uint32_t, uint8_t>> reqs(Nic& n) {
  std::vector<std::pair<uint32_t, uint8_t>> v;
  FerryVmsCursor cur{};
  for (void* e = kReqTailq.ops->first(&kReqTailq, &n.queue, &cur); e;
       e = kReqTailq.ops->next(&kReqTailq, &n.queue, &cur)) {
    v.emplace_back(static_cast<Req*>(e)->tag, static_cast<Req*>(e)->len);
  }
  return v;
}

// Frees the list elements of a Nic (both sides) at scope exit.
struct NicHolder {
  Nic nic{};
  ~NicHolder() { ferry_vms_release(&kNicVmsd, &nic); }
};

struct Result {
  MigrationStats src;
  DestinationStats dst;
  std::string src_err, dst_err;
  int stops = 0, resumes = 0;
};

// One small RAM block (so RAM takes part as usual), the given devices on each side.
Result migrate(std::vector<Device> src_devices, std::vector<Device> dst_devices) {
  constexpr size_t kPage = 4096, kSize = 64 * kPage;
  testing::GuardedMem smem(kSize), dmem(kSize);
  testing::fill_guest(smem.data(), kSize, kPage, 3);
  std::vector<std::unique_ptr<DirtySource>> dirty;
  dirty.push_back(std::make_unique<ExplicitMarkSource>(kSize / kPage));
  Result res;
  MigrationHooks hooks;
  hooks.stop_guest = [&res] { ++res.stops; };
  hooks.resume_guest = [&res] { ++res.resumes; };
  auto p = testing::make_channels("tcp:127.0.0.1:0", 2);
  MigrationSource src({RamBlock{"ram0", smem.data(), kSize, kPage}}, std::move(dirty), {},
                      std::move(hooks));
  MigrationDestination dst({RamBlock{"ram0", dmem.data(), kSize, kPage}});
  src.set_devices(std::move(src_devices));
  dst.set_devices(std::move(dst_devices));
  std::thread dt([&] {
    try {
      res.dst = dst.run(std::move(p.dst));
    } catch (const MigrationError& e) {
      res.dst_err = e.what();
    }
  });
  try {
    res.src = src.run(std::move(p.src));
  } catch (const MigrationError& e) {
    res.src_err = e.what();
  }
  dt.join();
  if (res.src_err.empty() && res.dst_err.empty()) {
    EXPECT_EQ(std::memcmp(smem.data(), dmem.data(), kSize), 0);
  }
  return res;
}

TEST(DeviceState, EndToEndDevicesArriveEqualWithPostLoad) {
  Timer t0, t1, d0{}, d1{};
  fill_timer(t0, 0, true);
  fill_timer(t1, 9, false);  // no subsection for this one
  NicHolder sn, dn;
  sn.nic.status = 0x11;
  sn.nic.rx = -123456789012345;
  push_req(sn.nic, 7, 2);
  push_req(sn.nic, 8, 0);
  push_req(sn.nic, 0xffffffff, 255);
  d1.extra = 0;

  const Result r = migrate(
      {{"timer", 0, &kTimerVmsd, &t0}, {"timer", 1, &kTimerVmsd, &t1}, {"nic", 0, &kNicVmsd, &sn.nic}},
      // registration order may differ between the sides: lookup is by idstr/instance
      {{"nic", 0, &kNicVmsd, &dn.nic}, {"timer", 1, &kTimerVmsd, &d1}, {"timer", 0, &kTimerVmsd, &d0}});
  ASSERT_EQ(r.src_err, "");
  ASSERT_EQ(r.dst_err, "");
  EXPECT_EQ(r.src.status, "completed");
  EXPECT_EQ(r.stops, 1);
  EXPECT_EQ(r.resumes, 0);
  EXPECT_EQ(r.src.devices, 3u);
  EXPECT_EQ(r.dst.devices, 3u);
  EXPECT_GT(r.src.device_bytes, 0u);
  EXPECT_GT(r.src.downtime_seconds, 0.0);

  EXPECT_TRUE(same_state(t0, d0));
  EXPECT_TRUE(same_state(t1, d1));
  EXPECT_EQ(t0.pre_save_calls, 1);
  EXPECT_EQ(d0.post_load_calls, 1);
  EXPECT_EQ(d0.post_load_version, 3);
  EXPECT_EQ(d1.post_load_calls, 1);
  EXPECT_EQ(dn.nic.status, 0x11u);
  EXPECT_EQ(dn.nic.rx, -123456789012345);
  EXPECT_EQ(reqs(dn.nic), reqs(sn.nic));
  EXPECT_EQ(reqs(dn.nic).size(), 3u);
  EXPECT_EQ(dn.nic.post_load_calls, 1);

  // The destination got the description of what it loaded.
  const auto doc = nlohmann::json::parse(r.dst.vmdesc);
  ASSERT_EQ(doc["devices"].size(), 3u);
  EXPECT_EQ(doc["devices"][0]["name"], "timer");
  EXPECT_EQ(doc["devices"][0]["subsections"][0]["vmsd_name"], "timer/extra");
  EXPECT_FALSE(doc["devices"][1].contains("subsections"));  // not needed for instance 1
  EXPECT_EQ(doc["devices"][2]["fields"][2]["type"], "qtailq");
}

TEST(DeviceState, UnknownDeviceRefusedOnBothSides) {
  Timer t0, d0{};
  fill_timer(t0, 0, true);
  NicHolder sn;
  push_req(sn.nic, 1, 1);
  const Result r = migrate({{"timer", 0, &kTimerVmsd, &t0}, {"nic", 0, &kNicVmsd, &sn.nic}},
                           {{"timer", 0, &kTimerVmsd, &d0}});
  EXPECT_NE(r.dst_err.find("unknown device 'nic' instance 0"), std::string::npos) << r.dst_err;
  EXPECT_NE(r.src_err.find("destination reported"), std::string::npos) << r.src_err;
  EXPECT_NE(r.src_err.find("unknown device 'nic' instance 0"), std::string::npos) << r.src_err;
  EXPECT_EQ(r.stops, 1);
  EXPECT_EQ(r.resumes, 1);  // the guest runs on at the source
}

TEST(DeviceState, UnknownInstanceRefused) {
  Timer t0, d0{};
  fill_timer(t0, 0, true);
  const Result r = migrate({{"timer", 2, &kTimerVmsd, &t0}}, {{"timer", 0, &kTimerVmsd, &d0}});
  EXPECT_NE(r.dst_err.find("unknown device 'timer' instance 2"), std::string::npos) << r.dst_err;
  EXPECT_NE(r.src_err.find("unknown device 'timer' instance 2"), std::string::npos) << r.src_err;
  EXPECT_EQ(r.resumes, 1);
}

TEST(DeviceState, VersionTooNewRefused) {
  Timer t0, d0{};
  fill_timer(t0, 0, true);
  const Result r = migrate({{"timer", 0, &kTimerV4Vmsd, &t0}}, {{"timer", 0, &kTimerVmsd, &d0}});
  EXPECT_NE(r.dst_err.find("device 'timer' instance 0"), std::string::npos) << r.dst_err;
  EXPECT_NE(r.dst_err.find("version 4 is newer than the destination's version 3"),
            std::string::npos)
      << r.dst_err;
  EXPECT_NE(r.src_err.find("version 4 is newer"), std::string::npos) << r.src_err;
  EXPECT_EQ(d0.post_load_calls, 0);
  EXPECT_EQ(r.resumes, 1);
}

TEST(DeviceState, MissingDeviceRefused) {
  Timer t0, d0{}, d1{};
  fill_timer(t0, 0, true);
  const Result r = migrate({{"timer", 0, &kTimerVmsd, &t0}},
                           {{"timer", 0, &kTimerVmsd, &d0}, {"timer", 1, &kTimerVmsd, &d1}});
  EXPECT_NE(r.dst_err.find("no state for device 'timer' instance 1"), std::string::npos)
      << r.dst_err;
  EXPECT_NE(r.src_err.find("device 'timer' instance 1"), std::string::npos) << r.src_err;
  EXPECT_EQ(r.resumes, 1);
}

TEST(DeviceState, FailingPreSaveAbortsAndGuestResumes) {
  Timer t0, d0{};
  fill_timer(t0, 0, true);
  t0.fail_pre_save = -5;
  const Result r = migrate({{"timer", 0, &kTimerVmsd, &t0}}, {{"timer", 0, &kTimerVmsd, &d0}});
  EXPECT_NE(r.src_err.find("device 'timer' instance 0"), std::string::npos) << r.src_err;
  EXPECT_NE(r.src_err.find("pre_save of 'timer' failed (-5)"), std::string::npos) << r.src_err;
  EXPECT_NE(r.dst_err.find("source reported"), std::string::npos) << r.dst_err;
  EXPECT_NE(r.dst_err.find("pre_save of 'timer' failed"), std::string::npos) << r.dst_err;
  EXPECT_EQ(r.stops, 1);
  EXPECT_EQ(r.resumes, 1);
  EXPECT_EQ(d0.post_load_calls, 0);
  EXPECT_EQ(r.src.status, "");  // run() threw
}

TEST(DeviceState, RegistrationChecked) {
  testing::GuardedMem mem(4096);
  MigrationDestination dst({RamBlock{"ram0", mem.data(), 4096, 4096}});
  Timer t{};
  EXPECT_THROW(dst.set_devices({{"timer", 0, &kTimerVmsd, &t}, {"timer", 0, &kTimerVmsd, &t}}),
               MigrationError);
  EXPECT_THROW(dst.set_devices({{"", 0, &kTimerVmsd, &t}}), MigrationError);
  EXPECT_THROW(dst.set_devices({{std::string(256, 'x'), 0, &kTimerVmsd, &t}}), MigrationError);
  EXPECT_THROW(dst.set_devices({{"timer", 0, nullptr, &t}}), MigrationError);
  EXPECT_NO_THROW(dst.set_devices({{"timer", 0, &kTimerVmsd, &t}, {"timer", 1, &kTimerVmsd, &t}}));
}

// The JSON description: QEMU vmdesc shape, read by engine/stream's parser (the one `ferry dump`
// uses), and together with the sections it decodes to the saved values.
TEST(DeviceState, VmdescMatchesExpectedAndDecodes) {
  Timer t0;
  fill_timer(t0, 0, true);
  NicHolder sn;
  sn.nic.status = 2;
  sn.nic.rx = -1;
  push_req(sn.nic, 7, 2);
  push_req(sn.nic, 9, 3);
  const device::SavedDevices saved =
      device::save_devices({{"timer", 0, &kTimerVmsd, &t0}, {"nic", 0, &kNicVmsd, &sn.nic}}, 4096);

  const auto expected = nlohmann::json::parse(R"({"page_size":4096,"devices":[
    {"name":"timer","instance_id":0,"vmsd_name":"timer","version":3,"fields":[
      {"name":"ticks","type":"uint64","size":8},
      {"name":"offset","type":"int32","size":4},
      {"name":"enabled","type":"bool","size":1},
      {"name":"regs","array_len":4,"type":"uint16","size":2},
      {"name":"nvals","type":"uint8","size":1},
      {"name":"vals","array_len":3,"type":"uint32","size":4},
      {"name":"mac","type":"buffer","size":6},
      {"name":"unused","type":"unused_buffer","size":2},
      {"name":"inner","type":"struct","struct":{"vmsd_name":"inner","version":1,"fields":[
        {"name":"a","type":"uint32","size":4},{"name":"b","type":"int16","size":2}]},"size":6}],
     "subsections":[{"vmsd_name":"timer/extra","version":1,"fields":[
        {"name":"extra","type":"uint32","size":4}]}]},
    {"name":"nic","instance_id":0,"vmsd_name":"nic","version":1,"fields":[
      {"name":"status","type":"uint32","size":4},
      {"name":"rx","type":"int64","size":8},
      {"name":"queue","type":"qtailq","size":13}]}]})");
  EXPECT_EQ(nlohmann::json::parse(saved.vmdesc_json), expected) << saved.vmdesc_json;
  // QEMU's key order, as analyze-migration.py prints it.
  EXPECT_EQ(saved.vmdesc_json.rfind(R"({"page_size":4096,"devices":[{"name":"timer","instance_id":0,"vmsd_name":"timer","version":3,"fields":[{"name":"ticks","type":"uint64","size":8})", 0), 0u);

  stream::Vmdesc vd(saved.vmdesc_json, 0, "test");
  ASSERT_TRUE(vd.ok()) << vd.error();
  EXPECT_EQ(vd.page_size(), 4096u);
  EXPECT_EQ(vd.device_count(), 2u);
  ASSERT_NE(vd.device("timer", 0), nullptr);
  ASSERT_NE(vd.device("nic", 0), nullptr);

  // The sections + the description as a QEMU stream, read the way `ferry dump` reads one.
  const std::vector<uint8_t> file = device::qemu_device_stream(saved);
  const stream::StreamInfo info = stream::read_stream(file);
  ASSERT_FALSE(info.error.has_value()) << info.error->message << " at " << info.error->offset;
  EXPECT_TRUE(info.vmdesc_in_stream);
  ASSERT_TRUE(info.state.contains("timer (0)")) << info.state.dump();
  const auto& ts = info.state["timer (0)"];
  EXPECT_EQ(ts["ticks"], "0x0000000000001234");
  EXPECT_EQ(ts["offset"], "0xfffffffb (-5)");
  EXPECT_EQ(ts["enabled"], true);
  EXPECT_EQ(ts["regs"], nlohmann::ordered_json::parse(R"(["0x0100","0x0200","0x0300","0x0400"])"));
  EXPECT_EQ(ts["vals"], nlohmann::ordered_json::parse(R"(["0xa0000000","0xa0000001","0xa0000002"])"));
  EXPECT_EQ(ts["mac"], "01 02 03 04 05 06");
  EXPECT_EQ(ts["unused"], "00 00");
  EXPECT_EQ(ts["inner"]["a"], "0xcafe0000");
  EXPECT_EQ(ts["inner"]["b"], "0xfffe (-2)");
  EXPECT_EQ(ts["timer/extra"]["extra"], "0x00000077");
  ASSERT_TRUE(info.state.contains("nic (1)")) << info.state.dump();
  const auto& ns = info.state["nic (1)"];
  EXPECT_EQ(ns["status"], "0x00000002");
  EXPECT_EQ(ns["rx"], "0xffffffffffffffff (-1)");
  // marker 1, tag, len; marker 1, tag, len; 0
  EXPECT_EQ(ns["queue"], "01 00 00 00 07 02 01 00 00 00 09 03 00");
}


// Struct arrays (compressed, and per element when the element has subsections), a struct
// pointer, a version-gated field and a counted list: the description accounts for every byte.
struct Cell {
  uint16_t v;
  uint8_t flag;  // subsection "cell/flag" when non-zero
};
struct Board {
  Inner fixed[3];
  Cell cells[2];
  Inner* ptr;
  uint32_t v2_only;
  FerryVmsTailqHead q;
};
bool cell_flag_needed(void* o) { return static_cast<Cell*>(o)->flag != 0; }
constexpr FerryVmsField kCellFlagFields[] = {FERRY_VMS_UINT8(Cell, flag), FERRY_VMS_END_OF_FIELDS()};
const FerryVmsDescription kCellFlagVmsd = {"cell/flag", 1, 1, &cell_flag_needed, nullptr, nullptr,
                                           kCellFlagFields, nullptr};
const FerryVmsDescription* const kCellSubs[] = {&kCellFlagVmsd, nullptr};
constexpr FerryVmsField kCellFields[] = {FERRY_VMS_UINT16(Cell, v), FERRY_VMS_END_OF_FIELDS()};
const FerryVmsDescription kCellVmsd = {"cell", 1, 1, nullptr, nullptr, nullptr, kCellFields,
                                       kCellSubs};
const FerryVmsList kCountedReqs = {FERRY_VMS_LOOP_COUNT32, 0, &kReqTailq, &kReqVmsd, sizeof(Req),
                                   &ferry_vms_malloc_allocator, 0, 0};
constexpr FerryVmsField kBoardFields[] = {
    FERRY_VMS_STRUCT(Board, fixed, kInnerVmsd),
    FERRY_VMS_STRUCT(Board, cells, kCellVmsd),
    FERRY_VMS_STRUCT_POINTER(Board, ptr, kInnerVmsd, &ferry_vms_malloc_allocator),
    ::ferry::vmstate::since(FERRY_VMS_UINT32(Board, v2_only), 2),
    FERRY_VMS_LIST(Board, q, kCountedReqs),
    FERRY_VMS_END_OF_FIELDS()};
const FerryVmsDescription kBoardVmsd = {"board", 1, 1, nullptr, nullptr, nullptr, kBoardFields,
                                        nullptr};

TEST(DeviceState, VmdescDescribesEveryByte) {
  Board b{};
  for (uint32_t i = 0; i < 3; ++i) b.fixed[i] = {i + 1, static_cast<int16_t>(-1 - static_cast<int>(i))};
  b.cells[0] = {0x10, 0};
  b.cells[1] = {0x20, 5};
  Inner target{0xabcd, 4};
  b.ptr = &target;
  b.v2_only = 99;  // not in version 1: neither saved nor described
  Req r1{};
  r1.tag = 3;
  r1.len = 4;
  ASSERT_EQ(kReqTailq.ops->append(&kReqTailq, &b.q, &r1), 0);
  const device::SavedDevices saved = device::save_devices({{"board", 0, &kBoardVmsd, &b}}, 4096);
  const auto doc = nlohmann::json::parse(saved.vmdesc_json);
  const auto& f = doc["devices"][0]["fields"];
  ASSERT_EQ(f.size(), 5u) << saved.vmdesc_json;  // fixed, cells[0], cells[1], ptr, q
  EXPECT_EQ(f[0]["array_len"], 3);
  EXPECT_EQ(f[0]["size"], 6);
  EXPECT_EQ(f[1]["index"], 0);
  EXPECT_FALSE(f[1]["struct"].contains("subsections"));
  EXPECT_EQ(f[2]["index"], 1);
  EXPECT_EQ(f[2]["struct"]["subsections"][0]["vmsd_name"], "cell/flag");
  EXPECT_EQ(f[2]["size"], 2 + 1 + 1 + 9 + 4 + 1);  // v, 0x05, len, name, version, flag
  EXPECT_EQ(f[3]["type"], "struct");
  EXPECT_EQ(f[4]["type"], "ferry list count32");
  EXPECT_EQ(f[4]["size"], 4 + 5);

  // Decode the section body with the description: it must end exactly at the footer.
  const auto& sec = saved.sections[0];
  const size_t header = 1 + 4 + 1 + 5 + 4 + 4;
  stream::ByteReader rd(std::span<const uint8_t>(sec.data(), sec.size() - 5));
  rd.seek(header);
  const auto v = stream::decode_vmstate(rd, doc["devices"][0], "board");
  EXPECT_TRUE(rd.at_end()) << rd.pos() << " of " << rd.size();
  EXPECT_EQ(v["fixed"][2]["a"], "0x00000003");
  EXPECT_EQ(v["cells"][1]["v"], "0x0020");
  EXPECT_EQ(v["cells"][1]["cell/flag"]["flag"], "0x05");
  EXPECT_EQ(v["ptr"]["a"], "0x0000abcd");
  EXPECT_EQ(v["q"], "00 00 00 01 00 00 00 03 04");
}

}  // namespace
}  // namespace ferry
