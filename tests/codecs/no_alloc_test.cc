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

namespace {
thread_local size_t t_allocations = 0;
}

void* operator new(size_t n) {
  ++t_allocations;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }

#ifndef FERRY_SANITIZE
// liblz4 would reach for malloc, not operator new, if it were built in heap mode. The sanitizer
// runtimes own malloc, so this half of the check runs in the normal build only.
extern "C" void* __libc_malloc(size_t);
extern "C" void* __libc_calloc(size_t, size_t);
extern "C" void* __libc_realloc(void*, size_t);
extern "C" void* malloc(size_t n) {
  ++t_allocations;
  return __libc_malloc(n);
}
extern "C" void* calloc(size_t n, size_t m) {
  ++t_allocations;
  return __libc_calloc(n, m);
}
extern "C" void* realloc(void* p, size_t n) {
  ++t_allocations;
  return __libc_realloc(p, n);
}
#endif

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
  size_t before = t_allocations;
  auto* p = new int(3);
  delete p;
  void* m = std::malloc(16);
  std::free(m);
  EXPECT_GE(t_allocations - before, 1u) << "the counting allocator is not wired in";
}

TEST(NoHeapAllocation, ZeroPageDetection) {
  Pages p;
  std::vector<uint64_t> bits(1);
  size_t before = t_allocations;
  for (auto v : zero_page::kAllVariants) {
    if (zero_page::available(v)) zero_page::function(v)(p.old_page.data(), kPage);
  }
  is_zero_page(p.new_page.data(), kPage);
  find_zero_pages(p.old_page.data(), kPage, 1, bits.data());
  EXPECT_EQ(t_allocations, before);
}

TEST(NoHeapAllocation, XbzrleEncodeAndDecode) {
  Pages p;
  size_t before = t_allocations;
  long n = 0;
  for (auto v : {xbzrle::Variant::kScalar, xbzrle::Variant::kAvx2, xbzrle::Variant::kAvx512}) {
    if (!xbzrle::variant_available(v)) continue;
    n = xbzrle::encode_variant(v, p.old_page.data(), p.new_page.data(), kPage, p.scratch.data(),
                               p.scratch.size());
  }
  n = xbzrle::encode(p.old_page.data(), p.new_page.data(), kPage, p.scratch.data(),
                     p.scratch.size());
  auto result = xbzrle::decode(p.scratch.data(), static_cast<size_t>(n), p.old_page.data(), kPage);
  EXPECT_EQ(t_allocations, before);
  ASSERT_GT(n, 0);
  EXPECT_EQ(result.error, xbzrle::DecodeError::kOk);
  EXPECT_EQ(p.old_page, p.new_page);
}

TEST(NoHeapAllocation, Lz4CompressAndDecompress) {
  Pages p;
  size_t before = t_allocations;
  size_t n = lz4::compress(p.old_page.data(), kPage, p.scratch.data(), p.scratch.size());
  auto err = lz4::decompress(p.scratch.data(), n, p.out.data(), kPage);
  EXPECT_EQ(t_allocations, before);
  ASSERT_GT(n, 0u);
  EXPECT_EQ(err, lz4::DecodeError::kOk);
  EXPECT_EQ(p.out, p.old_page);
}

}  // namespace
}  // namespace ferry
