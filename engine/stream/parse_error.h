// The one error type of the stream readers: where in the file (absolute byte offset) and what was
// expected there, so a user can go straight to the bytes with a hex dump.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace ferry::stream {

class ParseError : public std::runtime_error {
 public:
  ParseError(uint64_t offset, std::string message);

  uint64_t offset() const { return offset_; }
  // The message without the offset prefix that what() carries.
  const std::string& message() const { return message_; }

 private:
  uint64_t offset_;
  std::string message_;
};

// "0x1f" (lower case, no padding): the form every message uses for offsets and values.
std::string hex(uint64_t value);

}  // namespace ferry::stream
