// Migrations through the C API between two threads on real sockets: a guest written by a thread
// while it moves, devices of both kinds, and what each failure does to either side.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "tests/capi/c_guest.h"
#include "tests/capi/capi_test_util.h"
#include "tests/vmstate/c_description.h"

namespace ferry::capi_test {
namespace {

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

constexpr size_t kPages = 2048;  // 8 MiB

struct GuestDeleter {
  void operator()(c_guest* g) const { c_guest_free(g); }
};
using Guest = std::unique_ptr<c_guest, GuestDeleter>;

Guest new_guest(uint32_t seed) {
  Guest g(c_guest_new(kPages, seed));
  if (!g) throw std::runtime_error("c_guest_new failed");
  return g;
}

bool same_memory(c_guest* g, const Destination& d) {
  return std::memcmp(c_guest_memory(g), d.memory(), c_guest_bytes(g)) == 0;
}

// ---- A running guest, over unix: and tcp:, two channels ---------------------------------

class CapiMigration : public ::testing::TestWithParam<const char*> {
 protected:
  std::string listen_uri() const {
    return std::string(GetParam()) == "unix" ? "unix:" + dir_.path() + "/sock"
                                             : "tcp:127.0.0.1:0";
  }
  TempDir dir_;
};

TEST_P(CapiMigration, MemoryWrittenDuringTheMigrationArrivesIdentical) {
  Guest g = new_guest(7);
  Destination dst(c_guest_bytes(g.get()));
  const std::string address = dst.listen(listen_uri());
  ASSERT_FALSE(address.empty());
  dst.start();
  c_guest_start_writer(g.get());
  // Let the writer get going so the bulk pass races it.
  while (c_guest_writes(g.get()) < 200) std::this_thread::yield();

  char* js = nullptr;
  const ferry_status st = c_run_source(g.get(), address.c_str(), 2, &js);
  const std::string source_error = ferry_last_error();
  const nlohmann::json src = take_json(js);
  const Outcome out = dst.wait();

  ASSERT_EQ(st, FERRY_OK) << source_error;
  ASSERT_EQ(out.status, FERRY_OK) << out.error;
  EXPECT_EQ(c_guest_stops(g.get()), 1);
  EXPECT_EQ(c_guest_resumes(g.get()), 0);
  EXPECT_TRUE(same_memory(g.get(), dst)) << "destination memory differs from the source";

  EXPECT_EQ(src["status"], "completed");
  EXPECT_EQ(src["channels"], 2);
  EXPECT_EQ(src["dirty-tracking"], "c-callback");
  EXPECT_GT(src["ram"]["normal"].get<uint64_t>(), 0u);
  EXPECT_GT(src["ram"]["duplicate"].get<uint64_t>(), 0u);  // every third page is zero
  EXPECT_EQ(static_cast<int>(src["iterations"].size()), c_guest_iterations(g.get()));
  const nlohmann::json d = dst.stats();
  EXPECT_EQ(d["status"], "completed");
  EXPECT_EQ(d["ram"]["normal"], src["ram"]["normal"]);
  EXPECT_EQ(d["ram"]["duplicate"], src["ram"]["duplicate"]);
  std::printf("[ info ] %s: %llu guest writes during the migration, %zu iterations\n",
              GetParam(), static_cast<unsigned long long>(c_guest_writes(g.get())),
              src["iterations"].size());
}

INSTANTIATE_TEST_SUITE_P(Transports, CapiMigration, ::testing::Values("unix", "tcp"));

// ---- Devices --------------------------------------------------------------------------------

// Source and destination around one idle guest (no writer), with a hook for each side's devices.
struct Pair {
  Guest guest = new_guest(11);
  TempDir dir;
  Destination dst{c_guest_bytes(guest.get())};
  ferry_source* src = nullptr;
  ferry_hooks hooks{};

  explicit Pair(const ferry_options* options = nullptr) {
    EXPECT_EQ(ferry_source_new(options, &src), FERRY_OK) << ferry_last_error();
    const ferry_ram_block b = {"pc.ram", c_guest_memory(guest.get()), c_guest_bytes(guest.get()),
                               4096, 0};
    EXPECT_EQ(ferry_source_add_ram(src, &b, c_guest_fetch, guest.get()), FERRY_OK);
    hooks = c_guest_hooks(guest.get());
    EXPECT_EQ(ferry_source_set_hooks(src, &hooks), FERRY_OK);
  }
  ~Pair() { ferry_source_free(src); }

  // Listens, runs both sides; returns the source's outcome (the destination's via dst.wait()).
  Outcome run() {
    const std::string address = dst.listen("unix:" + dir.path() + "/sock");
    dst.start();
    Outcome o;
    o.status = ferry_source_connect(src, address.c_str());
    if (o.status == FERRY_OK) o.status = ferry_source_run(src);
    o.error = ferry_last_error();
    return o;
  }
};

// Both verification modes pass on an intact migration, say so in the JSON, and the blackout
// (stop .. DONE) covers the downtime (stop .. CONFIRM).
TEST(CapiVerify, DigestAndFullRehashVerifyAndReportTheBlackout) {
  for (uint32_t mode : {FERRY_VERIFY_DIGEST, FERRY_VERIFY_FULL}) {
    ferry_options o;
    ferry_options_init(&o);
    o.verify = mode;
    Pair p(&o);
    const Outcome src = p.run();
    const Outcome dst = p.dst.wait();
    ASSERT_EQ(src.status, FERRY_OK) << src.error;
    ASSERT_EQ(dst.status, FERRY_OK) << dst.error;
    char* js = nullptr;
    ASSERT_EQ(ferry_source_stats_json(p.src, &js), FERRY_OK);
    const nlohmann::json j = take_json(js);
    EXPECT_TRUE(j["verified"].get<bool>()) << "mode " << mode;
    EXPECT_GE(j["blackout-us"].get<int64_t>(), 0);
    EXPECT_GE(j["blackout"].get<int64_t>(), j["downtime"].get<int64_t>());
    EXPECT_TRUE(same_memory(p.guest.get(), p.dst));
  }
}

TEST(CapiDevices, VmstateAndOpaqueDevicesRoundTrip) {
  Pair p;
  void* dev_src = c_device_new();
  void* dev_dst = c_device_new();
  c_device_fill(dev_src);
  c_blob blob_src{}, blob_dst{};
  blob_src.len = 700;
  for (size_t i = 0; i < blob_src.len; ++i) blob_src.bytes[i] = static_cast<uint8_t>(i * 7 + 1);
  const ferry_device_ops ops = c_blob_ops(sizeof blob_src.bytes, 2);

  ASSERT_EQ(ferry_source_add_device(p.src, "cdev", 0, c_device_description(), dev_src), FERRY_OK)
      << ferry_last_error();
  ASSERT_EQ(ferry_source_add_device_opaque(p.src, "blob", 3, &ops, &blob_src), FERRY_OK)
      << ferry_last_error();
  ASSERT_EQ(ferry_destination_add_device(p.dst.get(), "cdev", 0, c_device_description(), dev_dst),
            FERRY_OK);
  ASSERT_EQ(ferry_destination_add_device_opaque(p.dst.get(), "blob", 3, &ops, &blob_dst), FERRY_OK);

  const Outcome s = p.run();
  const Outcome d = p.dst.wait();
  ASSERT_EQ(s.status, FERRY_OK) << s.error;
  ASSERT_EQ(d.status, FERRY_OK) << d.error;
  EXPECT_TRUE(c_device_equal(dev_src, dev_dst));
  EXPECT_EQ(c_device_post_load_calls(dev_dst), 1);
  EXPECT_EQ(blob_src.saves, 1);
  EXPECT_EQ(blob_dst.loads, 1);
  ASSERT_EQ(blob_dst.len, 700u);
  EXPECT_EQ(std::memcmp(blob_src.bytes, blob_dst.bytes, 700), 0);
  EXPECT_EQ(source_stats(p.src)["device-state"]["sections"], 2);
  const nlohmann::json ds = p.dst.stats();
  EXPECT_EQ(ds["device-state"]["sections"], 2);
  // The opaque device is described like any vmstate device: len, then data.
  EXPECT_THAT(ds["vmdesc"].dump(), HasSubstr("\"blob\""));
  EXPECT_THAT(ds["vmdesc"].dump(), HasSubstr("\"data\""));
  c_device_free(dev_src);
  c_device_free(dev_dst);
}

// The destination's load fails: it reports the device; the source fails after stop_guest, so
// the guest runs on there (resume_guest).
TEST(CapiDevices, OpaqueLoadFailureNamesTheDeviceAndTheGuestResumes) {
  Pair p;
  c_blob blob_src{}, blob_dst{};
  blob_src.len = 10;
  blob_dst.load_result = 7;
  const ferry_device_ops ops = c_blob_ops(sizeof blob_src.bytes, 1);
  ASSERT_EQ(ferry_source_add_device_opaque(p.src, "nic", 0, &ops, &blob_src), FERRY_OK);
  ASSERT_EQ(ferry_destination_add_device_opaque(p.dst.get(), "nic", 0, &ops, &blob_dst), FERRY_OK);

  const Outcome s = p.run();
  const Outcome d = p.dst.wait();
  EXPECT_EQ(d.status, FERRY_ERR_MIGRATION);
  EXPECT_THAT(d.error, HasSubstr("device 'nic' instance 0: load returned 7"));
  EXPECT_EQ(s.status, FERRY_ERR_MIGRATION);
  EXPECT_THAT(s.error, HasSubstr("load returned 7"));
  EXPECT_EQ(c_guest_stops(p.guest.get()), 1);
  EXPECT_EQ(c_guest_resumes(p.guest.get()), 1);
  EXPECT_EQ(source_stats(p.src)["status"], "failed");
  const nlohmann::json ds = p.dst.stats();
  EXPECT_EQ(ds["status"], "failed");
  EXPECT_EQ(ds["error-desc"], d.error);
}

TEST(CapiDevices, OpaqueSaveFailuresNameTheDeviceAndTheGuestResumes) {
  struct Case {
    int save_result;
    int overreport;
    const char* want;
  };
  for (const Case c : {Case{3, 0, "device 'rtc' instance 1: save returned 3"},
                       Case{0, 1, "device 'rtc' instance 1: save reported 101 bytes, more than "
                                  "its capacity of 100"}}) {
    SCOPED_TRACE(c.want);
    Pair p;
    c_blob blob_src{}, blob_dst{};
    blob_src.save_result = c.save_result;
    blob_src.overreport = c.overreport;
    const ferry_device_ops ops = c_blob_ops(100, 1);
    ASSERT_EQ(ferry_source_add_device_opaque(p.src, "rtc", 1, &ops, &blob_src), FERRY_OK);
    ASSERT_EQ(ferry_destination_add_device_opaque(p.dst.get(), "rtc", 1, &ops, &blob_dst),
              FERRY_OK);
    const Outcome s = p.run();
    const Outcome d = p.dst.wait();
    EXPECT_EQ(s.status, FERRY_ERR_MIGRATION);
    EXPECT_THAT(s.error, HasSubstr(c.want));
    EXPECT_EQ(d.status, FERRY_ERR_MIGRATION);  // the source told it why
    EXPECT_THAT(d.error, HasSubstr(c.want));
    EXPECT_EQ(c_guest_resumes(p.guest.get()), 1);
    EXPECT_EQ(blob_dst.loads, 0);
  }
}

// ---- Hooks and dirty fetches that fail ------------------------------------------------------

TEST(CapiFailures, StopGuestFailingFailsTheMigrationWithoutResume) {
  Pair p;
  c_guest_fail_stop(p.guest.get(), 9);
  const Outcome s = p.run();
  p.dst.wait();
  EXPECT_EQ(s.status, FERRY_ERR_MIGRATION);
  EXPECT_THAT(s.error, HasSubstr("stop_guest hook returned 9"));
  EXPECT_EQ(c_guest_resumes(p.guest.get()), 0);  // never stopped: nothing to resume
}

TEST(CapiFailures, DirtyFetchFailingNamesTheBlock) {
  Pair p;
  c_guest_fail_fetches(p.guest.get(), 5);
  const Outcome s = p.run();
  const Outcome d = p.dst.wait();
  EXPECT_EQ(s.status, FERRY_ERR_MIGRATION);
  EXPECT_THAT(s.error, HasSubstr("dirty fetch of block 'pc.ram' returned 5"));
  EXPECT_NE(d.status, FERRY_OK);
  EXPECT_EQ(c_guest_stops(p.guest.get()), 0);
}

TEST(CapiFailures, BlockMismatchIsNamedOnBothSides) {
  Guest g = new_guest(3);
  TempDir dir;
  Destination dst(c_guest_bytes(g.get()) / 2);
  const std::string address = dst.listen("unix:" + dir.path() + "/sock");
  dst.start();
  const ferry_status st = c_run_source(g.get(), address.c_str(), 1, nullptr);
  const std::string source_error = ferry_last_error();
  const Outcome d = dst.wait();
  EXPECT_EQ(d.status, FERRY_ERR_MIGRATION);
  EXPECT_THAT(d.error, HasSubstr("block list mismatch: block 'pc.ram': source 8388608 bytes"));
  EXPECT_EQ(st, FERRY_ERR_MIGRATION);
  EXPECT_THAT(source_error, HasSubstr("block list mismatch"));
}

// ---- Cancel ---------------------------------------------------------------------------------

// An opaque device whose save waits until the test thread has cancelled the source: the cancel
// lands after stop_guest, so the source must resume the guest.
struct BlockingSave {
  std::atomic<bool> in_save{false};
  std::atomic<bool> cancelled{false};
  static int save(void* opaque, void*, size_t, size_t* len) {
    auto* b = static_cast<BlockingSave*>(opaque);
    b->in_save = true;
    const auto give_up = Clock::now() + std::chrono::seconds(10);
    while (!b->cancelled && Clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    *len = 0;
    return 0;
  }
  static int load(void*, const void*, size_t) { return 0; }
};

TEST(CapiCancel, CancellingARunningSourceReturnsCancelledAndResumesTheGuest) {
  Pair p;
  BlockingSave blocking;
  ferry_device_ops ops{};
  ops.save = BlockingSave::save;
  ops.load = BlockingSave::load;
  ops.max_bytes = 16;
  ops.version = 1;
  ASSERT_EQ(ferry_source_add_device_opaque(p.src, "slow", 0, &ops, &blocking), FERRY_OK);
  ASSERT_EQ(ferry_destination_add_device_opaque(p.dst.get(), "slow", 0, &ops, &blocking),
            FERRY_OK);
  std::thread canceller([&] {
    while (!blocking.in_save) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ferry_source_cancel(p.src);
    blocking.cancelled = true;
  });
  const auto t0 = Clock::now();
  const Outcome s = p.run();
  canceller.join();
  const Outcome d = p.dst.wait();
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 5.0);
  EXPECT_EQ(s.status, FERRY_ERR_CANCELLED) << s.error;
  EXPECT_EQ(s.error, "cancelled");
  EXPECT_EQ(c_guest_stops(p.guest.get()), 1);
  EXPECT_EQ(c_guest_resumes(p.guest.get()), 1);
  EXPECT_EQ(source_stats(p.src)["status"], "cancelled");
  EXPECT_NE(d.status, FERRY_OK);
}

TEST(CapiCancel, CancelBeforeRunReturnsCancelledAtOnce) {
  Pair p;
  const std::string address = p.dst.listen("unix:" + p.dir.path() + "/sock");
  p.dst.start();
  ASSERT_EQ(ferry_source_connect(p.src, address.c_str()), FERRY_OK) << ferry_last_error();
  ferry_source_cancel(p.src);
  const auto t0 = Clock::now();
  EXPECT_EQ(ferry_source_run(p.src), FERRY_ERR_CANCELLED);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 0.5);
  EXPECT_EQ(c_guest_stops(p.guest.get()), 0);
  EXPECT_EQ(source_stats(p.src)["status"], "cancelled");
  // A cancelled source refuses to run again like any other that ran.
  EXPECT_EQ(ferry_source_run(p.src), FERRY_ERR_INVALID);
}

TEST(CapiCancel, CancelBeforeConnectMakesConnectReturnCancelled) {
  ferry_source* src = nullptr;
  ASSERT_EQ(ferry_source_new(nullptr, &src), FERRY_OK);
  ferry_source_cancel(src);
  EXPECT_EQ(ferry_source_connect(src, "tcp:127.0.0.1:1"), FERRY_ERR_CANCELLED);
  ferry_source_free(src);
}

TEST(CapiCancel, DestinationCancelEndsAnAcceptWithinASecond) {
  ferry_options o;
  ferry_options_init(&o);
  o.accept_timeout_ms = 60000;
  Destination dst(1 << 20, "pc.ram", &o);
  ASSERT_FALSE(dst.listen("tcp:127.0.0.1:0").empty());
  dst.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // waiting in accept by now
  const auto t0 = Clock::now();
  ferry_destination_cancel(dst.get());
  const Outcome d = dst.wait();
  const double took = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_LT(took, 1.0);
  EXPECT_EQ(d.status, FERRY_ERR_CANCELLED) << d.error;
  EXPECT_THAT(d.error, HasSubstr("accept cancelled"));
  EXPECT_EQ(dst.stats()["status"], "cancelled");
  std::printf("[ info ] accept ended %.1f ms after ferry_destination_cancel\n", took * 1e3);
}

}  // namespace
}  // namespace ferry::capi_test
