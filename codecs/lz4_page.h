// LZ4 for single pages, on liblz4. A page that does not shrink travels raw: the sender asks
// compress() and gets 0 back, which costs one bounded attempt, never a larger record.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ferry::lz4 {

// liblz4's acceleration: 1 compresses best, larger values trade ratio for speed.
inline constexpr int kDefaultAcceleration = 1;

// Compresses `page_size` bytes from `page` into `dst` (`dst_cap` bytes). Returns the compressed
// length, or 0 when the result would not be strictly smaller than the page (or than dst_cap):
// send the page raw. Never writes more than dst_cap bytes. No heap allocation (liblz4 keeps its
// state on the stack).
size_t compress(const uint8_t* page, size_t page_size, uint8_t* dst, size_t dst_cap,
                int acceleration = kDefaultAcceleration);

enum class DecodeError {
  kOk,
  kCorrupt,        // liblz4 refused the input
  kWrongSize,      // decoded cleanly but not to exactly one page
  kInputTooLarge,  // src_len above what a page can compress to, or above INT_MAX
};
const char* decode_error_string(DecodeError e);

// Decodes `src` into `page`, which must come out exactly `page_size` bytes. Never writes outside
// the page; on an error the page may hold partial output (the caller treats it as lost, as the
// receiver does when it aborts the migration).
DecodeError decompress(const uint8_t* src, size_t src_len, uint8_t* page, size_t page_size);

}  // namespace ferry::lz4
