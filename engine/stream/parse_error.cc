#include "engine/stream/parse_error.h"

#include <cstdio>

namespace ferry::stream {

std::string hex(uint64_t value) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(value));
  return buf;
}

ParseError::ParseError(uint64_t offset, std::string message)
    : std::runtime_error("offset " + hex(offset) + ": " + message),
      offset_(offset),
      message_(std::move(message)) {}

}  // namespace ferry::stream
