// The TLS 1.3 configuration one listen() or connect() shares among its channels: an SSL_CTX
// built from Options::tls (PEM certificate chain, private key, CA), TLS 1.3 only, mutual
// verification: the server requires a client certificate and both ends verify the peer's
// against the CA. Session tickets and resumption are off: every channel does a full handshake,
// and the first bytes a client reads after it are the server's admission byte (handshake.h).
//
// Hostnames are not checked: a peer is who the CA vouches for. Issue one CA per migration pair
// (or per cluster) rather than using a public one.
#pragma once

#include <memory>
#include <string>

#include "ferry/transport.h"

using SSL_CTX = struct ssl_ctx_st;
using SSL = struct ssl_st;

namespace ferry::transport::tls {

enum class Side { kClient, kServer };

struct SslDeleter {
  void operator()(SSL* ssl) const noexcept;
};
using SslPtr = std::unique_ptr<SSL, SslDeleter>;

class Context {
 public:
  // Throws TransportError (EINVAL) naming `where`, the file and OpenSSL's reason when a file is
  // missing, unreadable or not what it should be, or the key does not match the certificate.
  Context(const Options::Tls& files, Side side, const std::string& where);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Side side() const { return side_; }
  // A new connection's TLS state on the connected socket fd (not owned).
  SslPtr new_session(int fd, int channel, const std::string& peer) const;

 private:
  SSL_CTX* ctx_ = nullptr;
  Side side_;
};

// OpenSSL's queued errors as text ("reason; reason"), emptying the thread's queue; `fallback`
// when the queue is empty.
std::string drain_errors(const std::string& fallback);

// Whether the options ask for TLS on this scheme; throws EINVAL naming the URI when they ask
// for it where ferry has no TLS (file:, rdma:) or leave one of the three files out.
bool wanted(const Options& options, const Uri& uri);

}  // namespace ferry::transport::tls
