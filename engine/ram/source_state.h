// What a MigrationSource keeps across run() calls (MigrationSource::Impl is this): the guest's
// RAM and its dirty tracking, the configuration, hooks and devices; the stop machinery that
// cancel(), the scanner and the sender threads share; the counters progress() reads from any
// thread; the last run's stats.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/ram/page_sender.h"
#include "ferry/dirty_bitmap.h"
#include "ferry/dirty_source.h"
#include "ferry/migration.h"
#include "ferry/transport.h"

namespace ferry::ram {

struct SourceState {
  std::vector<RamBlock> blocks;
  std::vector<std::unique_ptr<DirtySource>> dirty;  // one per block
  MigrationConfig cfg;
  MigrationHooks hooks;
  std::vector<DirtyBitmap> bitmaps;  // one per block: pages to send in the next pass
  std::vector<Device> devices;

  // The first error (or "cancelled") wins; every blocked thread is woken. `live` and `senders`
  // are guarded by `mu` because cancel() reaches them from another thread.
  std::atomic<bool> stop{false};
  std::atomic<bool> cancelled{false};
  mutable std::mutex mu;
  std::string error;
  bool link_broke = false;  // `error` is a channel's TransportError from a sender
  std::vector<transport::Channel*> live;
  std::vector<std::unique_ptr<PageSender>> senders;
  std::mutex stop_mu;  // pacing sleeps wait on stop_cv
  std::condition_variable stop_cv;

  // Progress, written by the scanner and the senders.
  std::atomic<uint32_t> p_iteration{0};
  std::atomic<bool> p_final{false};
  std::atomic<uint64_t> p_pages_sent{0};
  std::atomic<uint64_t> p_pages_dirty{0};
  std::atomic<uint64_t> p_wire{0};
  std::atomic<int64_t> p_start_ns{0};
  std::atomic<int64_t> p_iter_start_ns{0};
  std::atomic<uint64_t> p_iter_start_wire{0};

  MigrationStats last;  // guarded by mu

  // Records msg unless an error came first, aborts the live channels and wakes every wait.
  void fail(const std::string& msg, bool link_failure = false) noexcept;
  [[noreturn]] void throw_stopped();
  void check_stop();

  void sync_dirty();
  uint64_t dirty_pages() const;
  uint64_t dirty_bytes() const;
  SenderCounters sum_counters() const;
};

}  // namespace ferry::ram
