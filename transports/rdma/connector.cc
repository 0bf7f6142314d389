#include "transports/rdma/connector.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <thread>

#include "transports/auth.h"
#include "transports/handshake.h"
#include "transports/rdma/channel.h"
#include "transports/rdma/endpoint.h"

namespace ferry::transport::rdma {
namespace {

namespace hs = handshake;

// Waits on ec (blocking with poll) for the next event of id; returns its type and status.
rdma_cm_event_type wait_event(rdma_event_channel* ec, Clock::time_point deadline, int* status) {
  for (;;) {
    rdma_cm_event* ev = nullptr;
    if (rdma_get_cm_event(ec, &ev) == 0) {
      const rdma_cm_event_type t = ev->event;
      *status = ev->status;
      rdma_ack_cm_event(ev);
      return t;
    }
    if (errno != EAGAIN) return RDMA_CM_EVENT_CONNECT_ERROR;
    pollfd p{ec->fd, POLLIN, 0};
    int r = ::poll(&p, 1, ms_until(deadline));
    if (r == 0) {
      *status = ETIMEDOUT;
      return static_cast<rdma_cm_event_type>(-1);
    }
  }
}

struct Refused {
  int err;
  std::string what;
  bool retry;
};

// One attempt at channel i: resolve, connect, hello. Returns the endpoint ready for a channel.
std::unique_ptr<Endpoint> connect_once(const Uri& uri, const Options& o, uint32_t i,
                                       uint64_t session, Clock::time_point deadline,
                                       hs::Hello* peer_hello, Refused* refused) {
  const int idx = static_cast<int>(i);
  auto ep = std::make_unique<Endpoint>(idx, uri.to_string(), o);
  ep->ec_ = rdma_create_event_channel();
  if (!ep->ec_) {
    throw TransportError(idx, uri.to_string(), errno,
                         std::string("rdma_create_event_channel (no rdma_cm device?); ") +
                             kCreateDeviceHint);
  }
  set_nonblocking(ep->ec_->fd);
  if (rdma_create_id(ep->ec_, &ep->id_, nullptr, RDMA_PS_TCP) != 0) {
    throw TransportError(idx, uri.to_string(), errno, "rdma_create_id");
  }
  AddrInfo ai = resolve(uri, false);
  const int step_ms = std::max(100, std::min(2000, ms_until(deadline)));
  if (rdma_resolve_addr(ep->id_, nullptr, ai.ai->ai_addr, step_ms) != 0) {
    throw TransportError(idx, uri.to_string(), errno, "rdma_resolve_addr");
  }
  int st = 0;
  rdma_cm_event_type t = wait_event(ep->ec_, deadline, &st);
  if (t != RDMA_CM_EVENT_ADDR_RESOLVED) {
    std::string what = std::string("rdma_resolve_addr: ") +
                       (static_cast<int>(t) == -1 ? "timed out" : event_name(t)) +
                       " (is there an RDMA device on the route to " + uri.host + "? " +
                       kCreateDeviceHint + ")";
    // The kernel gives up on one neighbour resolution (ARP) after step_ms; a slow first ARP
    // (seen under emulation) is worth another attempt while the connect budget lasts.
    const bool arp_timeout =
        t == RDMA_CM_EVENT_ADDR_ERROR && (st == -ETIMEDOUT || st == ETIMEDOUT);
    if (arp_timeout || static_cast<int>(t) == -1) {  // -1: our connect budget ran out
      refused->retry = arp_timeout;
      refused->err = ETIMEDOUT;
      refused->what = std::move(what);
      return nullptr;
    }
    throw TransportError(idx, uri.to_string(), st < 0 ? -st : st, what);
  }
  if (rdma_resolve_route(ep->id_, step_ms) != 0) {
    throw TransportError(idx, uri.to_string(), errno, "rdma_resolve_route");
  }
  t = wait_event(ep->ec_, deadline, &st);
  if (static_cast<int>(t) == -1) {  // the connect budget ran out: the caller reports it
    refused->err = ETIMEDOUT;
    refused->what = "rdma_resolve_route: timed out";
    return nullptr;
  }
  if (t != RDMA_CM_EVENT_ROUTE_RESOLVED) {
    throw TransportError(idx, uri.to_string(), st < 0 ? -st : st,
                         std::string("rdma_resolve_route: ") + event_name(t));
  }
  ep->peer_ = endpoint_of(rdma_get_peer_addr(ep->id_));
  ep->create_resources();
  rdma_conn_param p = Endpoint::conn_param();
  if (rdma_connect(ep->id_, &p) != 0) ep->fail_verb("rdma_connect", errno);
  t = wait_event(ep->ec_, deadline, &st);
  if (t != RDMA_CM_EVENT_ESTABLISHED) {
    refused->retry = t == RDMA_CM_EVENT_REJECTED;
    refused->err = t == RDMA_CM_EVENT_REJECTED ? ECONNREFUSED
                   : static_cast<int>(t) == -1 ? ETIMEDOUT
                                                : ECONNRESET;
    refused->what = std::string("rdma_connect: ") +
                    (static_cast<int>(t) == -1 ? "timed out" : event_name(t)) + " (status " +
                    std::to_string(st) + ")";
    return nullptr;
  }
  ep->connected_ = true;
  // The hello, as the first message each way.
  const hs::Hello local = hs::local_hello(o, hs::Role::kConnector, session, i, o.channels, kCaps);
  const hs::Wire out = hs::encode(local);
  iovec v{const_cast<uint8_t*>(out.data()), out.size()};
  ep->send(std::span<const iovec>(&v, 1), 0, "handshake");
  hs::Wire in{};
  iovec r{in.data(), in.size()};
  try {
    ep->recv(std::span<const iovec>(&r, 1), o.handshake_timeout, "handshake");
  } catch (const TransportError& e) {
    throw TransportError(idx, ep->peer_, e.error_code(),
                         "handshake: no hello from the peer: " + e.detail());
  }
  const hs::Hello h = hs::decode(in);
  hs::check_reply(local, h, idx, ep->peer_);
  // With a key, the proof frames as the second message each way (transports/auth.h).
  auth::FrameWire mine{}, theirs{};
  if (local.auth == hs::Auth::kPsk) {
    mine = auth::connector_frame(o.psk, out, in);
    iovec pv{mine.data(), mine.size()};
    ep->send(std::span<const iovec>(&pv, 1), 0, "authentication");
    iovec pr{theirs.data(), theirs.size()};
    try {
      ep->recv(std::span<const iovec>(&pr, 1), o.handshake_timeout, "authentication");
    } catch (const TransportError& e) {
      throw TransportError(idx, ep->peer_, e.error_code(),
                           "authentication: no proof from the peer: " + e.detail());
    }
    auth::check_acceptor_frame(o.psk, out, in, theirs, idx, ep->peer_);
  }
  ep->wait_all("handshake");
  *peer_hello = h;
  return ep;
}

}  // namespace

ChannelPtr connect_channel(const Uri& uri, const Options& options, uint32_t i, uint64_t session) {
  const auto deadline = Clock::now() + options.connect_timeout;
  int attempts = 0;
  Refused last_refusal{0, "", false};  // the peer's last answer, if any attempt got one
  for (;;) {
    ++attempts;
    Refused refused{0, "", false};
    hs::Hello peer;
    std::unique_ptr<Endpoint> ep =
        connect_once(uri, options, i, session, deadline, &peer, &refused);
    if (ep) {
      const hs::Hello local =
          hs::local_hello(options, hs::Role::kConnector, session, i, options.channels, kCaps);
      return make_channel(std::move(ep), local, peer);
    }
    if (refused.err == ECONNREFUSED) last_refusal = refused;
    if (!refused.retry || Clock::now() + std::chrono::milliseconds(100) >= deadline) {
      // The deadline can cut the last attempt short while the peer keeps refusing (a slow
      // rdma_cm under emulation): the refusals are what the caller needs to hear about.
      if (refused.err == ETIMEDOUT && last_refusal.err == ECONNREFUSED) {
        refused = last_refusal;
        refused.what += " (the next attempt ran into the deadline)";
      }
      std::string what = refused.what + " after " + std::to_string(attempts) + " attempt" +
                         (attempts == 1 ? "" : "s") + " within " +
                         std::to_string(options.connect_timeout.count()) + " ms";
      if (refused.err == ECONNREFUSED) what = "connection refused: " + what;
      throw TransportError(static_cast<int>(i), uri.to_string(), refused.err, what);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace ferry::transport::rdma
