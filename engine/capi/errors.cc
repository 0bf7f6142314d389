#include "engine/capi/errors.h"

#include <new>
#include <system_error>

#include "ferry/migration.h"
#include "ferry/transport_error.h"

namespace ferry::capi {
namespace {
// One message per thread, as errno: valid until this thread's next ferry call.
thread_local std::string last_error;
}  // namespace

ferry_status fail(ferry_status status, std::string message) {
  try {
    last_error = std::move(message);
  } catch (...) {
    last_error.clear();  // no memory for the text: the status still says what happened
  }
  return status;
}

ferry_status translate_current_exception(const std::string& prefix) {
  const std::string head = prefix.empty() ? std::string() : prefix + ": ";
  try {
    throw;
  } catch (const std::bad_alloc&) {
    return fail(FERRY_ERR_NOMEM, head + "out of memory");
  } catch (const MigrationError& e) {
    return fail(FERRY_ERR_MIGRATION, head + e.what());
  } catch (const transport::TransportError& e) {
    return fail(FERRY_ERR_TRANSPORT, head + e.what());
  } catch (const std::system_error& e) {
    return fail(FERRY_ERR_SYSTEM, head + e.what());
  } catch (const std::invalid_argument& e) {
    return fail(FERRY_ERR_INVALID, head + e.what());
  } catch (const std::exception& e) {
    return fail(FERRY_ERR_INTERNAL, head + "internal error: " + e.what());
  } catch (...) {
    return fail(FERRY_ERR_INTERNAL, head + "internal error: unknown exception");
  }
}

}  // namespace ferry::capi

extern "C" {

const char* ferry_last_error(void) { return ferry::capi::last_error.c_str(); }

const char* ferry_status_name(ferry_status status) {
  switch (status) {
    case FERRY_OK: return "FERRY_OK";
    case FERRY_ERR_INVALID: return "FERRY_ERR_INVALID";
    case FERRY_ERR_TRANSPORT: return "FERRY_ERR_TRANSPORT";
    case FERRY_ERR_MIGRATION: return "FERRY_ERR_MIGRATION";
    case FERRY_ERR_CANCELLED: return "FERRY_ERR_CANCELLED";
    case FERRY_ERR_NOMEM: return "FERRY_ERR_NOMEM";
    case FERRY_ERR_SYSTEM: return "FERRY_ERR_SYSTEM";
    case FERRY_ERR_INTERNAL: return "FERRY_ERR_INTERNAL";
  }
  return "FERRY_ERR_UNKNOWN";
}

}  // extern "C"
