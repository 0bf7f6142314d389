// Big-endian cursor over a whole stream file. Every read checks the remaining length first and
// throws ParseError naming the offset and the thing that did not fit, so no parser code ever
// indexes the buffer itself. Offsets are absolute file offsets (the reader spans the file).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "engine/stream/parse_error.h"

namespace ferry::stream {

class ByteReader {
 public:
  explicit ByteReader(std::span<const uint8_t> data) : data_(data) {}

  size_t pos() const { return pos_; }
  size_t size() const { return data_.size(); }
  size_t remaining() const { return data_.size() - pos_; }
  bool at_end() const { return pos_ == data_.size(); }
  std::span<const uint8_t> data() const { return data_; }

  void seek(size_t pos);  // pos <= size()

  // `what` names the field for the truncation message ("section id", "page data", ...).
  uint8_t u8(std::string_view what);
  uint16_t be16(std::string_view what);
  uint32_t be32(std::string_view what);
  uint64_t be64(std::string_view what);
  uint8_t peek_u8(std::string_view what) const;
  std::span<const uint8_t> bytes(size_t n, std::string_view what);
  std::string string(size_t n, std::string_view what);
  // QEMU's idstr / block-name encoding: u8 length, then that many bytes (no NUL).
  std::string short_string(std::string_view what);

  // Throws unless n more bytes are available.
  void need(size_t n, std::string_view what) const;

  [[noreturn]] void fail(std::string message) const { throw ParseError(pos_, std::move(message)); }
  [[noreturn]] static void fail_at(uint64_t pos, std::string message) {
    throw ParseError(pos, std::move(message));
  }

 private:
  uint64_t read_be(size_t n, std::string_view what);

  std::span<const uint8_t> data_;
  size_t pos_ = 0;
};

}  // namespace ferry::stream
