#include "transports/accept_limits.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace ferry::transport {
namespace {

// Peers remembered per accept() call; beyond it those with nothing pending are forgotten, so
// a flood from ever new addresses (an IPv6 prefix has plenty) cannot grow the table without end.
constexpr size_t kMaxTrackedPeers = 4096;

bool over(uint32_t count, uint32_t bound) { return bound != 0 && count >= bound; }

}  // namespace

void AcceptLimits::start(const Options& options) {
  max_pending_ = options.max_pending_connections;
  max_per_peer_ = options.max_pending_per_peer;
  max_refusals_ = options.max_refusals_per_peer;
  pending_ = 0;
  peers_.clear();
}

AcceptDecision AcceptLimits::admit(const std::string& peer) {
  if (peers_.size() >= kMaxTrackedPeers) forget_idle_peers();
  Peer& p = peers_[peer];
  AcceptDecision d;
  if (over(p.refused, max_refusals_)) {
    d.kind = AcceptDecision::Kind::kDrop;  // reported once, when the peer was shut out
    return d;
  }
  if (over(p.pending, max_per_peer_)) {
    d.kind = AcceptDecision::Kind::kRefuse;
    d.why = peer + " already has " + std::to_string(p.pending) +
            " connections in their handshake (Options::max_pending_per_peer); closed at once";
  } else if (over(pending_, max_pending_)) {
    d.kind = AcceptDecision::Kind::kRefuse;
    d.why = std::to_string(pending_) +
            " connections are already in their handshake (Options::max_pending_connections); "
            "closed at once";
  }
  if (d.kind == AcceptDecision::Kind::kRefuse) {
    if (count_refusal(p)) d.why += shut_out_note(peer);
    return d;
  }
  ++p.pending;
  ++pending_;
  return d;
}

bool AcceptLimits::settled(const std::string& peer, bool refused) {
  auto it = peers_.find(peer);
  if (it == peers_.end() || it->second.pending == 0) return false;
  --it->second.pending;
  --pending_;
  return refused && count_refusal(it->second);
}

bool AcceptLimits::count_refusal(Peer& p) {
  if (p.refused < UINT32_MAX) ++p.refused;
  return max_refusals_ != 0 && p.refused == max_refusals_;
}

std::string AcceptLimits::shut_out_note(const std::string& peer) const {
  return "; " + peer + " was refused " + std::to_string(max_refusals_) +
         " times (Options::max_refusals_per_peer): its further connections are closed at once "
         "until this accept() returns";
}

void AcceptLimits::forget_idle_peers() {
  for (auto it = peers_.begin(); it != peers_.end();) {
    it = it->second.pending == 0 ? peers_.erase(it) : std::next(it);
  }
}

std::string peer_key(const std::string& scheme, const sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (sa->sa_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, host, sizeof host);
    return scheme + ":" + host;
  }
  if (sa->sa_family == AF_INET6) {
    const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&a)) {
      ::inet_ntop(AF_INET, &a.s6_addr[12], host, sizeof host);
      return scheme + ":" + host;
    }
    ::inet_ntop(AF_INET6, &a, host, sizeof host);
    return scheme + ":[" + host + "]";
  }
  return scheme + ":family " + std::to_string(sa->sa_family);
}

}  // namespace ferry::transport
