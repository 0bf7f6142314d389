// XXH3 builds for page_digest.cc's dispatcher (SSE2 is x86-64's baseline and lives there).
#pragma once

#include <cstddef>
#include <cstdint>

namespace ferry::ram {

#if defined(__x86_64__) || defined(_M_X64)
#define FERRY_HAVE_XXH3_AVX2 1
uint64_t xxh3_avx2(const void* data, size_t len);
#endif

}  // namespace ferry::ram
