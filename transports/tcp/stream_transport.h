// The tcp and unix transports: stream sockets, the socket side of the session handshake, and
// stream channels on top (transports/stream_channel.h: io_uring, or blocking syscalls without
// it). One code path for both address families.
#pragma once

#include <memory>
#include <vector>

#include "ferry/transport.h"

namespace ferry::transport::tcp {

std::unique_ptr<Listener> listen(const Uri& uri, const Options& options);
std::vector<ChannelPtr> connect(const Uri& uri, const Options& options);

}  // namespace ferry::transport::tcp
