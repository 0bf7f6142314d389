// The sender's copy of what the destination last received for recently sent pages, so XBZRLE
// has an "old page" to diff against. Same policy as QEMU's migration/page_cache.c: direct mapped
// by page address, a fixed number of slots, and a page that was touched in the last
// kCachedPageLifetime generations (dirty-sync rounds) is not evicted by a conflicting page.
//
// All page storage is one allocation made by the constructor: inserting never allocates.
// Not thread-safe: use one cache per sender thread (pages are partitioned by address), or lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace ferry::xbzrle {

class PageCache {
 public:
  // A page used within this many generations stays, even against a conflicting insert: a page
  // that changes every round is exactly the one XBZRLE pays off for.
  static constexpr uint64_t kCachedPageLifetime = 2;

  struct Counters {
    uint64_t hits = 0;
    uint64_t misses = 0;
    uint64_t evictions = 0;       // a different valid page was replaced
    uint64_t insert_refused = 0;  // the slot's page was still fresh
  };

  // budget_bytes counts page storage only (like QEMU's xbzrle-cache-size); entries =
  // budget_bytes / page_size rounded down to a power of two. Throws std::invalid_argument if
  // page_size is 0 or not a power of two, or the budget holds no page.
  PageCache(size_t budget_bytes, size_t page_size);

  PageCache(PageCache&& other) noexcept;
  PageCache& operator=(PageCache&& other) noexcept;
  PageCache(const PageCache&) = delete;
  PageCache& operator=(const PageCache&) = delete;
  ~PageCache();

  // The cached copy of the page at `addr`, or nullptr. Counts a hit or a miss; a hit refreshes
  // the page's age to `generation`.
  const uint8_t* lookup(uint64_t addr, uint64_t generation);

  // Writable cached copy of `addr` (nullptr if not cached), to bring it up to date after
  // encoding a delta against it. Counts nothing and does not change the age.
  uint8_t* slot_data(uint64_t addr);

  // Stores a copy of page_size bytes at `page` for `addr`. Returns false, and counts it, when
  // the slot holds another page that is still fresh (age + kCachedPageLifetime > generation).
  // `page` may be the slot's own storage (from slot_data()).
  bool insert(uint64_t addr, const uint8_t* page, uint64_t generation);

  const Counters& counters() const { return counters_; }
  size_t entries() const { return entries_; }
  size_t page_size() const { return page_size_; }
  size_t memory_bytes() const;  // page storage plus per-slot bookkeeping

 private:
  struct Slot {
    uint64_t addr = 0;
    uint64_t age = 0;
    bool valid = false;
  };

  size_t index(uint64_t addr) const { return (addr / page_size_) & (entries_ - 1); }
  uint8_t* data(size_t i) const { return pages_.get() + i * page_size_; }

  size_t page_size_ = 0;
  size_t entries_ = 0;
  std::unique_ptr<uint8_t[]> pages_;
  std::unique_ptr<Slot[]> slots_;
  Counters counters_;
};

}  // namespace ferry::xbzrle
