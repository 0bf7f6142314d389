// Channel addresses. Grammar (no "//", the scheme is followed directly by its address):
//   tcp:HOST:PORT    HOST is an IPv4 literal, a bracketed IPv6 literal ([::1]) or a DNS name.
//                    PORT is decimal 0..65535; 0 asks the kernel for a port when listening.
//   rdma:HOST:PORT   same syntax; reserved for the RDMA transport.
//   unix:/path       AF_UNIX stream socket; the path must fit sockaddr_un (at most 107 bytes).
//   file:/path       a stream stored in files: channel 0 is /path, channel i > 0 is /path.i.
// parse_uri() throws TransportError (errno EINVAL) naming the text and what is wrong with it.
#pragma once

#include "ferry/export.h"
#include <cstdint>
#include <string>
#include <string_view>

namespace ferry::transport {

struct FERRY_API Uri {
  std::string scheme;  // "tcp", "rdma", "unix" or "file"
  std::string host;    // tcp/rdma: without brackets
  uint16_t port = 0;   // tcp/rdma
  std::string path;    // unix/file

  bool ipv6_literal() const { return host.find(':') != std::string::npos; }
  // Canonical text; parse_uri(u.to_string()) == u.
  std::string to_string() const;
  bool operator==(const Uri&) const = default;
};

FERRY_API Uri parse_uri(std::string_view text);

}  // namespace ferry::transport
