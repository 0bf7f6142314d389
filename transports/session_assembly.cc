#include "transports/session_assembly.h"

#include <algorithm>
#include <cerrno>

namespace ferry::transport {

namespace hs = handshake;

void SessionRules::start(const Options& options, const std::string& address) {
  if (options.channels > kMaxSessionChannels) {
    throw TransportError(-1, address, EINVAL,
                         "accept: options.channels is " + std::to_string(options.channels) +
                             ", more than the " + std::to_string(kMaxSessionChannels) +
                             " channels a session may have");
  }
  opts_ = options;
  session_ = options.session_id;
  count_ = options.channels;
  hellos_.clear();
  peers_.clear();
  present_.clear();
  arrived_ = 0;
  last_refusal_.clear();
}

SessionVerdict SessionRules::judge(const hs::Hello& peer, Capabilities caps) const {
  // Not adopted yet: the peer's count, but never more slots than a session may have.
  const uint32_t count = count_ ? count_ : std::min(peer.count, kMaxSessionChannels);
  SessionVerdict v;
  v.reply = hs::local_hello(opts_, hs::Role::kAcceptor, session_ ? session_ : peer.session_id,
                            peer.index, count, caps);
  v.status = hs::check_basic(v.reply, peer, hs::Role::kConnector, &v.refusal);
  if (v.status == hs::Status::kOk) {
    // Before the session's fields: a peer that cannot authenticate learns nothing else.
    v.status = hs::check_auth_mode(v.reply, peer);
    if (v.status == hs::Status::kOk) v.status = hs::check_tls_mode(v.reply, peer);
    if (v.status != hs::Status::kOk) v.refusal = hs::to_string(v.status);
  }
  if (v.status == hs::Status::kOk) {
    if (peer.session_id != v.reply.session_id) v.status = hs::Status::kSessionMismatch;
    else if (peer.count != v.reply.count) v.status = hs::Status::kCountMismatch;
    else if (peer.index >= peer.count) v.status = hs::Status::kIndexOutOfRange;
    else if (!present_.empty() && present_[peer.index]) v.status = hs::Status::kDuplicateIndex;
    if (v.status != hs::Status::kOk) v.refusal = hs::mismatch_message(v.status, v.reply, peer);
    if (v.status == hs::Status::kCountMismatch && count_ == 0) {
      v.refusal = std::string(hs::to_string(v.status)) + ": peer announces " +
                  std::to_string(peer.count) + " channels, more than the " +
                  std::to_string(kMaxSessionChannels) + " a session may have";
    }
  }
  v.reply.status = v.status;
  return v;
}

SessionVerdict SessionRules::judge_proof(const hs::Wire& hello, const hs::Wire& reply,
                                         const auth::FrameWire& proof, Capabilities caps,
                                         auth::FrameWire* answer) const {
  SessionVerdict v;
  if (!auth::connector_proved(opts_.psk, hello, reply, proof)) {
    v.status = hs::Status::kAuthFailed;
    v.refusal = hs::to_string(v.status);
  } else {
    v = judge(hs::decode(hello), caps);
  }
  auth::Frame f;
  f.status = v.status;
  if (v.accepted()) f.tag = auth::proof(opts_.psk, hs::Role::kAcceptor, hello, reply);
  *answer = auth::encode(f);
  return v;
}

void SessionRules::refuse(const std::string& peer, int err, const std::string& why,
                          const RefusalCallback& on_refused) {
  TransportError e(-1, peer, err, "refused connection: " + why);
  last_refusal_ = e.what();
  if (on_refused) on_refused(e);
}

TransportError SessionRules::timeout_error(const std::string& address) const {
  return accept_timeout_error(address, arrived_, count_, opts_.accept_timeout.count(),
                              last_refusal_);
}

hs::Hello SessionRules::local_hello(uint32_t index, Capabilities caps) const {
  return hs::local_hello(opts_, hs::Role::kAcceptor, session_, index, count_, caps);
}

uint32_t SessionRules::place(const hs::Hello& peer, std::string peer_text) {
  if (hellos_.empty()) {  // the first channel: the session is what judge() let it join
    session_ = peer.session_id;
    count_ = peer.count;
    hellos_.resize(count_);
    peers_.resize(count_);
    present_.resize(count_);
  }
  hellos_[peer.index] = peer;
  peers_[peer.index] = std::move(peer_text);
  present_[peer.index] = true;
  ++arrived_;
  return peer.index;
}

}  // namespace ferry::transport
