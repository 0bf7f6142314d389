// Bounds on the connections a listener holds in their handshake during one accept() call
// (Options::max_pending_connections, max_pending_per_peer, max_refusals_per_peer), shared by the
// tcp/unix and the rdma listener. A hostile peer that opens connections and sends nothing keeps
// at most max_pending_per_peer of them; once refused max_refusals_per_peer times it is shut out
// until accept() returns, so a flood from one address costs a close per connection, not a slot,
// and the real source still gets in. Connections from many addresses are bounded by
// max_pending_connections in all.
//
// The listener asks admit() for every new connection before it reads anything from it, and
// reports with settled() when a pending connection leaves (admitted into the session, refused,
// or closed to free a descriptor).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <unordered_map>

#include "ferry/transport.h"

namespace ferry::transport {

// What admit() decided about a new connection.
struct AcceptDecision {
  enum class Kind {
    kAdmit,   // keep it pending: it counts against the bounds until settled()
    kRefuse,  // close it at once and report `why` (to on_refused)
    kDrop,    // close it at once; report `why` unless it is empty (a peer already shut out)
  };
  Kind kind = Kind::kAdmit;
  std::string why;
  bool admitted() const { return kind == Kind::kAdmit; }
};

class AcceptLimits {
 public:
  // Forgets every peer: a new accept() call starts with clean counts.
  void start(const Options& options);

  // Judges a new connection from `peer` (peer_key()) and counts it when admitted; a refusal
  // also counts as one of the peer's refusals.
  AcceptDecision admit(const std::string& peer);
  // A pending connection from `peer` left; `refused` counts it against the peer. Returns true
  // when that refusal shut the peer out (append shut_out_note() to its report).
  bool settled(const std::string& peer, bool refused);
  // "; PEER was refused N times (Options::max_refusals_per_peer): ..." for the refusal that
  // shut a peer out.
  std::string shut_out_note(const std::string& peer) const;

  uint32_t pending() const { return pending_; }

 private:
  struct Peer {
    uint32_t pending = 0;
    uint32_t refused = 0;
  };
  // Counts one refusal; true when it is the one that reaches max_refusals_per_peer.
  bool count_refusal(Peer& p);
  void forget_idle_peers();

  uint32_t max_pending_ = 0;
  uint32_t max_per_peer_ = 0;
  uint32_t max_refusals_ = 0;
  uint32_t pending_ = 0;
  std::unordered_map<std::string, Peer> peers_;
};

// The peer a connection counts against: "SCHEME:ADDR" for IPv4 and IPv6 (without the port; a
// v4-mapped IPv6 address in its IPv4 form), "SCHEME:family N" for anything else.
std::string peer_key(const std::string& scheme, const sockaddr* sa);

}  // namespace ferry::transport
