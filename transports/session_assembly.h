// The acceptor's side of the session rules, shared by every listener that takes connections
// (tcp/unix and rdma): which hellos join the session being accepted, and where they go.
//
// A session is the configured session id and channel count, or, when those are 0, the ones of
// the first valid hello. A hello with another session id or count, an index outside the count
// or an index already connected is refused, naming both values (handshake::mismatch_message).
// So is a first hello announcing more than kMaxSessionChannels channels: the count sizes the
// per-index slots, and a peer must not make the listener allocate what it likes (2^32-1 slots
// were ~16 GiB and a bad_alloc out of accept()).
//
// With a pre-shared key (Options::psk) judge() also refuses a hello without authentication, and
// the listener admits a connection only after its proof (transports/auth.h) checked out and a
// second judge() still accepts it: the session is adopted only from a peer that proved the key,
// so a hijacker connecting first with a wrong key (or none) is refused and the real one gets in.
//
// SessionAssembly<Conn> keeps per index the connection (an fd, an rdma endpoint), the peer's
// text and its hello, counts arrivals and remembers the last refusal for the accept-timeout
// error. The listener owns the connections until they pass judge(); it sends the reply judge()
// returns (also when refusing, so the peer can name both values) and then admit()s or refuse()s.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ferry/transport.h"
#include "transports/auth.h"
#include "transports/handshake.h"

namespace ferry::transport {

// Channels one session may have; the same bound as the engine's wire format (wire::kMaxChannels).
inline constexpr uint32_t kMaxSessionChannels = 256;

// The acceptor's answer to one hello.
struct SessionVerdict {
  handshake::Hello reply;  // this end's hello, status set: send it back either way
  handshake::Status status = handshake::Status::kOk;
  std::string refusal;  // why, when status is not kOk
  bool accepted() const { return status == handshake::Status::kOk; }
};

// Everything but the connections themselves.
class SessionRules {
 public:
  // Starts a new session: options.session_id and options.channels, 0 = adopt the first valid
  // hello's. Throws EINVAL when options.channels is above kMaxSessionChannels.
  void start(const Options& options, const std::string& address);

  // Judges a complete hello from a connection not yet in the session. Does not change the
  // session: the listener admits the connection only once the reply went out.
  SessionVerdict judge(const handshake::Hello& peer, Capabilities caps) const;

  // Judges the proof frame of a connection whose hello judge() accepted (hello and reply as
  // they went on the wire): kAuthFailed unless it proves the key, otherwise judge() again, since
  // another connection may have adopted the session or taken the index meanwhile. *answer is
  // the frame to send back either way: this end's proof when accepted, the refusal otherwise.
  SessionVerdict judge_proof(const handshake::Wire& hello, const handshake::Wire& reply,
                             const auth::FrameWire& proof, Capabilities caps,
                             auth::FrameWire* answer) const;

  // Reports a refused connection to on_refused and keeps it for the accept-timeout error.
  void refuse(const std::string& peer, int err, const std::string& why,
              const RefusalCallback& on_refused);

  // True once every channel of the session arrived.
  bool complete() const { return !hellos_.empty() && arrived_ == count_; }
  uint64_t session_id() const { return session_; }
  uint32_t count() const { return count_; }
  uint32_t arrived() const { return arrived_; }
  // The accept_timeout error: how many of how many channels arrived, and the last refusal.
  TransportError timeout_error(const std::string& address) const;

  // This end's hello for channel `index` of the assembled session.
  handshake::Hello local_hello(uint32_t index, Capabilities caps) const;
  const handshake::Hello& peer_hello(uint32_t index) const { return hellos_[index]; }
  const std::string& peer_text(uint32_t index) const { return peers_[index]; }

 protected:
  // Records an accepted hello (adopting the session on the first) and returns its index.
  uint32_t place(const handshake::Hello& peer, std::string peer_text);

 private:
  Options opts_;
  uint64_t session_ = 0;
  uint32_t count_ = 0;
  std::vector<handshake::Hello> hellos_;  // sized to count_ by the first admitted channel
  std::vector<std::string> peers_;
  std::vector<bool> present_;
  uint32_t arrived_ = 0;
  std::string last_refusal_;
};

template <typename Conn>
class SessionAssembly : public SessionRules {
 public:
  void start(const Options& options, const std::string& address) {
    SessionRules::start(options, address);
    conns_.clear();
  }

  // Adds a connection whose hello judge() accepted.
  void admit(const handshake::Hello& peer, std::string peer_text, Conn conn) {
    const uint32_t index = place(peer, std::move(peer_text));
    if (conns_.size() < count()) conns_.resize(count());
    conns_[index] = std::move(conn);
  }

  // Channel `index`'s connection, once the session is complete.
  Conn take(uint32_t index) { return std::move(conns_[index]); }

  // Drops the session's connections (accept() done or abandoned).
  void clear() { conns_.clear(); }

 private:
  std::vector<Conn> conns_;
};

}  // namespace ferry::transport
