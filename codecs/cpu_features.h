// Run-time CPU feature detection shared by every SIMD codec.
//
// Detection runs once. The environment variable FERRY_SIMD (scalar|sse2|avx2|avx512) caps the
// level the dispatchers pick, so the fallbacks can be exercised on a machine that has AVX-512.
#pragma once

namespace ferry {

enum class SimdLevel { kScalar = 0, kSse2 = 1, kAvx2 = 2, kAvx512 = 3 };

struct CpuFeatures {
  bool sse2 = false;
  bool avx2 = false;
  bool avx512f = false;
  bool avx512bw = false;  // byte/word compares into mask registers (zero page, XBZRLE)
};

// What the CPU (and the OS, via XSAVE state) supports.
const CpuFeatures& cpu_features();

// Whether code compiled for `level` may run here (ignores the FERRY_SIMD cap).
bool cpu_supports(SimdLevel level);

// The highest supported level, capped by FERRY_SIMD when set. Decided once per process.
SimdLevel dispatch_level();

const char* simd_level_name(SimdLevel level);

}  // namespace ferry
