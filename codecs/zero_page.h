// Zero-page detection: the first question the sender asks about every dirty page, so it must
// run at memory bandwidth when the page is cold and far faster than memcmp when it is hot.
//
// Every variant early-outs on the first non-zero vector group and never reads past `len`
// (the AVX-512 tail uses a masked load, SSE2/AVX2 an overlapping final load inside the buffer).
#pragma once

#include <cstddef>
#include <cstdint>

namespace ferry {

// True if all `len` bytes at `p` are zero. Any length and alignment. Dispatched once per process
// to the best variant the CPU has (capped by FERRY_SIMD, see codecs/cpu_features.h).
bool is_zero_page(const void* p, size_t len);

// Tests `count` consecutive pages of `page_size` bytes starting at `base`; sets bit i of
// `zero_bits` (an array of (count + 63) / 64 words, fully overwritten) when page i is zero.
// Returns how many pages are zero.
size_t find_zero_pages(const void* base, size_t page_size, size_t count, uint64_t* zero_bits);

namespace zero_page {

enum class Variant { kScalar, kSse2, kAvx2, kAvx512 };
inline constexpr Variant kAllVariants[] = {Variant::kScalar, Variant::kSse2, Variant::kAvx2,
                                           Variant::kAvx512};

using Fn = bool (*)(const void* p, size_t len);

// Each variant, callable directly by tests and benchmarks. Only call a SIMD one when
// available() says the CPU has it.
bool scalar(const void* p, size_t len);
bool sse2(const void* p, size_t len);
bool avx2(const void* p, size_t len);
bool avx512(const void* p, size_t len);

bool available(Variant v);
const char* name(Variant v);
Fn function(Variant v);
Variant best();  // the variant is_zero_page() dispatches to

}  // namespace zero_page
}  // namespace ferry
