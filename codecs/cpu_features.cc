#include "codecs/cpu_features.h"

#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace ferry {
namespace {

CpuFeatures detect() {
  // GCC's __builtin_cpu_supports also checks that the OS saves the wider register state.
  __builtin_cpu_init();
  CpuFeatures f;
  f.sse2 = __builtin_cpu_supports("sse2");
  f.avx2 = __builtin_cpu_supports("avx2");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  return f;
}

SimdLevel level_cap_from_env() {
  const char* v = std::getenv("FERRY_SIMD");
  if (v == nullptr || *v == '\0') return SimdLevel::kAvx512;
  for (SimdLevel l : {SimdLevel::kScalar, SimdLevel::kSse2, SimdLevel::kAvx2, SimdLevel::kAvx512}) {
    if (std::strcmp(v, simd_level_name(l)) == 0) return l;
  }
  return SimdLevel::kAvx512;  // unknown value: no cap
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

bool cpu_supports(SimdLevel level) {
  const CpuFeatures& f = cpu_features();
  switch (level) {
    case SimdLevel::kScalar: return true;
    case SimdLevel::kSse2: return f.sse2;
    case SimdLevel::kAvx2: return f.avx2;
    case SimdLevel::kAvx512: return f.avx512f && f.avx512bw;
  }
  return false;
}

SimdLevel dispatch_level() {
  static const SimdLevel level = [] {
    SimdLevel cap = level_cap_from_env();
    for (int l = static_cast<int>(cap); l > 0; --l) {
      if (cpu_supports(static_cast<SimdLevel>(l))) return static_cast<SimdLevel>(l);
    }
    return SimdLevel::kScalar;
  }();
  return level;
}

const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::kScalar: return "scalar";
    case SimdLevel::kSse2: return "sse2";
    case SimdLevel::kAvx2: return "avx2";
    case SimdLevel::kAvx512: return "avx512";
  }
  return "unknown";
}

}  // namespace ferry
