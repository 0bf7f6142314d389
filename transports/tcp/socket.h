// Stream sockets for the tcp and unix transports: name resolution, socket tuning, connect with
// bounded retry, listen.
#pragma once

#include <sys/socket.h>

#include <string>
#include <vector>

#include "transports/fd.h"
#include "ferry/transport.h"

namespace ferry::transport::tcp {

struct Endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
  int family = 0;
};

// tcp: getaddrinfo (numeric forms never touch DNS); unix: the path. Throws TransportError.
std::vector<Endpoint> resolve(const Uri& uri, bool passive);
// "tcp:127.0.0.1:5000", "tcp:[::1]:5000", "unix:/path".
std::string endpoint_text(const sockaddr* sa, socklen_t len);

// Loopback addresses and unix sockets: the peer is on this host.
bool is_local(const sockaddr* sa);
// TCP_NODELAY (tcp) and the socket buffer size of the options for a local or a remote peer;
// before connect()/listen() so the window scale covers them.
void tune(int fd, int family, const Options& o, bool local);
void set_buffers(int fd, int bytes);
void set_blocking(int fd, bool blocking);

// Connects to one of uri's endpoints, retrying refused/unreachable attempts with backoff until
// connect_timeout. Returns a blocking socket. Throws TransportError naming the address, the
// errno of the last attempt and how many attempts were made.
Fd connect(const Uri& uri, const Options& o, int channel);

// Binds and listens (SO_REUSEADDR for tcp; a stale unix socket file nobody listens on is
// replaced). *bound receives address text with the port the kernel chose.
Fd listen(const Uri& uri, const Options& o, std::string* bound);

}  // namespace ferry::transport::tcp
