// Page contents for the codec benchmarks: deterministic, so runs compare like with like.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ferry::bench {

// Uniformly random bytes: incompressible.
void fill_random(uint8_t* page, size_t len, uint64_t seed);

// English-like words and newlines: LZ4 shrinks it about 2-3x, like text and code pages do.
void fill_text(uint8_t* page, size_t len, uint64_t seed);

}  // namespace ferry::bench
