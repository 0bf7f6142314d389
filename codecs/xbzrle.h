// XBZRLE: the delta between the copy of a page the destination already has and its new content.
// Byte-identical to QEMU's migration/xbzrle.c, so deltas interoperate with QEMU's stream format.
//
// A delta is a sequence of runs: [unchanged-run length, changed-run length, the changed bytes
// (from the NEW page)], lengths as ULEB128 (7 bits per byte, low group first, high bit =
// continuation). QEMU's encoder is canonical and so is ours: maximal runs, only the first
// unchanged run may be empty, every changed run is non-empty, the trailing unchanged run is
// omitted, and an unchanged page encodes to 0 bytes. Canonical form is what lets tests compare
// every variant, and QEMU's own output, byte for byte.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ferry::xbzrle {

// encode() result when the delta is larger than the destination buffer: the sender then sends
// the page as it is, which is what a delta that big would have cost anyway.
inline constexpr long kDoesNotFit = -1;

enum class Variant { kScalar, kAvx2, kAvx512 };
inline constexpr Variant kAllVariants[] = {Variant::kScalar, Variant::kAvx2, Variant::kAvx512};

// Whether this CPU can run `v` (ignores the FERRY_SIMD cap, so tests can compare every variant).
bool variant_available(Variant v);
const char* variant_name(Variant v);  // "scalar", "avx2", "avx512"
// What encode() dispatches to: ferry::dispatch_level(), so FERRY_SIMD caps it.
Variant best_variant();

// Encodes the delta from old_page to new_page (both `len` bytes, any length, any alignment) into
// dst. Returns the delta length (0 = pages equal) or kDoesNotFit iff the canonical delta would be
// longer than dst_cap. (QEMU gives up as soon as fewer than 2 bytes of room are left before a
// run header, so with a tight dst_cap it can refuse a delta that we still fit exactly.)
// Never writes past dst_cap; bytes of dst past the returned length are unspecified. Never reads
// outside the pages. No heap allocation. Run lengths are 32-bit on the wire, so a `len` above
// UINT32_MAX returns kDoesNotFit.
long encode(const uint8_t* old_page, const uint8_t* new_page, size_t len, uint8_t* dst,
            size_t dst_cap);  // dispatched once per process

// Each variant, for tests and benchmarks. The SIMD ones only when variant_available() says so.
long encode_scalar(const uint8_t* old_page, const uint8_t* new_page, size_t len, uint8_t* dst,
                   size_t dst_cap);
long encode_avx2(const uint8_t* old_page, const uint8_t* new_page, size_t len, uint8_t* dst,
                 size_t dst_cap);
long encode_avx512(const uint8_t* old_page, const uint8_t* new_page, size_t len, uint8_t* dst,
                   size_t dst_cap);
long encode_variant(Variant v, const uint8_t* old_page, const uint8_t* new_page, size_t len,
                    uint8_t* dst, size_t dst_cap);

// Why a delta was refused. The delta comes off the wire: every way it can lie has a name, so the
// receiver can report it with context instead of writing outside the page.
enum class DecodeError {
  kOk,
  kTruncated,          // the delta ends inside a ULEB128 length
  kOverlongUleb,       // a ULEB128 of more than 5 bytes (non-minimal ones are accepted, as QEMU does)
  kLengthOverflow,     // a ULEB128 length above UINT32_MAX
  kZeroLengthZeroRun,  // an unchanged run of length 0 other than the first
  kZeroLengthRun,      // a changed run of length 0
  kRunPastEnd,         // the runs reach past the end of the page
  kTrailingGarbage,    // an unchanged-run header with no changed run after it
  kCutOffRun,          // the delta ends before the changed run's bytes do
};
const char* decode_error_string(DecodeError e);

struct DecodeResult {
  DecodeError error;
  size_t offset;  // byte offset in the delta of the length or run that is wrong (0 when kOk)
};

// Applies `delta` to `page` (page_len bytes) in place. The whole delta is validated before the
// first byte is written, so a refused delta leaves the page untouched (the caller can still fall
// back to asking for the full page). Never writes outside the page. No heap allocation.
// An empty delta is an unchanged page.
DecodeResult decode(const uint8_t* delta, size_t delta_len, uint8_t* page, size_t page_len);

}  // namespace ferry::xbzrle
