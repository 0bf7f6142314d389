#include "engine/vmstate/errors.h"

#include <cstdarg>
#include <cstdio>

namespace ferry::vmstate {

const char* errc_name(Errc c) {
  switch (c) {
    case Errc::kOk: return "ok";
    case Errc::kTruncated: return "truncated";
    case Errc::kBadTag: return "bad tag";
    case Errc::kBadLength: return "bad length";
    case Errc::kDepthLimit: return "depth limit";
    case Errc::kNameMismatch: return "name mismatch";
    case Errc::kUnknownSubsection: return "unknown subsection";
    case Errc::kVersionTooOld: return "version too old";
    case Errc::kVersionTooNew: return "version too new";
    case Errc::kCountTooLarge: return "count too large";
    case Errc::kListLimit: return "list limit";
    case Errc::kListNotEmpty: return "list not empty";
    case Errc::kOutOfRange: return "out of range";
    case Errc::kHookFailed: return "hook failed";
    case Errc::kAllocFailed: return "allocation failed";
    case Errc::kBadDescription: return "bad description";
    case Errc::kNullPointer: return "null pointer";
    case Errc::kTrailingData: return "trailing data";
    case Errc::kUnknownFormat: return "unknown format";
  }
  return "?";
}

Status& Status::add_context(const std::string& context) {
  if (!ok()) {
    message_ += ", in ";
    message_ += context;
  }
  return *this;
}

Status make_error(Errc code, const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if (static_cast<size_t>(n) >= sizeof buf) n = sizeof buf - 1;
  return Status(code, std::string(buf, static_cast<size_t>(n)));
}

}  // namespace ferry::vmstate
