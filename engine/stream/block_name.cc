#include "engine/stream/block_name.h"

namespace ferry::stream {

std::string block_file_name(std::string_view name) {
  if (name.empty()) return "%";
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(name.size());
  for (size_t i = 0; i < name.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(name[i]);
    const bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '@' || c == ':' || c == '+' || (c == '.' && i > 0);
    if (keep) {
      out.push_back(static_cast<char>(c));
    } else if (c == '/') {
      out.push_back('_');
    } else {
      out.push_back('%');
      out.push_back(kDigits[c >> 4]);
      out.push_back(kDigits[c & 15]);
    }
  }
  return out;
}

}  // namespace ferry::stream
