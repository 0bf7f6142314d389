// Pre-shared-key authentication of a channel, on top of the hello (transports/handshake.h).
// Both ends hold the same key (Options::psk, at least kMinPskBytes). Each end puts a fresh
// 16-byte random nonce in its hello (bytes 40..55, auth byte 32 = 1), so once the hellos crossed
// both ends know both nonces and the session parameters. Then, on every channel:
//
//   connector -> acceptor   proof frame, status 0, tag = HMAC(K, "ferry connector proof" || C || A)
//   acceptor  -> connector  proof frame, status 0, tag = HMAC(K, "ferry acceptor proof" || C || A)
//                           or, refusing, status != 0 (e.g. kAuthFailed) and an all-zero tag
//
//   C, A  the 64 hello bytes exactly as the connector and the acceptor sent them: magic, version,
//         roles, session id, channel index and count, capabilities and both nonces
//   K     HKDF-SHA256(ikm = psk, salt = nonce_C || nonce_A,
//                     info = "ferry psk v1" || session id (8, LE) || index (4, LE) || count (4, LE))
//         a key for this session and channel only, never reused (fresh nonces)
//   HMAC  HMAC-SHA256, 32 bytes; labels are the ASCII strings without a terminator
//
// Proof frame, 40 bytes:
//
//   offset size  field
//        0    4  magic    0x41595246, the bytes "FRYA"
//        4    1  status   handshake::Status: 0 = proof follows; otherwise why the sender refuses
//        5    3  reserved sent as zero
//        8   32  tag      HMAC-SHA256 as above (zero when status != 0)
//
// On tcp and unix the frames follow the hello on the socket; on rdma each is one message (the
// hello being the first). The connector proves first; the acceptor checks that proof (CRYPTO_memcmp) before it proves
// anything itself or admits the connection into its session, so a peer without the key never
// sees an acceptor's tag, never adopts a session (session_id 0 listeners) and gets a refusal
// frame saying why. The connector then checks the acceptor's tag: a listener without the key
// cannot pose as the destination either. Labels differ per role, so a tag cannot be reflected.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <span>
#include <string>

#include "ferry/transport.h"
#include "transports/handshake.h"

namespace ferry::transport::auth {

inline constexpr size_t kMinPskBytes = 32;  // 256 bits
inline constexpr uint32_t kFrameMagic = 0x41595246;  // "FRYA"
inline constexpr size_t kFrameSize = 40;
inline constexpr size_t kTagSize = 32;

using Tag = std::array<uint8_t, kTagSize>;
using FrameWire = std::array<uint8_t, kFrameSize>;

struct Frame {
  uint32_t magic = kFrameMagic;
  handshake::Status status = handshake::Status::kOk;
  Tag tag{};
};

FrameWire encode(const Frame& f);
Frame decode(std::span<const uint8_t, kFrameSize> bytes);

// Fresh random bytes for a hello's nonce (OpenSSL RAND_bytes); throws TransportError on failure.
handshake::Nonce random_nonce();

// Throws EINVAL naming `where` when options.psk is set but shorter than kMinPskBytes.
void check_key(const Options& options, const std::string& where);

// The listen rule of the tcp and rdma listeners, one text for both: throws EACCES naming
// `address` when the listener is bound to `bound`, an address that is not loopback (nor a unix
// socket), without a pre-shared key, TLS certificates or Options::insecure: anyone who can
// reach the port could then migrate into (or out of) this process.
void check_listen_exposure(const sockaddr* bound, const Options& options,
                           const std::string& address);

// The tag `prover` sends, over the two hellos as they went on the wire.
Tag proof(std::span<const uint8_t> psk, handshake::Role prover,
          std::span<const uint8_t, handshake::kSize> connector_hello,
          std::span<const uint8_t, handshake::kSize> acceptor_hello);

// Constant-time check of a received tag against the one `prover` must have sent.
bool verify(std::span<const uint8_t> psk, handshake::Role prover,
            std::span<const uint8_t, handshake::kSize> connector_hello,
            std::span<const uint8_t, handshake::kSize> acceptor_hello, const Tag& received);

// The connector's proof frame.
FrameWire connector_frame(std::span<const uint8_t> psk, const handshake::Wire& connector_hello,
                          const handshake::Wire& acceptor_hello);
// Checks the acceptor's answer to it: a refusal or a tag that does not prove the key throws
// TransportError saying which side failed.
void check_acceptor_frame(std::span<const uint8_t> psk, const handshake::Wire& connector_hello,
                          const handshake::Wire& acceptor_hello, const FrameWire& answer,
                          int channel, const std::string& peer);
// Whether a connector's frame proves the key (the acceptor's check, constant time).
bool connector_proved(std::span<const uint8_t> psk, const handshake::Wire& connector_hello,
                      const handshake::Wire& acceptor_hello, const FrameWire& frame);

// The connector's side over a stream socket after the hellos crossed: sends its proof, reads
// the acceptor's frame and checks it (the two functions above).
void connector_prove(int fd, std::span<const uint8_t> psk, const handshake::Wire& connector_hello,
                     const handshake::Wire& acceptor_hello, std::chrono::milliseconds timeout,
                     int channel, const std::string& peer);

}  // namespace ferry::transport::auth
