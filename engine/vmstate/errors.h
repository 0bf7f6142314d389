// Errors of the vmstate layer: a code for tests and callers, and a message that names what went
// wrong and where (field, description, stream offset). Success carries no allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

namespace ferry::vmstate {

enum class Errc : uint8_t {
  kOk = 0,
  kTruncated,          // input ended early
  kBadTag,             // BER tag / binary marker not what the description expects
  kBadLength,          // BER length malformed, too long or past the enclosing value
  kDepthLimit,         // nesting deeper than kMaxDepth
  kNameMismatch,       // field / section name in the stream differs from the description
  kUnknownSubsection,  // subsection the description does not know
  kVersionTooOld,
  kVersionTooNew,
  kCountTooLarge,      // variable array count above the allocated capacity
  kListLimit,          // list longer than its max_elements cap
  kListNotEmpty,       // load into a non-empty list without FERRY_VMS_LIST_APPEND
  kOutOfRange,         // value does not fit the field (BER integers, markers)
  kHookFailed,         // pre_save / post_load returned non-zero
  kAllocFailed,
  kBadDescription,     // the description itself is unusable (missing vmsd, bad kind, ...)
  kNullPointer,        // saving a NULL struct pointer
  kTrailingData,       // bytes after the end of a section
  kUnknownFormat,      // neither binary nor BER
};

const char* errc_name(Errc c);

// Nesting limit of the walker and the BER reader (structs, arrays, lists, subsections).
inline constexpr int kMaxDepth = 64;

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Errc code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  bool ok() const { return code_ == Errc::kOk; }
  explicit operator bool() const { return ok(); }
  Errc code() const { return code_; }
  const std::string& message() const { return message_; }

  // Appends ", in <context>" (the walker adds one per level: field, then its struct, ...).
  Status& add_context(const std::string& context);

 private:
  Errc code_ = Errc::kOk;
  std::string message_;
};

// printf-style constructor for errors.
Status make_error(Errc code, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace ferry::vmstate

#define FERRY_VMS_TRY(expr)                          \
  do {                                               \
    ::ferry::vmstate::Status ferry_vms_st_ = (expr); \
    if (!ferry_vms_st_.ok()) return ferry_vms_st_;   \
  } while (0)
