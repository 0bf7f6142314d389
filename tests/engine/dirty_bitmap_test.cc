#include "ferry/dirty_bitmap.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <numeric>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

namespace ferry {
namespace {

// Sizes around word boundaries plus random ones; 0 and 1 included on purpose.
std::vector<size_t> interesting_sizes(std::mt19937_64& rng) {
  std::vector<size_t> sizes = {0, 1, 2, 63, 64, 65, 127, 128, 129, 255, 256, 257, 1000, 4096};
  for (int i = 0; i < 40; ++i) sizes.push_back(rng() % 5000);
  return sizes;
}

// A bitmap and its naive model, filled at a random density through set() and set_range().
struct Filled {
  DirtyBitmap bm;
  std::vector<bool> model;
};

Filled random_filled(size_t n, std::mt19937_64& rng) {
  Filled f{DirtyBitmap(n), std::vector<bool>(n, false)};
  if (n == 0) return f;
  const double densities[] = {0.0, 0.001, 0.05, 0.3, 0.9, 1.0};
  const double density = densities[rng() % std::size(densities)];
  std::bernoulli_distribution coin(density);
  for (size_t p = 0; p < n; ++p) {
    if (coin(rng)) {
      f.bm.set(p);
      f.model[p] = true;
    }
  }
  if (rng() % 2) {
    const size_t first = rng() % n;
    const size_t count = rng() % (n - first + 1);
    f.bm.set_range(first, count);
    for (size_t p = first; p < first + count; ++p) f.model[p] = true;
  }
  return f;
}

size_t model_count(const std::vector<bool>& m) { return static_cast<size_t>(std::count(m.begin(), m.end(), true)); }

size_t model_next(const std::vector<bool>& m, size_t from) {
  for (size_t p = from; p < m.size(); ++p) {
    if (m[p]) return p;
  }
  return DirtyBitmap::npos;
}

void expect_matches(const DirtyBitmap& bm, const std::vector<bool>& model) {
  ASSERT_EQ(bm.size(), model.size());
  EXPECT_EQ(bm.count(), model_count(model));
  for (size_t p = 0; p < model.size(); ++p) ASSERT_EQ(bm.test(p), model[p]) << "page " << p;
  // Nothing past size() in the last word.
  std::vector<uint64_t> words(bm.words());
  bm.copy_words(words.data());
  if (bm.size() % 64 != 0) {
    EXPECT_EQ(words.back() >> (bm.size() % 64), 0u);
  }
}

TEST(DirtyBitmap, EmptyAndTinyBitmaps) {
  DirtyBitmap empty(0);
  EXPECT_EQ(empty.words(), 0u);
  EXPECT_EQ(empty.count(), 0u);
  EXPECT_EQ(empty.find_next_set(0), DirtyBitmap::npos);
  empty.set_all();
  EXPECT_EQ(empty.count(), 0u);
  size_t cursor = 0;
  uint32_t out[4];
  EXPECT_EQ(empty.take_batch(cursor, out, 4), 0u);
  EXPECT_EQ(cursor, 0u);

  DirtyBitmap one(1);
  EXPECT_EQ(one.words(), 1u);
  one.set_all();
  EXPECT_EQ(one.count(), 1u);
  EXPECT_EQ(one.find_next_set(0), 0u);
  EXPECT_EQ(one.find_next_set(1), DirtyBitmap::npos);
  EXPECT_EQ(one.take_batch(cursor, out, 4), 1u);
  EXPECT_EQ(out[0], 0u);
  EXPECT_EQ(cursor, 1u);
  EXPECT_EQ(one.count(), 0u);
}

TEST(DirtyBitmap, RejectsMorePagesThanAUint32CanName) {
  EXPECT_THROW(DirtyBitmap(DirtyBitmap::kMaxPages + 1), std::length_error);
}

TEST(DirtyBitmap, CountTestAndFindNextMatchModel) {
  std::mt19937_64 rng(1);
  for (size_t n : interesting_sizes(rng)) {
    SCOPED_TRACE(n);
    Filled f = random_filled(n, rng);
    expect_matches(f.bm, f.model);
    for (size_t from = 0; from <= n + 1; ++from) {
      ASSERT_EQ(f.bm.find_next_set(from), model_next(f.model, from)) << "from " << from;
    }
    EXPECT_EQ(f.bm.find_next_set(DirtyBitmap::npos), DirtyBitmap::npos);
  }
}

TEST(DirtyBitmap, TakeBatchDrainsExactlyTheSetBitsInOrder) {
  std::mt19937_64 rng(2);
  for (int round = 0; round < 3; ++round) {
    for (size_t n : interesting_sizes(rng)) {
      SCOPED_TRACE(n);
      Filled f = random_filled(n, rng);
      std::vector<uint32_t> expected;
      for (size_t p = 0; p < n; ++p) {
        if (f.model[p]) expected.push_back(static_cast<uint32_t>(p));
      }
      std::vector<uint32_t> taken;
      std::vector<uint32_t> out(300);
      size_t cursor = 0;
      for (;;) {
        const size_t max = 1 + rng() % 200;
        const size_t before = cursor;
        const size_t got = f.bm.take_batch(cursor, out.data(), max);
        ASSERT_LE(got, max);
        ASSERT_GE(cursor, before);
        ASSERT_LE(cursor, n);
        for (size_t i = 0; i < got; ++i) {
          ASSERT_GE(out[i], before);
          ASSERT_LT(out[i], cursor) << "cursor must move past every page it returned";
        }
        taken.insert(taken.end(), out.begin(), out.begin() + static_cast<long>(got));
        if (got < max) {
          ASSERT_EQ(cursor, n) << "a short batch means the end was reached";
          break;
        }
      }
      EXPECT_EQ(taken, expected);
      EXPECT_EQ(f.bm.count(), 0u);
      EXPECT_EQ(f.bm.take_batch(cursor, out.data(), 10), 0u);
    }
  }
}

TEST(DirtyBitmap, TakeBatchFromMidCursorLeavesEarlierPages) {
  std::mt19937_64 rng(3);
  for (size_t n : interesting_sizes(rng)) {
    if (n == 0) continue;
    SCOPED_TRACE(n);
    Filled f = random_filled(n, rng);
    const size_t start = rng() % (n + 1);
    size_t cursor = start;
    std::vector<uint32_t> out(64);
    std::vector<bool> after = f.model;
    for (;;) {
      const size_t got = f.bm.take_batch(cursor, out.data(), 1 + rng() % 64);
      for (size_t i = 0; i < got; ++i) {
        ASSERT_GE(out[i], start);
        ASSERT_TRUE(after[out[i]]);
        after[out[i]] = false;
      }
      if (cursor == n) break;
    }
    for (size_t p = start; p < n; ++p) ASSERT_FALSE(after[p]) << "page " << p << " not taken";
    expect_matches(f.bm, after);
  }
}

TEST(DirtyBitmap, TakeBatchWithZeroMaxTakesNothing) {
  DirtyBitmap bm(100);
  bm.set(5);
  size_t cursor = 0;
  uint32_t out[1];
  EXPECT_EQ(bm.take_batch(cursor, out, 0), 0u);
  EXPECT_EQ(cursor, 0u);
  EXPECT_TRUE(bm.test(5));
}

TEST(DirtyBitmap, TestAndClear) {
  DirtyBitmap bm(130);
  bm.set(129);
  bm.set(64);
  EXPECT_TRUE(bm.test_and_clear(129));
  EXPECT_FALSE(bm.test_and_clear(129));
  EXPECT_FALSE(bm.test(129));
  EXPECT_TRUE(bm.test(64));
  EXPECT_EQ(bm.count(), 1u);
}

TEST(DirtyBitmap, SetRangeMatchesModel) {
  std::mt19937_64 rng(4);
  for (size_t n : interesting_sizes(rng)) {
    if (n == 0) continue;
    SCOPED_TRACE(n);
    DirtyBitmap bm(n);
    std::vector<bool> model(n, false);
    for (int i = 0; i < 20; ++i) {
      const size_t first = rng() % n;
      const size_t count = rng() % std::min<size_t>(n - first + 1, 1 + rng() % 300);
      bm.set_range(first, count);
      for (size_t p = first; p < first + count; ++p) model[p] = true;
    }
    expect_matches(bm, model);
  }
}

TEST(DirtyBitmap, MergeFromOrsAndMasksBitsPastTheEnd) {
  std::mt19937_64 rng(5);
  for (size_t n : interesting_sizes(rng)) {
    SCOPED_TRACE(n);
    Filled f = random_filled(n, rng);
    const size_t nwords = DirtyBitmap::words_for(n);
    std::vector<uint64_t> log(nwords);
    for (auto& w : log) w = rng() & rng();  // includes garbage past n in the last word
    f.bm.merge_from(log.data(), nwords);
    for (size_t p = 0; p < n; ++p) {
      if (log[p / 64] >> (p % 64) & 1) f.model[p] = true;
    }
    expect_matches(f.bm, f.model);
  }
  DirtyBitmap bm(64);
  uint64_t too_many[2] = {1, 1};
  EXPECT_THROW(bm.merge_from(too_many, 2), std::invalid_argument);
  bm.merge_from(too_many, 0);
  EXPECT_EQ(bm.count(), 0u);
}

TEST(DirtyBitmap, SetAllClearAllMoveIntoAndWordCopies) {
  std::mt19937_64 rng(6);
  for (size_t n : interesting_sizes(rng)) {
    SCOPED_TRACE(n);
    DirtyBitmap bm(n);
    bm.set_all();
    expect_matches(bm, std::vector<bool>(n, true));
    bm.clear_all();
    expect_matches(bm, std::vector<bool>(n, false));

    Filled src = random_filled(n, rng);
    Filled dst = random_filled(n, rng);
    std::vector<bool> both(n);
    for (size_t p = 0; p < n; ++p) both[p] = src.model[p] || dst.model[p];
    src.bm.move_into(dst.bm);
    expect_matches(src.bm, std::vector<bool>(n, false));
    expect_matches(dst.bm, both);

    std::vector<uint64_t> words(dst.bm.words());
    dst.bm.copy_words(words.data());
    DirtyBitmap copy(n);
    copy.assign_words(words.data(), words.size());
    expect_matches(copy, both);
  }
  DirtyBitmap a(10), b(11);
  EXPECT_THROW(a.move_into(b), std::invalid_argument);
}

TEST(DirtyBitmap, MovedFromBitmapIsEmpty) {
  DirtyBitmap a(100);
  a.set(7);
  DirtyBitmap b(std::move(a));
  EXPECT_EQ(b.count(), 1u);
  EXPECT_EQ(a.size(), 0u);  // NOLINT(bugprone-use-after-move): that is the point
  EXPECT_EQ(a.count(), 0u);
}

// Setters each set their own share of the pages exactly once while takers drain in passes:
// every page must come out exactly once once the setters are done and a final drain ran.
void run_concurrent_set_and_take(int setters, int takers, size_t pages, int repeats_per_page) {
  DirtyBitmap bm(pages);
  std::vector<std::atomic<uint32_t>> taken(pages);
  std::vector<uint32_t> order(pages);
  std::iota(order.begin(), order.end(), 0u);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(7));

  std::atomic<int> setters_left{setters};
  std::atomic<int> early_short_batches{0};  // a short batch must mean the end, racing or not
  auto drain_pass = [&](std::mt19937_64& rng) {
    std::vector<uint32_t> out(256);
    size_t cursor = 0;
    for (;;) {
      const size_t max = 1 + rng() % 256;
      const size_t got = bm.take_batch(cursor, out.data(), max);
      for (size_t i = 0; i < got; ++i) taken[out[i]].fetch_add(1, std::memory_order_relaxed);
      if (got < max) {
        if (cursor != pages) early_short_batches.fetch_add(1);
        break;
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < takers; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      while (setters_left.load(std::memory_order_acquire) > 0) drain_pass(rng);
    });
  }
  for (int s = 0; s < setters; ++s) {
    threads.emplace_back([&, s] {
      for (int r = 0; r < repeats_per_page; ++r) {
        for (size_t i = static_cast<size_t>(s); i < pages; i += static_cast<size_t>(setters)) {
          bm.set(order[i]);
        }
      }
      setters_left.fetch_sub(1, std::memory_order_acq_rel);
    });
  }
  for (auto& t : threads) t.join();
  std::mt19937_64 rng(999);
  drain_pass(rng);
  EXPECT_EQ(bm.count(), 0u);
  EXPECT_EQ(early_short_batches.load(), 0);
  size_t never = 0, too_often = 0;
  for (size_t p = 0; p < pages; ++p) {
    const uint32_t k = taken[p].load();
    never += k == 0;
    too_often += k > static_cast<uint32_t>(repeats_per_page);
  }
  EXPECT_EQ(never, 0u) << "pages whose set() was lost";
  EXPECT_EQ(too_often, 0u) << "pages taken more often than they were set";
}

TEST(DirtyBitmapConcurrency, EachSetBitIsTakenExactlyOnce) {
  run_concurrent_set_and_take(/*setters=*/2, /*takers=*/1, /*pages=*/1 << 18, /*repeats=*/1);
}

TEST(DirtyBitmapConcurrency, TwoTakersNeverShareABit) {
  run_concurrent_set_and_take(/*setters=*/2, /*takers=*/2, /*pages=*/1 << 18, /*repeats=*/1);
}

TEST(DirtyBitmapConcurrency, RepeatedSetsAreTakenAtLeastOnceAndAtMostAsOften) {
  run_concurrent_set_and_take(/*setters=*/2, /*takers=*/1, /*pages=*/1 << 14, /*repeats=*/20);
}

}  // namespace
}  // namespace ferry
