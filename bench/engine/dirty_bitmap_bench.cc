// Dirty-page discovery costs: scanning a dirty bitmap, and syncing kernel write tracking.
//
// BM_DirtyBitmapScan/density_permille:{1,100,1000}
//   One full take_batch pass (batches of 128 pages, as the sender takes them) over the bitmap of
//   a 4 GiB block of 4 KiB pages (1 Mi pages, 128 KiB of bitmap) with 0.1%, 10% or 100% of the
//   pages dirty. Before each pass the bitmap is restored from a pristine copy with one memcpy
//   outside the measured time (manual timing), so the bitmap is cache-warm, as it is right after
//   a dirty sync wrote it. items_per_second = pages covered per second;
//   dirty_pages_per_second = page indices handed out per second.
// BM_BaselineBitmapOr
//   The floor for any scan: OR-reduce the same 128 KiB of words (plain loads, vectorised).
// BM_UffdWpSync/written_permille:{10,0}
//   UffdWpDirtySource::sync() over a populated 256 MiB region with 1% (or none) of its pages
//   written since the previous sync, spread evenly. Only sync() is timed; first_write_ns is what
//   the writes between syncs cost the writer (one async write-protect fault each). Skipped with
//   the probe's reason where uffd-wp + PAGEMAP_SCAN are unavailable.
#include <benchmark/benchmark.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "ferry/dirty_bitmap.h"
#include "ferry/uffd_wp_dirty_source.h"

namespace ferry {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kScanPages = size_t{1} << 20;  // 4 GiB of 4 KiB pages
constexpr size_t kBatch = 128;

std::vector<uint64_t> pristine_words(size_t pages, int64_t permille) {
  std::vector<uint64_t> words(DirtyBitmap::words_for(pages), 0);
  std::mt19937_64 rng(42);
  std::bernoulli_distribution dirty(static_cast<double>(permille) / 1000.0);
  for (size_t p = 0; p < pages; ++p) {
    if (dirty(rng)) words[p / 64] |= uint64_t{1} << (p % 64);
  }
  return words;
}

void BM_DirtyBitmapScan(benchmark::State& state) {
  const auto pristine = pristine_words(kScanPages, state.range(0));
  DirtyBitmap bm(kScanPages);
  bm.assign_words(pristine.data(), pristine.size());
  const size_t dirty = bm.count();
  std::vector<uint32_t> out(kBatch);
  for (auto _ : state) {
    bm.assign_words(pristine.data(), pristine.size());
    const auto t0 = Clock::now();
    size_t cursor = 0;
    size_t found = 0;
    size_t got;
    do {
      got = bm.take_batch(cursor, out.data(), kBatch);
      benchmark::DoNotOptimize(out.data());
      found += got;
    } while (got == kBatch);
    const auto t1 = Clock::now();
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    if (found != dirty) {
      state.SkipWithError("take_batch pass returned a different number of pages than were set");
      break;
    }
  }
  const auto iters = static_cast<double>(state.iterations());
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kScanPages));
  state.counters["dirty_pages_per_second"] =
      benchmark::Counter(iters * static_cast<double>(dirty), benchmark::Counter::kIsRate);
  state.counters["dirty_pages"] = static_cast<double>(dirty);
}
BENCHMARK(BM_DirtyBitmapScan)
    ->ArgName("density_permille")
    ->Arg(1)
    ->Arg(100)
    ->Arg(1000)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

void BM_BaselineBitmapOr(benchmark::State& state) {
  const auto words = pristine_words(kScanPages, 1);
  for (auto _ : state) {
    uint64_t acc = 0;
    for (uint64_t w : words) acc |= w;
    benchmark::DoNotOptimize(acc);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kScanPages));
}
BENCHMARK(BM_BaselineBitmapOr)->Unit(benchmark::kMicrosecond);

void BM_UffdWpSync(benchmark::State& state) {
  const std::string why = UffdWpDirtySource::probe();
  if (!why.empty()) {
    state.SkipWithError(("uffd-wp unavailable: " + why).c_str());
    return;
  }
  constexpr size_t kBytes = size_t{256} << 20;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t pages = kBytes / page;
  const int64_t permille = state.range(0);
  void* mem = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    state.SkipWithError("mmap of 256 MiB failed");
    return;
  }
  auto* bytes = static_cast<volatile unsigned char*>(mem);
  std::memset(mem, 1, kBytes);  // populated, like guest RAM after boot
  double write_seconds = 0;
  size_t writes = 0;
  size_t reported = 0;
  {
    UffdWpDirtySource src(mem, kBytes);
    DirtyBitmap bm(pages);
    src.sync(bm);
    const size_t stride = permille > 0 ? static_cast<size_t>(1000 / permille) : 0;
    size_t offset = 0;
    for (auto _ : state) {
      if (stride != 0) {
        const auto w0 = Clock::now();
        for (size_t p = offset; p < pages; p += stride) {
          bytes[p * page] = static_cast<unsigned char>(p);
          ++writes;
        }
        write_seconds += std::chrono::duration<double>(Clock::now() - w0).count();
        offset = (offset + 1) % stride;  // different pages each round
      }
      bm.clear_all();
      const auto t0 = Clock::now();
      src.sync(bm);
      const auto t1 = Clock::now();
      state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
      reported += bm.count();
    }
  }
  munmap(mem, kBytes);
  const auto iters = static_cast<double>(state.iterations());
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(pages));
  state.counters["dirty_pages_per_second"] =
      benchmark::Counter(static_cast<double>(reported), benchmark::Counter::kIsRate);
  state.counters["dirty_pages_per_sync"] = static_cast<double>(reported) / (iters > 0 ? iters : 1);
  state.counters["first_write_ns"] = writes ? write_seconds * 1e9 / static_cast<double>(writes) : 0;
}
BENCHMARK(BM_UffdWpSync)
    ->ArgName("written_permille")
    ->Arg(10)
    ->Arg(0)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ferry
