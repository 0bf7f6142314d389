// XBZRLE encoders for AVX2 and AVX-512BW. Same canonical output as encode_scalar().
//
// Plan: compare the pages 64 bytes at a time into a 64-bit "differs" mask, turn masks into
// transition bits (t = m ^ (m << 1 | bit 63 of the previous mask): a set bit is where a changed
// run starts or ends), flatten the transition positions of a 4 KiB block into a small array,
// then emit runs from consecutive (start, end) pairs. Splitting scanning from emitting keeps
// per-run branches out of the scan loop: with a few scattered changes per page, "how many runs
// does this chunk hold" is unpredictable and a loop over them would mispredict once per chunk.
// Unchanged groups of 4 chunks are skipped on the masks alone.
//
// Only the scan loops use intrinsics and carry target attributes (not -m flags for the file, so
// no inline function from a header can be compiled for AVX here and picked by the linker for
// generic code). Helpers without a target attribute are always_inline into them: GCC allows a
// callee whose ISA is a subset of the caller's, never the other way round.
#include <immintrin.h>

#include <cstring>

#include "codecs/xbzrle.h"

namespace ferry::xbzrle {
namespace {

constexpr size_t kChunk = 64;
constexpr size_t kBlock = 4096;  // bytes per flattened block: positions fit in uint16_t
constexpr uint64_t kTopBit = uint64_t{1} << 63;
constexpr size_t kShortLimit = size_t{1} << 14;  // lengths that take at most 2 ULEB128 bytes

// Transition positions of one block. The flatten step writes two entries past the count
// unconditionally (no branch for the usual 0-2 transitions per chunk), hence the slack.
struct Positions {
  uint16_t at[kBlock + 2];
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
  // emit_block()'s fast path (run <= 16 bytes, moved as 16 bytes) applies while
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

[[gnu::always_inline]] inline void add_transitions(uint64_t t, size_t chunk, Positions& p) {
  auto base = static_cast<uint32_t>(chunk);
  uint16_t* out = p.at + p.count;
  p.count += static_cast<size_t>(__builtin_popcountll(t));
  // `| kTopBit` keeps ctz defined when t is already 0; those entries lie past count.
  out[0] = static_cast<uint16_t>(base + static_cast<uint32_t>(__builtin_ctzll(t | kTopBit)));
  t &= t - 1;
  out[1] = static_cast<uint16_t>(base + static_cast<uint32_t>(__builtin_ctzll(t | kTopBit)));
  t &= t - 1;
  for (out += 2; t != 0; t &= t - 1) {
    *out++ = static_cast<uint16_t>(base + static_cast<uint32_t>(__builtin_ctzll(t)));
  }
}

// `carry` is bit 63 of the previous chunk's mask: whether a changed run is open coming in.
[[gnu::always_inline]] inline uint64_t transitions(uint64_t m, uint64_t carry) {
  return m ^ ((m << 1) | carry);
}

[[gnu::always_inline]] inline void store16(uint8_t* p, size_t v) {
  auto x = static_cast<uint16_t>(v);
  std::memcpy(p, &x, 2);
}

// Two ULEB128 bytes for v < 2^14; the caller advances by 1 or 2 and lets the next field
// overwrite a spare second byte.
[[gnu::always_inline]] inline size_t uleb2(size_t v) {
  size_t more = v >= 0x80;
  return (v & 0x7f) | (more << 7) | ((v >> 7) << 8);
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

// Emits the runs of the block at `base` from its transition positions (they alternate start,
// end, start, ... after an end first if a run was open when the block began).
[[gnu::always_inline]] inline bool emit_block(Sink& o, size_t base, const Positions& p,
                                              OpenRun& r) {
  size_t k = 0;
  if (r.open) {
    if (p.count == 0) return true;
    if (!emit(o, r.start, base + p.at[0])) return false;
    k = 1;
  }
  // The hot loop of sparse pages. Locals, not Sink fields: every byte store through dst may
  // alias the struct, which would force reloads of all of them after each run.
  const uint8_t* page = o.page;
  uint8_t* dst = o.dst;
  size_t size = o.size, last = o.last_end;
  const size_t fast_size_end = o.fast_size_end, fast_start_end = o.fast_start_end;
  for (; k + 1 < p.count; k += 2) {
    size_t start = base + p.at[k], end = base + p.at[k + 1];
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
  r.open = k < p.count;
  if (r.open) r.start = base + p.at[k];
  return true;
}

// Closes a changed run that reaches the end of the page.
[[gnu::always_inline]] inline long finish(Sink& o, const OpenRun& r) {
  if (r.open && !emit(o, r.start, o.page_len)) return kDoesNotFit;
  return static_cast<long>(o.size);
}

// ---- AVX-512BW ----------------------------------------------------------------------------

#define FERRY_AVX512 gnu::target("avx512f,avx512bw,bmi,popcnt")

[[FERRY_AVX512, gnu::always_inline]] inline __mmask64 diff_avx512(const uint8_t* a,
                                                                  const uint8_t* b) {
  return _mm512_cmpneq_epi8_mask(_mm512_loadu_si512(a), _mm512_loadu_si512(b));
}

// Scans one block (len <= kBlock) into transition positions; `carry` links the blocks.
[[FERRY_AVX512, gnu::always_inline]] inline void scan_avx512(const uint8_t* a, const uint8_t* b,
                                                             size_t len, uint64_t& carry,
                                                             Positions& p) {
  p.count = 0;
  size_t c = 0;
  for (; c + 4 * kChunk <= len; c += 4 * kChunk) {
    __mmask64 m0 = diff_avx512(a + c, b + c);
    __mmask64 m1 = diff_avx512(a + c + 64, b + c + 64);
    __mmask64 m2 = diff_avx512(a + c + 128, b + c + 128);
    __mmask64 m3 = diff_avx512(a + c + 192, b + c + 192);
    // Unchanged 256 bytes outside a run: decided on the mask registers, nothing else to do.
    if (carry == 0 && _kortestz_mask64_u8(_kor_mask64(m0, m1), _kor_mask64(m2, m3))) continue;
    uint64_t t0 = transitions(m0, carry);
    uint64_t t1 = transitions(m1, m0 >> 63);
    uint64_t t2 = transitions(m2, m1 >> 63);
    uint64_t t3 = transitions(m3, m2 >> 63);
    carry = m3 >> 63;
    // 256 bytes inside one long changed run (or equal bytes right after a run ended in the
    // previous group): no transition to record.
    if ((t0 | t1 | t2 | t3) == 0) continue;
    add_transitions(t0, c, p);
    add_transitions(t1, c + 64, p);
    add_transitions(t2, c + 128, p);
    add_transitions(t3, c + 192, p);
  }
  for (; c + kChunk <= len; c += kChunk) {
    uint64_t m = diff_avx512(a + c, b + c);
    add_transitions(transitions(m, carry), c, p);
    carry = m >> 63;
  }
  if (c < len) {
    // Masked loads never touch the bytes past the page. The mask's top bits stay 0, so a run
    // reaching the end shows up as a transition at `len`.
    __mmask64 k = (uint64_t{1} << (len - c)) - 1;
    uint64_t m = _mm512_cmpneq_epi8_mask(_mm512_maskz_loadu_epi8(k, a + c),
                                         _mm512_maskz_loadu_epi8(k, b + c));
    add_transitions(transitions(m, carry), c, p);
    carry = 0;
  }
}

// ---- AVX2 ---------------------------------------------------------------------------------

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

[[FERRY_AVX2, gnu::always_inline]] inline uint64_t diff_mask(Eq64 e) {
  auto lo = static_cast<uint32_t>(_mm256_movemask_epi8(e.lo));
  auto hi = static_cast<uint32_t>(_mm256_movemask_epi8(e.hi));
  return ~(static_cast<uint64_t>(hi) << 32 | lo);
}

[[FERRY_AVX2, gnu::always_inline]] inline uint64_t diff_avx2(const uint8_t* a, const uint8_t* b) {
  return diff_mask(equal_avx2(a, b));
}

[[FERRY_AVX2, gnu::always_inline]] inline void scan_avx2(const uint8_t* a, const uint8_t* b,
                                                         size_t len, uint64_t& carry,
                                                         Positions& p) {
  p.count = 0;
  size_t c = 0;
  for (; c + 4 * kChunk <= len; c += 4 * kChunk) {
    Eq64 e0 = equal_avx2(a + c, b + c);
    Eq64 e1 = equal_avx2(a + c + 64, b + c + 64);
    Eq64 e2 = equal_avx2(a + c + 128, b + c + 128);
    Eq64 e3 = equal_avx2(a + c + 192, b + c + 192);
    // Unchanged 256 bytes outside a run: one vector test instead of eight movemasks.
    __m256i all = _mm256_and_si256(
        _mm256_and_si256(_mm256_and_si256(e0.lo, e0.hi), _mm256_and_si256(e1.lo, e1.hi)),
        _mm256_and_si256(_mm256_and_si256(e2.lo, e2.hi), _mm256_and_si256(e3.lo, e3.hi)));
    if (carry == 0 && _mm256_testc_si256(all, _mm256_set1_epi8(-1))) continue;
    uint64_t m0 = diff_mask(e0), m1 = diff_mask(e1), m2 = diff_mask(e2), m3 = diff_mask(e3);
    uint64_t t0 = transitions(m0, carry);
    uint64_t t1 = transitions(m1, m0 >> 63);
    uint64_t t2 = transitions(m2, m1 >> 63);
    uint64_t t3 = transitions(m3, m2 >> 63);
    carry = m3 >> 63;
    if ((t0 | t1 | t2 | t3) == 0) continue;
    add_transitions(t0, c, p);
    add_transitions(t1, c + 64, p);
    add_transitions(t2, c + 128, p);
    add_transitions(t3, c + 192, p);
  }
  for (; c + kChunk <= len; c += kChunk) {
    uint64_t m = diff_avx2(a + c, b + c);
    add_transitions(transitions(m, carry), c, p);
    carry = m >> 63;
  }
  if (c < len) {
    // No byte-masked loads in AVX2: compare zero-padded copies (padding is equal, so it
    // reads as unchanged, like the masked AVX-512 tail).
    alignas(32) uint8_t ta[kChunk] = {};
    alignas(32) uint8_t tb[kChunk] = {};
    std::memcpy(ta, a + c, len - c);
    std::memcpy(tb, b + c, len - c);
    add_transitions(transitions(diff_avx2(ta, tb), carry), c, p);
    carry = 0;
  }
}

}  // namespace

[[FERRY_AVX512]] long encode_avx512(const uint8_t* old_page, const uint8_t* new_page, size_t len,
                                    uint8_t* dst, size_t dst_cap) {
  if (len > UINT32_MAX) return kDoesNotFit;
  Sink o(new_page, len, dst, dst_cap);
  OpenRun run;
  uint64_t carry = 0;
  Positions p;
  for (size_t base = 0; base < len; base += kBlock) {
    size_t n = len - base < kBlock ? len - base : kBlock;
    scan_avx512(old_page + base, new_page + base, n, carry, p);
    if (!emit_block(o, base, p, run)) return kDoesNotFit;
  }
  return finish(o, run);
}

[[FERRY_AVX2]] long encode_avx2(const uint8_t* old_page, const uint8_t* new_page, size_t len,
                                uint8_t* dst, size_t dst_cap) {
  if (len > UINT32_MAX) return kDoesNotFit;
  Sink o(new_page, len, dst, dst_cap);
  OpenRun run;
  uint64_t carry = 0;
  Positions p;
  for (size_t base = 0; base < len; base += kBlock) {
    size_t n = len - base < kBlock ? len - base : kBlock;
    scan_avx2(old_page + base, new_page + base, n, carry, p);
    if (!emit_block(o, base, p, run)) return kDoesNotFit;
  }
  return finish(o, run);
}

#undef FERRY_AVX512
#undef FERRY_AVX2

}  // namespace ferry::xbzrle
