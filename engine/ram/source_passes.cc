// The precopy passes: live iterations while the guest runs, until the remaining dirty pages
// fit the downtime limit (or max_iterations), then the switchover's final pass with the guest
// stopped. The scanner (this thread) hands each dirty page to the sender that owns it.
#include <algorithm>
#include <cmath>

#include "engine/ram/page_counts.h"
#include "engine/ram/source_session.h"

namespace ferry::ram {

uint32_t SourceSession::iterate() {
  // Bulk pass: whatever was marked so far is covered by sending everything.
  m_.sync_dirty();
  for (auto& b : m_.bitmaps) b.set_all();
  for (uint32_t it = 0;; ++it) {
    IterationStats is;
    is.dirty_pages = m_.dirty_pages();
    run_pass(it, false, is);
    m_.check_stop();
    m_.sync_dirty();
    is.remaining_dirty_pages = m_.dirty_pages();
    is.dirty_rate_pages_per_s =
        is.seconds > 0 ? static_cast<double>(is.remaining_dirty_pages) / is.seconds : 0;
    estimate_downtime(is);
    if (const char* why = convergence(it, is)) {
      st_.converged_by = why;
    } else {
      throttle_if_falling_behind(it, is);
    }
    report(is);
    if (!st_.converged_by.empty()) return it;
    m_.check_stop();
  }
}

// The remaining dirty bytes at the link's demonstrated rate (capped by the bandwidth limit):
// the best wire throughput of any pass so far. A pass of mostly zero pages puts few bytes on
// the wire for its time, so its own rate says little about what the next pages cost, and
// estimating with it kept such a migration iterating for nothing.
void SourceSession::estimate_downtime(IterationStats& is) {
  best_throughput_ = std::max(best_throughput_, is.throughput_bytes_per_s);
  double bw = best_throughput_;
  if (m_.cfg.bandwidth_limit_bytes_per_s > 0 && bw > 0) {
    bw = std::min(bw, static_cast<double>(m_.cfg.bandwidth_limit_bytes_per_s));
  }
  const double remaining = static_cast<double>(m_.dirty_bytes());
  is.expected_downtime_s = remaining == 0 ? 0 : bw > 0 ? remaining / bw : INFINITY;
}

// MigrationStats::converged_by, or nullptr to go on iterating.
const char* SourceSession::convergence(uint32_t iteration, const IterationStats& is) const {
  const double limit_s = std::chrono::duration<double>(m_.cfg.downtime_limit).count();
  if (is.remaining_dirty_pages == 0) return "nothing-dirty";
  if (is.expected_downtime_s <= limit_s) return "downtime-limit";
  if (iteration >= m_.cfg.max_iterations) return "max-iterations";
  return nullptr;
}

// The guest dirtied more than half of what we managed to send: slow it down more.
void SourceSession::throttle_if_falling_behind(uint32_t iteration, IterationStats& is) {
  if (!m_.cfg.auto_converge || !m_.hooks.throttle || iteration < 1 ||
      is.remaining_dirty_pages * 2 <= is.pages.total()) {
    return;
  }
  throttle_ = throttle_ == 0 ? 20 : std::min<uint32_t>(99, throttle_ + 10);
  is.throttle_percent = throttle_;
  m_.hooks.throttle(throttle_);
}

void SourceSession::report(const IterationStats& is) {
  st_.iterations.push_back(is);
  if (m_.hooks.on_iteration) m_.hooks.on_iteration(st_.iterations.back());
}

// From the guest's stop on, every millisecond is downtime: the last dirty pages, then the
// senders are joined and channel 0 is the control link again.
void SourceSession::switchover(uint32_t last_iteration) {
  m_.check_stop();
  stop_guest();
  m_.sync_dirty();
  IterationStats is;
  is.dirty_pages = m_.dirty_pages();
  run_pass(last_iteration + 1, true, is);
  report(is);
  for (auto& s : m_.senders) s->join();
  m_.check_stop();
  take_back_control_channel();
}

void SourceSession::stop_guest() {
  if (m_.hooks.stop_guest) m_.hooks.stop_guest();
  guest_stopped_ = true;
  t_stop_ = Clock::now();
  // A stopped guest needs no throttle; lifting it now leaves none for a resume after a failure.
  if (throttle_ > 0) {
    throttle_ = 0;
    if (m_.hooks.throttle) m_.hooks.throttle(0);
  }
}

void SourceSession::take_back_control_channel() {
  for (auto& c : channels_) c->set_send_callback(nullptr);
  link_.send_packet = m_.senders[0]->next_packet();
  link_.recv_packet = m_.senders[0]->next_recv_packet();  // after SYNC_ACKs (placement)
  sent_ = m_.sum_counters();
  st_.placed_pages = sent_.placed_pages;
  if (digests_) {
    sent_digests_.assign(m_.blocks.size(), 0);
    for (auto& s : m_.senders) add_sums(sent_digests_, s->digest_sums());
  }
}

// One pass over the dirty bitmaps: every set bit goes, as a page index, to the sender that
// owns it; then SYNC(iteration) on every channel and wait until each has sent it.
void SourceSession::run_pass(uint32_t iteration, bool final_pass, IterationStats& is) {
  const auto start = Clock::now();
  const SenderCounters before = m_.sum_counters();
  publish_pass_start(iteration, final_pass, is.dirty_pages, start);
  taken_.resize(m_.cfg.batch_pages);
  staging_.assign(m_.senders.size(), nullptr);
  for (uint32_t b = 0; b < m_.blocks.size(); ++b) {
    hand_out_block(b, iteration, final_pass);
    m_.check_stop();
  }
  sync_senders(iteration, final_pass);
  const SenderCounters after = m_.sum_counters();
  is.iteration = iteration;
  is.final_pass = final_pass;
  is.pages = counts_since(after.pages, before.pages);
  is.wire_bytes = after.wire_bytes - before.wire_bytes;
  is.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  is.throughput_bytes_per_s = is.seconds > 0 ? static_cast<double>(is.wire_bytes) / is.seconds : 0;
}

void SourceSession::publish_pass_start(uint32_t iteration, bool final_pass, uint64_t dirty_pages,
                                       Clock::time_point start) {
  m_.p_iteration.store(iteration);
  m_.p_final.store(final_pass);
  m_.p_pages_sent.store(0);
  m_.p_pages_dirty.store(dirty_pages);
  m_.p_iter_start_ns.store(start.time_since_epoch().count());
  m_.p_iter_start_wire.store(m_.p_wire.load());
}

// Takes the block's dirty pages in batches; each page joins its owner's batch, published when
// full and, for the rest, at the end of the block (a batch never spans blocks).
void SourceSession::hand_out_block(uint32_t block, uint32_t iteration, bool final_pass) {
  const size_t batch = m_.cfg.batch_pages;
  const uint32_t n = static_cast<uint32_t>(m_.senders.size());
  const uint32_t rotate = m_.cfg.rotate_partition_for_testing ? iteration : 0;
  size_t cursor = 0;
  size_t got = batch;
  while (got == batch) {
    got = m_.bitmaps[block].take_batch(cursor, taken_.data(), batch);
    for (size_t i = 0; i < got; ++i) {
      const uint32_t page = taken_[i];
      // Fixed owner per page (and per iteration when rotating for tests).
      const uint32_t s = static_cast<uint32_t>((page / batch + rotate) % n);
      WorkItem* item = staging_[s] ? staging_[s] : start_batch(s, block, iteration, final_pass);
      item->pages[item->count++] = page;
      if (item->count == batch) {
        m_.senders[s]->publish();
        staging_[s] = nullptr;
      }
    }
  }
  for (uint32_t s = 0; s < n; ++s) {
    if (staging_[s]) m_.senders[s]->publish();
    staging_[s] = nullptr;
  }
}

WorkItem* SourceSession::start_batch(uint32_t sender, uint32_t block, uint32_t iteration,
                                     bool final_pass) {
  WorkItem* item = m_.senders[sender]->acquire();
  if (!item) m_.throw_stopped();
  item->kind = WorkItem::Kind::kBatch;
  item->block = block;
  item->count = 0;
  item->iteration = iteration;
  item->final_pass = final_pass;
  staging_[sender] = item;
  return item;
}

void SourceSession::sync_senders(uint32_t iteration, bool final_pass) {
  for (auto& s : m_.senders) {
    WorkItem* item = s->acquire();
    if (!item) m_.throw_stopped();
    item->kind = WorkItem::Kind::kSync;
    item->iteration = iteration;
    item->final_pass = final_pass;
    item->count = 0;
    s->publish();
  }
  for (auto& s : m_.senders) {
    if (!s->wait_synced(iteration)) m_.throw_stopped();
  }
}

}  // namespace ferry::ram
