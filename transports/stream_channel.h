// The channel behind a connected stream socket (tcp, unix) or a stream file, whichever backend
// carries it: io_uring (transports/uring) when ferry was built with liburing and the kernel lets
// us set up a ring, otherwise blocking syscalls (transports/plain). Transports describe the fd
// once here and never name a backend.
#pragma once

#include <cstdint>
#include <string>

#include "ferry/transport.h"
#include "transports/fd.h"
#include "transports/tls/context.h"

namespace ferry::transport {

struct StreamChannelSpec {
  bool file = false;           // a stream file rather than a socket
  std::string transport;       // "tcp", "unix", "file": for messages
  Fd fd;
  uint64_t file_offset = 0;    // files: where the stream starts (after the hello)
  bool file_writer = false;    // files: written (and synced on close) rather than read
  Options options;
  // The channel's identity (see Channel).
  uint32_t index = 0;
  uint32_t count = 1;
  uint64_t session_id = 0;
  std::string peer;
  Capabilities peer_caps = 0;
  // Sockets with Options::tls: the TLS connection the handshake established on fd.
  tls::SslPtr tls;
};

ChannelPtr make_stream_channel(StreamChannelSpec spec);

// What a stream channel can offer in the handshake for these options: zero-copy and fixed
// buffers need io_uring (and a kernel that has them); a TLS channel offers kTls and nothing else.
Capabilities stream_capabilities(const std::string& scheme, const Options& options);

}  // namespace ferry::transport
