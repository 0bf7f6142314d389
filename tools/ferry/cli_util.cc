#include "tools/ferry/cli_util.h"

#include <cctype>
#include <cstdio>
#include <limits>
#include <stdexcept>

namespace ferry::cli {

uint64_t parse_size(std::string_view text) {
  const std::string quoted = "'" + std::string(text) + "'";
  if (text.empty()) throw std::invalid_argument("empty size");
  size_t i = 0;
  uint64_t value = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    const uint64_t d = static_cast<uint64_t>(text[i] - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - d) / 10) {
      throw std::invalid_argument("size " + quoted + " is too large");
    }
    value = value * 10 + d;
    ++i;
  }
  if (i == 0) throw std::invalid_argument("size " + quoted + " does not start with a number");
  std::string suffix;
  for (; i < text.size(); ++i) {
    suffix += static_cast<char>(std::tolower(static_cast<unsigned char>(text[i])));
  }
  unsigned shift = 0;
  if (suffix.empty() || suffix == "b") {
    shift = 0;
  } else {
    const char unit = suffix[0];
    const std::string rest = suffix.substr(1);
    if (rest != "" && rest != "b" && rest != "ib") {
      throw std::invalid_argument("size " + quoted + " has an unknown unit (use K, M, G or T)");
    }
    switch (unit) {
      case 'k': shift = 10; break;
      case 'm': shift = 20; break;
      case 'g': shift = 30; break;
      case 't': shift = 40; break;
      default:
        throw std::invalid_argument("size " + quoted + " has an unknown unit (use K, M, G or T)");
    }
  }
  if (shift != 0 && value > (std::numeric_limits<uint64_t>::max() >> shift)) {
    throw std::invalid_argument("size " + quoted + " is too large");
  }
  return value << shift;
}

std::string format_size(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  size_t u = 0;
  while (v >= 1024.0 && u + 1 < sizeof kUnits / sizeof kUnits[0]) {
    v /= 1024.0;
    ++u;
  }
  char buf[48];
  if (u == 0 || v == static_cast<double>(static_cast<uint64_t>(v))) {
    std::snprintf(buf, sizeof buf, "%llu %s", static_cast<unsigned long long>(v), kUnits[u]);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
  }
  return buf;
}

std::string format_mib(double bytes) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.1f", bytes / (1024.0 * 1024.0));
  return buf;
}

}  // namespace ferry::cli
