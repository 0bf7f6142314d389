// Errors raised by every transport. One exception type so the engine can catch transport
// failures apart from its own, and so every message names where it happened: which channel, which
// peer, and the errno text when the failure came from the kernel.
#pragma once

#include "ferry/export.h"
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace ferry::transport {

class FERRY_API TransportError : public std::runtime_error {
 public:
  // channel: index within the session, or -1 when the failure is not tied to a channel (URI
  // parsing, listen, name resolution). peer: URI-style text of the other end, may be empty.
  // error: errno value, 0 when the failure is a protocol or argument error.
  TransportError(int channel, std::string peer, int error, std::string_view message);

  int channel() const noexcept { return channel_; }
  const std::string& peer() const noexcept { return peer_; }
  int error_code() const noexcept { return error_; }
  // The message without the channel/peer/errno decoration.
  const std::string& detail() const noexcept { return detail_; }

 private:
  int channel_;
  std::string peer_;
  int error_;
  std::string detail_;
};

// What every Listener::accept() throws when its session is incomplete at accept_timeout:
// "accept: 1 of 4 channels arrived within 60000 ms; last refusal: ..." (count 0 = not known yet).
TransportError accept_timeout_error(const std::string& address, uint32_t arrived, uint32_t count,
                                    long long timeout_ms, const std::string& last_refusal);

}  // namespace ferry::transport
