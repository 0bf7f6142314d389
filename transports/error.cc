#include "ferry/transport_error.h"

#include <cerrno>
#include <cstring>

namespace ferry::transport {
namespace {

std::string format(int channel, const std::string& peer, int error, std::string_view message) {
  std::string s = "transport";
  if (channel >= 0) s += " channel " + std::to_string(channel);
  if (!peer.empty()) s += " (" + peer + ")";
  s += ": ";
  s += message;
  if (error != 0) {
    char buf[128];
    // GNU strerror_r returns the text (possibly not in buf).
    const char* text = strerror_r(error, buf, sizeof buf);
    s += ": ";
    s += text;
    s += " (errno " + std::to_string(error) + ")";
  }
  return s;
}

}  // namespace

TransportError::TransportError(int channel, std::string peer, int error, std::string_view message)
    : std::runtime_error(format(channel, peer, error, message)),
      channel_(channel),
      peer_(std::move(peer)),
      error_(error),
      detail_(message) {}

TransportError accept_timeout_error(const std::string& address, uint32_t arrived, uint32_t count,
                                    long long timeout_ms, const std::string& last_refusal) {
  std::string msg = "accept: " + std::to_string(arrived) + " of " +
                    (count ? std::to_string(count) : std::string("?")) +
                    " channels arrived within " + std::to_string(timeout_ms) + " ms";
  if (!last_refusal.empty()) msg += "; last refusal: " + last_refusal;
  return TransportError(-1, address, ETIMEDOUT, msg);
}

}  // namespace ferry::transport
