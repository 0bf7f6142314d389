#include "transports/handshake.h"

#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "transports/auth.h"

namespace ferry::transport::handshake {
namespace {

template <typename T>
void put_le(uint8_t* p, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<uint8_t>(static_cast<uint64_t>(v) >> (8 * i));
}

template <typename T>
T get_le(const uint8_t* p) {
  uint64_t v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return static_cast<T>(v);
}

uint32_t fnv1a(const uint8_t* p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 16777619u;
  return h;
}

std::string hex(uint64_t v, int width) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%0*llx", width, static_cast<unsigned long long>(v));
  return buf;
}

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
}

int wait_fd(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r > 0) return 0;
    if (r == 0) return ETIMEDOUT;
    if (errno != EINTR) return errno;
  }
}

}  // namespace

Wire encode(const Hello& h) {
  Wire w{};
  put_le<uint32_t>(&w[0], h.magic);
  put_le<uint16_t>(&w[4], h.version);
  w[6] = static_cast<uint8_t>(h.role);
  w[7] = static_cast<uint8_t>(h.status);
  put_le<uint64_t>(&w[8], h.session_id);
  put_le<uint32_t>(&w[16], h.index);
  put_le<uint32_t>(&w[20], h.count);
  put_le<uint64_t>(&w[24], h.capabilities);
  w[32] = static_cast<uint8_t>(h.auth);
  std::copy(h.nonce.begin(), h.nonce.end(), &w[40]);
  put_le<uint32_t>(&w[60], fnv1a(w.data(), 60));
  return w;
}

Hello decode(std::span<const uint8_t, kSize> b) {
  Hello h;
  h.magic = get_le<uint32_t>(&b[0]);
  h.version = get_le<uint16_t>(&b[4]);
  h.role = static_cast<Role>(b[6]);
  h.status = static_cast<Status>(b[7]);
  h.session_id = get_le<uint64_t>(&b[8]);
  h.index = get_le<uint32_t>(&b[16]);
  h.count = get_le<uint32_t>(&b[20]);
  h.capabilities = get_le<uint64_t>(&b[24]);
  h.auth = static_cast<Auth>(b[32]);
  std::copy(&b[40], &b[40] + kNonceSize, h.nonce.begin());
  h.checksum_ok = get_le<uint32_t>(&b[60]) == fnv1a(b.data(), 60);
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
  h.checksum_ok = true;  // fuzz builds: mutated hellos reach the checks behind the checksum
#endif
  return h;
}

Hello local_hello(const Options& o, Role role, uint64_t session_id, uint32_t index, uint32_t count,
                  Capabilities caps) {
  Hello h;
  h.magic = o.handshake_magic ? o.handshake_magic : kMagic;
  h.version = o.protocol_version ? o.protocol_version : kProtocolVersion;
  h.role = role;
  h.session_id = session_id;
  h.index = index;
  h.count = count;
  h.capabilities = caps;
  if (!o.psk.empty()) {
    h.auth = Auth::kPsk;
    h.nonce = auth::random_nonce();
  }
  return h;
}

const char* to_string(Role r) {
  switch (r) {
    case Role::kConnector: return "connector";
    case Role::kAcceptor: return "acceptor";
    case Role::kFileWriter: return "file writer";
  }
  return "unknown role";
}

const char* to_string(Status s) {
  switch (s) {
    case Status::kOk: return "accepted";
    case Status::kBadMagic: return "bad magic";
    case Status::kBadVersion: return "protocol version mismatch";
    case Status::kBadChecksum: return "handshake checksum mismatch";
    case Status::kBadRole: return "unexpected role";
    case Status::kSessionMismatch: return "session id mismatch";
    case Status::kCountMismatch: return "channel count mismatch";
    case Status::kIndexOutOfRange: return "channel index out of range";
    case Status::kDuplicateIndex: return "duplicate channel index";
    case Status::kAuthRequired:
      return "this end requires authentication (a pre-shared key), the peer offered none";
    case Status::kAuthUnavailable:
      return "the peer requires authentication and this end has no pre-shared key";
    case Status::kAuthFailed: return "the peer did not prove the pre-shared key";
    case Status::kTlsRequired: return "this end requires TLS (Options::tls), the peer offered none";
    case Status::kTlsUnavailable: return "the peer requires TLS and this end has none configured";
    case Status::kTlsFailed: return "the TLS handshake failed";
  }
  return "unknown refusal";
}

const char* refused_auth_message(Status s) {
  switch (s) {
    case Status::kAuthRequired:
      return "the peer requires authentication and this end has no pre-shared key";
    case Status::kAuthUnavailable:
      return "this end requires authentication (a pre-shared key), the peer has none";
    case Status::kAuthFailed:
      return "the peer found this end's proof of the pre-shared key wrong (the keys differ)";
    case Status::kTlsRequired: return "the peer requires TLS and this end has none configured";
    case Status::kTlsUnavailable: return "this end requires TLS (Options::tls), the peer has none";
    default: return to_string(s);
  }
}

Status check_auth_mode(const Hello& local, const Hello& peer) {
  if (peer.auth == local.auth) return Status::kOk;
  return local.auth == Auth::kPsk ? Status::kAuthRequired : Status::kAuthUnavailable;
}

Status check_tls_mode(const Hello& local, const Hello& peer) {
  const bool mine = local.capabilities & kTls;
  if (mine == static_cast<bool>(peer.capabilities & kTls)) return Status::kOk;
  return mine ? Status::kTlsRequired : Status::kTlsUnavailable;
}

std::string mismatch_message(Status s, const Hello& local, const Hello& peer) {
  std::string m = to_string(s);
  switch (s) {
    case Status::kBadMagic:
      return m + ": local " + hex(local.magic, 8) + ", peer " + hex(peer.magic, 8);
    case Status::kBadVersion:
      return m + ": local " + std::to_string(local.version) + ", peer " +
             std::to_string(peer.version);
    case Status::kBadRole:
      return m + ": local " + to_string(local.role) + ", peer " + to_string(peer.role);
    case Status::kSessionMismatch:
      return m + ": local " + hex(local.session_id, 16) + ", peer " + hex(peer.session_id, 16);
    case Status::kCountMismatch:
      return m + ": local " + std::to_string(local.count) + ", peer " + std::to_string(peer.count);
    case Status::kIndexOutOfRange:
      return m + ": peer index " + std::to_string(peer.index) + ", local count " +
             std::to_string(local.count);
    case Status::kDuplicateIndex:
      return m + ": peer index " + std::to_string(peer.index) + " is already connected";
    case Status::kBadChecksum:
    case Status::kAuthRequired:
    case Status::kAuthUnavailable:
    case Status::kAuthFailed:
    case Status::kTlsRequired:
    case Status::kTlsUnavailable:
    case Status::kTlsFailed:
    case Status::kOk:
      break;
  }
  return m;
}

Status check_basic(const Hello& local, const Hello& peer, Role expected_peer_role,
                   std::string* message) {
  Status s = Status::kOk;
  if (peer.magic != local.magic) {
    s = Status::kBadMagic;
  } else if (peer.version != local.version) {
    s = Status::kBadVersion;
  } else if (!peer.checksum_ok) {
    s = Status::kBadChecksum;
  } else if (peer.role != expected_peer_role) {
    if (message) {
      uint8_t r = static_cast<uint8_t>(peer.role);
      std::string got = r >= 1 && r <= 3 ? to_string(peer.role) : "role " + std::to_string(r);
      *message = std::string(to_string(Status::kBadRole)) + ": expected " +
                 to_string(expected_peer_role) + ", peer is " + got;
    }
    return Status::kBadRole;
  }
  if (s != Status::kOk && message) *message = mismatch_message(s, local, peer);
  return s;
}

size_t read_until(int fd, void* buf, size_t n, Clock::time_point deadline, int* err) {
  size_t got = 0;
  *err = 0;
  while (got < n) {
    ssize_t r = ::read(fd, static_cast<uint8_t*>(buf) + got, n - got);
    if (r > 0) {
      got += static_cast<size_t>(r);
      continue;
    }
    if (r == 0) return got;
    if (errno == EINTR) continue;
    if (errno != EAGAIN) {
      *err = errno;
      return got;
    }
    if (int e = wait_fd(fd, POLLIN, deadline)) {
      *err = e;
      return got;
    }
  }
  return got;
}

int write_until(int fd, const void* buf, size_t n, Clock::time_point deadline) {
  size_t done = 0;
  bool is_socket = true;
  while (done < n) {
    const auto* p = static_cast<const uint8_t*>(buf) + done;
    ssize_t r = is_socket ? ::send(fd, p, n - done, MSG_NOSIGNAL) : ::write(fd, p, n - done);
    if (r >= 0) {
      done += static_cast<size_t>(r);
      continue;
    }
    if (errno == ENOTSOCK && is_socket) {
      is_socket = false;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return errno;
    if (int e = wait_fd(fd, POLLOUT, deadline)) return e;
  }
  return 0;
}

void check_reply(const Hello& local, const Hello& h, int channel, const std::string& peer) {
  std::string msg;
  if (check_basic(local, h, Role::kAcceptor, &msg) != Status::kOk) {
    throw TransportError(channel, peer, 0, "handshake refused: " + msg);
  }
  if (h.status != Status::kOk) {
    // The acceptor refused us; name its values next to ours where they differ.
    std::string m = mismatch_message(h.status, local, h);
    if (h.status == Status::kAuthRequired || h.status == Status::kAuthUnavailable ||
        h.status == Status::kTlsRequired || h.status == Status::kTlsUnavailable) {
      m = refused_auth_message(h.status);
    } else if (h.status == Status::kIndexOutOfRange || h.status == Status::kDuplicateIndex) {
      m = std::string(to_string(h.status)) + ": local index " + std::to_string(local.index) +
          ", peer expects " + std::to_string(h.count) + " channels";
    }
    throw TransportError(channel, peer, 0, "handshake refused by peer: " + m);
  }
  Status s = Status::kOk;
  if (h.session_id != local.session_id) s = Status::kSessionMismatch;
  else if (h.count != local.count) s = Status::kCountMismatch;
  else if (h.index != local.index) s = Status::kIndexOutOfRange;
  if (s != Status::kOk) {
    throw TransportError(channel, peer, 0, "handshake refused: " + mismatch_message(s, local, h));
  }
  // An acceptor that knows authentication refuses a mismatch itself; one that accepted anyway
  // predates it (or misbehaves).
  if (Status a = check_auth_mode(local, h); a != Status::kOk) {
    throw TransportError(channel, peer, 0, std::string("handshake refused: ") + to_string(a));
  }
  if (Status t = check_tls_mode(local, h); t != Status::kOk) {
    throw TransportError(channel, peer, 0, std::string("handshake refused: ") + to_string(t));
  }
}

Hello connect_exchange(int fd, const Hello& local, std::chrono::milliseconds timeout, int channel,
                       const std::string& peer, std::span<const uint8_t> psk) {
  const auto deadline = Clock::now() + timeout;
  Wire out = encode(local);
  if (int e = write_until(fd, out.data(), out.size(), deadline)) {
    throw TransportError(channel, peer, e, "sending handshake");
  }
  Wire in{};
  int err = 0;
  size_t got = read_until(fd, in.data(), in.size(), deadline, &err);
  if (got < in.size()) {
    std::string what = "handshake: received " + std::to_string(got) + " of " +
                       std::to_string(kSize) + " bytes of the peer's hello";
    if (err == 0) what += " before the peer closed the connection";
    throw TransportError(channel, peer, err, what);
  }
  const Hello h = decode(in);
  check_reply(local, h, channel, peer);
  if (local.auth == Auth::kPsk) auth::connector_prove(fd, psk, out, in, timeout, channel, peer);
  return h;
}

uint64_t random_session_id() {
  uint64_t v = 0;
  while (v == 0) {
    if (getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v)) {
      v = static_cast<uint64_t>(Clock::now().time_since_epoch().count()) * 0x9E3779B97F4A7C15ull;
    }
  }
  return v;
}

}  // namespace ferry::transport::handshake
