#include "codecs/lz4_page.h"

#include <lz4.h>

#include <algorithm>
#include <climits>

namespace ferry::lz4 {

size_t compress(const uint8_t* page, size_t page_size, uint8_t* dst, size_t dst_cap,
                int acceleration) {
  if (page_size == 0 || page_size > static_cast<size_t>(LZ4_MAX_INPUT_SIZE)) return 0;
  // Capping the output at page_size - 1 makes liblz4 itself give up as soon as the result
  // cannot shrink, instead of compressing the whole page and comparing afterwards.
  size_t cap = std::min(dst_cap, page_size - 1);
  if (cap == 0) return 0;
  int n = LZ4_compress_fast(reinterpret_cast<const char*>(page), reinterpret_cast<char*>(dst),
                            static_cast<int>(page_size), static_cast<int>(cap),
                            acceleration < 1 ? 1 : acceleration);
  return n > 0 ? static_cast<size_t>(n) : 0;
}

const char* decode_error_string(DecodeError e) {
  switch (e) {
    case DecodeError::kOk: return "ok";
    case DecodeError::kCorrupt: return "corrupt LZ4 block";
    case DecodeError::kWrongSize: return "LZ4 block does not decode to exactly one page";
    case DecodeError::kInputTooLarge: return "LZ4 block longer than a compressed page can be";
  }
  return "unknown LZ4 error";
}

DecodeError decompress(const uint8_t* src, size_t src_len, uint8_t* page, size_t page_size) {
  // compress() only emits blocks shorter than the page.
  if (src_len >= page_size || page_size > static_cast<size_t>(INT_MAX)) {
    return DecodeError::kInputTooLarge;
  }
  if (src_len == 0) return DecodeError::kCorrupt;
  int n = LZ4_decompress_safe(reinterpret_cast<const char*>(src), reinterpret_cast<char*>(page),
                              static_cast<int>(src_len), static_cast<int>(page_size));
  if (n < 0) return DecodeError::kCorrupt;
  if (static_cast<size_t>(n) != page_size) return DecodeError::kWrongSize;
  return DecodeError::kOk;
}

}  // namespace ferry::lz4
