#include "engine/ram/source_state.h"

#include "engine/ram/page_counts.h"

namespace ferry::ram {

void SourceState::fail(const std::string& msg, bool link_failure) noexcept {
  {
    std::lock_guard lock(mu);
    if (error.empty()) {
      error = msg;
      link_broke = link_failure;
    }
    stop.store(true);
    for (auto* ch : live) ch->abort();
    for (auto& s : senders) s->wake();
  }
  std::lock_guard lock(stop_mu);
  stop_cv.notify_all();
}

void SourceState::throw_stopped() {
  std::lock_guard lock(mu);
  throw MigrationError(error.empty() ? "stopped" : error);
}

void SourceState::check_stop() {
  if (stop.load()) throw_stopped();
}

void SourceState::sync_dirty() {
  for (size_t i = 0; i < blocks.size(); ++i) dirty[i]->sync(bitmaps[i]);
}

uint64_t SourceState::dirty_pages() const {
  uint64_t n = 0;
  for (const auto& b : bitmaps) n += b.count();
  return n;
}

uint64_t SourceState::dirty_bytes() const {
  uint64_t n = 0;
  for (size_t i = 0; i < blocks.size(); ++i) n += bitmaps[i].count() * blocks[i].page_size;
  return n;
}

SenderCounters SourceState::sum_counters() const {
  SenderCounters c;
  for (const auto& s : senders) {
    const auto x = s->counters();
    add_counts(c.pages, x.pages);
    c.wire_bytes += x.wire_bytes;
    c.xbzrle_hits += x.xbzrle_hits;
    c.xbzrle_misses += x.xbzrle_misses;
    c.xbzrle_overflows += x.xbzrle_overflows;
    c.xbzrle_bytes += x.xbzrle_bytes;
    c.placed_pages += x.placed_pages;
    c.zero_unread += x.zero_unread;
  }
  return c;
}

}  // namespace ferry::ram
