// A fast 64-bit hash of a RAM block for the --verify completion check. Not cryptographic: it
// catches a page that went missing or landed in the wrong place, at memory bandwidth, so both
// sides can hash gigabytes after the downtime without stretching the migration much.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ferry {

// Four independent multiply-rotate lanes over 8-byte words (xxHash64-style rounds), so the
// multiplies of consecutive words overlap instead of forming one dependency chain.
uint64_t hash64(const void* data, size_t len, uint64_t seed = 0);

}  // namespace ferry
