// Zero-page detection: hot (one page in L1, against memcmp with a static zero page) and cold
// (1 GiB page by page, against glibc memchr streaming the same buffer: read bandwidth).
#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <cstring>
#include <string>

#include "codecs/zero_page.h"

namespace ferry {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kColdBytes = size_t{1} << 30;

alignas(64) unsigned char g_hot_page[kPage];
alignas(64) const unsigned char g_static_zero_page[kPage] = {};

// One 1 GiB zero buffer shared by the cold benchmarks. It is written once so every page is
// backed by real memory: untouched anonymous memory would all map the kernel's single zero
// page and sit in cache.
unsigned char* cold_buffer() {
  static unsigned char* buf = [] {
    void* p = mmap(nullptr, kColdBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return static_cast<unsigned char*>(nullptr);
    std::memset(p, 0, kColdBytes);
    return static_cast<unsigned char*>(p);
  }();
  return buf;
}

void BM_ZeroPageHot(benchmark::State& state, zero_page::Variant v) {
  if (!zero_page::available(v)) return state.SkipWithError("CPU lacks this variant");
  zero_page::Fn fn = zero_page::function(v);
  for (auto _ : state) {
    benchmark::DoNotOptimize(g_hot_page);
    bool zero = fn(g_hot_page, kPage);
    benchmark::DoNotOptimize(zero);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kPage));
}

void BM_BaselineMemcmpZeroPage(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(g_hot_page);
    bool zero = std::memcmp(g_hot_page, g_static_zero_page, kPage) == 0;
    benchmark::DoNotOptimize(zero);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kPage));
}

void BM_ZeroPageCold(benchmark::State& state, zero_page::Variant v) {
  if (!zero_page::available(v)) return state.SkipWithError("CPU lacks this variant");
  unsigned char* buf = cold_buffer();
  if (buf == nullptr) return state.SkipWithError("cannot map 1 GiB");
  zero_page::Fn fn = zero_page::function(v);
  for (auto _ : state) {
    size_t zero_pages = 0;
    for (size_t off = 0; off < kColdBytes; off += kPage) zero_pages += fn(buf + off, kPage);
    if (zero_pages != kColdBytes / kPage) state.SkipWithError("buffer is not all zero");
    benchmark::DoNotOptimize(zero_pages);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kColdBytes));
}

void BM_BaselineMemchrCold(benchmark::State& state) {
  unsigned char* buf = cold_buffer();
  if (buf == nullptr) return state.SkipWithError("cannot map 1 GiB");
  for (auto _ : state) {
    const void* hit = std::memchr(buf, 0x5A, kColdBytes);
    benchmark::DoNotOptimize(hit);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kColdBytes));
}

[[maybe_unused]] const bool registered = [] {
  for (auto v : zero_page::kAllVariants) {
    benchmark::RegisterBenchmark((std::string("BM_ZeroPageHot/") + zero_page::name(v)).c_str(),
                                 BM_ZeroPageHot, v);
  }
  benchmark::RegisterBenchmark("BM_BaselineMemcmpZeroPage", BM_BaselineMemcmpZeroPage);
  for (auto v : zero_page::kAllVariants) {
    benchmark::RegisterBenchmark((std::string("BM_ZeroPageCold/") + zero_page::name(v)).c_str(),
                                 BM_ZeroPageCold, v)
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("BM_BaselineMemchrCold", BM_BaselineMemchrCold)
      ->Unit(benchmark::kMillisecond);
  return true;
}();

}  // namespace
}  // namespace ferry
