#include "ferry/dirty_bitmap.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <stdexcept>
#include <string>

namespace ferry {
namespace {

constexpr uint64_t kAllOnes = ~uint64_t{0};

// Without -mpopcnt GCC turns std::popcount into a libgcc call; the instruction is ~10x faster
// and present on every x86-64 CPU since 2008, so pick it at run time instead of raising the ISA
// baseline for the whole project.
#if defined(__x86_64__)
[[gnu::target("popcnt")]] size_t popcount_words_hw(uint64_t* w, size_t n) {
  size_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    total += static_cast<size_t>(
        std::popcount(std::atomic_ref<uint64_t>(w[i]).load(std::memory_order_relaxed)));
  }
  return total;
}
#endif

size_t popcount_words_generic(uint64_t* w, size_t n) {
  size_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    total += static_cast<size_t>(
        std::popcount(std::atomic_ref<uint64_t>(w[i]).load(std::memory_order_relaxed)));
  }
  return total;
}

// The lowest `k` set bits of v (all of v when it has no more than k).
uint64_t lowest_set_bits(uint64_t v, size_t k) {
  uint64_t rest = v;
  for (size_t i = 0; i < k && rest != 0; ++i) rest &= rest - 1;
  return v & ~rest;
}

}  // namespace

DirtyBitmap::DirtyBitmap(size_t pages) : pages_(pages), nwords_(words_for(pages)) {
  if (pages > kMaxPages) {
    throw std::length_error("dirty bitmap: " + std::to_string(pages) + " pages exceeds the " +
                            std::to_string(kMaxPages) + " a uint32_t page index can name");
  }
  words_.reset(new uint64_t[nwords_]());
}

uint64_t DirtyBitmap::tail_mask() const {
  const size_t used = pages_ % 64;
  return used == 0 ? kAllOnes : (uint64_t{1} << used) - 1;
}

// Called on sparse bitmaps for almost every word, so OR four words per branch.
size_t DirtyBitmap::next_nonzero_word(size_t w) const {
  while (w + 4 <= nwords_) {
    if ((load(w) | load(w + 1) | load(w + 2) | load(w + 3)) != 0) break;
    w += 4;
  }
  while (w < nwords_ && load(w) == 0) ++w;
  return w;
}

void DirtyBitmap::set_range(size_t first, size_t count) {
  if (count == 0) return;
  assert(first < pages_ && count <= pages_ - first);
  const size_t last = first + count - 1;  // inclusive
  const size_t w0 = first / 64;
  const size_t w1 = last / 64;
  const uint64_t head = kAllOnes << (first % 64);
  const uint64_t tail = kAllOnes >> (63 - last % 64);
  if (w0 == w1) {
    word(w0).fetch_or(head & tail, std::memory_order_release);
    return;
  }
  word(w0).fetch_or(head, std::memory_order_release);
  // A store of all ones ends in the same state as fetch_or whichever way it races with a take.
  for (size_t w = w0 + 1; w < w1; ++w) word(w).store(kAllOnes, std::memory_order_release);
  word(w1).fetch_or(tail, std::memory_order_release);
}

size_t DirtyBitmap::count() const {
#if defined(__x86_64__)
  static const bool has_popcnt = __builtin_cpu_supports("popcnt");
  if (has_popcnt) return popcount_words_hw(words_.get(), nwords_);
#endif
  return popcount_words_generic(words_.get(), nwords_);
}

size_t DirtyBitmap::find_next_set(size_t from) const {
  if (from >= pages_) return npos;
  size_t w = from / 64;
  uint64_t v = load(w) & (kAllOnes << (from % 64));
  while (v == 0) {
    w = next_nonzero_word(w + 1);
    if (w >= nwords_) return npos;
    v = load(w);  // may have been taken since next_nonzero_word looked: then keep going
  }
  return w * 64 + static_cast<size_t>(std::countr_zero(v));
}

size_t DirtyBitmap::take_batch(size_t& cursor, uint32_t* out_pages, size_t max) {
  if (cursor >= pages_) {
    cursor = pages_;
    return 0;
  }
  if (max == 0) return 0;
  size_t n = 0;
  size_t w = cursor / 64;
  uint64_t v = load(w) & (kAllOnes << (cursor % 64));
  for (;;) {
    if (v == 0) {
      w = next_nonzero_word(w + 1);
      if (w >= nwords_) break;
      v = load(w);
      continue;
    }
    const size_t room = max - n;
    const uint64_t want = room < 64 ? lowest_set_bits(v, room) : v;
    // Only the bits we asked for are cleared; old & want is what we actually own (another
    // taker may have cleared some of them since the load).
    uint64_t got = word(w).fetch_and(~want, std::memory_order_acquire) & want;
    const size_t base = w * 64;
    if (got == kAllOnes) {
      // Fully dirty words are the common case of a bulk pass; this loop vectorises.
      const auto b = static_cast<uint32_t>(base);
      for (uint32_t i = 0; i < 64; ++i) out_pages[n + i] = b + i;
      n += 64;
      got = 0;
    }
    while (got != 0) {
      out_pages[n++] = static_cast<uint32_t>(base + static_cast<size_t>(std::countr_zero(got)));
      got &= got - 1;
    }
    if (want != v) {
      // v has bits above `want`, so `next` stays inside this word.
      const size_t next = base + 64 - static_cast<size_t>(std::countl_zero(want));
      if (n == max) {
        cursor = next;  // batch full inside this word
        return n;
      }
      // Another taker won some of `want`: go on filling from just after it.
      v = load(w) & (kAllOnes << (next % 64));
      continue;
    }
    if (n == max) {
      cursor = std::min(base + 64, pages_);
      return n;
    }
    if (++w >= nwords_) break;
    v = load(w);
  }
  cursor = pages_;
  return n;
}

void DirtyBitmap::merge_from(const uint64_t* src, size_t nwords) {
  if (nwords > nwords_) {
    throw std::invalid_argument("dirty bitmap: merging " + std::to_string(nwords) +
                                " words into a bitmap of " + std::to_string(nwords_));
  }
  for (size_t w = 0; w < nwords; ++w) {
    uint64_t v = src[w];
    if (w == nwords_ - 1) v &= tail_mask();
    // Skipping the RMW when every bit is already set keeps re-merging a hot set cheap.
    if (v != 0 && (load(w) & v) != v) word(w).fetch_or(v, std::memory_order_release);
  }
}

void DirtyBitmap::move_into(DirtyBitmap& into) {
  if (into.pages_ != pages_) {
    throw std::invalid_argument("dirty bitmap: moving " + std::to_string(pages_) +
                                " pages into a bitmap of " + std::to_string(into.pages_));
  }
  for (size_t w = 0; w < nwords_; ++w) {
    if (load(w) == 0) continue;
    const uint64_t v = word(w).exchange(0, std::memory_order_acquire);
    if (v != 0) into.word(w).fetch_or(v, std::memory_order_release);
  }
}

void DirtyBitmap::set_all() {
  for (size_t w = 0; w < nwords_; ++w) {
    word(w).store(w == nwords_ - 1 ? tail_mask() : kAllOnes, std::memory_order_release);
  }
}

void DirtyBitmap::clear_all() {
  for (size_t w = 0; w < nwords_; ++w) word(w).store(0, std::memory_order_relaxed);
}

void DirtyBitmap::assign_words(const uint64_t* src, size_t nwords) {
  if (nwords > nwords_) {
    throw std::invalid_argument("dirty bitmap: assigning " + std::to_string(nwords) +
                                " words to a bitmap of " + std::to_string(nwords_));
  }
  if (nwords != 0) std::memcpy(words_.get(), src, nwords * sizeof(uint64_t));
  if (nwords < nwords_) std::memset(words_.get() + nwords, 0, (nwords_ - nwords) * sizeof(uint64_t));
  if (nwords_ != 0) words_[nwords_ - 1] &= tail_mask();
}

void DirtyBitmap::copy_words(uint64_t* out) const {
  if (nwords_ != 0) std::memcpy(out, words_.get(), nwords_ * sizeof(uint64_t));
}

}  // namespace ferry
