#include "transports/stream_channel.h"

#include <cstring>

#include "transports/plain/channel.h"
#include "transports/tls/channel.h"

#if FERRY_HAVE_URING
#include "transports/uring/channel.h"
#include "transports/uring/features.h"
#endif

namespace ferry::transport {

#if FERRY_HAVE_URING

namespace {

ChannelPtr make_uring_channel(StreamChannelSpec s) {
  uring::UringChannel::Config c;
  c.kind = s.file ? uring::UringChannel::Kind::kFile : uring::UringChannel::Kind::kSocket;
  c.transport = std::move(s.transport);
  c.fd = std::move(s.fd);
  c.file_offset = s.file_offset;
  c.file_writer = s.file_writer;
  c.options = s.options;
  c.identity.index = s.index;
  c.identity.count = s.count;
  c.identity.session_id = s.session_id;
  c.identity.peer = std::move(s.peer);
  c.identity.peer_caps = s.peer_caps;
  return std::make_unique<uring::UringChannel>(std::move(c));
}

}  // namespace

ChannelPtr make_stream_channel(StreamChannelSpec spec) {
  if (spec.tls) return std::make_unique<tls::TlsChannel>(std::move(spec));
  // A kernel without io_uring, or a sandbox (seccomp, io_uring_disabled) that refuses it, still
  // gets working channels: the same bytes through blocking syscalls.
  if (const int err = uring::features().setup_error) {
    return std::make_unique<plain::PlainChannel>(
        std::move(spec), std::string("io_uring unavailable: ") + std::strerror(err));
  }
  return make_uring_channel(std::move(spec));
}

Capabilities stream_capabilities(const std::string& scheme, const Options& o) {
  if (o.tls.enabled()) return kTls;
  const auto& f = uring::features();
  Capabilities c = 0;
  // AF_UNIX has no zero-copy path; its channels learn that at the first large send.
  if (scheme == "tcp" && f.sendmsg_zc && o.zero_copy != ZeroCopy::kNever) c |= kZeroCopySend;
  if (o.fixed_buffers && f.send_zc) c |= kFixedBuffers;
  return c;
}

#else  // built without liburing

ChannelPtr make_stream_channel(StreamChannelSpec spec) {
  if (spec.tls) return std::make_unique<tls::TlsChannel>(std::move(spec));
  return std::make_unique<plain::PlainChannel>(std::move(spec),
                                               "ferry built without io_uring");
}

Capabilities stream_capabilities(const std::string&, const Options& o) {
  return o.tls.enabled() ? Capabilities{kTls} : 0;
}

#endif

}  // namespace ferry::transport
