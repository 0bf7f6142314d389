// XBZRLE encode per variant and decode, over pools of (old, new) page pairs per change mix.
// Bytes processed are page bytes (4096 per call), not delta bytes, so every row compares with
// memory bandwidth and with the other variants directly.
//
// Mixes (the old page is random bytes in every case):
//   unchanged    new == old (the common case for a page that was dirtied but rewritten as is)
//   1byte        one byte changed at a random offset
//   sparse1pct   1% of the bytes (41) changed, at distinct random offsets
//   sparse10pct  10% of the bytes (410) changed, at distinct random offsets
//   half         each 64-byte block rewritten with fresh random bytes with probability 1/2
//   half64       alternating 64-byte chunks: every byte of one changed, the next unchanged
//                (dense runs of exactly 64 bytes; which comes first varies by pair)
//   rand50       each byte changed with probability 1/2: runs of ~2 bytes, and the delta is
//                about a page long, so encode fits on some pairs and gives up on the others
//   random       new page entirely random: the delta does not fit in 4096 bytes, so encode
//                measures how fast we give up; decode encodes it with an 8192-byte cap instead
//                so there is a delta to apply
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "bench/codecs/page_mix.h"
#include "codecs/xbzrle.h"

namespace ferry {
namespace {

constexpr size_t kPage = 4096;
// Pairs per pool: enough distinct pages that the branch predictor cannot learn the change
// pattern (with 16 pairs the scalar encoder looks ~1.8x faster on sparse pages), yet few
// enough that both pages of every pair stay in L2, or the rows measure L3 instead. The pool
// takes about half of this CPU's L2 (2 * 4 KiB per pair; the rest is left for dst, the
// decode pages and the benchmark's own data), clamped to [16, 128]: 128 pairs (1 MiB) on a
// 2 MiB L2, 64 on a 1 MiB L2. 128 when sysconf cannot tell. The count is in the benchmark
// context ("xbzrle_pairs"). On unchanged pages the SIMD encoders run at the speed of reading
// both pages: the memcmp baselines give that ceiling, the Hot rows (one pair in L1) the
// compute side.
size_t pool_pairs() {
  static const size_t pairs = [] {
    constexpr size_t kMaxPairs = 128, kMinPairs = 16;
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (l2 <= 0) return kMaxPairs;
    size_t n = static_cast<size_t>(l2) / 2 / (2 * kPage);
    return std::clamp(n, kMinPairs, kMaxPairs);
  }();
  return pairs;
}

// Enum values seed each pool's generator: new mixes go last, so older pools keep their pages.
enum class Mix { kUnchanged, kOneByte, kSparse1, kSparse10, kHalf, kRandom, kHalf64, kRand50 };
constexpr size_t kMixCount = 8;
// Benchmark order: by change density.
constexpr Mix kAllMixes[kMixCount] = {Mix::kUnchanged, Mix::kOneByte, Mix::kSparse1,
                                      Mix::kSparse10,  Mix::kHalf,    Mix::kHalf64,
                                      Mix::kRand50,    Mix::kRandom};

const char* mix_name(Mix m) {
  switch (m) {
    case Mix::kUnchanged: return "unchanged";
    case Mix::kOneByte: return "1byte";
    case Mix::kSparse1: return "sparse1pct";
    case Mix::kSparse10: return "sparse10pct";
    case Mix::kHalf: return "half";
    case Mix::kRandom: return "random";
    case Mix::kHalf64: return "half64";
    case Mix::kRand50: return "rand50";
  }
  return "?";
}

// Page-aligned like guest RAM and the page cache: a plain vector's 16-byte offset would make
// every 64-byte load straddle two cache lines.
struct PageBuffer {
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t[], Free> bytes;
  explicit PageBuffer(size_t pages)
      : bytes(static_cast<uint8_t*>(std::aligned_alloc(kPage, pages * kPage))) {
    if (!bytes) throw std::bad_alloc();
  }
  uint8_t* page(size_t i) const { return bytes.get() + i * kPage; }
};

struct Pool {
  PageBuffer old_pages{pool_pairs()}, new_pages{pool_pairs()};
  const uint8_t* old_page(size_t i) const { return old_pages.page(i); }
  const uint8_t* new_page(size_t i) const { return new_pages.page(i); }
};

uint8_t differing(uint8_t old, std::mt19937_64& rng) {
  return static_cast<uint8_t>(old ^ (1 + rng() % 255));
}

void change_bytes(uint8_t* page, size_t count, std::mt19937_64& rng) {
  std::vector<size_t> offsets(kPage);
  for (size_t i = 0; i < kPage; ++i) offsets[i] = i;
  std::shuffle(offsets.begin(), offsets.end(), rng);
  for (size_t i = 0; i < count; ++i) page[offsets[i]] = differing(page[offsets[i]], rng);
}

Pool make_pool(Mix mix) {
  Pool p;
  std::mt19937_64 rng(static_cast<uint64_t>(mix) + 1);
  for (size_t i = 0; i < pool_pairs(); ++i) {
    uint8_t* o = p.old_pages.page(i);
    uint8_t* n = p.new_pages.page(i);
    bench::fill_random(o, kPage, rng());
    std::memcpy(n, o, kPage);
    switch (mix) {
      case Mix::kUnchanged: break;
      case Mix::kOneByte: change_bytes(n, 1, rng); break;
      case Mix::kSparse1: change_bytes(n, kPage / 100, rng); break;
      case Mix::kSparse10: change_bytes(n, kPage / 10, rng); break;
      case Mix::kHalf:
        for (size_t b = 0; b < kPage; b += 64) {
          if (rng() & 1) bench::fill_random(n + b, 64, rng());
        }
        break;
      case Mix::kRandom: bench::fill_random(n, kPage, rng()); break;
      case Mix::kHalf64:
        for (size_t b = (rng() & 1) * 64; b < kPage; b += 128) {
          for (size_t k = b; k < b + 64; ++k) n[k] = differing(n[k], rng);
        }
        break;
      case Mix::kRand50:
        for (size_t k = 0; k < kPage; ++k) {
          if (rng() & 1) n[k] = differing(n[k], rng);
        }
        break;
    }
  }
  return p;
}

const Pool& pool(Mix mix) {
  static const std::vector<Pool> pools = [] {
    std::vector<Pool> v;
    for (size_t m = 0; m < kMixCount; ++m) v.push_back(make_pool(static_cast<Mix>(m)));
    return v;
  }();
  return pools[static_cast<size_t>(mix)];
}

// `pairs` = pool_pairs() normally; 1 for the Hot rows, where one pair stays in L1 (fair only for
// unchanged pages: with no data-dependent branches there is no pattern to learn).
void BM_XbzrleEncode(benchmark::State& state, xbzrle::Variant v, Mix mix, size_t pairs) {
  if (!xbzrle::variant_available(v)) return state.SkipWithError("CPU lacks this variant");
  const Pool& p = pool(mix);
  PageBuffer dst(1);
  size_t i = 0;
  for (auto _ : state) {
    long n = xbzrle::encode_variant(v, p.old_page(i), p.new_page(i), kPage, dst.page(0), kPage);
    benchmark::DoNotOptimize(n);
    i = (i + 1) % pairs;
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kPage));
}

// What callers get: xbzrle::encode() picks its variant once per process.
void BM_XbzrleEncodeDispatched(benchmark::State& state, Mix mix) {
  const Pool& p = pool(mix);
  PageBuffer dst(1);
  const size_t pairs = pool_pairs();
  size_t i = 0;
  for (auto _ : state) {
    long n = xbzrle::encode(p.old_page(i), p.new_page(i), kPage, dst.page(0), kPage);
    benchmark::DoNotOptimize(n);
    i = (i + 1) % pairs;
  }
  state.SetLabel(xbzrle::variant_name(xbzrle::best_variant()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kPage));
}

// Ceiling for unchanged pages: glibc memcmp reads both pages of the same pool once.
void BM_XbzrleBaselineMemcmp(benchmark::State& state, size_t pairs) {
  const Pool& p = pool(Mix::kUnchanged);
  size_t i = 0;
  for (auto _ : state) {
    int r = std::memcmp(p.old_page(i), p.new_page(i), kPage);
    benchmark::DoNotOptimize(r);
    i = (i + 1) % pairs;
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kPage));
}

void BM_XbzrleDecode(benchmark::State& state, Mix mix) {
  const Pool& p = pool(mix);
  const size_t pairs = pool_pairs();
  std::vector<std::vector<uint8_t>> deltas(pairs);
  PageBuffer pages(pairs);  // applying a delta twice gives the same page
  std::memcpy(pages.page(0), p.old_page(0), pairs * kPage);
  std::vector<uint8_t> dst(2 * kPage);
  for (size_t i = 0; i < pairs; ++i) {
    long n = xbzrle::encode(p.old_page(i), p.new_page(i), kPage, dst.data(), dst.size());
    if (n < 0) return state.SkipWithError("delta does not fit in 8192 bytes");
    deltas[i].assign(dst.begin(), dst.begin() + n);
  }
  size_t i = 0;
  for (auto _ : state) {
    auto r = xbzrle::decode(deltas[i].data(), deltas[i].size(), pages.page(i), kPage);
    benchmark::DoNotOptimize(r);
    i = (i + 1) % pairs;
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kPage));
}

[[maybe_unused]] const bool registered = [] {
  benchmark::AddCustomContext("xbzrle_pairs", std::to_string(pool_pairs()));
  for (auto v : xbzrle::kAllVariants) {
    for (Mix m : kAllMixes) {
      std::string name =
          std::string("BM_XbzrleEncode/") + xbzrle::variant_name(v) + "/" + mix_name(m);
      benchmark::RegisterBenchmark(name.c_str(), BM_XbzrleEncode, v, m, pool_pairs());
    }
  }
  for (Mix m : kAllMixes) {
    std::string name = std::string("BM_XbzrleEncode/dispatched/") + mix_name(m);
    benchmark::RegisterBenchmark(name.c_str(), BM_XbzrleEncodeDispatched, m);
  }
  for (auto v : xbzrle::kAllVariants) {
    std::string name = std::string("BM_XbzrleEncodeHot/") + xbzrle::variant_name(v) + "/unchanged";
    benchmark::RegisterBenchmark(name.c_str(), BM_XbzrleEncode, v, Mix::kUnchanged, size_t{1});
  }
  benchmark::RegisterBenchmark("BM_XbzrleBaselineMemcmp/unchanged", BM_XbzrleBaselineMemcmp,
                               pool_pairs());
  benchmark::RegisterBenchmark("BM_XbzrleBaselineMemcmpHot/unchanged", BM_XbzrleBaselineMemcmp,
                               size_t{1});
  for (Mix m : kAllMixes) {
    benchmark::RegisterBenchmark((std::string("BM_XbzrleDecode/") + mix_name(m)).c_str(),
                                 BM_XbzrleDecode, m);
  }
  return true;
}();

}  // namespace
}  // namespace ferry
