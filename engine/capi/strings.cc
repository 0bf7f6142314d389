#include "engine/capi/strings.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "engine/capi/errors.h"
#include "ferry/ferry.h"
#include "ferry/transport_error.h"

namespace ferry::capi {

char* copy_out(const std::string& s) {
  auto* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (!p) throw std::bad_alloc();
  std::memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

transport::Uri parse_uri_arg(const char* uri, const char* function) {
  require_arg(uri, function, "uri");
  try {
    return transport::parse_uri(uri);
  } catch (const transport::TransportError& e) {
    throw InvalidCall(std::string(function) + ": " + e.detail());
  }
}

}  // namespace ferry::capi

extern "C" {

void ferry_free(void* p) { std::free(p); }

// FERRY_VERSION_STRING of the headers this library was built with (version.h is generated).
const char* ferry_version(void) { return FERRY_VERSION_STRING; }

}  // extern "C"
