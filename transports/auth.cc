#include "transports/auth.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <memory>
#include <string_view>

#include "transports/tcp/socket.h"

namespace ferry::transport::auth {
namespace {

namespace hs = handshake;

constexpr std::string_view kInfoLabel = "ferry psk v1";
constexpr std::string_view kConnectorLabel = "ferry connector proof";
constexpr std::string_view kAcceptorLabel = "ferry acceptor proof";

// The library's own failure (no provider, out of memory): not the peer's fault.
[[noreturn]] void crypto_failure(const char* what) {
  char buf[256];
  ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
  throw TransportError(-1, "", EIO, std::string("authentication: ") + what + " failed: " + buf);
}

struct KdfFree {
  void operator()(EVP_KDF* p) const { EVP_KDF_free(p); }
  void operator()(EVP_KDF_CTX* p) const { EVP_KDF_CTX_free(p); }
  void operator()(EVP_MAC* p) const { EVP_MAC_free(p); }
  void operator()(EVP_MAC_CTX* p) const { EVP_MAC_CTX_free(p); }
};

// A key that is wiped when it goes out of scope.
struct SessionKey {
  std::array<uint8_t, 32> bytes{};
  ~SessionKey() { OPENSSL_cleanse(bytes.data(), bytes.size()); }
};

void put_le(uint8_t* p, uint64_t v, size_t n) {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// HKDF-SHA256(ikm = psk, salt = nonce_C || nonce_A, info = label || session || index || count).
void derive(std::span<const uint8_t> psk, const hs::Hello& c, const hs::Hello& a,
            SessionKey* key) {
  std::array<uint8_t, 2 * hs::kNonceSize> salt{};
  std::copy(c.nonce.begin(), c.nonce.end(), salt.begin());
  std::copy(a.nonce.begin(), a.nonce.end(), salt.begin() + hs::kNonceSize);
  std::array<uint8_t, kInfoLabel.size() + 16> info{};
  std::copy(kInfoLabel.begin(), kInfoLabel.end(), info.begin());
  put_le(&info[kInfoLabel.size()], c.session_id, 8);
  put_le(&info[kInfoLabel.size() + 8], c.index, 4);
  put_le(&info[kInfoLabel.size() + 12], c.count, 4);

  std::unique_ptr<EVP_KDF, KdfFree> kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
  if (!kdf) crypto_failure("EVP_KDF_fetch(HKDF)");
  std::unique_ptr<EVP_KDF_CTX, KdfFree> ctx(EVP_KDF_CTX_new(kdf.get()));
  if (!ctx) crypto_failure("EVP_KDF_CTX_new");
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(psk.data()),
                                        psk.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt.data(), salt.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info.data(), info.size()),
      OSSL_PARAM_construct_end()};
  if (EVP_KDF_derive(ctx.get(), key->bytes.data(), key->bytes.size(), params) != 1) {
    crypto_failure("HKDF-SHA256");
  }
}

Tag hmac(const SessionKey& key, std::string_view label, std::span<const uint8_t> c,
         std::span<const uint8_t> a) {
  std::unique_ptr<EVP_MAC, KdfFree> mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
  if (!mac) crypto_failure("EVP_MAC_fetch(HMAC)");
  std::unique_ptr<EVP_MAC_CTX, KdfFree> ctx(EVP_MAC_CTX_new(mac.get()));
  if (!ctx) crypto_failure("EVP_MAC_CTX_new");
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end()};
  Tag tag{};
  size_t len = 0;
  if (EVP_MAC_init(ctx.get(), key.bytes.data(), key.bytes.size(), params) != 1 ||
      EVP_MAC_update(ctx.get(), reinterpret_cast<const uint8_t*>(label.data()), label.size()) != 1 ||
      EVP_MAC_update(ctx.get(), c.data(), c.size()) != 1 ||
      EVP_MAC_update(ctx.get(), a.data(), a.size()) != 1 ||
      EVP_MAC_final(ctx.get(), tag.data(), &len, tag.size()) != 1 || len != tag.size()) {
    crypto_failure("HMAC-SHA256");
  }
  return tag;
}

}  // namespace

FrameWire encode(const Frame& f) {
  FrameWire w{};
  put_le(&w[0], f.magic, 4);
  w[4] = static_cast<uint8_t>(f.status);
  std::copy(f.tag.begin(), f.tag.end(), &w[8]);
  return w;
}

Frame decode(std::span<const uint8_t, kFrameSize> b) {
  Frame f;
  f.magic = static_cast<uint32_t>(b[0]) | static_cast<uint32_t>(b[1]) << 8 |
            static_cast<uint32_t>(b[2]) << 16 | static_cast<uint32_t>(b[3]) << 24;
  f.status = static_cast<hs::Status>(b[4]);
  std::copy(&b[8], &b[8] + kTagSize, f.tag.begin());
  return f;
}

hs::Nonce random_nonce() {
  hs::Nonce n{};
  if (RAND_bytes(n.data(), static_cast<int>(n.size())) != 1) crypto_failure("RAND_bytes");
  return n;
}

void check_key(const Options& options, const std::string& where) {
  if (options.psk.empty() || options.psk.size() >= kMinPskBytes) return;
  throw TransportError(-1, where, EINVAL,
                       "the pre-shared key is " + std::to_string(options.psk.size()) +
                           " bytes; at least " + std::to_string(kMinPskBytes) +
                           " (256 bits) are required");
}

void check_listen_exposure(const sockaddr* bound, const Options& options,
                           const std::string& address) {
  // TLS's mutual certificate check authenticates too (tcp and unix only; rdma refuses TLS).
  if (tcp::is_local(bound) || !options.psk.empty() || options.tls.enabled() || options.insecure) {
    return;
  }
  throw TransportError(-1, address, EACCES,
                       "refusing to listen on an address that is not loopback without "
                       "authentication: give a pre-shared key (Options::psk, ferry "
                       "--psk-file) or TLS certificates (Options::tls, ferry --tls-cert, "
                       "--tls-key, --tls-ca) or, to let in anyone who can reach the port, set "
                       "Options::insecure (ferry --insecure)");
}

Tag proof(std::span<const uint8_t> psk, hs::Role prover,
          std::span<const uint8_t, hs::kSize> connector_hello,
          std::span<const uint8_t, hs::kSize> acceptor_hello) {
  SessionKey key;
  derive(psk, hs::decode(connector_hello), hs::decode(acceptor_hello), &key);
  return hmac(key, prover == hs::Role::kConnector ? kConnectorLabel : kAcceptorLabel,
              connector_hello, acceptor_hello);
}

bool verify(std::span<const uint8_t> psk, hs::Role prover,
            std::span<const uint8_t, hs::kSize> connector_hello,
            std::span<const uint8_t, hs::kSize> acceptor_hello, const Tag& received) {
  const Tag expected = proof(psk, prover, connector_hello, acceptor_hello);
  return CRYPTO_memcmp(expected.data(), received.data(), kTagSize) == 0;
}

FrameWire connector_frame(std::span<const uint8_t> psk, const hs::Wire& connector_hello,
                          const hs::Wire& acceptor_hello) {
  Frame f;
  f.tag = proof(psk, hs::Role::kConnector, connector_hello, acceptor_hello);
  return encode(f);
}

void check_acceptor_frame(std::span<const uint8_t> psk, const hs::Wire& connector_hello,
                          const hs::Wire& acceptor_hello, const FrameWire& answer, int channel,
                          const std::string& peer) {
  const Frame theirs = decode(answer);
  if (theirs.magic != kFrameMagic) {
    throw TransportError(channel, peer, 0, "authentication refused: the peer sent no proof frame");
  }
  if (theirs.status != hs::Status::kOk) {
    throw TransportError(channel, peer, 0,
                         std::string("handshake refused by peer: ") +
                             hs::refused_auth_message(theirs.status));
  }
  if (!verify(psk, hs::Role::kAcceptor, connector_hello, acceptor_hello, theirs.tag)) {
    throw TransportError(channel, peer, 0,
                         std::string("authentication refused: ") +
                             hs::to_string(hs::Status::kAuthFailed));
  }
}

bool connector_proved(std::span<const uint8_t> psk, const hs::Wire& connector_hello,
                      const hs::Wire& acceptor_hello, const FrameWire& frame) {
  const Frame f = decode(frame);
  return f.magic == kFrameMagic && f.status == hs::Status::kOk &&
         verify(psk, hs::Role::kConnector, connector_hello, acceptor_hello, f.tag);
}

void connector_prove(int fd, std::span<const uint8_t> psk, const hs::Wire& connector_hello,
                     const hs::Wire& acceptor_hello, std::chrono::milliseconds timeout,
                     int channel, const std::string& peer) {
  const auto deadline = hs::Clock::now() + timeout;
  const FrameWire out = connector_frame(psk, connector_hello, acceptor_hello);
  if (int e = hs::write_until(fd, out.data(), out.size(), deadline)) {
    throw TransportError(channel, peer, e, "authentication: sending this end's proof");
  }
  FrameWire in{};
  int err = 0;
  const size_t got = hs::read_until(fd, in.data(), in.size(), deadline, &err);
  if (got < in.size()) {
    std::string what = "authentication: received " + std::to_string(got) + " of " +
                       std::to_string(kFrameSize) + " bytes of the peer's proof";
    if (err == 0) what += " before the peer closed the connection";
    throw TransportError(channel, peer, err, what);
  }
  check_acceptor_frame(psk, connector_hello, acceptor_hello, in, channel, peer);
}

}  // namespace ferry::transport::auth
