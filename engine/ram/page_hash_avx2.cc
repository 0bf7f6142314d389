// XXH3 built for AVX2 (this file alone gets -mavx2, engine/CMakeLists.txt). page_digest.cc
// calls it only when the CPU has AVX2: about twice the SSE2 build's speed on pages in cache,
// which is where the destination hashes them, right after they landed.
#include "engine/ram/page_hash_variants.h"

#ifdef FERRY_HAVE_XXH3_AVX2
#define XXH_INLINE_ALL
#define XXH_VECTOR XXH_AVX2
#include <xxhash.h>

namespace ferry::ram {

uint64_t xxh3_avx2(const void* data, size_t len) { return XXH3_64bits(data, len); }

}  // namespace ferry::ram
#endif
