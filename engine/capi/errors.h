// Status codes and messages of the C API (include/ferry/ferry.h): no C++ exception leaves an
// entry point. Each one runs its body through guarded(), which turns whatever was thrown into a
// ferry_status and keeps the message for ferry_last_error() on this thread.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

#include "ferry/ferry.h"

namespace ferry::capi {

// Records `message` as this thread's last error and returns `status`.
ferry_status fail(ferry_status status, std::string message);

// The status and message for the exception being handled; `prefix` (e.g. the function name)
// goes in front of the message unless empty.
ferry_status translate_current_exception(const std::string& prefix);

// A NULL argument or a call the object's state does not allow: FERRY_ERR_INVALID.
class InvalidCall : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Throws InvalidCall("<function>: <what>") unless ok.
inline void require(bool ok, const char* function, const std::string& what) {
  if (!ok) throw InvalidCall(std::string(function) + ": " + what);
}
// Throws InvalidCall naming the NULL argument.
template <typename T>
void require_arg(const T* p, const char* function, const char* name) {
  require(p != nullptr, function, std::string(name) + " is NULL");
}

// Runs body() (returning nothing) and maps any exception to a status. Messages of InvalidCall
// already name the function; everything else gets "<function>: " in front.
template <typename Body>
ferry_status guarded(const char* function, Body&& body) noexcept {
  try {
    std::forward<Body>(body)();
    return FERRY_OK;
  } catch (const InvalidCall& e) {
    return fail(FERRY_ERR_INVALID, e.what());
  } catch (...) {
    return translate_current_exception(function);
  }
}

}  // namespace ferry::capi
