// Verification without a pass over memory once the guest has stopped.
//
// Each page contributes a term that depends on its index and its content:
//   term(i, page) = 0                                  for an all-zero page
//                 = mix64(XXH3_64bits(page) ^ key(i))   otherwise
// and a block's digest is the sum of its pages' terms mod 2^64. Both sides keep that sum up to
// date as pages are sent and as they land: when a page goes again, its old term is replaced, so
// after the final pass the source's digest covers exactly the bytes it sent last for each page
// and the destination's the bytes it placed. Completion compares one u64 per block. Zero pages
// cost nothing (term 0, no hashing); the terms cost 8 bytes per page on each side (0.2 % of
// 4 KiB-paged RAM, allocated lazily: untouched terms stay unbacked).
//
// Not cryptographic: it catches a page lost, corrupted, or placed at the wrong index by a
// transport or codec bug. A page the dirty tracking failed to report is NOT caught (the source
// never hashed its newer bytes); MigrationConfig::verify_full re-hashes both sides' memory
// after the final pass for that, at a blackout cost of one pass over RAM.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "ferry/migration.h"

namespace ferry::ram {

// The term of one page of `page_size` bytes at index `page`.
uint64_t page_term(const uint8_t* data, size_t page_size, uint64_t page);

// Sum of page_term over every page of [mem, mem + size): the full re-hash (verify_full, and
// readers of stream files who check the recorded digests). size is a multiple of page_size.
uint64_t full_digest(const uint8_t* mem, size_t size, size_t page_size);

// The current term of every page of one block. A page is only ever updated by one thread at a
// time (its owning sender or receiver; the SYNC barrier orders iterations), so no locks.
class PageTerms {
 public:
  PageTerms(uint64_t pages, size_t page_size);
  ~PageTerms();
  PageTerms(PageTerms&& o) noexcept;
  PageTerms(const PageTerms&) = delete;
  PageTerms& operator=(const PageTerms&) = delete;
  PageTerms& operator=(PageTerms&&) = delete;

  // Hashes the page's bytes as its new term; returns new - old, for the caller's running sum.
  uint64_t update(uint32_t page, const uint8_t* data);
  // Pages [first, first + count) became zero: their terms become 0. Returns new - old.
  uint64_t clear(uint32_t first, uint32_t count);

 private:
  uint64_t* terms_ = nullptr;  // mmap'd: never-written terms are zero without being backed
  uint64_t pages_ = 0;
  size_t page_size_ = 0;
  uint64_t zero_hash_ = 0;  // XXH3 of an all-zero page: such a page's term is 0
};

// Every block's terms, shared by the threads of one side of one session.
class DigestTable {
 public:
  explicit DigestTable(const std::vector<RamBlock>& blocks);
  PageTerms& block(uint32_t b) { return blocks_[b]; }

 private:
  std::vector<PageTerms> blocks_;
};

// One thread's running sums (per block) of the deltas it applied; a side's digests are the sum
// over its threads, taken after they joined.
using DigestSums = std::vector<uint64_t>;
void add_sums(DigestSums& into, const DigestSums& from);

// full_digest of each block's memory now, in list order (verify_full).
std::vector<uint64_t> full_block_digests(const std::vector<RamBlock>& blocks);

}  // namespace ferry::ram
