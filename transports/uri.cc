#include "ferry/uri.h"

#include <arpa/inet.h>
#include <sys/un.h>

#include <algorithm>
#include <cctype>

#include "ferry/transport_error.h"

namespace ferry::transport {
namespace {

[[noreturn]] void fail(std::string_view text, std::string_view why) {
  std::string msg = "invalid address '";
  for (char c : text) {
    // Quoted input may hold anything; keep the message printable (and NUL-free).
    if (std::isprint(static_cast<unsigned char>(c))) {
      msg += c;
    } else {
      static const char kHex[] = "0123456789abcdef";
      msg += "\\x";
      msg += kHex[static_cast<unsigned char>(c) >> 4];
      msg += kHex[static_cast<unsigned char>(c) & 15];
    }
  }
  msg += "': ";
  msg += why;
  throw TransportError(-1, "", 0, msg);
}

uint16_t parse_port(std::string_view text, std::string_view port) {
  if (port.empty()) fail(text, "missing port after ':'");
  if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) {
        return c >= '0' && c <= '9';
      })) {
    fail(text, "port '" + std::string(port) + "' is not a decimal number 0..65535");
  }
  unsigned long v = std::stoul(std::string(port));
  if (v > 65535) fail(text, "port " + std::string(port) + " is out of range 0..65535");
  return static_cast<uint16_t>(v);
}

bool looks_numeric_ipv4(std::string_view h) {
  return std::all_of(h.begin(), h.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
}

bool valid_hostname(std::string_view h) {
  // RFC 1123 labels; underscores tolerated because real resolvers accept them.
  if (h.size() > 253) return false;
  size_t label = 0;
  for (char c : h) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return false;
    if (++label > 63) return false;
  }
  return label != 0 || h.back() == '.';
}

void parse_host_port(std::string_view text, std::string_view rest, Uri& u) {
  if (rest.empty()) fail(text, "missing HOST:PORT");
  if (rest.substr(0, 2) == "//") fail(text, "no '//' after the scheme (write " + u.scheme + ":HOST:PORT)");
  std::string_view host, port;
  if (rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) fail(text, "'[' without matching ']'");
    host = rest.substr(1, close - 1);
    if (host.empty()) fail(text, "empty IPv6 address in brackets");
    std::string_view after = rest.substr(close + 1);
    if (after.empty() || after.front() != ':') fail(text, "expected ':PORT' after ']'");
    port = after.substr(1);
    in6_addr a6;
    if (inet_pton(AF_INET6, std::string(host).c_str(), &a6) != 1) {
      fail(text, "'" + std::string(host) + "' is not an IPv6 address");
    }
  } else {
    size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) fail(text, "missing ':PORT'");
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      fail(text, "IPv6 addresses must be in brackets, e.g. " + u.scheme + ":[::1]:PORT");
    }
    if (host.empty()) fail(text, "missing host before ':PORT'");
    if (looks_numeric_ipv4(host)) {
      in_addr a4;
      if (inet_pton(AF_INET, std::string(host).c_str(), &a4) != 1) {
        fail(text, "'" + std::string(host) + "' is not an IPv4 address");
      }
    } else if (!valid_hostname(host)) {
      fail(text, "'" + std::string(host) + "' is not a valid host name");
    }
  }
  u.host = std::string(host);
  u.port = parse_port(text, port);
}

void parse_path(std::string_view text, std::string_view rest, Uri& u) {
  if (rest.empty()) fail(text, "missing path");
  if (rest.find('\0') != std::string_view::npos) fail(text, "path contains a NUL byte");
  if (u.scheme == "unix" && rest.size() >= sizeof(sockaddr_un{}.sun_path)) {
    fail(text, "socket path is " + std::to_string(rest.size()) + " bytes, at most " +
                   std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " fit in sockaddr_un");
  }
  u.path = std::string(rest);
}

}  // namespace

Uri parse_uri(std::string_view text) {
  size_t colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    fail(text, "expected SCHEME:ADDRESS with scheme tcp, unix, file or rdma");
  }
  Uri u;
  u.scheme = std::string(text.substr(0, colon));
  std::string_view rest = text.substr(colon + 1);
  if (u.scheme == "tcp" || u.scheme == "rdma") {
    parse_host_port(text, rest, u);
  } else if (u.scheme == "unix" || u.scheme == "file") {
    parse_path(text, rest, u);
  } else {
    fail(text, "unknown scheme '" + u.scheme + "' (known: tcp, unix, file, rdma)");
  }
  return u;
}

std::string Uri::to_string() const {
  if (scheme == "unix" || scheme == "file") return scheme + ":" + path;
  std::string h = ipv6_literal() ? "[" + host + "]" : host;
  return scheme + ":" + h + ":" + std::to_string(port);
}

}  // namespace ferry::transport
