// The active side of the rdma transport: one channel of a session, through rdma_cm address and
// route resolution, the connection and the hello exchange.
#pragma once

#include <cstdint>

#include "ferry/transport.h"

namespace ferry::transport::rdma {

// Channel i of session `session`, retrying refusals and a slow first neighbour resolution until
// options.connect_timeout; then throws naming the peer's last answer and the attempts made.
ChannelPtr connect_channel(const Uri& uri, const Options& options, uint32_t i, uint64_t session);

}  // namespace ferry::transport::rdma
