// The fault-injection matrix: every fault of tests/engine/fault_channel.h (close, stall, delay,
// truncate, bit-flip) at every phase of the protocol, on the source's or the destination's
// channel 0, over tcp and unix. Each case is a real migration of a guest that writes while it
// migrates, and asserts:
//   - both sides end within a bound (no hang);
//   - a delay only slows the migration down: it completes and the destination equals the source;
//   - any other fault fails both sides with a reason, and the source's guest is resumed (if it
//     was stopped) with its memory exactly as it wrote it. The one exception is the last
//     message, DONE: once it has left the source the guest belongs to the destination, so a
//     destination that then fails leaves the guest stopped on both sides (the caller decides,
//     as after QEMU's migration completed and the destination failed to start);
//   - no file descriptor or thread outlives the case.
// Each test prints its slice of the matrix as a table. RDMA is not in the matrix yet.
#include <dirent.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ferry/bitmap_dirty_source.h"
#include "ferry/migration.h"
#include "ferry/vmstate.h"
#include "tests/engine/fault_channel.h"
#include "tests/engine/migration_test_util.h"

namespace ferry {
namespace {

using testing::Fault;
using testing::Phase;

constexpr size_t kPage = 4096;
constexpr size_t kSize = 4 << 20;
constexpr auto kStallLimit = std::chrono::milliseconds(500);
// Every case must end well inside this: a stall costs one stall limit on each side at most.
constexpr double kBoundSeconds = 3.0;

constexpr Fault kFaults[] = {Fault::kClose, Fault::kStall, Fault::kDelay, Fault::kTruncate,
                             Fault::kBitFlip};
constexpr Phase kPhases[] = {Phase::kHandshake,   Phase::kBulk,         Phase::kIteration,
                             Phase::kSync,        Phase::kFinalPass,    Phase::kDevices,
                             Phase::kCompletion,  Phase::kVerification, Phase::kDone};

struct Clock {
  uint64_t ticks;
  uint32_t rate;
};
constexpr FerryVmsField kClockFields[] = {FERRY_VMS_UINT64(Clock, ticks),
                                          FERRY_VMS_UINT32(Clock, rate),
                                          FERRY_VMS_END_OF_FIELDS()};
const FerryVmsDescription kClockVmsd = {"clock", 1, 1, nullptr, nullptr, nullptr, kClockFields,
                                        nullptr};

size_t count_entries(const char* dir) {
  size_t n = 0;
  if (DIR* d = opendir(dir)) {
    while (readdir(d)) ++n;
    closedir(d);
  }
  return n;
}

struct Outcome {
  bool fired = false;
  bool src_ok = false, dst_ok = false;
  std::string src_err, dst_err;
  double src_s = 0, dst_s = 0;
  bool stopped = false, resumed = false;
  bool source_memory_intact = false;
  bool destination_equal = false;
};

enum class Side { kSource, kDestination };

Outcome run_case(const std::string& uri, Side side, Fault fault, Phase phase) {
  testing::GuardedMem src(kSize), dst(kSize);
  std::vector<uint8_t> shadow(kSize);
  testing::fill_guest(src.data(), kSize, kPage, 7);
  std::memcpy(shadow.data(), src.data(), kSize);
  ExplicitMarkSource marks(kSize / kPage);
  testing::GuestWriter writer(src.data(), kSize, kPage, &marks, 11, shadow.data());
  Clock src_clock{123456789, 1000}, dst_clock{0, 0};

  Outcome out;
  std::atomic<bool> stopped{false};
  MigrationHooks hooks;
  hooks.stop_guest = [&] {
    writer.stop();
    stopped = true;
  };
  hooks.resume_guest = [&] { out.resumed = true; };
  MigrationConfig cfg;
  cfg.verify = true;  // so that the verification phase exists
  cfg.xbzrle = true;
  cfg.downtime_limit = std::chrono::milliseconds(1);  // iterations until max_iterations
  cfg.max_iterations = 3;

  transport::Options o;
  o.channels = 2;
  o.io_timeout = kStallLimit;
  auto listener = transport::listen(uri, o);
  testing::ChannelPair p;
  std::thread at([&] { p.dst = listener->accept(); });
  p.src = transport::connect(listener->address(), o);
  at.join();
  listener.reset();

  testing::FaultPlan plan;
  plan.fault = fault;
  plan.phase = phase;
  plan.stall_limit = kStallLimit;
  plan.guest_stopped = &stopped;
  std::atomic<bool> fired{false};
  plan.fired = &fired;
  auto& wrapped = side == Side::kSource ? p.src[0] : p.dst[0];
  wrapped = std::make_unique<testing::FaultChannel>(std::move(wrapped), plan);

  MigrationDestination d({RamBlock{"ram0", dst.data(), kSize, kPage}});
  d.set_devices({{"clock", 0, &kClockVmsd, &dst_clock}});
  // Every page dirty at every sync: the run always has its later iterations (max_iterations).
  std::vector<std::unique_ptr<DirtySource>> sources;
  sources.push_back(std::make_unique<testing::AllDirty>(
      std::make_unique<testing::DirtySourceProxy>(&marks)));
  MigrationSource s({RamBlock{"ram0", src.data(), kSize, kPage}}, std::move(sources), cfg,
                    std::move(hooks));
  s.set_devices({{"clock", 0, &kClockVmsd, &src_clock}});

  using C = std::chrono::steady_clock;
  const auto t0 = C::now();
  std::thread dt([&] {
    try {
      d.run(std::move(p.dst));
      out.dst_ok = true;
    } catch (const MigrationError& e) {
      out.dst_err = e.what();
    }
    out.dst_s = std::chrono::duration<double>(C::now() - t0).count();
  });
  writer.start();
  try {
    s.run(std::move(p.src));
    out.src_ok = true;
  } catch (const MigrationError& e) {
    out.src_err = e.what();
  }
  out.src_s = std::chrono::duration<double>(C::now() - t0).count();
  dt.join();
  writer.stop();
  out.fired = fired.load();
  out.stopped = stopped.load();
  out.source_memory_intact = std::memcmp(src.data(), shadow.data(), kSize) == 0;
  out.destination_equal = std::memcmp(src.data(), dst.data(), kSize) == 0 &&
                          dst_clock.ticks == src_clock.ticks;
  return out;
}

struct Cell {
  bool pass = true;
  std::string note;
  double seconds = 0;
};

// What the case must show; returns the problems found.
std::string judge(const Outcome& r, Fault fault, Phase phase) {
  std::string bad;
  auto need = [&](bool ok, const std::string& what) {
    if (!ok) bad += (bad.empty() ? "" : "; ") + what;
  };
  need(r.fired, "the fault never fired (phase not reached)");
  need(r.src_s < kBoundSeconds && r.dst_s < kBoundSeconds, "took too long");
  need(r.source_memory_intact, "source memory differs from what the guest wrote");
  if (fault == Fault::kDelay) {
    need(r.src_ok && r.dst_ok, "a delay failed the migration: " + r.src_err + " / " + r.dst_err);
    need(r.destination_equal, "destination differs from the source");
    return bad;
  }
  // DONE left the source whole (its send succeeded) and broke on the way or on arrival.
  const bool handed_over = phase == Phase::kDone && r.src_ok;
  if (handed_over) {
    need(r.src_ok, "source failed after sending DONE: " + r.src_err);
    need(!r.dst_ok && !r.dst_err.empty(), "destination did not fail with a reason");
    need(!r.resumed, "source resumed a guest it had handed over");
    return bad;
  }
  need(!r.src_ok && !r.src_err.empty(), "source did not fail with a reason");
  need(!r.dst_ok && !r.dst_err.empty(), "destination did not fail with a reason");
  need(!r.stopped || r.resumed, "source guest stopped and not resumed");
  return bad;
}

// FERRY_FAULT_CASE="phase/fault" (e.g. "sync/close") runs that case alone, for debugging;
// FERRY_FAULT_VERBOSE=1 prints both sides' errors for every case.
bool selected(Phase phase, Fault fault) {
  const char* only = std::getenv("FERRY_FAULT_CASE");
  return !only || std::string(only) == std::string(phase_name(phase)) + "/" + fault_name(fault);
}

void run_matrix(const std::string& uri, Side side, const char* label) {
  std::vector<std::vector<Cell>> table;
  double longest = 0;
  size_t failures = 0;
  for (Phase phase : kPhases) {
    table.emplace_back();
    for (Fault fault : kFaults) {
      if (!selected(phase, fault)) continue;
      const size_t fds = count_entries("/proc/self/fd");
      const size_t threads = count_entries("/proc/self/task");
      // A unix socket path per case: a listener removes its own path when it goes.
      const std::string where = uri == "unix" ? testing::unix_uri() : uri;
      const Outcome r = run_case(where, side, fault, phase);
      std::string bad = judge(r, fault, phase);
      if (count_entries("/proc/self/fd") != fds) bad += "; file descriptors leaked";
      if (count_entries("/proc/self/task") != threads) bad += "; threads left running";
      Cell c;
      c.seconds = std::max(r.src_s, r.dst_s);
      c.pass = bad.empty();
      c.note = bad;
      longest = std::max(longest, c.seconds);
      if (!c.pass) ++failures;
      EXPECT_TRUE(c.pass) << label << ", " << phase_name(phase) << ", " << fault_name(fault)
                          << ": " << bad << "\n  source (" << r.src_s << " s): " << (r.src_ok ? "ok" : r.src_err)
                          << "\n  destination (" << r.dst_s << " s): "
                          << (r.dst_ok ? "ok" : r.dst_err);
      if (std::getenv("FERRY_FAULT_VERBOSE")) {
        std::printf("%s / %s / %s\n  source: %s\n  destination: %s\n", label, phase_name(phase),
                    fault_name(fault), r.src_ok ? "ok" : r.src_err.c_str(),
                    r.dst_ok ? "ok" : r.dst_err.c_str());
      }
      table.back().push_back(c);
    }
  }
  std::printf("\nfault matrix, %s (time until both sides ended, ms; FAIL marks a broken case)\n",
              label);
  std::printf("%-14s", "phase");
  for (Fault f : kFaults) std::printf("%12s", fault_name(f));
  std::printf("\n");
  for (size_t i = 0; i < table.size(); ++i) {
    std::printf("%-14s", phase_name(kPhases[i]));
    for (const Cell& c : table[i]) {
      char cell[32];
      std::snprintf(cell, sizeof cell, "%s%.0f", c.pass ? "" : "FAIL ", c.seconds * 1e3);
      std::printf("%12s", cell);
    }
    std::printf("\n");
  }
  std::printf("%zu cases, %zu failing, longest %.0f ms\n", table.size() * std::size(kFaults),
              failures, longest * 1e3);
}

TEST(FaultMatrix, TcpSourceSide) { run_matrix("tcp:127.0.0.1:0", Side::kSource, "tcp, source"); }
TEST(FaultMatrix, TcpDestinationSide) {
  run_matrix("tcp:127.0.0.1:0", Side::kDestination, "tcp, destination");
}
TEST(FaultMatrix, UnixSourceSide) { run_matrix("unix", Side::kSource, "unix, source"); }
TEST(FaultMatrix, UnixDestinationSide) {
  run_matrix("unix", Side::kDestination, "unix, destination");
}
}  // namespace
}  // namespace ferry
