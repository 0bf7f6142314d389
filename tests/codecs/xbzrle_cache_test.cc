// The XBZRLE page cache follows QEMU's page_cache.c: power-of-two direct-mapped slots and
// "a fresh page is not evicted" (age + 2 > generation).
#include <gtest/gtest.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "codecs/xbzrle_cache.h"

namespace ferry::xbzrle {
namespace {

constexpr size_t kPage = 4096;

std::vector<uint8_t> page_of(uint8_t v) { return std::vector<uint8_t>(kPage, v); }

TEST(XbzrleCache, EntriesRoundDownToPowerOfTwo) {
  EXPECT_EQ(PageCache(kPage, kPage).entries(), 1u);
  EXPECT_EQ(PageCache(3 * kPage, kPage).entries(), 2u);
  EXPECT_EQ(PageCache(7 * kPage + 100, kPage).entries(), 4u);
  EXPECT_EQ(PageCache(8 * kPage, kPage).entries(), 8u);
  PageCache c(1000 * kPage, kPage);
  EXPECT_EQ(c.entries(), 512u);
  EXPECT_EQ(c.page_size(), kPage);
  EXPECT_GE(c.memory_bytes(), 512 * kPage);
  EXPECT_LE(c.memory_bytes(), 512 * (kPage + 32));  // plus a few words per slot
  EXPECT_EQ(PageCache(64 * 512, 512).entries(), 64u);
}

TEST(XbzrleCache, BadBudgetsAreRejected) {
  EXPECT_THROW(PageCache(0, kPage), std::invalid_argument);
  EXPECT_THROW(PageCache(kPage - 1, kPage), std::invalid_argument);
  EXPECT_THROW(PageCache(16 * kPage, 0), std::invalid_argument);
  EXPECT_THROW(PageCache(16 * kPage, 3000), std::invalid_argument);
  try {
    PageCache c(100, kPage);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("100"), std::string::npos) << e.what();
  }
}

TEST(XbzrleCache, HitsAndMissesAreCounted) {
  PageCache c(4 * kPage, kPage);
  auto p = page_of(1);
  EXPECT_EQ(c.lookup(0, 0), nullptr);
  EXPECT_TRUE(c.insert(0, p.data(), 0));
  const uint8_t* got = c.lookup(0, 1);
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(std::memcmp(got, p.data(), kPage), 0);
  EXPECT_EQ(c.lookup(kPage, 1), nullptr);      // other slot, empty
  EXPECT_EQ(c.lookup(4 * kPage, 1), nullptr);  // same slot as 0, other page
  EXPECT_EQ(c.counters().hits, 1u);
  EXPECT_EQ(c.counters().misses, 3u);
  EXPECT_EQ(c.slot_data(4 * kPage), nullptr);
  EXPECT_NE(c.slot_data(0), nullptr);
  EXPECT_EQ(c.counters().hits + c.counters().misses, 4u) << "slot_data() counts nothing";
}

TEST(XbzrleCache, FreshPagesAreNotEvictedByConflicts) {
  PageCache c(4 * kPage, kPage);  // addresses 0 and 4*kPage share slot 0
  auto a = page_of(0xA), b = page_of(0xB);
  ASSERT_TRUE(c.insert(0, a.data(), 10));
  // age 10 + 2 > 11: still fresh, refused; the old page stays.
  EXPECT_FALSE(c.insert(4 * kPage, b.data(), 11));
  EXPECT_EQ(c.counters().insert_refused, 1u);
  EXPECT_EQ(c.counters().evictions, 0u);
  ASSERT_NE(c.lookup(0, 11), nullptr);  // a hit refreshes the age to 11
  EXPECT_FALSE(c.insert(4 * kPage, b.data(), 12));
  EXPECT_EQ(c.counters().insert_refused, 2u);
  // 11 + 2 > 13 is false: aged out, replaced, counted as an eviction.
  EXPECT_TRUE(c.insert(4 * kPage, b.data(), 13));
  EXPECT_EQ(c.counters().evictions, 1u);
  EXPECT_EQ(c.slot_data(0), nullptr);
  const uint8_t* got = c.lookup(4 * kPage, 13);
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got[0], 0xB);
}

TEST(XbzrleCache, SamePageIsAlwaysReplacedAndEmptySlotsTaken) {
  PageCache c(2 * kPage, kPage);
  auto a = page_of(1), b = page_of(2);
  EXPECT_TRUE(c.insert(kPage, a.data(), 5));
  EXPECT_TRUE(c.insert(kPage, b.data(), 5));  // same address: an update, not a conflict
  EXPECT_EQ(c.counters().evictions, 0u);
  EXPECT_EQ(c.counters().insert_refused, 0u);
  EXPECT_EQ(c.lookup(kPage, 5)[100], 2);
  EXPECT_TRUE(c.insert(0, a.data(), 5));  // empty slot: never refused
}

TEST(XbzrleCache, DataIntegrityAcrossManyPages) {
  PageCache c(64 * kPage, kPage);
  std::vector<uint8_t> p(kPage);
  for (uint64_t n = 0; n < 64; ++n) {
    for (size_t i = 0; i < kPage; ++i) p[i] = static_cast<uint8_t>(n * 31 + i);
    ASSERT_TRUE(c.insert(n * kPage, p.data(), 0));
  }
  for (uint64_t n = 0; n < 64; ++n) {
    const uint8_t* got = c.lookup(n * kPage, 1);
    ASSERT_NE(got, nullptr) << n;
    for (size_t i = 0; i < kPage; ++i) {
      ASSERT_EQ(got[i], static_cast<uint8_t>(n * 31 + i)) << "page " << n << " byte " << i;
    }
  }
  // Updating in place through slot_data(), then re-inserting from that same storage.
  uint8_t* slot = c.slot_data(5 * kPage);
  ASSERT_NE(slot, nullptr);
  slot[7] = 0xFF;
  EXPECT_TRUE(c.insert(5 * kPage, slot, 2));
  EXPECT_EQ(c.lookup(5 * kPage, 2)[7], 0xFF);
  EXPECT_EQ(c.lookup(6 * kPage, 2)[7], static_cast<uint8_t>(6 * 31 + 7));
}

TEST(XbzrleCache, MoveKeepsContents) {
  PageCache a(2 * kPage, kPage);
  auto p = page_of(9);
  ASSERT_TRUE(a.insert(kPage, p.data(), 0));
  PageCache b(std::move(a));
  EXPECT_EQ(b.entries(), 2u);
  ASSERT_NE(b.lookup(kPage, 0), nullptr);
  PageCache c(kPage, kPage);
  c = std::move(b);
  EXPECT_EQ(c.entries(), 2u);
  EXPECT_EQ(c.lookup(kPage, 0)[0], 9);
  EXPECT_EQ(c.counters().hits, 2u);
}

}  // namespace
}  // namespace ferry::xbzrle
