#include "bench/codecs/page_mix.h"

#include <cstring>

namespace ferry::bench {
namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

}  // namespace

void fill_random(uint8_t* page, size_t len, uint64_t seed) {
  uint64_t s = seed;
  for (size_t i = 0; i < len; i += 8) {
    uint64_t v = splitmix64(s);
    std::memcpy(page + i, &v, len - i < 8 ? len - i : 8);
  }
}

void fill_text(uint8_t* page, size_t len, uint64_t seed) {
  static const char* const kWords[] = {
      "the ",     "guest ",   "memory ",  "is ",     "copied ",   "while ",    "it ",
      "keeps ",   "running ", "and ",     "every ",  "dirty ",    "page ",     "goes ",
      "again\n",  "kernel ",  "buffer ",  "struct ", "return ",   "if (",      "0x1f, ",
      "int ",     "error ",   "value;\n", "channel ", "throughput ", "of ",    "migration "};
  constexpr size_t kCount = sizeof(kWords) / sizeof(kWords[0]);
  uint64_t s = seed;
  size_t i = 0;
  while (i < len) {
    const char* w = kWords[splitmix64(s) % kCount];
    size_t n = std::strlen(w);
    if (n > len - i) n = len - i;
    std::memcpy(page + i, w, n);
    i += n;
  }
}

}  // namespace ferry::bench
