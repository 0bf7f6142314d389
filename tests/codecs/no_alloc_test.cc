// The codecs run once per page on the hot path: none of them may touch the heap. This binary
// replaces the global allocation functions with counting ones and checks the counts stay flat.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <vector>

#include "codecs/lz4_page.h"
#include "codecs/xbzrle.h"
#include "codecs/zero_page.h"
#include "tests/common/alloc_counter.h"

namespace ferry {
namespace {

constexpr size_t kPage = 4096;

struct Pages {
  Pages() : old_page(kPage), new_page(kPage), scratch(2 * kPage), out(kPage) {
    std::mt19937 rng(1);
    for (auto& b : old_page) b = static_cast<uint8_t>(rng() % 4 == 0 ? rng() : 0);
    new_page = old_page;
    for (int i = 0; i < 60; ++i) new_page[rng() % kPage] ^= 0x5A;
  }
  std::vector<uint8_t> old_page, new_page, scratch, out;
};

TEST(NoHeapAllocation, CounterSeesAllocations) {
  test::CountAllocations allocs;
  // Through volatile pointers: the compiler may otherwise drop a new/delete or malloc/free pair.
  int* volatile p = new int(3);
  delete p;
  void* volatile m = std::malloc(16);
  std::free(m);
  EXPECT_GE(allocs.count(), 1u) << "the counting allocator is not wired in";
}

TEST(NoHeapAllocation, ZeroPageDetection) {
  Pages p;
  std::vector<uint64_t> bits(1);
  test::CountAllocations allocs;
  for (auto v : zero_page::kAllVariants) {
    if (zero_page::available(v)) zero_page::function(v)(p.old_page.data(), kPage);
  }
  is_zero_page(p.new_page.data(), kPage);
  find_zero_pages(p.old_page.data(), kPage, 1, bits.data());
  EXPECT_EQ(allocs.count(), 0u);
}

TEST(NoHeapAllocation, XbzrleEncodeAndDecode) {
  Pages p;
  test::CountAllocations allocs;
  long n = 0;
  for (auto v : {xbzrle::Variant::kScalar, xbzrle::Variant::kAvx2, xbzrle::Variant::kAvx512}) {
    if (!xbzrle::variant_available(v)) continue;
    n = xbzrle::encode_variant(v, p.old_page.data(), p.new_page.data(), kPage, p.scratch.data(),
                               p.scratch.size());
  }
  n = xbzrle::encode(p.old_page.data(), p.new_page.data(), kPage, p.scratch.data(),
                     p.scratch.size());
  auto result = xbzrle::decode(p.scratch.data(), static_cast<size_t>(n), p.old_page.data(), kPage);
  EXPECT_EQ(allocs.count(), 0u);
  ASSERT_GT(n, 0);
  EXPECT_EQ(result.error, xbzrle::DecodeError::kOk);
  EXPECT_EQ(p.old_page, p.new_page);
}

TEST(NoHeapAllocation, Lz4CompressAndDecompress) {
  Pages p;
  test::CountAllocations allocs;
  size_t n = lz4::compress(p.old_page.data(), kPage, p.scratch.data(), p.scratch.size());
  auto err = lz4::decompress(p.scratch.data(), n, p.out.data(), kPage);
  EXPECT_EQ(allocs.count(), 0u);
  ASSERT_GT(n, 0u);
  EXPECT_EQ(err, lz4::DecodeError::kOk);
  EXPECT_EQ(p.out, p.old_page);
}

}  // namespace
}  // namespace ferry
