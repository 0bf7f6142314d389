#include "codecs/zero_page.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <vector>

namespace ferry {
namespace {

using zero_page::Variant;

class ZeroPageVariant : public ::testing::TestWithParam<Variant> {
 protected:
  void SetUp() override {
    if (!zero_page::available(GetParam())) {
      GTEST_SKIP() << "CPU lacks " << zero_page::name(GetParam());
    }
    fn_ = zero_page::function(GetParam());
  }
  zero_page::Fn fn_ = nullptr;
};

// A buffer whose last byte sits right before an unreadable guard page would be ideal; instead
// the page is embedded with poisoned neighbours that must not influence the result.
struct Framed {
  explicit Framed(size_t len, size_t align_offset)
      : storage(len + align_offset + 128, 0xFF), data(storage.data() + 64 + align_offset) {
    std::fill(data, data + len, 0);
  }
  std::vector<unsigned char> storage;
  unsigned char* data;
};

TEST_P(ZeroPageVariant, SingleNonZeroByteAtEveryOffsetOf4KiBPage) {
  Framed f(4096, 0);
  ASSERT_TRUE(fn_(f.data, 4096));
  for (size_t off = 0; off < 4096; ++off) {
    f.data[off] = static_cast<unsigned char>(1u << (off % 8));
    ASSERT_FALSE(fn_(f.data, 4096)) << "offset " << off;
    ASSERT_EQ(fn_(f.data, 4096), zero_page::scalar(f.data, 4096));
    f.data[off] = 0;
  }
  EXPECT_TRUE(fn_(f.data, 4096));
}

TEST_P(ZeroPageVariant, OddLengthsAndAlignmentsNeverLookOutsideTheBuffer) {
  // The framing bytes are 0xFF: any read past the end or before the start would flip the answer.
  for (size_t align = 0; align < 64; align += 7) {
    for (size_t len : {0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256,
                       257, 511, 1000, 4095, 4097, 8191}) {
      Framed f(len, align);
      ASSERT_TRUE(fn_(f.data, len)) << "len " << len << " align " << align;
      if (len == 0) continue;
      for (size_t off : {size_t{0}, len / 2, len - 1}) {
        f.data[off] = 0x80;
        ASSERT_FALSE(fn_(f.data, len)) << "len " << len << " align " << align << " off " << off;
        f.data[off] = 0;
      }
    }
  }
}

TEST_P(ZeroPageVariant, AgreesWithScalarOnRandomizedInputs) {
  std::mt19937_64 rng(42);
  std::vector<unsigned char> buf(3 * 4096 + 64);
  for (int round = 0; round < 20000; ++round) {
    size_t len = rng() % (2 * 4096 + 1);
    size_t start = rng() % 64;
    std::fill(buf.begin(), buf.end(), 0);
    int flips = static_cast<int>(rng() % 3);  // 0: all zero; otherwise a few set bytes
    for (int k = 0; k < flips && len > 0; ++k) {
      buf[start + rng() % len] = static_cast<unsigned char>(1 + rng() % 255);
    }
    ASSERT_EQ(fn_(buf.data() + start, len), zero_page::scalar(buf.data() + start, len))
        << "round " << round << " len " << len << " start " << start;
  }
}

INSTANTIATE_TEST_SUITE_P(AllVariants, ZeroPageVariant, ::testing::ValuesIn(zero_page::kAllVariants),
                         [](const auto& info) { return zero_page::name(info.param); });

TEST(ZeroPage, ScalarIsTheReferenceByteLoop) {
  std::vector<unsigned char> page(4096, 0);
  EXPECT_TRUE(zero_page::scalar(page.data(), page.size()));
  page[4095] = 1;
  EXPECT_FALSE(zero_page::scalar(page.data(), page.size()));
}

TEST(ZeroPage, DispatchPicksAnAvailableVariant) {
  EXPECT_TRUE(zero_page::available(zero_page::best()));
  std::vector<unsigned char> page(4096, 0);
  EXPECT_TRUE(is_zero_page(page.data(), page.size()));
  page[100] = 3;
  EXPECT_FALSE(is_zero_page(page.data(), page.size()));
}

TEST(ZeroPage, FindZeroPagesMarksExactlyTheZeroPages) {
  constexpr size_t kPage = 4096;
  for (size_t count : {1, 63, 64, 65, 130}) {
    std::vector<unsigned char> mem(count * kPage, 0);
    std::vector<bool> expect(count, true);
    std::mt19937 rng(static_cast<unsigned>(count));
    for (size_t i = 0; i < count; ++i) {
      if (rng() % 3 == 0) {
        mem[i * kPage + rng() % kPage] = 9;
        expect[i] = false;
      }
    }
    std::vector<uint64_t> bits((count + 63) / 64, ~0ULL);
    size_t zeros = find_zero_pages(mem.data(), kPage, count, bits.data());
    size_t expected_zeros = 0;
    for (size_t i = 0; i < count; ++i) {
      bool bit = (bits[i / 64] >> (i % 64)) & 1;
      EXPECT_EQ(bit, expect[i]) << "page " << i << " of " << count;
      expected_zeros += expect[i];
    }
    EXPECT_EQ(zeros, expected_zeros);
    if (count % 64 != 0) {
      EXPECT_EQ(bits.back() >> (count % 64), 0u) << "bits past count must be cleared";
    }
  }
}

}  // namespace
}  // namespace ferry
