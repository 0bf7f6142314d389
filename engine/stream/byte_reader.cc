#include "engine/stream/byte_reader.h"

namespace ferry::stream {

void ByteReader::seek(size_t pos) {
  if (pos > data_.size()) {
    fail("seek to " + hex(pos) + " beyond the end of the file (" + hex(data_.size()) + ")");
  }
  pos_ = pos;
}

void ByteReader::need(size_t n, std::string_view what) const {
  if (n > remaining()) {
    std::string m = "truncated: expected ";
    m += what;
    m += " (" + std::to_string(n) + " bytes), but the file ends after " +
         std::to_string(remaining()) + (remaining() == 1 ? " byte" : " bytes");
    fail(std::move(m));
  }
}

uint64_t ByteReader::read_be(size_t n, std::string_view what) {
  need(n, what);
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v = (v << 8) | data_[pos_ + i];
  pos_ += n;
  return v;
}

uint8_t ByteReader::u8(std::string_view what) { return static_cast<uint8_t>(read_be(1, what)); }
uint16_t ByteReader::be16(std::string_view what) {
  return static_cast<uint16_t>(read_be(2, what));
}
uint32_t ByteReader::be32(std::string_view what) {
  return static_cast<uint32_t>(read_be(4, what));
}
uint64_t ByteReader::be64(std::string_view what) { return read_be(8, what); }

uint8_t ByteReader::peek_u8(std::string_view what) const {
  need(1, what);
  return data_[pos_];
}

std::span<const uint8_t> ByteReader::bytes(size_t n, std::string_view what) {
  need(n, what);
  auto s = data_.subspan(pos_, n);
  pos_ += n;
  return s;
}

std::string ByteReader::string(size_t n, std::string_view what) {
  auto s = bytes(n, what);
  return std::string(s.begin(), s.end());
}

std::string ByteReader::short_string(std::string_view what) {
  std::string len_what(what);
  len_what += " length";
  uint8_t n = u8(len_what);
  return string(n, what);
}

}  // namespace ferry::stream
