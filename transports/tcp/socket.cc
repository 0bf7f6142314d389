#include "transports/tcp/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

namespace ferry::transport::tcp {
namespace {

using Clock = std::chrono::steady_clock;

bool retryable(int err) {
  // ENOENT/ECONNREFUSED/EAGAIN: a unix listener not there yet or its backlog full.
  return err == ECONNREFUSED || err == ETIMEDOUT || err == EHOSTUNREACH || err == ENETUNREACH ||
         err == EAGAIN || err == ENOENT || err == ECONNRESET;
}

// One non-blocking connect attempt bounded by deadline; returns 0 or an errno.
int try_connect(int fd, const Endpoint& ep, Clock::time_point deadline) {
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&ep.addr), ep.len) == 0) return 0;
  if (errno != EINPROGRESS && errno != EINTR) return errno;
  for (;;) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{fd, POLLOUT, 0};
    // At the deadline still look once: a refusal may already be there.
    int r = ::poll(&p, 1, static_cast<int>(std::clamp<long long>(left, 0, 1 << 30)));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno;
    if (r == 0) return ETIMEDOUT;
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
    return err;
  }
}

void set_buffer(int fd, int force_opt, int opt, int bytes) {
  // FORCE variants exceed net.core.[rw]mem_max when CAP_NET_ADMIN allows; loopback and fast
  // links need more than the usual 4 MiB maximum to keep a whole burst in flight.
  if (::setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof bytes) != 0) {
    ::setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes);
  }
}

}  // namespace

std::vector<Endpoint> resolve(const Uri& uri, bool passive) {
  std::vector<Endpoint> out;
  if (uri.scheme == "unix") {
    Endpoint ep;
    auto* sun = reinterpret_cast<sockaddr_un*>(&ep.addr);
    sun->sun_family = AF_UNIX;
    std::memcpy(sun->sun_path, uri.path.data(), uri.path.size());
    ep.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + uri.path.size() + 1);
    ep.family = AF_UNIX;
    out.push_back(ep);
    return out;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* res = nullptr;
  const std::string port = std::to_string(uri.port);
  int rc = ::getaddrinfo(uri.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    throw TransportError(-1, uri.to_string(), rc == EAI_SYSTEM ? errno : 0,
                         std::string("cannot resolve host '") + uri.host + "': " +
                             ::gai_strerror(rc));
  }
  for (addrinfo* a = res; a; a = a->ai_next) {
    Endpoint ep;
    std::memcpy(&ep.addr, a->ai_addr, a->ai_addrlen);
    ep.len = a->ai_addrlen;
    ep.family = a->ai_family;
    out.push_back(ep);
  }
  ::freeaddrinfo(res);
  return out;
}

std::string endpoint_text(const sockaddr* sa, socklen_t len) {
  char host[INET6_ADDRSTRLEN] = "?";
  switch (sa->sa_family) {
    case AF_INET: {
      const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
      ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
      return std::string("tcp:") + host + ":" + std::to_string(ntohs(in->sin_port));
    }
    case AF_INET6: {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
      ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
      return std::string("tcp:[") + host + "]:" + std::to_string(ntohs(in6->sin6_port));
    }
    case AF_UNIX: {
      const auto* sun = reinterpret_cast<const sockaddr_un*>(sa);
      size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
      std::string path(sun->sun_path, strnlen(sun->sun_path, n));
      return "unix:" + (path.empty() ? std::string("(unnamed)") : path);
    }
  }
  return "family " + std::to_string(sa->sa_family);
}

bool is_local(const sockaddr* sa) {
  switch (sa->sa_family) {
    case AF_UNIX:
      return true;
    case AF_INET:
      return (ntohl(reinterpret_cast<const sockaddr_in*>(sa)->sin_addr.s_addr) >> 24) == 127;
    case AF_INET6: {
      const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr;
      if (IN6_IS_ADDR_LOOPBACK(&a)) return true;
      return IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127;
    }
  }
  return false;
}

void set_buffers(int fd, int bytes) {
  if (bytes <= 0) return;
  set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, bytes);
  set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, bytes);
}

void tune(int fd, int family, const Options& o, bool local) {
  if (family == AF_INET || family == AF_INET6) {
    // Headers are small separate writes; Nagle would hold them for the next ACK.
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  set_buffers(fd, local ? o.local_socket_buffer_bytes : o.socket_buffer_bytes);
}

void set_blocking(int fd, bool blocking) {
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0) return;
  ::fcntl(fd, F_SETFL, blocking ? (fl & ~O_NONBLOCK) : (fl | O_NONBLOCK));
}

Fd connect(const Uri& uri, const Options& o, int channel) {
  const std::string text = uri.to_string();
  if (uri.scheme != "unix" && uri.port == 0) {
    throw TransportError(channel, text, EINVAL, "connect: port 0 is only valid for listening");
  }
  const std::vector<Endpoint> eps = resolve(uri, false);
  const auto start = Clock::now();
  const auto deadline = start + o.connect_timeout;
  auto backoff = std::chrono::milliseconds(5);
  int last = ETIMEDOUT;
  int last_answer = 0;  // the last error the network gave, not our own deadline
  unsigned attempts = 0;
  for (;;) {
    for (const Endpoint& ep : eps) {
      Fd fd(::socket(ep.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      if (!fd) throw TransportError(channel, text, errno, "socket");
      tune(fd.get(), ep.family, o, is_local(reinterpret_cast<const sockaddr*>(&ep.addr)));
      ++attempts;
      last = try_connect(fd.get(), ep, deadline);
      if (last != ETIMEDOUT) last_answer = last;
      if (last == 0) {
        set_blocking(fd.get(), true);
        return fd;
      }
      if (!retryable(last)) break;
    }
    const auto now = Clock::now();
    if (!retryable(last) || now >= deadline) break;
    std::this_thread::sleep_for(std::min<Clock::duration>(backoff, deadline - now));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(200));
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  if (last == ETIMEDOUT && last_answer != 0) last = last_answer;
  throw TransportError(channel, text, last,
                       "connect failed after " + std::to_string(attempts) + " attempt(s) in " +
                           std::to_string(ms.count()) + " ms");
}

Fd listen(const Uri& uri, const Options& o, std::string* bound) {
  const std::string text = uri.to_string();
  const std::vector<Endpoint> eps = resolve(uri, true);
  int last = EADDRNOTAVAIL;
  for (const Endpoint& ep : eps) {
    Fd fd(::socket(ep.family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) throw TransportError(-1, text, errno, "socket");
    if (ep.family != AF_UNIX) {
      int one = 1;
      ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    }
    // Accepted sockets inherit the buffers, and the window scale is fixed at the handshake: a
    // wildcard address gets the remote size, accepted local peers shrink theirs afterwards.
    tune(fd.get(), ep.family, o, is_local(reinterpret_cast<const sockaddr*>(&ep.addr)));
    int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&ep.addr), ep.len);
    if (rc != 0 && errno == EADDRINUSE && ep.family == AF_UNIX) {
      // A socket file left by a dead process: replace it only if nobody answers on it.
      struct stat st;
      Fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
      if (::stat(uri.path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) &&
          ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&ep.addr), ep.len) != 0 &&
          errno == ECONNREFUSED) {
        ::unlink(uri.path.c_str());
        rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&ep.addr), ep.len);
      } else {
        errno = EADDRINUSE;
      }
    }
    if (rc != 0 || ::listen(fd.get(), SOMAXCONN) != 0) {
      last = errno;
      continue;
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
    *bound = ep.family == AF_UNIX ? "unix:" + uri.path
                                  : endpoint_text(reinterpret_cast<sockaddr*>(&ss), len);
    return fd;
  }
  throw TransportError(-1, text, last, "listen");
}

}  // namespace ferry::transport::tcp
