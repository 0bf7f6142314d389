#include "engine/ram/page_hash.h"

#include <bit>
#include <cstring>

namespace ferry {
namespace {
constexpr uint64_t kP1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t kP2 = 0xC2B2AE3D27D4EB4Full;
constexpr uint64_t kP3 = 0x165667B19E3779F9ull;

inline uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline uint64_t round(uint64_t acc, uint64_t w) {
  acc += w * kP2;
  acc = std::rotl(acc, 31);
  return acc * kP1;
}
}  // namespace

uint64_t hash64(const void* data, size_t len, uint64_t seed) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t a = seed + kP1 + kP2, b = seed + kP2, c = seed, d = seed - kP1;
  size_t i = 0;
  for (; i + 32 <= len; i += 32) {
    a = round(a, load64(p + i));
    b = round(b, load64(p + i + 8));
    c = round(c, load64(p + i + 16));
    d = round(d, load64(p + i + 24));
  }
  uint64_t h = std::rotl(a, 1) + std::rotl(b, 7) + std::rotl(c, 12) + std::rotl(d, 18);
  h = (h ^ round(0, a)) * kP1 + kP3;
  h = (h ^ round(0, b)) * kP1 + kP3;
  h = (h ^ round(0, c)) * kP1 + kP3;
  h = (h ^ round(0, d)) * kP1 + kP3;
  h += len;
  for (; i + 8 <= len; i += 8) h = std::rotl(h ^ round(0, load64(p + i)), 27) * kP1 + kP3;
  for (; i < len; ++i) h = std::rotl(h ^ (p[i] * kP3), 11) * kP1;
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= kP3;
  h ^= h >> 32;
  return h;
}

}  // namespace ferry
