#include "codecs/lz4_page.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace ferry {
namespace {

constexpr size_t kPage = 4096;

std::vector<uint8_t> text_page(unsigned seed) {
  static const char* words[] = {"migration ", "page ", "dirty ", "bitmap ", "channel ",
                                "guest ",     "RAM ",  "zero\n", "delta ",  "ferry "};
  std::mt19937 rng(seed);
  std::vector<uint8_t> page;
  while (page.size() < kPage) {
    const char* w = words[rng() % 10];
    page.insert(page.end(), w, w + std::strlen(w));
  }
  page.resize(kPage);
  return page;
}

std::vector<uint8_t> random_page(unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> page(kPage);
  for (auto& b : page) b = static_cast<uint8_t>(rng());
  return page;
}

TEST(Lz4Page, TextPagesRoundTripAndShrink) {
  for (unsigned seed = 0; seed < 50; ++seed) {
    auto page = text_page(seed);
    std::vector<uint8_t> packed(kPage);
    size_t n = lz4::compress(page.data(), kPage, packed.data(), packed.size());
    ASSERT_GT(n, 0u);
    ASSERT_LT(n, kPage);
    std::vector<uint8_t> out(kPage, 0xAA);
    ASSERT_EQ(lz4::decompress(packed.data(), n, out.data(), kPage), lz4::DecodeError::kOk);
    ASSERT_EQ(out, page);
  }
}

TEST(Lz4Page, ZeroPageCompressesToAFewBytes) {
  std::vector<uint8_t> page(kPage, 0), packed(kPage), out(kPage, 1);
  size_t n = lz4::compress(page.data(), kPage, packed.data(), packed.size());
  ASSERT_GT(n, 0u);
  EXPECT_LT(n, 32u);
  ASSERT_EQ(lz4::decompress(packed.data(), n, out.data(), kPage), lz4::DecodeError::kOk);
  EXPECT_EQ(out, page);
}

TEST(Lz4Page, IncompressiblePageIsSentRaw) {
  auto page = random_page(7);
  std::vector<uint8_t> packed(2 * kPage);
  EXPECT_EQ(lz4::compress(page.data(), kPage, packed.data(), packed.size()), 0u);
}

TEST(Lz4Page, SmallDestinationMeansRawNotOverflow) {
  auto page = text_page(3);
  std::vector<uint8_t> packed(kPage + 16, 0xCD);
  size_t full = lz4::compress(page.data(), kPage, packed.data(), kPage);
  ASSERT_GT(full, 1u);
  std::fill(packed.begin(), packed.end(), 0xCD);
  EXPECT_EQ(lz4::compress(page.data(), kPage, packed.data(), full - 1), 0u);
  for (size_t i = full - 1; i < packed.size(); ++i) ASSERT_EQ(packed[i], 0xCD) << i;
}

TEST(Lz4Page, AccelerationStillRoundTrips) {
  auto page = text_page(11);
  std::vector<uint8_t> packed(kPage), out(kPage);
  for (int accel : {0, 1, 4, 16, 65537}) {
    size_t n = lz4::compress(page.data(), kPage, packed.data(), packed.size(), accel);
    // At the largest accelerations liblz4 barely searches, so "send raw" is a valid answer.
    if (accel > 16 && n == 0) continue;
    ASSERT_GT(n, 0u) << accel;
    ASSERT_EQ(lz4::decompress(packed.data(), n, out.data(), kPage), lz4::DecodeError::kOk);
    ASSERT_EQ(out, page);
  }
}

TEST(Lz4Page, OutputThatIsNotExactlyOnePageIsRefused) {
  std::vector<uint8_t> half(kPage / 2, 'x'), packed(kPage), out(kPage);
  // Compress a half page as if it were a page of its own: it decodes cleanly to 2 KiB.
  size_t n = lz4::compress(half.data(), half.size(), packed.data(), packed.size());
  ASSERT_GT(n, 0u);
  EXPECT_EQ(lz4::decompress(packed.data(), n, out.data(), kPage), lz4::DecodeError::kWrongSize);
}

TEST(Lz4Page, CorruptInputIsRefusedWithoutOverrun) {
  auto page = text_page(5);
  std::vector<uint8_t> packed(kPage);
  size_t n = lz4::compress(page.data(), kPage, packed.data(), packed.size());
  ASSERT_GT(n, 0u);
  std::mt19937 rng(99);
  int refused = 0;
  for (int round = 0; round < 2000; ++round) {
    std::vector<uint8_t> bad(packed.begin(), packed.begin() + static_cast<long>(n));
    bad[rng() % n] ^= static_cast<uint8_t>(1 + rng() % 255);
    if (round % 4 == 0) bad.resize(rng() % n);  // truncated too
    std::vector<uint8_t> out(kPage + 64, 0x5A);
    auto err = lz4::decompress(bad.data(), bad.size(), out.data(), kPage);
    for (size_t i = kPage; i < out.size(); ++i) ASSERT_EQ(out[i], 0x5A) << "wrote past the page";
    if (err != lz4::DecodeError::kOk) {
      ++refused;
      EXPECT_STRNE(lz4::decode_error_string(err), "ok");
    }
  }
  EXPECT_GT(refused, 1000) << "most corruptions must be detected";
}

TEST(Lz4Page, OversizedOrEmptyInputIsRefused) {
  std::vector<uint8_t> src(kPage, 0), out(kPage);
  EXPECT_EQ(lz4::decompress(src.data(), kPage, out.data(), kPage),
            lz4::DecodeError::kInputTooLarge);
  EXPECT_EQ(lz4::decompress(src.data(), 0, out.data(), kPage), lz4::DecodeError::kCorrupt);
}

}  // namespace
}  // namespace ferry
