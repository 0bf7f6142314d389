// LZ4 page compression on text-like (compressible) and random (incompressible: measures how
// fast the "send it raw" decision is reached) pages.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "bench/codecs/page_mix.h"
#include "codecs/lz4_page.h"

namespace ferry {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kPool = 256;  // distinct pages, cycled, so one page is not measured from L1 alone

enum class Content { kText, kRandom };

std::vector<uint8_t> make_pool(Content c) {
  std::vector<uint8_t> pool(kPool * kPage);
  for (size_t i = 0; i < kPool; ++i) {
    if (c == Content::kText) bench::fill_text(pool.data() + i * kPage, kPage, i + 1);
    else bench::fill_random(pool.data() + i * kPage, kPage, i + 1);
  }
  return pool;
}

void BM_Lz4Compress(benchmark::State& state, Content c) {
  auto pool = make_pool(c);
  std::vector<uint8_t> dst(kPage);
  size_t i = 0, packed = 0;
  for (auto _ : state) {
    packed += lz4::compress(pool.data() + (i++ % kPool) * kPage, kPage, dst.data(), dst.size());
    benchmark::DoNotOptimize(dst.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kPage));
  state.counters["ratio"] = packed ? static_cast<double>(state.iterations() * kPage) / packed : 0;
}

void BM_Lz4Decompress(benchmark::State& state, Content c) {
  auto pool = make_pool(c);
  std::vector<std::vector<uint8_t>> blocks(kPool);
  for (size_t i = 0; i < kPool; ++i) {
    std::vector<uint8_t> dst(kPage);
    size_t n = lz4::compress(pool.data() + i * kPage, kPage, dst.data(), dst.size());
    if (n == 0) return state.SkipWithError("page does not shrink: it travels raw, nothing to decode");
    dst.resize(n);
    blocks[i] = std::move(dst);
  }
  std::vector<uint8_t> page(kPage);
  size_t i = 0;
  for (auto _ : state) {
    const auto& b = blocks[i++ % kPool];
    auto err = lz4::decompress(b.data(), b.size(), page.data(), kPage);
    benchmark::DoNotOptimize(err);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kPage));
}

[[maybe_unused]] const bool registered = [] {
  benchmark::RegisterBenchmark("BM_Lz4Compress/text", BM_Lz4Compress, Content::kText);
  benchmark::RegisterBenchmark("BM_Lz4Compress/random", BM_Lz4Compress, Content::kRandom);
  benchmark::RegisterBenchmark("BM_Lz4Decompress/text", BM_Lz4Decompress, Content::kText);
  // Reported as skipped, not silently absent: random pages never shrink, so they travel raw and
  // the receiver has nothing to decode.
  benchmark::RegisterBenchmark("BM_Lz4Decompress/random", BM_Lz4Decompress, Content::kRandom);
  return true;
}();

}  // namespace
}  // namespace ferry
