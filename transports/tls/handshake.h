// What a tcp/unix channel with Options::tls does after the hello (and, with a key, the proof):
//
//   1. a TLS 1.3 handshake on the socket, the connector as client; both ends present their
//      certificate and verify the peer's against their CA (context.h)
//   2. acceptor -> connector, inside TLS: one admission byte, handshake::Status (0 = admitted)
//
// Step 2 exists because in TLS 1.3 the client's handshake ends before the server has looked at
// the client's certificate: without it a connector whose certificate the listener refused would
// only learn so at its first receive. With it connect() fails naming the listener's alert
// ("tlsv1 alert unknown ca") and the listener reports the refusal with the verification error.
// The listener drives step 1 without blocking (Handshake::step from its poll loop), so one slow
// or hostile connection never holds up the others.
#pragma once

#include <chrono>
#include <string>

#include "transports/handshake.h"
#include "transports/tls/context.h"

namespace ferry::transport::tls {

using Clock = std::chrono::steady_clock;

// The acceptor's step 1 on a non-blocking socket.
class Handshake {
 public:
  enum class Step { kDone, kWantRead, kWantWrite, kFailed };
  explicit Handshake(SslPtr ssl) : ssl_(std::move(ssl)) {}
  // Advances the handshake as far as the socket allows; after kFailed error() says why.
  Step step();
  const std::string& error() const { return error_; }
  SSL* ssl() const { return ssl_.get(); }
  SslPtr take() { return std::move(ssl_); }

 private:
  SslPtr ssl_;
  std::string error_;
};

// The acceptor's step 2 (also to refuse, with a status): returns 0 or an errno (ETIMEDOUT at
// the deadline), with *why set on a TLS error.
int send_admission(SSL* ssl, int fd, handshake::Status status, Clock::time_point deadline,
                   std::string* why);

// The connector's steps 1 and 2 on a connected socket (left blocking). Throws TransportError
// naming the channel, the peer and OpenSSL's reason.
SslPtr connect(const Context& ctx, int fd, std::chrono::milliseconds timeout, int channel,
               const std::string& peer);

// Why a handshake on ssl failed: OpenSSL's queued reasons and, when the peer's certificate was
// the problem, the verification error.
std::string failure_text(SSL* ssl, int ssl_error);

// "TLS 1.3 TLS_AES_256_GCM_SHA384, peer CN=..." for send_path().
std::string describe(SSL* ssl);

}  // namespace ferry::transport::tls
