// The passive side of the rdma transport: rdma_listen on the address, connection requests
// accepted onto their own endpoints, hellos judged, one session assembled per accept().
#pragma once

#include <memory>

#include "ferry/transport.h"

namespace ferry::transport::rdma {

std::unique_ptr<Listener> make_listener(const Uri& uri, const Options& options);

}  // namespace ferry::transport::rdma
