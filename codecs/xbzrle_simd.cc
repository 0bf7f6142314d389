// XBZRLE encoders for AVX2 and AVX-512BW. Same canonical output as encode_scalar().
//
// Plan: compare the pages 64 bytes at a time into a 64-bit "differs" mask, turn masks into
// transition bits (t = m ^ (m << 1 | bit 63 of the previous mask): a set bit is where a changed
// run starts or ends), flatten the transition positions of a 4 KiB block into a small array,
// then emit runs from consecutive (start, end) pairs. Splitting scanning from emitting keeps
// per-run branches out of the scan loop: with a few scattered changes per page, "how many runs
// does this chunk hold" is unpredictable and a loop over them would mispredict once per chunk.
//
// AVX-512 goes further on sparse pages (see its section): chunks without a transition are
// skipped through a summary word, and with VBMI2 both the flattening and the emission of short
// runs are done by byte/word compression instead of one bit or one run at a time. AVX2 goes
// further on dense pages (see its section): whole-line runs flattened by table, runs moved in
// 32-byte blocks, and a page whose delta cannot fit refused before anything is emitted.
//
// Only the functions that use intrinsics carry target attributes (not -m flags for the file, so
// no inline function from a header can be compiled for AVX here and picked by the linker for
// generic code). Helpers without a target attribute are always_inline into them: GCC allows a
// callee whose ISA is a subset of the caller's, never the other way round.
#include <immintrin.h>

#include <array>
#include <cstring>

#include "codecs/xbzrle.h"

namespace ferry::xbzrle {
namespace {

constexpr size_t kChunk = 64;
constexpr size_t kBlock = 4096;  // bytes per flattened block: positions fit in uint16_t
constexpr size_t kShortLimit = size_t{1} << 14;  // lengths that take at most 2 ULEB128 bytes

// Transition positions of one block (at most one per byte). The flatten steps write up to 32
// entries past the count unconditionally (no branch on how many transitions a chunk holds), and
// the AVX-512 emission loads 16 entries from any pair; hence the slack.
struct Positions {
  uint16_t at[kBlock + 64];
  size_t count;
};

// Where the delta goes, and the page its changed bytes come from.
struct Sink {
  const uint8_t* page;
  size_t page_len;
  uint8_t* dst;
  size_t cap;
  size_t size;      // bytes written so far, <= cap
  size_t last_end;  // end of the previous changed run: the next unchanged run starts here
  // The fast path of emit_runs() (run <= 16 bytes, moved as 16 bytes) applies while
  // size < fast_size_end and start < fast_start_end; 0 disables it.
  size_t fast_size_end;
  size_t fast_start_end;

  Sink(const uint8_t* page_in, size_t len, uint8_t* dst_in, size_t dst_cap)
      : page(page_in),
        page_len(len),
        dst(dst_in),
        cap(dst_cap),
        size(0),
        last_end(0),
        fast_size_end(dst_cap >= kFastMax ? dst_cap - kFastMax + 1 : 0),
        fast_start_end(len >= 16 ? len - 15 : 0) {}

  // Longest fast-path write: 2 + 1 header bytes and a 16-byte move.
  static constexpr size_t kFastMax = 19;
};

[[gnu::always_inline]] inline void store16(uint8_t* p, size_t v) {
  auto x = static_cast<uint16_t>(v);
  std::memcpy(p, &x, 2);
}

// Two ULEB128 bytes for v < 2^14; the caller advances by 1 or 2 and lets the next field
// overwrite a spare second byte.
[[gnu::always_inline]] inline size_t uleb2(size_t v) {
  size_t more = v >= 0x80;
  // v + (v & ~0x7f) moves bits 7..13 up to 8..14, leaving bit 7 clear for the continuation.
  return (v + (v & ~size_t{0x7f})) | (more << 7);
}

// Copies a changed run for the general path: runs over 16 bytes (the fast path takes the
// rest) or the few short ones right at the end of the page or of dst.
[[gnu::always_inline]] inline void copy_run(uint8_t* d, const uint8_t* s, size_t n) {
  if (n > 16) {
    std::memcpy(d, s, n);
  } else {
    for (size_t i = 0; i < n; ++i) d[i] = s[i];
  }
}

uint8_t* put_uleb(uint8_t* p, size_t v) {
  while (v >= 0x80) {
    *p++ = static_cast<uint8_t>(v | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<uint8_t>(v);
  return p;
}

size_t uleb_size(size_t v) {
  size_t n = 1;
  for (; v >= 0x80; v >>= 7) ++n;
  return n;
}

// Runs of 16 KiB and more: only on pages larger than QEMU's, so no need to be clever.
// (The usual path below computes header sizes without branches: whether a length needs one
// or two bytes is a coin flip on real pages, and a mispredict costs more than the run.)
[[gnu::noinline]] bool emit_long(Sink& o, const uint8_t* src, size_t zero_run, size_t run) {
  size_t need = uleb_size(zero_run) + uleb_size(run) + run;
  if (need > o.cap - o.size) return false;
  uint8_t* p = put_uleb(o.dst + o.size, zero_run);
  p = put_uleb(p, run);
  std::memcpy(p, src, run);
  o.size += need;
  return true;
}

// Emits the changed run [start, end) and the unchanged run before it, writing exactly the
// delta's bytes: the general path, for long runs and the last bytes of the page or of dst.
[[gnu::always_inline]] inline bool emit(Sink& o, size_t start, size_t end) {
  size_t zero_run = start - o.last_end;
  size_t run = end - start;
  o.last_end = end;
  if (__builtin_expect((zero_run | run) >= kShortLimit, 0)) {
    return emit_long(o, o.page + start, zero_run, run);
  }
  size_t zero_size = 1 + (zero_run >= 0x80);
  size_t run_size = 1 + (run >= 0x80);
  size_t head = zero_size + run_size;
  size_t need = head + run;
  if (need > o.cap - o.size) return false;
  // Every store stays inside [size, size + need): a spare second header byte is covered by the
  // next header or by the run's bytes (run >= 1).
  uint8_t* p = o.dst + o.size;
  store16(p, uleb2(zero_run));
  store16(p + zero_size, uleb2(run));
  copy_run(p + head, o.page + start, run);
  o.size += need;
  return true;
}

// State carried across blocks: whether a changed run is open and where it began.
struct OpenRun {
  bool open = false;
  size_t start = 0;
};

// Emits `pairs` runs from the block at `base`, given as (start, end) position pairs at `at`.
[[gnu::always_inline]] inline bool emit_runs(Sink& o, size_t base, const uint16_t* at,
                                             size_t pairs) {
  // The hot loop of sparse pages. Locals, not Sink fields: every byte store through dst may
  // alias the struct, which would force reloads of all of them after each run.
  const uint8_t* page = o.page;
  uint8_t* dst = o.dst;
  size_t size = o.size, last = o.last_end;
  const size_t fast_size_end = o.fast_size_end, fast_start_end = o.fast_start_end;
  for (const uint16_t* stop = at + 2 * pairs; at != stop; at += 2) {
    size_t start = base + at[0], end = base + at[1];
    size_t zero_run = start - last, run = end - start;
    if (__builtin_expect(
            run <= 16 && zero_run < kShortLimit && size < fast_size_end && start < fast_start_end,
            1)) {
      // Room for the longest fast write is guaranteed, so no exact-fit check is needed.
      size_t zero_size = 1 + (zero_run >= 0x80);
      uint8_t* q = dst + size;
      store16(q, uleb2(zero_run));
      q[zero_size] = static_cast<uint8_t>(run);
      uint8_t x[16];
      std::memcpy(x, page + start, 16);
      std::memcpy(q + zero_size + 1, x, 16);
      size += zero_size + 1 + run;
      last = end;
    } else {
      o.size = size;
      o.last_end = last;
      if (!emit(o, start, end)) return false;
      size = o.size;
      last = o.last_end;
    }
  }
  o.size = size;
  o.last_end = last;
  return true;
}

using EmitRunsFn = bool (*)(Sink& o, size_t base, const uint16_t* at, size_t pairs);

// Emits the runs of the block at `base` from its transition positions (they alternate start,
// end, start, ... after an end first if a run was open when the block began).
template <EmitRunsFn emit_pairs>
[[gnu::always_inline]] inline bool emit_block(Sink& o, size_t base, const Positions& p,
                                              OpenRun& r) {
  const uint16_t* at = p.at;
  const uint16_t* stop = p.at + p.count;
  if (r.open) {
    if (at == stop) return true;  // the run goes on through this block
    if (!emit(o, r.start, base + *at++)) return false;
  }
  auto pairs = static_cast<size_t>(stop - at) / 2;
  if (!emit_pairs(o, base, at, pairs)) return false;
  at += 2 * pairs;
  r.open = at != stop;
  if (r.open) r.start = base + *at;
  return true;
}

// Whether the delta can still fit, judged from a block's scan alone: each of the block's
// `changed` bytes is in some run, and each run that starts in the block (at least count / 2 of
// them) has a header of at least 2 bytes. Giving up before emitting makes a page whose delta is
// bigger than dst (random, or about half the pages with every other byte changed) cost only
// its scan, as it costs QEMU's encoder.
[[gnu::always_inline]] inline bool fits_at_least(const Sink& o, size_t changed,
                                                 const Positions& p) {
  return changed + (p.count & ~size_t{1}) <= o.cap - o.size;
}

// Closes a changed run that reaches the end of the page.
[[gnu::always_inline]] inline long finish(Sink& o, const OpenRun& r) {
  if (r.open && !emit(o, r.start, o.page_len)) return kDoesNotFit;
  return static_cast<long>(o.size);
}

// ---- AVX-512BW ----------------------------------------------------------------------------
//
// A block goes through branch-free passes instead of one pass with per-chunk branches:
//   1. one "differs" mask per 64-byte chunk, stored straight from the mask register;
//   2. the transition words, 8 chunks per vector, and a summary word with bit c set iff
//      chunk c has a transition;
//   3. flattening that visits only the chunks the summary names: on a sparse page half the
//      chunks hold no change, and deciding chunk by chunk whether to skip one was a coin flip;
//   4. emission (see emit_runs_vbmi2 for the VBMI2 form).
// With VBMI2 (Ice Lake, Zen 4 and later), passes 3 and 4 compress instead of iterating: a
// chunk's transition positions come out of two vpcompressw, and 8 short runs at a time are
// packed into dst by one vpcompressb. Without it, pass 3 is a scalar loop and pass 4 is
// emit_runs(), as for AVX2. Splitting the passes moved the sparse1pct benchmark page from
// ~210 ns to ~200 ns; the compressing forms, to ~125 ns.

#define FERRY_AVX512 gnu::target("avx512f,avx512bw,bmi,popcnt")
#define FERRY_VBMI2 gnu::target("avx512f,avx512bw,avx512vbmi2,bmi,popcnt")

constexpr size_t kChunksPerBlock = kBlock / kChunk;

// Differs masks of a block, turned into transition words in place.
struct BlockBits {
  alignas(64) uint64_t w[kChunksPerBlock];
};

// GCC vector types: plain operators instead of intrinsics, whose "undefined" pass-through
// operand trips GCC 12's -Wmaybe-uninitialized. (The maskz_ forms below with an all-ones mask
// are the same instructions, for the same reason.)
using U64x8 = __v8du;
using U16x32 = __v32hu;

[[FERRY_AVX512, gnu::always_inline]] inline U64x8 u64x8(__m512i v) {
  return reinterpret_cast<U64x8>(v);
}
[[FERRY_AVX512, gnu::always_inline]] inline __m512i m512(U64x8 v) {
  return reinterpret_cast<__m512i>(v);
}
[[FERRY_AVX512, gnu::always_inline]] inline U64x8 splat(uint64_t x) {
  return u64x8(_mm512_set1_epi64(static_cast<long long>(x)));
}

[[FERRY_AVX512, gnu::always_inline]] inline __mmask64 diff_avx512(const uint8_t* a,
                                                                  const uint8_t* b) {
  return _mm512_cmpneq_epi8_mask(_mm512_loadu_si512(a), _mm512_loadu_si512(b));
}

// Pass 1. Chunks past `len` read as unchanged, so a run reaching the end of a short block shows
// up as a transition at `len` like any other run end.
[[FERRY_AVX512, gnu::always_inline]] inline void masks_avx512(const uint8_t* a, const uint8_t* b,
                                                              size_t len, BlockBits& bits) {
  if (len == kBlock) {  // every block but the last, and all of a 4 KiB page
    for (size_t c = 0; c < kChunksPerBlock; ++c) {
      bits.w[c] = diff_avx512(a + c * kChunk, b + c * kChunk);
    }
    return;
  }
  size_t c = 0;
  for (; (c + 1) * kChunk <= len; ++c) bits.w[c] = diff_avx512(a + c * kChunk, b + c * kChunk);
  if (c * kChunk < len) {
    // Masked loads never touch the bytes past the page.
    __mmask64 k = (uint64_t{1} << (len - c * kChunk)) - 1;
    bits.w[c] = _mm512_cmpneq_epi8_mask(_mm512_maskz_loadu_epi8(k, a + c * kChunk),
                                        _mm512_maskz_loadu_epi8(k, b + c * kChunk));
    ++c;
  }
  for (; c < kChunksPerBlock; ++c) bits.w[c] = 0;
}

// Pass 2: t = m ^ (m << 1 | bit 63 of the previous mask). `carry` is bit 63 of the previous
// block's last mask: whether a changed run is open coming in. Returns the summary word.
[[FERRY_AVX512, gnu::always_inline]] inline uint64_t transitions_avx512(BlockBits& bits,
                                                                        uint64_t& carry) {
  __m512i prev = m512(splat(carry << 63));
  uint64_t next_carry = bits.w[kChunksPerBlock - 1] >> 63;
  uint64_t summary = 0;
  for (size_t j = 0; j < kChunksPerBlock; j += 8) {
    __m512i m = _mm512_load_si512(bits.w + j);
    // Each lane's predecessor mask: [prev[7], m[0], ..., m[6]].
    U64x8 before = u64x8(_mm512_maskz_alignr_epi64(0xff, m, prev, 7));
    // 0x1e: a ^ (b | c).
    __m512i t = _mm512_ternarylogic_epi64(m, m512(u64x8(m) << 1), m512(before >> 63), 0x1e);
    _mm512_store_si512(bits.w + j, t);
    summary |= static_cast<uint64_t>(_mm512_test_epi64_mask(t, t)) << j;
    prev = m;
  }
  carry = next_carry;
  return summary;
}

[[FERRY_AVX512, gnu::always_inline]] inline uint64_t scan_avx512(const uint8_t* a,
                                                                 const uint8_t* b, size_t len,
                                                                 uint64_t& carry,
                                                                 BlockBits& bits) {
  masks_avx512(a, b, len, bits);
  return transitions_avx512(bits, carry);
}

// Pass 3 without VBMI2. Four positions are written unconditionally (tzcnt of 0 is 64, harmless
// past count): a changed chunk of a sparse page almost always holds one or two isolated changed
// bytes, so the loop for more rarely runs.
[[FERRY_AVX512, gnu::always_inline]] inline void flatten_avx512(const BlockBits& bits,
                                                                uint64_t summary, Positions& p) {
  uint16_t* out = p.at;
  for (uint64_t s = summary; s != 0; s = _blsr_u64(s)) {
    auto c = static_cast<uint32_t>(_tzcnt_u64(s));
    uint64_t t = bits.w[c];
    auto base = c * static_cast<uint32_t>(kChunk);
    auto n = static_cast<size_t>(_mm_popcnt_u64(t));
#pragma GCC unroll 4
    for (size_t k = 0; k < 4; ++k) {
      out[k] = static_cast<uint16_t>(base + static_cast<uint32_t>(_tzcnt_u64(t)));
      t = _blsr_u64(t);
    }
    for (size_t k = 4; t != 0; ++k, t = _blsr_u64(t)) {
      out[k] = static_cast<uint16_t>(base + static_cast<uint32_t>(_tzcnt_u64(t)));
    }
    out += n;
  }
  p.count = static_cast<size_t>(out - p.at);
}

// vpcompressw/vpcompressb with zeroing. Zen 4 and 5 treat the destination of a zero-masked
// compress as an input, so with the one register GCC picks for every iteration the compresses
// would form a dependency chain (it doubled the cost of the flattening); zeroing the register
// first with an xor idiom cuts the chain. Intrinsics cannot ask for that, hence the asm.
[[FERRY_VBMI2, gnu::always_inline]] inline __m512i compress_words(__mmask32 k, __m512i v) {
  __m512i r;
  asm("vpxord %0, %0, %0\n\tvpcompressw %2, %0%{%1%}%{z%}" : "=&v"(r) : "Yk"(k), "v"(v));
  return r;
}
[[FERRY_VBMI2, gnu::always_inline]] inline __m512i compress_bytes(__mmask64 k, __m512i v) {
  __m512i r;
  asm("vpxord %0, %0, %0\n\tvpcompressb %2, %0%{%1%}%{z%}" : "=&v"(r) : "Yk"(k), "v"(v));
  return r;
}

// Pass 3 with VBMI2: each half of a chunk's transition word selects its positions out of a
// vector of the 32 positions it covers. Both halves are stored whatever they hold (an empty one
// advances by 0), which is cheaper than branching on them.
[[FERRY_VBMI2, gnu::always_inline]] inline void flatten_vbmi2(const BlockBits& bits,
                                                              uint64_t summary, Positions& p) {
  U16x32 iota;
  for (uint16_t i = 0; i < 32; ++i) iota[i] = i;
  uint16_t* out = p.at;
  for (uint64_t s = summary; s != 0; s = _blsr_u64(s)) {
    auto c = static_cast<uint32_t>(_tzcnt_u64(s));
    uint64_t t = bits.w[c];
    U16x32 low = iota + static_cast<uint16_t>(c * kChunk);
    auto lo = static_cast<__mmask32>(t), hi = static_cast<__mmask32>(t >> 32);
    _mm512_storeu_si512(out, compress_words(lo, reinterpret_cast<__m512i>(low)));
    out += _mm_popcnt_u32(lo);
    _mm512_storeu_si512(out, compress_words(hi, reinterpret_cast<__m512i>(low + 32)));
    out += _mm_popcnt_u32(hi);
  }
  p.count = static_cast<size_t>(out - p.at);
}

// Pass 4 with VBMI2: runs of at most kTinyRun bytes, 8 at a time. Each run's record (header
// and changed bytes, at most 8 bytes) is built in a 64-bit lane, the changed bytes fetched by
// one gather; one vpcompressb then drops the unused bytes of every lane, leaving the 8 records
// back to back for a single store. Sparse pages are mostly such runs, and one run at a time
// (header sizes, ULEB128 bytes, bounds checks, a copy) took most of their instructions.
constexpr size_t kTinyGroup = 8;  // runs per group: one 64-bit lane each
constexpr uint64_t kTinyRun = 5;  // a 3-byte header + 5 bytes fill a lane
constexpr size_t kTinyRead = 8;   // bytes the gather reads from a run's start

// Packs the g (1..8) runs whose (start, end) pairs begin at `at` into `packed`. Returns the
// records' length, or 0 when some run does not fit the scheme (too long, after a long
// unchanged run, or starting closer than 8 bytes to the end of the page) or the page is shorter
// than the gather reads.
[[FERRY_VBMI2, gnu::always_inline]] inline size_t pack_tiny(const Sink& o, size_t base,
                                                            size_t last, const uint16_t* at,
                                                            size_t g, __m512i& packed) {
  if (o.page_len < kTinyRead) return 0;
  auto lanes = static_cast<__mmask8>((1u << g) - 1);
  // 16 positions: Positions' slack keeps the load inside the array; the mask drops the rest.
  __m256i positions = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at));
  U64x8 pair = u64x8(_mm512_maskz_cvtepu32_epi64(lanes, positions));
  U64x8 start = (pair & 0xffff) + base;
  U64x8 end = (pair >> 16) + base;
  // Each run's predecessor end: [last, end[0], ..., end[6]].
  U64x8 prev = u64x8(_mm512_maskz_alignr_epi64(0xff, m512(end), m512(splat(last)), 7));
  U64x8 zero_run = start - prev;
  U64x8 run = end - start;
  __mmask8 slow = _mm512_cmpgt_epu64_mask(m512(run), m512(splat(kTinyRun))) |
                  _mm512_cmpge_epu64_mask(m512(zero_run), m512(splat(kShortLimit))) |
                  _mm512_cmpgt_epu64_mask(m512(start), m512(splat(o.page_len - kTinyRead)));
  if ((slow & lanes) != 0) return 0;
  U64x8 bytes = u64x8(
      _mm512_mask_i64gather_epi64(_mm512_setzero_si512(), lanes, m512(start), o.page, 1));
  bytes &= (splat(1) << (run * 8)) - 1;
  // The header: zero_run in ULEB128 (1 or 2 bytes, as uleb2() makes them), then run (< 0x80).
  __mmask8 two = _mm512_cmpge_epu64_mask(m512(zero_run), m512(splat(0x80)));
  U64x8 uleb = zero_run + (zero_run & ~uint64_t{0x7f});
  uleb = u64x8(_mm512_mask_or_epi64(m512(uleb), two, m512(uleb), m512(splat(0x80))));
  U64x8 head = u64x8(_mm512_mask_mov_epi64(m512(splat(2)), two, m512(splat(3))));
  U64x8 record = uleb | (run << ((head - 1) * 8)) | (bytes << (head * 8));
  // Keep byte i of a lane iff i < the record's length (0 in unused lanes).
  U64x8 length = u64x8(_mm512_maskz_mov_epi64(lanes, m512(head + run)));
  const __m512i lane_low_byte = _mm512_set_epi64(0x0808080808080808, 0, 0x0808080808080808, 0,
                                                 0x0808080808080808, 0, 0x0808080808080808, 0);
  const __m512i byte_index = m512(splat(0x0706050403020100));
  __mmask64 keep = _mm512_cmpgt_epu8_mask(_mm512_shuffle_epi8(m512(length), lane_low_byte),
                                          byte_index);
  packed = compress_bytes(keep, m512(record));
  return static_cast<size_t>(_mm_popcnt_u64(keep));
}

// Groups that pack_tiny() refuses, or that come too close to the end of dst for a 64-byte
// store, go through emit_runs(). Locals rather than Sink fields, as in emit_runs().
[[FERRY_VBMI2]] bool emit_runs_vbmi2(Sink& o, size_t base, const uint16_t* at, size_t pairs) {
  uint8_t* const dst = o.dst;
  const size_t cap = o.cap;
  size_t size = o.size, last = o.last_end;
  while (pairs != 0) {
    size_t g = pairs < kTinyGroup ? pairs : kTinyGroup;
    __m512i packed;
    size_t bytes = 0;
    if (cap - size >= sizeof packed) bytes = pack_tiny(o, base, last, at, g, packed);
    if (bytes != 0) {
      _mm512_storeu_si512(dst + size, packed);
      size += bytes;
      last = base + at[2 * g - 1];
    } else {
      o.size = size;
      o.last_end = last;
      if (!emit_runs(o, base, at, g)) return false;
      size = o.size;
      last = o.last_end;
    }
    at += 2 * g;
    pairs -= g;
  }
  o.size = size;
  o.last_end = last;
  return true;
}

// ---- AVX2 ---------------------------------------------------------------------------------
//
// One pass per block compares 256 bytes at a time, skips groups with no change outside a run
// with one vector test, and flattens the other groups' transition words into positions (one
// table lookup for a group whose runs all start and end on chunk boundaries); it also counts
// the block's changed bytes, so that a delta that cannot fit is refused before any of it is
// written (fits_at_least). Emission then takes every run through one path (emit_runs_avx2):
// on dense pages most runs are tens to hundreds of bytes, and a memcpy call or a choice
// between a short-run and a long-run path per run cost more than scanning the page.

#define FERRY_AVX2 gnu::target("avx2,bmi,popcnt")

[[FERRY_AVX2, gnu::always_inline]] inline __m256i load(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// 0xff where the bytes are equal.
struct Eq64 {
  __m256i lo, hi;
};

[[FERRY_AVX2, gnu::always_inline]] inline Eq64 equal_avx2(const uint8_t* a, const uint8_t* b) {
  return {_mm256_cmpeq_epi8(load(a), load(b)), _mm256_cmpeq_epi8(load(a + 32), load(b + 32))};
}

// Bit i set iff byte i of the chunk is equal. The scan works on these rather than on "differs"
// masks: the transitions are the same (see transitions()) and it saves a NOT per chunk.
[[FERRY_AVX2, gnu::always_inline]] inline uint64_t equal_mask(Eq64 e) {
  auto lo = static_cast<uint32_t>(_mm256_movemask_epi8(e.lo));
  auto hi = static_cast<uint32_t>(_mm256_movemask_epi8(e.hi));
  return static_cast<uint64_t>(hi) << 32 | lo;
}

// t = e ^ (e << 1 | carry): a set bit where a changed run starts or ends. `carry` is bit 63 of
// the previous chunk's equal mask (1 = no changed run open coming in). With d = ~e and its carry
// ~carry, d ^ (d << 1 | ~carry) is the same word: both shifted forms are complements.
[[FERRY_AVX2, gnu::always_inline]] inline uint64_t transitions(uint64_t e, uint64_t carry) {
  return e ^ ((e << 1) | carry);
}

// Appends the positions of the set bits of t (a chunk's transition word). Two are written
// whatever t holds (tzcnt of 0 is 64; entries past count are never read): a changed chunk
// mostly holds one run boundary (dense pages) or one changed byte (sparse ones).
[[FERRY_AVX2, gnu::always_inline]] inline void add_transitions(uint64_t t, size_t chunk,
                                                               Positions& p) {
  auto base = static_cast<uint32_t>(chunk);
  uint16_t* out = p.at + p.count;
  p.count += static_cast<size_t>(_mm_popcnt_u64(t));
  out[0] = static_cast<uint16_t>(base + static_cast<uint32_t>(_tzcnt_u64(t)));
  t = _blsr_u64(t);
  out[1] = static_cast<uint16_t>(base + static_cast<uint32_t>(_tzcnt_u64(t)));
  t = _blsr_u64(t);
  for (out += 2; t != 0; t = _blsr_u64(t)) {
    *out++ = static_cast<uint16_t>(base + static_cast<uint32_t>(_tzcnt_u64(t)));
  }
}

// kChunkStarts[bits]: 64 * k for each set bit k of a 4-bit mask, in order, as uint16 lanes.
constexpr auto kChunkStarts = [] {
  std::array<uint64_t, 16> table{};
  for (unsigned bits = 0; bits < 16; ++bits) {
    unsigned lane = 0;
    for (unsigned k = 0; k < 4; ++k) {
      if ((bits >> k & 1) != 0) table[bits] |= uint64_t{kChunk * k} << (16 * lane++);
    }
  }
  return table;
}();

// Appends the starts of the chunks of the group at c named by `bits` (bit k: chunk k), for a
// group whose transitions all fall on chunk starts. One table load and one 8-byte store
// instead of four add_transitions(): runs of whole cache lines, the common dense pattern. The
// lanes cannot carry into each other (c + 192 < 2^16); those past the count are never read.
[[FERRY_AVX2, gnu::always_inline]] inline void add_chunk_starts(uint64_t bits, size_t c,
                                                                Positions& p) {
  uint64_t lanes = kChunkStarts[bits] + c * 0x0001000100010001;
  std::memcpy(p.at + p.count, &lanes, sizeof lanes);
  p.count += static_cast<size_t>(_mm_popcnt_u64(bits));
}

// Sum of the 32 byte counters of v.
[[FERRY_AVX2, gnu::always_inline]] inline size_t sum_bytes(__m256i v) {
  __m256i sums = _mm256_sad_epu8(v, _mm256_setzero_si256());  // four 64-bit partial sums
  __m128i half = _mm_add_epi64(_mm256_castsi256_si128(sums), _mm256_extracti128_si256(sums, 1));
  return static_cast<size_t>(_mm_cvtsi128_si64(half) + _mm_extract_epi64(half, 1));
}

// Fills p with the transition positions of a block of len <= kBlock bytes; returns how many
// of its bytes changed. `carry` is the equal-mask carry (see transitions()).
[[FERRY_AVX2, gnu::always_inline]] inline size_t scan_avx2(const uint8_t* a, const uint8_t* b,
                                                           size_t len, uint64_t& carry,
                                                           Positions& p) {
  p.count = 0;
  // Changed bytes of the groups that were not skipped, as 32 byte counters: each group adds at
  // most 8 to a counter, so a block's 16 groups cannot overflow one. Vector adds rather than
  // popcounts, because the flattening keeps the scalar ports busy.
  __m256i changed_counts = _mm256_setzero_si256();
  const __m256i eight = _mm256_set1_epi8(8);
  size_t changed = 0;  // changed bytes of the chunks after the groups
  size_t c = 0;
  for (; c + 4 * kChunk <= len; c += 4 * kChunk) {
    Eq64 q0 = equal_avx2(a + c, b + c);
    Eq64 q1 = equal_avx2(a + c + 64, b + c + 64);
    Eq64 q2 = equal_avx2(a + c + 128, b + c + 128);
    Eq64 q3 = equal_avx2(a + c + 192, b + c + 192);
    // Unchanged 256 bytes outside a run: one vector test instead of eight movemasks.
    __m256i all = _mm256_and_si256(
        _mm256_and_si256(_mm256_and_si256(q0.lo, q0.hi), _mm256_and_si256(q1.lo, q1.hi)),
        _mm256_and_si256(_mm256_and_si256(q2.lo, q2.hi), _mm256_and_si256(q3.lo, q3.hi)));
    if (carry == 1 && _mm256_testc_si256(all, _mm256_set1_epi8(-1))) continue;
    // Equal bytes are -1 (0xff): 8 + their sum counts the changed ones.
    __m256i sum = _mm256_add_epi8(
        _mm256_add_epi8(_mm256_add_epi8(q0.lo, q0.hi), _mm256_add_epi8(q1.lo, q1.hi)),
        _mm256_add_epi8(_mm256_add_epi8(q2.lo, q2.hi), _mm256_add_epi8(q3.lo, q3.hi)));
    changed_counts = _mm256_add_epi8(changed_counts, _mm256_add_epi8(sum, eight));
    uint64_t e0 = equal_mask(q0), e1 = equal_mask(q1), e2 = equal_mask(q2), e3 = equal_mask(q3);
    uint64_t t0 = transitions(e0, carry);
    uint64_t t1 = transitions(e1, e0 >> 63);
    uint64_t t2 = transitions(e2, e1 >> 63);
    uint64_t t3 = transitions(e3, e2 >> 63);
    carry = e3 >> 63;
    uint64_t any = t0 | t1 | t2 | t3;
    if (any == 0) continue;  // inside a run that goes on
    if (any == 1) {          // each chunk wholly changed or wholly equal
      add_chunk_starts(t0 | t1 << 1 | t2 << 2 | t3 << 3, c, p);
      continue;
    }
    add_transitions(t0, c, p);
    add_transitions(t1, c + 64, p);
    add_transitions(t2, c + 128, p);
    add_transitions(t3, c + 192, p);
  }
  for (; c + kChunk <= len; c += kChunk) {
    uint64_t e = equal_mask(equal_avx2(a + c, b + c));
    add_transitions(transitions(e, carry), c, p);
    carry = e >> 63;
    changed += kChunk - static_cast<size_t>(_mm_popcnt_u64(e));
  }
  if (c < len) {
    // No byte-masked loads in AVX2: compare zero-padded copies (padding is equal, so it
    // reads as unchanged, like the masked AVX-512 tail).
    alignas(32) uint8_t ta[kChunk] = {};
    alignas(32) uint8_t tb[kChunk] = {};
    std::memcpy(ta, a + c, len - c);
    std::memcpy(tb, b + c, len - c);
    uint64_t e = equal_mask(equal_avx2(ta, tb));
    add_transitions(transitions(e, carry), c, p);
    carry = 1;
    changed += kChunk - static_cast<size_t>(_mm_popcnt_u64(e));
  }
  return changed + sum_bytes(changed_counts);
}

[[FERRY_AVX2, gnu::always_inline]] inline void copy32(uint8_t* d, const uint8_t* s) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), load(s));
}

// Emits `pairs` runs from the block at `base`, given as (start, end) position pairs at `at`.
// A run's changed bytes go as ceil(run / 32) 32-byte moves and its header as two 2-byte
// stores, so the writes reach up to 4 + 31 bytes past the run and the reads 31 bytes past
// it: runs too close to the end of dst or of the page go through emit(). Not inlined: in
// encode_avx2() the loop's bounds lived on the stack.
[[FERRY_AVX2, gnu::noinline]] bool emit_runs_avx2(Sink& o, size_t base, const uint16_t* at,
                                                  size_t pairs) {
  constexpr size_t kSlack = 4 + 31;
  // Runs that end in the last 31 bytes of the page: only the last few of the last block.
  const size_t end_limit = o.page_len >= 31 ? o.page_len - 31 : 0;
  size_t moved = pairs;
  while (moved != 0 && base + at[2 * moved - 1] > end_limit) --moved;
  // Locals, not Sink fields, as in emit_runs(); positions relative to the block (`last` may
  // lie before it: the subtraction wraps and comes back), and dst as a pointer.
  const uint8_t* block = o.page + base;
  uint8_t* out = o.dst + o.size;
  size_t last = o.last_end - base;
  // run <= out_end - out keeps the moves inside dst. Signed: out may already be past out_end
  // (emit() fills dst up to cap); never true when out_end is dst, as run >= 1.
  uint8_t* const out_end = o.dst + (o.cap >= kSlack ? o.cap - kSlack : 0);
  for (const uint16_t* stop = at + 2 * moved; at != stop; at += 2) {
    size_t start = at[0], end = at[1];
    size_t zero_run = start - last, run = end - start;
    if (__builtin_expect(
            (zero_run | run) < kShortLimit && static_cast<ptrdiff_t>(run) <= out_end - out, 1)) {
      // Lengths below 2^14: bit 14 of length + 0x3f80 says whether it takes a second byte.
      size_t zero_more = (zero_run + 0x3f80) >> 14, run_more = (run + 0x3f80) >> 14;
      store16(out, zero_run + (zero_run & ~size_t{0x7f}) + (zero_more << 7));
      out += 1 + zero_more;
      store16(out, run + (run & ~size_t{0x7f}) + (run_more << 7));
      out += 1 + run_more;
      copy32(out, block + start);
      for (size_t k = 32; k < run; k += 32) copy32(out + k, block + start + k);
      out += run;
      last = end;
    } else {
      o.size = static_cast<size_t>(out - o.dst);
      o.last_end = base + last;
      if (!emit(o, base + start, base + end)) return false;
      out = o.dst + o.size;
      last = end;
    }
  }
  o.size = static_cast<size_t>(out - o.dst);
  o.last_end = base + last;
  for (const uint16_t* stop = at + 2 * (pairs - moved); at != stop; at += 2) {
    if (!emit(o, base + at[0], base + at[1])) return false;
  }
  return true;
}

}  // namespace

// Without VBMI2 (Skylake-SP, Cascade Lake): passes 1 and 2 only.
[[FERRY_AVX512]] static long encode_avx512_plain(const uint8_t* old_page,
                                                 const uint8_t* new_page, size_t len,
                                                 uint8_t* dst, size_t dst_cap) {
  Sink o(new_page, len, dst, dst_cap);
  OpenRun run;
  uint64_t carry = 0;
  BlockBits bits;
  Positions p;
  for (size_t base = 0; base < len; base += kBlock) {
    size_t n = len - base < kBlock ? len - base : kBlock;
    flatten_avx512(bits, scan_avx512(old_page + base, new_page + base, n, carry, bits), p);
    if (!emit_block<emit_runs>(o, base, p, run)) return kDoesNotFit;
  }
  return finish(o, run);
}

[[FERRY_VBMI2]] static long encode_avx512_vbmi2(const uint8_t* old_page,
                                                const uint8_t* new_page, size_t len,
                                                uint8_t* dst, size_t dst_cap) {
  Sink o(new_page, len, dst, dst_cap);
  OpenRun run;
  uint64_t carry = 0;
  BlockBits bits;
  Positions p;
  for (size_t base = 0; base < len; base += kBlock) {
    size_t n = len - base < kBlock ? len - base : kBlock;
    flatten_vbmi2(bits, scan_avx512(old_page + base, new_page + base, n, carry, bits), p);
    if (!emit_block<emit_runs_vbmi2>(o, base, p, run)) return kDoesNotFit;
  }
  return finish(o, run);
}

long encode_avx512(const uint8_t* old_page, const uint8_t* new_page, size_t len, uint8_t* dst,
                   size_t dst_cap) {
  if (len > UINT32_MAX) return kDoesNotFit;
  // variant_available() has checked AVX-512BW; VBMI2 only picks the faster passes.
  static const bool vbmi2 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vbmi2") != 0;
  }();
  return vbmi2 ? encode_avx512_vbmi2(old_page, new_page, len, dst, dst_cap)
               : encode_avx512_plain(old_page, new_page, len, dst, dst_cap);
}

[[FERRY_AVX2]] long encode_avx2(const uint8_t* old_page, const uint8_t* new_page, size_t len,
                                uint8_t* dst, size_t dst_cap) {
  if (len > UINT32_MAX) return kDoesNotFit;
  Sink o(new_page, len, dst, dst_cap);
  OpenRun run;
  uint64_t carry = 1;  // equal-mask carry: no run open at the start of the page
  Positions p;
  for (size_t base = 0; base < len; base += kBlock) {
    size_t n = len - base < kBlock ? len - base : kBlock;
    size_t changed = scan_avx2(old_page + base, new_page + base, n, carry, p);
    if (!fits_at_least(o, changed, p)) return kDoesNotFit;
    if (!emit_block<emit_runs_avx2>(o, base, p, run)) return kDoesNotFit;
  }
  return finish(o, run);
}

#undef FERRY_AVX512
#undef FERRY_VBMI2
#undef FERRY_AVX2

}  // namespace ferry::xbzrle
