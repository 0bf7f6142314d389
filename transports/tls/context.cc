#include "transports/tls/context.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cerrno>

namespace ferry::transport::tls {

void SslDeleter::operator()(SSL* ssl) const noexcept { SSL_free(ssl); }

std::string drain_errors(const std::string& fallback) {
  std::string text;
  while (const unsigned long e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    char buf[256];
    if (!reason) reason = ERR_error_string(e, buf);
    if (!text.empty()) text += "; ";
    text += reason;
  }
  return text.empty() ? fallback : text;
}

namespace {

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw TransportError(-1, where, EINVAL, "TLS: " + what + ": " + drain_errors("unknown error"));
}

void load_files(SSL_CTX* ctx, const Options::Tls& f, const std::string& where) {
  if (SSL_CTX_use_certificate_chain_file(ctx, f.cert_file.c_str()) != 1) {
    fail(where, "cannot load the certificate (chain) '" + f.cert_file + "'");
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, f.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    fail(where, "cannot load the private key '" + f.key_file + "'");
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    fail(where, "the private key '" + f.key_file + "' does not match the certificate '" +
                    f.cert_file + "'");
  }
  if (SSL_CTX_load_verify_locations(ctx, f.ca_file.c_str(), nullptr) != 1) {
    fail(where, "cannot load the CA certificate(s) '" + f.ca_file + "'");
  }
}

}  // namespace

Context::Context(const Options::Tls& files, Side side, const std::string& where) : side_(side) {
  ERR_clear_error();
  ctx_ = SSL_CTX_new(side == Side::kServer ? TLS_server_method() : TLS_client_method());
  if (!ctx_) fail(where, "SSL_CTX_new");
  SSL_CTX_set_min_proto_version(ctx_, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx_, TLS1_3_VERSION);
  SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx_, 0);
  // Partial writes off (the default): SSL_write_ex returns once every byte is in records.
  SSL_CTX_set_mode(ctx_, SSL_MODE_AUTO_RETRY);
  int verify = SSL_VERIFY_PEER;
  if (side == Side::kServer) verify |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  SSL_CTX_set_verify(ctx_, verify, nullptr);
  try {
    load_files(ctx_, files, where);
  } catch (...) {
    SSL_CTX_free(ctx_);
    throw;
  }
}

Context::~Context() { SSL_CTX_free(ctx_); }

SslPtr Context::new_session(int fd, int channel, const std::string& peer) const {
  ERR_clear_error();
  SslPtr ssl(SSL_new(ctx_));
  if (!ssl || SSL_set_fd(ssl.get(), fd) != 1) {
    throw TransportError(channel, peer, ENOMEM, "TLS: " + drain_errors("SSL_new failed"));
  }
  if (side_ == Side::kServer) {
    SSL_set_accept_state(ssl.get());
  } else {
    SSL_set_connect_state(ssl.get());
  }
  return ssl;
}

bool wanted(const Options& o, const Uri& uri) {
  if (!o.tls.enabled()) return false;
  const std::string where = uri.to_string();
  if (uri.scheme != "tcp" && uri.scheme != "unix") {
    throw TransportError(-1, where, EINVAL,
                         "TLS is available on tcp: and unix: channels only, not " + uri.scheme +
                             ":");
  }
  const char* missing = o.tls.cert_file.empty() ? "certificate (Options::tls.cert_file, --tls-cert)"
                        : o.tls.key_file.empty() ? "private key (Options::tls.key_file, --tls-key)"
                        : o.tls.ca_file.empty()  ? "CA (Options::tls.ca_file, --tls-ca)"
                                                 : nullptr;
  if (missing) {
    throw TransportError(-1, where, EINVAL,
                         std::string("TLS needs a certificate, its private key and a CA; the ") +
                             missing + " is missing");
  }
  return true;
}

}  // namespace ferry::transport::tls
