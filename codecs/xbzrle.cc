// XBZRLE: portable encoder, decoder and run-time dispatch. The SIMD encoders are in
// xbzrle_simd.cc; all encoders must produce the same canonical bytes.
#include "codecs/xbzrle.h"

#include <cstring>

#include "codecs/cpu_features.h"

namespace ferry::xbzrle {
namespace {

constexpr uint64_t kLowBits = 0x0101010101010101ULL;
constexpr uint64_t kHighBits = 0x8080808080808080ULL;

inline uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);  // unaligned loads are cheap on every target we care about
  return v;
}

// Non-zero iff some byte of x is zero. The lowest set bit is exact (borrows only create false
// hits above a real zero byte), so ctz finds the first zero byte on a little-endian machine.
inline uint64_t zero_bytes(uint64_t x) { return (x - kLowBits) & ~x & kHighBits; }

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "ctz-based byte search assumes LE");

// Index of the first byte at or after i where the pages differ, or len.
inline size_t unchanged_end(const uint8_t* a, const uint8_t* b, size_t i, size_t len) {
  for (; i + 8 <= len; i += 8) {
    uint64_t x = load64(a + i) ^ load64(b + i);
    if (x != 0) return i + static_cast<size_t>(__builtin_ctzll(x)) / 8;
  }
  while (i < len && a[i] == b[i]) ++i;
  return i;
}

// Index of the first byte at or after i where the pages are equal, or len.
inline size_t changed_end(const uint8_t* a, const uint8_t* b, size_t i, size_t len) {
  for (; i + 8 <= len; i += 8) {
    uint64_t z = zero_bytes(load64(a + i) ^ load64(b + i));
    if (z != 0) return i + static_cast<size_t>(__builtin_ctzll(z)) / 8;
  }
  while (i < len && a[i] != b[i]) ++i;
  return i;
}

inline size_t uleb_size(uint32_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

inline uint8_t* put_uleb(uint8_t* p, uint32_t v) {
  while (v >= 0x80) {
    *p++ = static_cast<uint8_t>(v | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<uint8_t>(v);
  return p;
}

// Reads one ULEB128 length. Like QEMU's uleb128_decode_small, a non-minimal encoding (e.g.
// 0x85 0x00 for 5) is accepted; unlike it, up to 5 bytes (32 bits), for pages above 16 KiB.
DecodeError read_uleb(const uint8_t* p, size_t avail, uint32_t* value, size_t* size) {
  uint64_t v = 0;
  for (size_t k = 0; k < 5; ++k) {
    if (k == avail) return DecodeError::kTruncated;
    uint8_t b = p[k];
    v |= static_cast<uint64_t>(b & 0x7f) << (7 * k);
    if ((b & 0x80) == 0) {
      if (v > UINT32_MAX) return DecodeError::kLengthOverflow;
      *value = static_cast<uint32_t>(v);
      *size = k + 1;
      return DecodeError::kOk;
    }
  }
  return DecodeError::kOverlongUleb;
}

// Checks the whole delta against the rules (see DecodeError) without touching the page.
DecodeResult validate(const uint8_t* delta, size_t delta_len, size_t page_len) {
  size_t i = 0;
  size_t pos = 0;  // always <= page_len
  while (i < delta_len) {
    size_t at = i;
    uint32_t run = 0;
    size_t size = 0;
    DecodeError e = read_uleb(delta + i, delta_len - i, &run, &size);
    if (e != DecodeError::kOk) return {e, at};
    if (run == 0 && at != 0) return {DecodeError::kZeroLengthZeroRun, at};
    if (run > page_len - pos) return {DecodeError::kRunPastEnd, at};
    i += size;
    pos += run;
    if (i == delta_len) return {DecodeError::kTrailingGarbage, at};

    at = i;
    e = read_uleb(delta + i, delta_len - i, &run, &size);
    if (e != DecodeError::kOk) return {e, at};
    if (run == 0) return {DecodeError::kZeroLengthRun, at};
    if (run > page_len - pos) return {DecodeError::kRunPastEnd, at};
    i += size;
    if (run > delta_len - i) return {DecodeError::kCutOffRun, at};
    i += run;
    pos += run;
  }
  return {DecodeError::kOk, 0};
}

// ULEB128 from a delta validate() accepted: no checks left to do.
inline uint32_t take_uleb(const uint8_t*& p) {
  uint32_t v = *p & 0x7f;
  for (unsigned shift = 7; *p++ & 0x80; shift += 7) v |= static_cast<uint32_t>(*p & 0x7f) << shift;
  return v;
}

// Applies a validated delta. Short runs are copied inline: on sparse pages a memcpy call per
// run would cost more than the bytes.
void apply(const uint8_t* delta, size_t delta_len, uint8_t* page) {
  const uint8_t* p = delta;
  const uint8_t* end = delta + delta_len;
  uint8_t* out = page;
  while (p < end) {
    out += take_uleb(p);
    uint32_t run = take_uleb(p);
    if (run <= 8) {
      for (uint32_t k = 0; k < run; ++k) out[k] = p[k];
    } else {
      std::memcpy(out, p, run);
    }
    out += run;
    p += run;
  }
}

using EncodeFn = long (*)(const uint8_t*, const uint8_t*, size_t, uint8_t*, size_t);

EncodeFn function_for(Variant v) {
  switch (v) {
    case Variant::kAvx512: return encode_avx512;
    case Variant::kAvx2: return encode_avx2;
    case Variant::kScalar: break;
  }
  return encode_scalar;
}

}  // namespace

// Word at a time like QEMU's xbzrle_encode_buffer, but any length and alignment (unaligned
// loads, byte loops only for the last < 8 bytes) and ctz instead of byte loops to find where a
// run ends inside a word.
long encode_scalar(const uint8_t* old_page, const uint8_t* new_page, size_t len, uint8_t* dst,
                   size_t dst_cap) {
  if (len > UINT32_MAX) return kDoesNotFit;
  size_t d = 0;  // always <= dst_cap
  size_t i = 0;
  while (i < len) {
    size_t zero_start = i;
    i = unchanged_end(old_page, new_page, i, len);
    if (i == len) break;  // the trailing unchanged run is not sent
    size_t start = i;
    i = changed_end(old_page, new_page, i + 1, len);
    auto zero_run = static_cast<uint32_t>(start - zero_start);
    auto run = static_cast<uint32_t>(i - start);
    size_t need = uleb_size(zero_run) + uleb_size(run) + run;
    if (need > dst_cap - d) return kDoesNotFit;
    uint8_t* p = put_uleb(dst + d, zero_run);
    p = put_uleb(p, run);
    std::memcpy(p, new_page + start, run);
    d += need;
  }
  return static_cast<long>(d);
}

bool variant_available(Variant v) {
  // The SIMD encoders are also built for BMI1 (tzcnt/blsr) and POPCNT, which every AVX2 and
  // AVX-512 CPU has in practice; checking costs nothing and keeps odd VMs safe.
  static const bool bmi_popcnt = [] {
    __builtin_cpu_init();  // we may run from a static initializer, before libgcc's own
    return __builtin_cpu_supports("bmi") && __builtin_cpu_supports("popcnt");
  }();
  switch (v) {
    case Variant::kScalar: return true;
    case Variant::kAvx2: return bmi_popcnt && cpu_supports(SimdLevel::kAvx2);
    case Variant::kAvx512: return bmi_popcnt && cpu_supports(SimdLevel::kAvx512);
  }
  return false;
}

const char* variant_name(Variant v) {
  switch (v) {
    case Variant::kScalar: return "scalar";
    case Variant::kAvx2: return "avx2";
    case Variant::kAvx512: return "avx512";
  }
  return "unknown";
}

Variant best_variant() {
  static const Variant best = [] {
    SimdLevel level = dispatch_level();
    if (level >= SimdLevel::kAvx512 && variant_available(Variant::kAvx512)) return Variant::kAvx512;
    if (level >= SimdLevel::kAvx2 && variant_available(Variant::kAvx2)) return Variant::kAvx2;
    return Variant::kScalar;
  }();
  return best;
}

long encode(const uint8_t* old_page, const uint8_t* new_page, size_t len, uint8_t* dst,
            size_t dst_cap) {
  static const EncodeFn fn = function_for(best_variant());
  return fn(old_page, new_page, len, dst, dst_cap);
}

long encode_variant(Variant v, const uint8_t* old_page, const uint8_t* new_page, size_t len,
                    uint8_t* dst, size_t dst_cap) {
  return function_for(v)(old_page, new_page, len, dst, dst_cap);
}

const char* decode_error_string(DecodeError e) {
  switch (e) {
    case DecodeError::kOk: return "ok";
    case DecodeError::kTruncated: return "delta ends inside a ULEB128 length";
    case DecodeError::kOverlongUleb: return "non-minimal or over-long ULEB128 length";
    case DecodeError::kLengthOverflow: return "ULEB128 length above 32 bits";
    case DecodeError::kZeroLengthZeroRun: return "unchanged run of length 0 after the first";
    case DecodeError::kZeroLengthRun: return "changed run of length 0";
    case DecodeError::kRunPastEnd: return "run reaches past the end of the page";
    case DecodeError::kTrailingGarbage: return "unchanged run not followed by a changed run";
    case DecodeError::kCutOffRun: return "delta ends inside a changed run's bytes";
  }
  return "unknown decode error";
}

DecodeResult decode(const uint8_t* delta, size_t delta_len, uint8_t* page, size_t page_len) {
  // Validate everything first, so a bad delta never leaves a half-patched page behind.
  DecodeResult r = validate(delta, delta_len, page_len);
  if (r.error == DecodeError::kOk) apply(delta, delta_len, page);
  return r;
}

}  // namespace ferry::xbzrle
