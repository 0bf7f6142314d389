// The Channel handed to the caller once an endpoint is through the hello: a thin shell that
// checks the channel is still usable and forwards to the Endpoint.
#pragma once

#include <memory>

#include "ferry/transport.h"
#include "transports/handshake.h"

namespace ferry::transport::rdma {

class Endpoint;

// What an rdma channel offers; also sent in its hello.
inline constexpr Capabilities kCaps = kRemoteWrite | kZeroCopySend;

ChannelPtr make_channel(std::unique_ptr<Endpoint> ep, const handshake::Hello& local,
                        const handshake::Hello& peer);

}  // namespace ferry::transport::rdma
