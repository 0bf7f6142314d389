#include "codecs/zero_page.h"

#include <immintrin.h>

#include <atomic>
#include <cstring>

#include "codecs/cpu_features.h"

namespace ferry {
namespace zero_page {
namespace {

inline uint64_t load64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);  // unaligned-safe; compiles to one mov
  return v;
}

bool scalar_bytes(const unsigned char* p, size_t len) {
  unsigned char acc = 0;
  for (size_t i = 0; i < len; ++i) acc |= p[i];
  return acc == 0;
}

}  // namespace

bool scalar(const void* ptr, size_t len) {
  auto* p = static_cast<const unsigned char*>(ptr);
  if (len < 8) return scalar_bytes(p, len);
  // Word-at-a-time; 8 words are OR-ed before each branch so the loop is not branch-bound.
  size_t i = 0;
  for (; i + 64 <= len; i += 64) {
    uint64_t acc = load64(p + i) | load64(p + i + 8) | load64(p + i + 16) | load64(p + i + 24) |
                   load64(p + i + 32) | load64(p + i + 40) | load64(p + i + 48) |
                   load64(p + i + 56);
    if (acc != 0) return false;
  }
  for (; i + 8 <= len; i += 8) {
    if (load64(p + i) != 0) return false;
  }
  return i == len || load64(p + len - 8) == 0;  // overlapping tail word, still inside the buffer
}

// Helpers are free functions, not lambdas: a lambda does not inherit its caller's target.
#define FERRY_SSE2 __attribute__((target("sse2"), always_inline)) inline
#define FERRY_AVX2 __attribute__((target("avx2"), always_inline)) inline
#define FERRY_AVX512 __attribute__((target("avx512f,avx512bw"), always_inline)) inline

namespace {
FERRY_SSE2 __m128i load16(const unsigned char* p) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}
FERRY_SSE2 bool zero16(__m128i v) {
  return _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_setzero_si128())) == 0xFFFF;
}
FERRY_AVX2 __m256i load32(const unsigned char* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
FERRY_AVX2 bool zero32(__m256i v) { return _mm256_testz_si256(v, v) != 0; }
FERRY_AVX512 __m512i load64v(const unsigned char* p) { return _mm512_loadu_si512(p); }
FERRY_AVX512 bool zero64(__m512i v) { return _mm512_test_epi64_mask(v, v) == 0; }
}  // namespace

__attribute__((target("sse2"))) bool sse2(const void* ptr, size_t len) {
  auto* p = static_cast<const unsigned char*>(ptr);
  if (len < 16) return scalar(p, len);
  if (!zero16(load16(p))) return false;
  size_t i = 16;
  for (; i + 64 <= len; i += 64) {
    __m128i acc = _mm_or_si128(_mm_or_si128(load16(p + i), load16(p + i + 16)),
                               _mm_or_si128(load16(p + i + 32), load16(p + i + 48)));
    if (!zero16(acc)) return false;
  }
  for (; i + 16 <= len; i += 16) {
    if (!zero16(load16(p + i))) return false;
  }
  return i == len || zero16(load16(p + len - 16));  // overlapping tail, inside the buffer
}

__attribute__((target("avx2"))) bool avx2(const void* ptr, size_t len) {
  auto* p = static_cast<const unsigned char*>(ptr);
  if (len < 32) return sse2(p, len);
  if (!zero32(load32(p))) return false;
  size_t i = 32;
  for (; i + 128 <= len; i += 128) {
    __m256i acc = _mm256_or_si256(_mm256_or_si256(load32(p + i), load32(p + i + 32)),
                                  _mm256_or_si256(load32(p + i + 64), load32(p + i + 96)));
    if (!zero32(acc)) return false;
  }
  for (; i + 32 <= len; i += 32) {
    if (!zero32(load32(p + i))) return false;
  }
  return i == len || zero32(load32(p + len - 32));
}

__attribute__((target("avx512f,avx512bw"))) bool avx512(const void* ptr, size_t len) {
  auto* p = static_cast<const unsigned char*>(ptr);
  if (len < 64) {
    // Masked-off bytes are neither read nor faulted on.
    __mmask64 m = len == 0 ? 0 : (~0ULL >> (64 - len));
    return zero64(_mm512_maskz_loadu_epi8(m, p));
  }
  if (!zero64(load64v(p))) return false;
  size_t i = 64;
  for (; i + 256 <= len; i += 256) {
    // ternarylogic 0xFE = a|b|c: two instructions fold four vectors.
    __m512i acc = _mm512_ternarylogic_epi64(load64v(p + i), load64v(p + i + 64),
                                            load64v(p + i + 128), 0xFE);
    acc = _mm512_or_si512(acc, load64v(p + i + 192));
    if (!zero64(acc)) return false;
  }
  for (; i + 64 <= len; i += 64) {
    if (!zero64(load64v(p + i))) return false;
  }
  return i == len || zero64(load64v(p + len - 64));
}

bool available(Variant v) {
  switch (v) {
    case Variant::kScalar: return true;
    case Variant::kSse2: return cpu_supports(SimdLevel::kSse2);
    case Variant::kAvx2: return cpu_supports(SimdLevel::kAvx2);
    case Variant::kAvx512: return cpu_supports(SimdLevel::kAvx512);
  }
  return false;
}

const char* name(Variant v) {
  switch (v) {
    case Variant::kScalar: return "scalar";
    case Variant::kSse2: return "sse2";
    case Variant::kAvx2: return "avx2";
    case Variant::kAvx512: return "avx512";
  }
  return "unknown";
}

Fn function(Variant v) {
  switch (v) {
    case Variant::kScalar: return &scalar;
    case Variant::kSse2: return &sse2;
    case Variant::kAvx2: return &avx2;
    case Variant::kAvx512: return &avx512;
  }
  return &scalar;
}

Variant best() {
  switch (dispatch_level()) {
    case SimdLevel::kAvx512: return Variant::kAvx512;
    case SimdLevel::kAvx2: return Variant::kAvx2;
    case SimdLevel::kSse2: return Variant::kSse2;
    case SimdLevel::kScalar: return Variant::kScalar;
  }
  return Variant::kScalar;
}

namespace {

bool resolve_and_call(const void* p, size_t len);

// Starts at a resolver so calls made during static initialisation still work; relaxed loads
// of a pointer cost nothing on x86.
std::atomic<Fn> g_impl{&resolve_and_call};

bool resolve_and_call(const void* p, size_t len) {
  Fn f = function(best());
  g_impl.store(f, std::memory_order_relaxed);
  return f(p, len);
}

}  // namespace
}  // namespace zero_page

bool is_zero_page(const void* p, size_t len) {
  return zero_page::g_impl.load(std::memory_order_relaxed)(p, len);
}

size_t find_zero_pages(const void* base, size_t page_size, size_t count, uint64_t* zero_bits) {
  // Resolve once for the whole range rather than per page.
  if (zero_page::g_impl.load(std::memory_order_relaxed) == &zero_page::resolve_and_call) {
    is_zero_page(base, 0);
  }
  zero_page::Fn f = zero_page::g_impl.load(std::memory_order_relaxed);
  auto* p = static_cast<const unsigned char*>(base);
  size_t zeros = 0;
  for (size_t w = 0; w < (count + 63) / 64; ++w) {
    uint64_t bits = 0;
    size_t n = count - w * 64 < 64 ? count - w * 64 : 64;
    for (size_t b = 0; b < n; ++b) {
      if (f(p + (w * 64 + b) * page_size, page_size)) bits |= uint64_t{1} << b;
    }
    zero_bits[w] = bits;
    zeros += static_cast<size_t>(__builtin_popcountll(bits));
  }
  return zeros;
}

}  // namespace ferry
