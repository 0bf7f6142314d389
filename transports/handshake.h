// The hello every channel starts with, on every transport. Fixed 64 bytes, every field
// little-endian (explicitly encoded, so hosts of either byte order agree):
//
//   offset size  field
//        0    4  magic            0x43595246, the bytes "FRYC"
//        4    2  protocol version
//        6    1  role             1 connector, 2 acceptor, 3 file writer
//        7    1  status           0 accepted; otherwise why the sender refuses the peer (Status)
//        8    8  session id
//       16    4  channel index
//       20    4  channel count
//       24    8  capabilities     include/ferry/transport.h Capability bits
//       32    1  auth             0 none; 1 pre-shared key (transports/auth.h: a proof follows)
//       33    7  reserved         sent as zero, ignored on receipt (room for new fields)
//       40   16  nonce            random when auth is 1 (the key's proofs cover it), else zero
//       56    4  reserved         sent as zero, ignored on receipt
//       60    4  checksum         FNV-1a 32 over bytes 0..59
//
// Sockets: the connector sends its hello, the acceptor reads it, answers with its own (also when
// refusing, with status set, so the connector can name both values) and closes refused
// connections. Files: the writer puts its hello at offset 0 and the reader checks it.
// Magic and version are checked before the checksum so that a future layout still gets a clear
// "version mismatch" rather than "bad checksum".
// Authentication took bytes that version 1 reserved and changes nothing when neither end has a
// key, so the version stays 1. An end with a key refuses a hello with auth 0 (kAuthRequired), an
// end without one refuses auth 1 (kAuthUnavailable); a connector with a key also refuses an
// acceptor answering auth 0, which is what an older ferry does. TLS is the kTls capability bit,
// judged the same way (kTlsRequired, kTlsUnavailable) right after authentication: an older
// acceptor ignores the bit and answers without it, which the connector then refuses.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <span>
#include <string>

#include "ferry/transport.h"

namespace ferry::transport::handshake {

inline constexpr uint32_t kMagic = 0x43595246;  // "FRYC" in file/wire byte order
inline constexpr uint16_t kProtocolVersion = 1;
inline constexpr size_t kSize = 64;

enum class Role : uint8_t { kConnector = 1, kAcceptor = 2, kFileWriter = 3 };

enum class Status : uint8_t {
  kOk = 0,
  kBadMagic,
  kBadVersion,
  kBadChecksum,
  kBadRole,
  kSessionMismatch,
  kCountMismatch,
  kIndexOutOfRange,
  kDuplicateIndex,
  // Authentication (transports/auth.h), worded from the side that refuses.
  kAuthRequired,     // this end has a key, the peer's hello offered no authentication
  kAuthUnavailable,  // the peer's hello asks for authentication, this end has no key
  kAuthFailed,       // the peer's proof frame did not prove the key (or was no proof frame)
  // TLS (Options::tls, the kTls capability), worded from the side that refuses.
  kTlsRequired,      // this end speaks TLS, the peer's hello did not offer it
  kTlsUnavailable,   // the peer's hello offers TLS, this end has no TLS configured
  kTlsFailed,        // the TLS handshake failed (sent as the admission byte, tls/handshake.h)
};

inline constexpr size_t kNonceSize = 16;
using Nonce = std::array<uint8_t, kNonceSize>;
enum class Auth : uint8_t { kNone = 0, kPsk = 1 };

struct Hello {
  uint32_t magic = kMagic;
  uint16_t version = kProtocolVersion;
  Role role = Role::kConnector;
  Status status = Status::kOk;
  uint64_t session_id = 0;
  uint32_t index = 0;
  uint32_t count = 0;
  Capabilities capabilities = 0;
  Auth auth = Auth::kNone;
  Nonce nonce{};
  bool checksum_ok = true;  // set by decode()
};

using Wire = std::array<uint8_t, kSize>;

Wire encode(const Hello& h);
Hello decode(std::span<const uint8_t, kSize> bytes);

// This end's hello with the testing overrides of Options applied; with Options::psk it asks
// for authentication and carries a fresh nonce.
Hello local_hello(const Options& o, Role role, uint64_t session_id, uint32_t index, uint32_t count,
                  Capabilities caps);

const char* to_string(Role r);
const char* to_string(Status s);

// Magic, version, checksum and role: what any hello must get right before its other fields
// mean anything. Returns Status::kOk or the failure, with a message naming both values.
Status check_basic(const Hello& local, const Hello& peer, Role expected_peer_role,
                   std::string* message);
std::string mismatch_message(Status s, const Hello& local, const Hello& peer);
// An authentication refusal as the refused side words it (to_string() words it as the refuser).
const char* refused_auth_message(Status s);
// Whether the peer's hello asks for the same authentication as this end's: kOk, kAuthRequired or
// kAuthUnavailable (from this end's point of view).
Status check_auth_mode(const Hello& local, const Hello& peer);
// The same for TLS (the kTls capability): kOk, kTlsRequired or kTlsUnavailable.
Status check_tls_mode(const Hello& local, const Hello& peer);

using Clock = std::chrono::steady_clock;

// Reads up to n bytes, stopping at end of stream or the deadline. Returns the bytes read; sets
// *err to an errno (ETIMEDOUT at the deadline) or 0 on end of stream/complete.
size_t read_until(int fd, void* buf, size_t n, Clock::time_point deadline, int* err);
// Writes all n bytes or fails with an errno (ETIMEDOUT at the deadline).
int write_until(int fd, const void* buf, size_t n, Clock::time_point deadline);

// Connector side, any transport: checks the acceptor's answer to local (basic fields, its
// status, the session's fields, the authentication mode). Throws TransportError naming both
// values on any mismatch.
void check_reply(const Hello& local, const Hello& reply, int channel, const std::string& peer);

// Connector side over a stream socket: send local, read the acceptor's answer, check it, and
// with a key (psk not empty; local must then ask for authentication) prove it and check the
// acceptor's proof (auth::connector_prove). Returns the peer's hello; throws TransportError
// naming both values on any mismatch.
Hello connect_exchange(int fd, const Hello& local, std::chrono::milliseconds timeout, int channel,
                       const std::string& peer, std::span<const uint8_t> psk = {});

uint64_t random_session_id();

}  // namespace ferry::transport::handshake
