// The precopy policies do what MigrationConfig says: the downtime limit decides when the guest
// stops, the bandwidth limit caps the rate, auto-converge throttles a guest the link cannot keep
// up with, and kernel (uffd-wp) dirty tracking loses no write. Real migrations over loopback tcp
// with a guest writer; the assertions are on the engine's own decisions (MigrationStats, the
// per-iteration stats, the hooks), not on wall times, which a loaded 2-core machine stretches.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ferry/bitmap_dirty_source.h"
#include "ferry/migration.h"
#include "ferry/uffd_wp_dirty_source.h"
#include "tests/engine/migration_test_util.h"

namespace ferry {
namespace {
using testing::GuardedMem;
using testing::GuestWriter;

constexpr size_t kPage = 4096;

double seconds(std::chrono::milliseconds ms) { return std::chrono::duration<double>(ms).count(); }

// Every page distinct and non-zero, so that (with zero_pages off) each costs a full page on the
// wire and bytes per page do not depend on content.
void fill_distinct(uint8_t* p, size_t size) {
  for (size_t off = 0; off < size; off += kPage) {
    std::memset(p + off, static_cast<int>(off / kPage % 255 + 1), kPage);
    std::memcpy(p + off, &off, sizeof off);
  }
}

// Wraps a guest's dirty tracking: records how many writes the writer had finished as each sync
// began (those were marked before the sync, so a later sync can only find pages written after
// the snapshot), and optionally, while the guest runs, first waits for `min_writes` writes since
// the previous sync, so that every live pass has pages to find however the scheduler treats the
// writer thread on a loaded machine.
class WriterSyncSource final : public DirtySource {
 public:
  WriterSyncSource(DirtySource* inner, const GuestWriter* writer, const bool* guest_stopped,
                   uint64_t min_writes, std::vector<uint64_t>* snapshots)
      : inner_(inner), writer_(writer), guest_stopped_(guest_stopped), min_writes_(min_writes),
        snapshots_(snapshots) {}
  void sync(DirtyBitmap& into) override {
    if (min_writes_ > 0 && !*guest_stopped_ && !snapshots_->empty()) {
      writer_->wait_for_writes(snapshots_->back() + min_writes_);
    }
    snapshots_->push_back(writer_->writes());
    inner_->sync(into);
  }
  size_t pages() const override { return inner_->pages(); }
  const char* name() const override { return inner_->name(); }

 private:
  DirtySource* inner_;
  const GuestWriter* writer_;
  const bool* guest_stopped_;  // set by stop_guest, on the thread that calls sync()
  uint64_t min_writes_;
  std::vector<uint64_t>* snapshots_;
};

// One block on each side, and a writer (not started) on the source's that marks what it writes.
struct PolicyGuest {
  explicit PolicyGuest(size_t bytes)
      : size(bytes), src(bytes), dst(bytes), marks(bytes / kPage),
        writer(src.data(), bytes, kPage, &marks, /*seed=*/7) {
    fill_distinct(src.data(), size);
  }
  std::vector<RamBlock> src_blocks() { return {RamBlock{"ram0", src.data(), size, kPage}}; }
  std::vector<RamBlock> dst_blocks() { return {RamBlock{"ram0", dst.data(), size, kPage}}; }
  // min_writes_per_sync: see WriterSyncSource.
  std::vector<std::unique_ptr<DirtySource>> tracking(uint64_t min_writes_per_sync = 0) {
    std::vector<std::unique_ptr<DirtySource>> v;
    v.push_back(std::make_unique<WriterSyncSource>(&marks, &writer, &guest_stopped,
                                                   min_writes_per_sync, &sync_writes));
    return v;
  }
  MigrationHooks hooks() {
    MigrationHooks h;
    h.stop_guest = [this] {
      guest_stopped = true;
      writer.stop();
      writes_at_stop = writer.writes();
    };
    return h;
  }
  bool identical() {
    return std::memcmp(src.data(), dst.data(), size) == 0 && dst.canaries_intact();
  }

  size_t size;
  GuardedMem src, dst;
  ExplicitMarkSource marks;
  GuestWriter writer;
  std::vector<uint64_t> sync_writes;  // writer.writes() as each sync began
  bool guest_stopped = false;
  uint64_t writes_at_stop = 0;
};

struct Outcome {
  MigrationStats stats;  // last_stats(): also when run() threw
  std::string src_err, dst_err;
};

Outcome migrate(std::vector<RamBlock> src_blocks, std::vector<RamBlock> dst_blocks,
                std::vector<std::unique_ptr<DirtySource>> tracking, const MigrationConfig& cfg,
                MigrationHooks hooks, uint32_t channels = 1) {
  testing::ChannelPair p = testing::make_channels("tcp:127.0.0.1:0", channels);
  MigrationDestination dst(std::move(dst_blocks));
  MigrationSource src(std::move(src_blocks), std::move(tracking), cfg, std::move(hooks));
  Outcome o;
  std::thread dt([&] {
    try {
      dst.run(std::move(p.dst));
    } catch (const MigrationError& e) {
      o.dst_err = e.what();
    }
  });
  try {
    src.run(std::move(p.src));
  } catch (const MigrationError& e) {
    o.src_err = e.what();
  }
  dt.join();
  o.stats = src.last_stats();
  return o;
}

Outcome migrate(PolicyGuest& g, const MigrationConfig& cfg, MigrationHooks hooks,
                uint32_t channels = 1, uint64_t min_writes_per_sync = 0) {
  return migrate(g.src_blocks(), g.dst_blocks(), g.tracking(min_writes_per_sync), cfg,
                 std::move(hooks), channels);
}

// The live iterations: all but the final (stopped) pass.
size_t live_iterations(const MigrationStats& s) {
  return s.iterations.empty() || !s.iterations.back().final_pass ? s.iterations.size()
                                                                 : s.iterations.size() - 1;
}

// What the engine estimates downtime with after live iteration i (MigrationConfig, README):
// the best pass throughput so far, capped by the bandwidth limit.
double estimate_bandwidth(const MigrationStats& s, size_t i, uint64_t limit) {
  double best = 0;
  for (size_t k = 0; k <= i; ++k) best = std::max(best, s.iterations[k].throughput_bytes_per_s);
  return limit > 0 ? std::min(best, static_cast<double>(limit)) : best;
}

// Pages the downtime limit lets the final pass send at the bandwidth estimated after iteration i.
double pages_allowed(const MigrationStats& s, size_t i, const MigrationConfig& cfg) {
  return seconds(cfg.downtime_limit) *
         estimate_bandwidth(s, i, cfg.bandwidth_limit_bytes_per_s) / kPage;
}

// ---- 1. The downtime limit decides when the guest stops ----------------------------------------

// The link is capped at 64 MiB/s (16384 pages/s) and the writer dirties 2000 pages/s: every
// iteration leaves about an eighth of what it sent, so the dirty set shrinks until it fits.
constexpr uint64_t kDowntimeTestBandwidth = 64u << 20;

struct DowntimeRun {
  MigrationConfig cfg;
  Outcome out;
  std::vector<uint64_t> sync_writes;
  uint64_t writes_at_stop = 0;
};

DowntimeRun migrate_with_downtime_limit(std::chrono::milliseconds limit) {
  DowntimeRun r;
  r.cfg.zero_pages = false;
  r.cfg.bandwidth_limit_bytes_per_s = kDowntimeTestBandwidth;
  r.cfg.downtime_limit = limit;
  r.cfg.max_iterations = 30;
  PolicyGuest g(16 << 20);
  g.writer.set_rate(2000);
  g.writer.start();
  g.writer.wait_for_writes(1);
  // A few writes between syncs at least, so that no pass ends with nothing dirty (the other
  // way to converge) because the scheduler held the writer back.
  r.out = migrate(g, r.cfg, g.hooks(), 1, /*min_writes_per_sync=*/8);
  g.writer.stop();
  EXPECT_EQ(r.out.src_err, "");
  EXPECT_EQ(r.out.dst_err, "");
  EXPECT_TRUE(g.identical());
  r.sync_writes = g.sync_writes;
  r.writes_at_stop = g.writes_at_stop;
  return r;
}

// The engine went on while the remaining dirty pages did not fit the limit at its bandwidth
// estimate, stopped the guest at the first iteration where they did, and the final pass sent
// those pages plus at most what the writer wrote after that iteration's sync.
void expect_stopped_once_it_fits(const DowntimeRun& r) {
  const MigrationStats& s = r.out.stats;
  ASSERT_EQ(s.converged_by, "downtime-limit");
  const size_t live = live_iterations(s);
  ASSERT_EQ(live + 1, s.iterations.size()) << "no final pass";
  // Syncs: before the bulk pass, after each live pass, at the stop.
  ASSERT_EQ(r.sync_writes.size(), live + 2);
  for (size_t i = 0; i + 1 < live; ++i) {
    EXPECT_GT(static_cast<double>(s.iterations[i].remaining_dirty_pages),
              pages_allowed(s, i, r.cfg))
        << "iteration " << i << " fitted the limit but the engine iterated on";
  }
  const IterationStats& last = s.iterations[live - 1];
  const double allowed = pages_allowed(s, live - 1, r.cfg);
  EXPECT_LE(static_cast<double>(last.remaining_dirty_pages), allowed);
  EXPECT_LE(last.expected_downtime_s, seconds(r.cfg.downtime_limit));

  const IterationStats& final_pass = s.iterations.back();
  const uint64_t late_writes = r.writes_at_stop - r.sync_writes[live];
  EXPECT_EQ(final_pass.pages.total(), final_pass.dirty_pages);
  EXPECT_LE(final_pass.dirty_pages, last.remaining_dirty_pages + late_writes);
  EXPECT_LE(static_cast<double>(final_pass.dirty_pages), allowed + static_cast<double>(late_writes));
  std::printf("[ policy   ] limit %lld ms: %zu live iterations, final pass %llu pages "
              "(%.0f allowed at %.1f MiB/s, %llu written after the last sync)\n",
              static_cast<long long>(r.cfg.downtime_limit.count()), live,
              static_cast<unsigned long long>(final_pass.dirty_pages), allowed,
              estimate_bandwidth(s, live - 1, r.cfg.bandwidth_limit_bytes_per_s) / (1 << 20),
              static_cast<unsigned long long>(late_writes));
}

TEST(MigrationPolicy, DowntimeLimitStopsTheGuestOnceTheDirtySetFits) {
  const DowntimeRun loose = migrate_with_downtime_limit(std::chrono::milliseconds(100));
  const DowntimeRun tight = migrate_with_downtime_limit(std::chrono::milliseconds(10));
  expect_stopped_once_it_fits(loose);
  expect_stopped_once_it_fits(tight);
  const auto& l = loose.out.stats.iterations;
  const auto& t = tight.out.stats.iterations;
  ASSERT_FALSE(l.empty());
  ASSERT_FALSE(t.empty());
  EXPECT_TRUE(t.size() > l.size() || t.back().dirty_pages < l.back().dirty_pages)
      << "tight: " << t.size() << " iterations, final " << t.back().dirty_pages
      << " pages; loose: " << l.size() << " iterations, final " << l.back().dirty_pages;
}

// ---- 2. The bandwidth limit caps the rate ------------------------------------------------------

// The machine's CPU time so far, from the first line of /proc/stat (in ticks): all of it, and
// the part no one wanted (idle + iowait).
struct CpuTimes {
  uint64_t total = 0;
  uint64_t idle = 0;
};

CpuTimes cpu_times() {
  CpuTimes t;
  std::FILE* f = std::fopen("/proc/stat", "r");
  if (!f) return t;
  unsigned long long v[8] = {};
  if (std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                  &v[4], &v[5], &v[6], &v[7]) == 8) {
    for (unsigned long long x : v) t.total += x;
    t.idle = v[3] + v[4];
  }
  std::fclose(f);
  return t;
}

TEST(MigrationPolicy, BandwidthLimitCapsTheRate) {
  constexpr uint64_t kLimit = 200u << 20;
  constexpr size_t kGuest = 128 << 20;
  PolicyGuest g(kGuest);  // idle: nothing writes it
  MigrationConfig cfg;
  cfg.zero_pages = false;
  cfg.bandwidth_limit_bytes_per_s = kLimit;
  const CpuTimes before = cpu_times();
  const Outcome o = migrate(g, cfg, {}, /*channels=*/2);  // each channel gets half the limit
  const CpuTimes after = cpu_times();
  ASSERT_EQ(o.src_err, "");
  ASSERT_EQ(o.dst_err, "");
  EXPECT_TRUE(g.identical());
  EXPECT_EQ(o.stats.converged_by, "nothing-dirty");
  ASSERT_FALSE(o.stats.iterations.empty());
  const IterationStats& bulk = o.stats.iterations[0];  // all of the guest, nothing else running
  EXPECT_EQ(bulk.pages.total(), kGuest / kPage);
  const double rate = bulk.throughput_bytes_per_s;
  // The pacer sleeps most of the time; if the CPUs still had no idle time to speak of, other
  // work took it and the limit may be out of reach: then only the upper bound holds.
  const double idle = after.total > before.total
                          ? static_cast<double>(after.idle - before.idle) /
                                static_cast<double>(after.total - before.total)
                          : 0;
  std::printf("[ policy   ] limit %.0f MiB/s: %.1f MiB/s, CPUs %.0f %% idle meanwhile\n",
              kLimit / 1048576.0, rate / 1048576.0, idle * 100);
  EXPECT_LE(rate, 1.1 * kLimit);
  if (idle >= 0.25) {
    EXPECT_GE(rate, 0.9 * kLimit);
  } else {
    std::printf("[ policy   ] machine too busy to check the lower bound\n");
  }
}

// ---- 3. Auto-converge --------------------------------------------------------------------------

// The writer dirties 20000 pages/s of a 256-page guest; the link carries 8192 pages/s. Without
// a throttle every pass finds most of the guest dirty again, far more than the 1 ms downtime
// limit lets the final pass send (8 pages).
struct FastWriterRun {
  MigrationConfig cfg;
  Outcome out;
  std::vector<uint32_t> throttle_calls;
  bool identical = false;
};

FastWriterRun migrate_fast_writer(bool auto_converge) {
  FastWriterRun r;
  r.cfg.zero_pages = false;
  r.cfg.bandwidth_limit_bytes_per_s = 32u << 20;
  r.cfg.downtime_limit = std::chrono::milliseconds(1);
  r.cfg.max_iterations = 20;
  r.cfg.auto_converge = auto_converge;
  PolicyGuest g(1 << 20);
  MigrationHooks hooks = g.hooks();
  hooks.throttle = [&](uint32_t percent) {
    r.throttle_calls.push_back(percent);
    g.writer.set_throttle(percent);
  };
  g.writer.set_rate(20000);
  g.writer.start();
  g.writer.wait_for_writes(1);
  // Without auto-converge, 64 writes between syncs (~57 distinct pages) keep every pass far
  // from fitting, even if the scheduler starves the writer; with it, waiting would defeat the
  // throttle.
  r.out = migrate(g, r.cfg, std::move(hooks), 1, auto_converge ? 0 : 64);
  g.writer.stop();
  r.identical = g.identical();
  return r;
}

TEST(MigrationPolicy, WriterFasterThanTheLinkDoesNotConvergeWithoutAutoConverge) {
  const FastWriterRun r = migrate_fast_writer(false);
  ASSERT_EQ(r.out.src_err, "");
  ASSERT_EQ(r.out.dst_err, "");
  EXPECT_TRUE(r.identical);
  const MigrationStats& s = r.out.stats;
  EXPECT_EQ(s.converged_by, "max-iterations");
  EXPECT_EQ(live_iterations(s), r.cfg.max_iterations + 1u);  // bulk, 1..max
  for (size_t i = 0; i < live_iterations(s); ++i) {
    EXPECT_GT(s.iterations[i].expected_downtime_s, seconds(r.cfg.downtime_limit)) << i;
    EXPECT_EQ(s.iterations[i].throttle_percent, 0u) << i;
  }
  EXPECT_TRUE(r.throttle_calls.empty()) << "throttled with auto_converge off";
}

TEST(MigrationPolicy, AutoConvergeThrottlesTheWriterUntilItConverges) {
  const FastWriterRun r = migrate_fast_writer(true);
  ASSERT_EQ(r.out.src_err, "");
  ASSERT_EQ(r.out.dst_err, "");
  EXPECT_TRUE(r.identical);
  const MigrationStats& s = r.out.stats;
  // Throttled hard, the writer may also leave a short pass with nothing dirty at all.
  EXPECT_TRUE(s.converged_by == "downtime-limit" || s.converged_by == "nothing-dirty")
      << s.converged_by;
  EXPECT_LE(live_iterations(s), r.cfg.max_iterations);
  // Increasing percentages while it does not converge, then 0 once the guest is stopped.
  ASSERT_GE(r.throttle_calls.size(), 3u);
  EXPECT_EQ(r.throttle_calls.back(), 0u);
  for (size_t i = 0; i + 1 < r.throttle_calls.size(); ++i) {
    EXPECT_GT(r.throttle_calls[i], 0u);
    EXPECT_LE(r.throttle_calls[i], 99u);
    if (i > 0) {
      EXPECT_GT(r.throttle_calls[i], r.throttle_calls[i - 1]);
    }
  }
  // The per-iteration stats say the same.
  std::vector<uint32_t> reported;
  for (const auto& it : s.iterations) {
    if (it.throttle_percent) reported.push_back(it.throttle_percent);
  }
  reported.push_back(0);
  EXPECT_EQ(reported, r.throttle_calls);
  std::printf("[ policy   ] auto-converge: %zu live iterations, throttle up to %u%%\n",
              live_iterations(s), r.throttle_calls[r.throttle_calls.size() - 2]);
}

// ---- 4. Kernel dirty tracking, forced ----------------------------------------------------------

TEST(MigrationPolicy, ForcedUffdWpTrackingLosesNoWrite) {
  const std::string why = UffdWpDirtySource::probe();
  if (!why.empty()) GTEST_SKIP() << "uffd-wp unavailable: " << why;
  constexpr size_t kSize = 8 << 20;
  GuardedMem src(kSize), dst(kSize);
  // The upper half is never touched before tracking starts: the writer's first write to such a
  // page must be seen too (UFFD_FEATURE_WP_UNPOPULATED), and the untouched rest goes as ZERO.
  testing::fill_guest(src.data(), kSize / 2, kPage, 21);
  testing::fill_guest(dst.data(), kSize, kPage, 22);
  UffdWpDirtySource uffd(src.data(), kSize);
  // No marks: only the kernel knows what this writer wrote.
  GuestWriter writer(src.data(), kSize, kPage, nullptr, /*seed=*/23);
  bool guest_stopped = false;
  std::vector<uint64_t> sync_writes;
  std::vector<std::unique_ptr<DirtySource>> tracking;
  tracking.push_back(
      std::make_unique<WriterSyncSource>(&uffd, &writer, &guest_stopped, 64, &sync_writes));
  writer.start();
  writer.wait_for_writes(1000);
  MigrationConfig cfg;
  cfg.downtime_limit = std::chrono::milliseconds(0);  // iterate: every pass relies on tracking
  cfg.max_iterations = 4;
  cfg.verify = true;
  cfg.verify_full = true;  // re-hashes all RAM: a write the tracking missed fails run()
  MigrationHooks hooks;
  hooks.stop_guest = [&] {
    guest_stopped = true;
    writer.stop();
  };
  const Outcome o = migrate({RamBlock{"ram0", src.data(), kSize, kPage}},
                            {RamBlock{"ram0", dst.data(), kSize, kPage}}, std::move(tracking),
                            cfg, std::move(hooks), 2);
  writer.stop();
  ASSERT_EQ(o.src_err, "");
  ASSERT_EQ(o.dst_err, "");
  EXPECT_EQ(o.stats.dirty_tracking, "uffd-wp");
  EXPECT_TRUE(o.stats.verified);
  EXPECT_EQ(testing::first_diff_page(src.data(), dst.data(), kSize, kPage), -1);
  EXPECT_TRUE(dst.canaries_intact());
  // Every pass after the bulk one found the writer's pages through the kernel alone (64 writes
  // at least between two live syncs).
  ASSERT_EQ(o.stats.iterations.size(), cfg.max_iterations + 2u);
  for (size_t i = 1; i < o.stats.iterations.size(); ++i) {
    EXPECT_GT(o.stats.iterations[i].dirty_pages, 0u) << "iteration " << i;
  }
}

}  // namespace
}  // namespace ferry
