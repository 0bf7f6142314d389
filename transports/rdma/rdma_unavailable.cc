// The rdma transport of a build without rdma-core (cmake/backends.cmake): rdma: URIs stay known
// to the registry and fail with a message that says why, instead of "no transport registered".
#include <cerrno>

#include "transports/rdma/rdma_transport.h"

#ifndef FERRY_RDMA_LEFT_OUT_BECAUSE
#define FERRY_RDMA_LEFT_OUT_BECAUSE "rdma-core not found at configure time"
#endif

namespace ferry::transport::rdma {
namespace {

[[noreturn]] void refuse(const Uri& uri) {
  throw TransportError(-1, uri.to_string(), ENOTSUP, unavailable_reason());
}

}  // namespace

std::string unavailable_reason() {
  return "ferry was built without RDMA support (" FERRY_RDMA_LEFT_OUT_BECAUSE ")";
}

std::unique_ptr<Listener> listen(const Uri& uri, const Options&) { refuse(uri); }

std::vector<ChannelPtr> connect(const Uri& uri, const Options&) { refuse(uri); }

}  // namespace ferry::transport::rdma
