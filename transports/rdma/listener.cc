#include "transports/rdma/listener.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>

#include "transports/accept_limits.h"
#include "transports/auth.h"
#include "transports/cancel_event.h"
#include "transports/handshake.h"
#include "transports/rdma/channel.h"
#include "transports/rdma/endpoint.h"
#include "transports/session_assembly.h"

namespace ferry::transport::rdma {
namespace {

namespace hs = handshake;

class RdmaListener final : public Listener {
 public:
  RdmaListener(Uri uri, const Options& o) : uri_(std::move(uri)), opts_(o) {
    if (std::string why = unavailable_reason(); !why.empty()) {
      throw TransportError(-1, uri_.to_string(), ENODEV, why);
    }
    ec_ = rdma_create_event_channel();
    if (!ec_) {
      throw TransportError(-1, uri_.to_string(), errno,
                           std::string("rdma_create_event_channel; ") + kCreateDeviceHint);
    }
    set_nonblocking(ec_->fd);
    if (rdma_create_id(ec_, &id_, nullptr, RDMA_PS_TCP) != 0) {
      throw TransportError(-1, uri_.to_string(), errno, "rdma_create_id");
    }
    AddrInfo ai = resolve(uri_, true);
    if (rdma_bind_addr(id_, ai.ai->ai_addr) != 0) {
      const int e = errno;
      throw TransportError(-1, uri_.to_string(), e,
                           std::string("rdma_bind_addr") +
                               (e == ENODEV || e == EADDRNOTAVAIL
                                    ? std::string(" (no RDMA device owns this address; ") +
                                          kCreateDeviceHint + ")"
                                    : std::string()));
    }
    try {
      // Before rdma_listen: no connection request is ever taken on a refused address.
      auth::check_listen_exposure(rdma_get_local_addr(id_), opts_, uri_.to_string());
    } catch (...) {
      release();  // a constructor that throws gets no destructor
      throw;
    }
    if (rdma_listen(id_, 64) != 0) throw TransportError(-1, uri_.to_string(), errno, "rdma_listen");
    const uint16_t port = ntohs(rdma_get_src_port(id_));
    Uri a = uri_;
    a.port = port;
    address_ = a.to_string();
  }
  ~RdmaListener() override { release(); }

  std::string address() const override { return address_; }
  std::vector<ChannelPtr> accept() override;
  void cancel() noexcept override { cancel_.signal(); }

 private:
  struct Pending {
    std::unique_ptr<Endpoint> ep;
    Clock::time_point deadline;
    bool established = false;
    // Authentication: after the hellos crossed, its hello and the reply as they were sent.
    bool proving = false;
    hs::Wire hello{};
    hs::Wire reply{};
    std::string key;  // the peer it counts against in limits_ (peer_key)
  };

  void release() noexcept {
    pending_.clear();
    if (id_) rdma_destroy_id(id_);
    if (ec_) rdma_destroy_event_channel(ec_);
    id_ = nullptr;
    ec_ = nullptr;
  }
  // Reports a refused pending connection and counts it against its peer.
  void refuse(const Pending& p, int err, const std::string& why) {
    refuse(p.key, p.ep->peer_, err, why);
  }
  void refuse(const std::string& key, const std::string& peer, int err, const std::string& why) {
    const bool shut_out = limits_.settled(key, true);
    session_.refuse(peer, err, shut_out ? why + limits_.shut_out_note(key) : why, on_refused_);
  }
  void on_request(rdma_cm_id* id);
  // Judges a hello and answers it; returns true when the connection is settled (admitted or
  // refused), false when it goes on to prove the key.
  bool evaluate(Pending& p, const hs::Wire& in);
  // Judges its proof frame and answers it; the connection is settled either way.
  void evaluate_proof(Pending& p, const auth::FrameWire& in);
  // Sends bytes during the handshake; false (and the connection refused) when that failed.
  bool send_handshake(Pending& p, std::span<const uint8_t> bytes, const char* what);
  void admit(Pending& p, const hs::Hello& peer);

  Uri uri_;
  Options opts_;
  rdma_event_channel* ec_ = nullptr;
  rdma_cm_id* id_ = nullptr;
  std::string address_;
  CancelEvent cancel_;
  std::vector<Pending> pending_;
  SessionAssembly<std::unique_ptr<Endpoint>> session_;
  AcceptLimits limits_;
};

void RdmaListener::on_request(rdma_cm_id* id) {
  const std::string key = peer_key("rdma", rdma_get_peer_addr(id));
  const AcceptDecision d = limits_.admit(key);
  if (!d.admitted()) {
    // Rejected before a queue pair or a buffer is made for it.
    if (!d.why.empty()) {
      session_.refuse(endpoint_of(rdma_get_peer_addr(id)), EBUSY, d.why, on_refused_);
    }
    rdma_reject(id, nullptr, 0);
    rdma_destroy_id(id);
    return;
  }
  auto ep = std::make_unique<Endpoint>(-1, endpoint_of(rdma_get_peer_addr(id)), opts_);
  ep->id_ = id;
  try {
    ep->create_resources();
    rdma_conn_param p = Endpoint::conn_param();
    if (rdma_accept(id, &p) != 0) ep->fail_verb("rdma_accept", errno);
  } catch (const TransportError& e) {
    rdma_reject(id, nullptr, 0);
    refuse(key, ep->peer_, e.error_code(), e.detail());
    return;  // ep's destructor destroys the id
  }
  Pending p;
  p.ep = std::move(ep);
  p.deadline = Clock::now() + opts_.handshake_timeout;
  p.key = key;
  pending_.push_back(std::move(p));
}

bool RdmaListener::send_handshake(Pending& p, std::span<const uint8_t> bytes, const char* what) {
  iovec v{const_cast<uint8_t*>(bytes.data()), bytes.size()};
  try {
    p.ep->send(std::span<const iovec>(&v, 1), 0, what);
    p.ep->wait_all(what);
  } catch (const TransportError& e) {
    refuse(p, e.error_code(), std::string("sending ") + what + ": " + e.detail());
    return false;
  }
  return true;
}

bool RdmaListener::evaluate(Pending& p, const hs::Wire& in) {
  const hs::Hello peer = hs::decode(in);
  const SessionVerdict verdict = session_.judge(peer, kCaps);
  const hs::Wire out = hs::encode(verdict.reply);
  if (!send_handshake(p, out, "handshake reply")) return true;
  if (!verdict.accepted()) {
    refuse(p, 0, verdict.refusal);
    return true;
  }
  if (verdict.reply.auth == hs::Auth::kPsk) {
    p.proving = true;
    p.hello = in;
    p.reply = out;
    p.deadline = Clock::now() + opts_.handshake_timeout;
    return false;
  }
  admit(p, peer);
  return true;
}

void RdmaListener::evaluate_proof(Pending& p, const auth::FrameWire& in) {
  auth::FrameWire answer{};
  const SessionVerdict verdict = session_.judge_proof(p.hello, p.reply, in, kCaps, &answer);
  if (!send_handshake(p, answer, "authentication answer")) return;
  if (!verdict.accepted()) {
    refuse(p, 0, verdict.refusal);
    return;
  }
  admit(p, hs::decode(p.hello));
}

void RdmaListener::admit(Pending& p, const hs::Hello& peer) {
  limits_.settled(p.key, false);
  p.ep->channel_ = static_cast<int>(peer.index);
  std::string peer_text = p.ep->peer_;  // before the endpoint moves
  session_.admit(peer, std::move(peer_text), std::move(p.ep));
}

std::vector<ChannelPtr> RdmaListener::accept() {
  session_.start(opts_, address_);
  limits_.start(opts_);
  const auto deadline = Clock::now() + opts_.accept_timeout;
  while (!session_.complete()) {
    int wait = ms_until(deadline);
    for (const Pending& p : pending_) {
      wait = std::min(wait, p.established ? 2 : ms_until(p.deadline));
    }
    pollfd pf[2] = {{ec_->fd, POLLIN, 0}, cancel_.poll_entry()};
    ::poll(pf, 2, wait);
    cancel_.throw_if_set(address_);
    rdma_cm_event* ev = nullptr;
    while (rdma_get_cm_event(ec_, &ev) == 0) {
      const rdma_cm_event_type t = ev->event;
      rdma_cm_id* id = ev->id;
      if (t == RDMA_CM_EVENT_CONNECT_REQUEST) {
        rdma_ack_cm_event(ev);
        on_request(id);
        continue;
      }
      rdma_ack_cm_event(ev);
      for (size_t i = 0; i < pending_.size(); ++i) {
        Pending& p = pending_[i];
        if (p.ep->id_ != id) continue;
        if (t == RDMA_CM_EVENT_ESTABLISHED) {
          p.established = true;
          p.ep->connected_ = true;
        } else {
          refuse(p, ECONNRESET,
                 std::string("connection ended before its hello (") + event_name(t) + ")");
          pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(i));
        }
        break;
      }
    }
    const auto now = Clock::now();
    for (size_t i = 0; i < pending_.size();) {
      Pending& p = pending_[i];
      bool drop = false;
      if (p.established) {
        try {
          p.ep->poll_cq();
        } catch (const TransportError&) {
        }
        hs::Wire in{};
        const long n = p.ep->take_message(in.data(), in.size());
        const long want = static_cast<long>(p.proving ? auth::kFrameSize : hs::kSize);
        if (n >= 0 && n != want) {
          refuse(p, 0,
                 "its " + std::string(p.proving ? "second" : "first") + " message is " +
                     std::to_string(n) + " bytes, not a " + std::to_string(want) + "-byte " +
                     (p.proving ? "proof" : "hello"));
          drop = true;
        } else if (n >= 0 && p.proving) {
          auth::FrameWire frame{};
          std::copy_n(in.begin(), frame.size(), frame.begin());
          evaluate_proof(p, frame);
          drop = true;
        } else if (n >= 0) {
          drop = evaluate(p, in);
        } else if (p.ep->has_error()) {
          refuse(p, ECONNRESET,
                 std::string("connection failed before ") + (p.proving ? "its proof" : "its hello"));
          drop = true;
        }
      }
      if (!drop && now >= p.deadline) {
        refuse(p, ETIMEDOUT,
               std::string(p.proving ? "sent no proof" : "sent no hello") + " within " +
                   std::to_string(opts_.handshake_timeout.count()) + " ms");
        drop = true;
      }
      if (drop) {
        pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
    if (session_.complete()) break;
    if (Clock::now() >= deadline) throw session_.timeout_error(address_);
  }
  std::vector<ChannelPtr> out;
  out.reserve(session_.count());
  for (uint32_t i = 0; i < session_.count(); ++i) {
    std::unique_ptr<Endpoint> ep = session_.take(i);
    // Its own event channel from now on, so it sees its disconnect without the listener.
    ep->ec_ = rdma_create_event_channel();
    if (!ep->ec_ || rdma_migrate_id(ep->id_, ep->ec_) != 0) {
      throw TransportError(static_cast<int>(i), ep->peer_, errno, "rdma_migrate_id");
    }
    set_nonblocking(ep->ec_->fd);
    out.push_back(make_channel(std::move(ep), session_.local_hello(i, kCaps),
                               session_.peer_hello(i)));
  }
  session_.clear();
  return out;
}

}  // namespace

std::unique_ptr<Listener> make_listener(const Uri& uri, const Options& options) {
  return std::make_unique<RdmaListener>(uri, options);
}

}  // namespace ferry::transport::rdma
