// Dirty bitmap of one RAM block: 1 bit per page, scanned a 64-bit word at a time.
//
// Writers (dirty sources, trackers on any thread) set bits; the sender's scanner takes them in
// batches. Every bit operation is an atomic RMW on its word, so a set() racing with a take is
// never lost: either the take returns the page, or the bit stays set for the next pass. Several
// takers may run at once; each set bit is handed to exactly one of them.
//
// Memory: one allocation in the constructor, none afterwards. Bits at or past size() are never
// set (merge_from and set_all mask the last word), so scans need no bounds check per bit.
#pragma once

#include "ferry/export.h"
#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

namespace ferry {

class FERRY_API DirtyBitmap {
 public:
  static constexpr size_t npos = static_cast<size_t>(-1);
  // take_batch() hands out page indices as uint32_t: 2^32 pages is 16 TiB of 4 KiB pages.
  static constexpr size_t kMaxPages = size_t{1} << 32;

  // All bits clear. Throws std::length_error past kMaxPages.
  explicit DirtyBitmap(size_t pages);
  // A moved-from bitmap is empty (size() == 0), never dangling.
  DirtyBitmap(DirtyBitmap&& o) noexcept
      : pages_(std::exchange(o.pages_, 0)),
        nwords_(std::exchange(o.nwords_, 0)),
        words_(std::move(o.words_)) {}
  DirtyBitmap& operator=(DirtyBitmap&& o) noexcept {
    pages_ = std::exchange(o.pages_, 0);
    nwords_ = std::exchange(o.nwords_, 0);
    words_ = std::move(o.words_);
    return *this;
  }
  DirtyBitmap(const DirtyBitmap&) = delete;
  DirtyBitmap& operator=(const DirtyBitmap&) = delete;

  size_t size() const { return pages_; }  // pages
  size_t words() const { return nwords_; }
  static constexpr size_t words_for(size_t pages) { return (pages + 63) / 64; }

  // Release: a taker that acquires the bit also sees what the setter wrote before set()
  // (the page contents, for a writer that marks its own writes). Free on x86, needed on ARM.
  void set(size_t page) {
    assert(page < pages_);
    word(page / 64).fetch_or(bit(page), std::memory_order_release);
  }
  // [first, first + count) must lie inside the bitmap. One RMW per word touched.
  void set_range(size_t first, size_t count);

  bool test(size_t page) const {
    assert(page < pages_);
    return (word(page / 64).load(std::memory_order_relaxed) & bit(page)) != 0;
  }
  // True if this call cleared the bit (exactly one concurrent caller wins it).
  bool test_and_clear(size_t page) {
    assert(page < pages_);
    return (word(page / 64).fetch_and(~bit(page), std::memory_order_acquire) & bit(page)) != 0;
  }

  // Set bits right now; a snapshot while writers run.
  size_t count() const;
  // First set page >= from, or npos. Does not clear.
  size_t find_next_set(size_t from) const;

  // The scanner: takes up to `max` set bits at or after `cursor`, clears exactly those (one
  // atomic fetch_and per non-zero word, so bits set meanwhile survive), writes their page
  // indices in increasing order to out_pages, and moves `cursor` just past the last page it
  // looked at. Returns how many it wrote; fewer than `max` means it reached size() (cursor ==
  // size()). A pass is: cursor = 0; while (take_batch(cursor, out, n) == n) {...}.
  size_t take_batch(size_t& cursor, uint32_t* out_pages, size_t max);

  // ORs in a bitmap of the same layout (bit i of word w is page 64 * w + i), e.g. a hypervisor
  // dirty log. nwords <= words() (throws std::invalid_argument otherwise); bits past size() are
  // ignored. Zero words cost a load, not an RMW.
  void merge_from(const uint64_t* words, size_t nwords);
  // Moves every set bit into `into` (same size, else std::invalid_argument) and clears it here,
  // word by word with an atomic exchange: a concurrent set() lands in one of the two.
  void move_into(DirtyBitmap& into);

  void set_all();
  // Drops every bit; bits set concurrently may or may not survive.
  void clear_all();

  // Plain copies for snapshots and benchmarks: NOT atomic, so no other thread may use the
  // bitmap meanwhile. assign_words takes nwords <= words() (rest cleared, tail masked).
  void assign_words(const uint64_t* words, size_t nwords);
  void copy_words(uint64_t* out) const;  // words() words

 private:
  static uint64_t bit(size_t page) { return uint64_t{1} << (page % 64); }
  // atomic_ref over plain words (instead of std::atomic<uint64_t>[]) keeps assign_words() a
  // memcpy and lets the scanner load several words before deciding to touch one.
  std::atomic_ref<uint64_t> word(size_t w) const { return std::atomic_ref<uint64_t>(words_[w]); }
  uint64_t load(size_t w) const { return word(w).load(std::memory_order_relaxed); }
  uint64_t tail_mask() const;  // valid bits of the last word
  size_t next_nonzero_word(size_t w) const;

  size_t pages_ = 0;
  size_t nwords_ = 0;
  std::unique_ptr<uint64_t[]> words_;
};

}  // namespace ferry
