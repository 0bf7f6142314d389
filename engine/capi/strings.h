// Strings handed to C callers through char** (released with ferry_free) and parsed URIs.
#pragma once

#include <string>

#include "ferry/uri.h"

namespace ferry::capi {

// A malloc'd copy of s (ferry_free releases it); std::bad_alloc when there is no memory.
char* copy_out(const std::string& s);

// parse_uri, with a malformed address reported as InvalidCall naming `function`.
transport::Uri parse_uri_arg(const char* uri, const char* function);

}  // namespace ferry::capi
