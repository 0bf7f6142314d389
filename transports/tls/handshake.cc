#include "transports/tls/handshake.h"

#include <fcntl.h>
#include <poll.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

namespace ferry::transport::tls {
namespace {

namespace hs = handshake;

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 1 << 30));
}

// Waits for what OpenSSL asked for; 0 when it may retry, else an errno.
int wait_for(int fd, int ssl_error, Clock::time_point deadline) {
  const short events = ssl_error == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN;
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r > 0) return 0;
    if (r == 0) return ETIMEDOUT;
    if (errno != EINTR) return errno;
  }
}

void set_nonblocking(int fd, bool on) {
  const int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK);
}

// Runs op (an SSL call returning 1 on success) until it succeeds, fails or the deadline passes.
// Returns 0, or the SSL_get_error value with *err the errno (ETIMEDOUT at the deadline).
template <typename Op>
int drive(SSL* ssl, int fd, Clock::time_point deadline, int* err, Op op) {
  *err = 0;
  for (;;) {
    ERR_clear_error();
    errno = 0;
    const int r = op();
    if (r == 1) return 0;
    const int e = SSL_get_error(ssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
      *err = errno;
      return e;
    }
    if ((*err = wait_for(fd, e, deadline)) != 0) return e;
  }
}

[[noreturn]] void connect_failed(SSL* ssl, int ssl_error, int err, int channel,
                                 const std::string& peer, const char* stage) {
  if (err == ETIMEDOUT) {
    throw TransportError(channel, peer, ETIMEDOUT, std::string("TLS: timed out ") + stage);
  }
  throw TransportError(channel, peer, err,
                       std::string("TLS: ") + stage + ": " + failure_text(ssl, ssl_error));
}

}  // namespace

std::string failure_text(SSL* ssl, int ssl_error) {
  std::string text = drain_errors("");
  const long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) {
    text += std::string(text.empty() ? "" : " (") + "peer certificate: " +
            X509_verify_cert_error_string(verify) + (text.empty() ? "" : ")");
  }
  if (text.empty() && (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_ZERO_RETURN)) {
    text = "the peer closed the connection (does it speak TLS?)";
  }
  return text.empty() ? "SSL error " + std::to_string(ssl_error) : text;
}

Handshake::Step Handshake::step() {
  ERR_clear_error();
  errno = 0;
  const int r = SSL_do_handshake(ssl_.get());
  if (r == 1) return Step::kDone;
  const int e = SSL_get_error(ssl_.get(), r);
  if (e == SSL_ERROR_WANT_READ) return Step::kWantRead;
  if (e == SSL_ERROR_WANT_WRITE) return Step::kWantWrite;
  error_ = "TLS handshake failed: " + failure_text(ssl_.get(), e);
  return Step::kFailed;
}

int send_admission(SSL* ssl, int fd, hs::Status status, Clock::time_point deadline,
                   std::string* why) {
  const auto byte = static_cast<uint8_t>(status);
  size_t written = 0;
  int err = 0;
  const int e = drive(ssl, fd, deadline, &err, [&] { return SSL_write_ex(ssl, &byte, 1, &written); });
  if (e != 0 && err == 0) {
    *why = failure_text(ssl, e);
    return EPROTO;
  }
  return err;
}

SslPtr connect(const Context& ctx, int fd, std::chrono::milliseconds timeout, int channel,
               const std::string& peer) {
  const auto deadline = Clock::now() + timeout;
  SslPtr ssl = ctx.new_session(fd, channel, peer);
  set_nonblocking(fd, true);
  int err = 0;
  if (int e = drive(ssl.get(), fd, deadline, &err, [&] { return SSL_do_handshake(ssl.get()); })) {
    connect_failed(ssl.get(), e, err, channel, peer, "handshake");
  }
  uint8_t admission = 0;
  size_t got = 0;
  if (int e = drive(ssl.get(), fd, deadline, &err,
                    [&] { return SSL_read_ex(ssl.get(), &admission, 1, &got); })) {
    connect_failed(ssl.get(), e, err, channel, peer, "waiting for the listener to admit this channel");
  }
  set_nonblocking(fd, false);
  if (admission != 0) {
    throw TransportError(channel, peer, 0,
                         std::string("handshake refused by peer after TLS: ") +
                             hs::to_string(static_cast<hs::Status>(admission)));
  }
  return ssl;
}

std::string describe(SSL* ssl) {
  std::string d = std::string(SSL_get_version(ssl)) + " " + SSL_get_cipher_name(ssl);
  if (X509* cert = SSL_get0_peer_certificate(ssl)) {
    char name[256];
    X509_NAME_oneline(X509_get_subject_name(cert), name, sizeof name);
    d += std::string(", peer ") + name;
  }
  return d;
}

}  // namespace ferry::transport::tls
