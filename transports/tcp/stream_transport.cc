#include "transports/tcp/stream_transport.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "transports/accept_limits.h"
#include "transports/auth.h"
#include "transports/cancel_event.h"
#include "transports/handshake.h"
#include "transports/session_assembly.h"
#include "transports/tcp/socket.h"
#include "transports/stream_channel.h"
#include "transports/tls/context.h"
#include "transports/tls/handshake.h"

namespace ferry::transport::tcp {
namespace {

namespace hs = handshake;
using Clock = std::chrono::steady_clock;

Capabilities advertised(const Uri& uri, const Options& o) {
  return stream_capabilities(uri.scheme, o);
}

// A connection through every step of the handshake: its socket and, with TLS, its session.
struct Connection {
  Fd fd;
  tls::SslPtr tls;
};

ChannelPtr make_channel(const Uri& uri, Connection conn, const Options& o, const hs::Hello& local,
                        const hs::Hello& peer, std::string peer_text) {
  StreamChannelSpec c;
  c.transport = uri.scheme;
  c.fd = std::move(conn.fd);
  c.tls = std::move(conn.tls);
  c.options = o;
  c.index = local.index;
  c.count = local.count;
  c.session_id = local.session_id;
  c.peer = std::move(peer_text);
  c.peer_caps = peer.capabilities;
  return make_stream_channel(std::move(c));
}

std::string peer_of(int fd, const Uri& listen_uri) {
  if (listen_uri.scheme == "unix") return listen_uri.to_string();
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  return endpoint_text(reinterpret_cast<sockaddr*>(&ss), len);
}

// accept4 failures that closing a connection may cure: descriptors (per process, system-wide)
// or socket memory.
bool out_of_resources(int err) {
  return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

int ms_until(Clock::time_point t) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(t - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 1 << 30));
}

class StreamListener final : public Listener {
 public:
  StreamListener(Uri uri, const Options& o) : uri_(std::move(uri)), opts_(o) {
    fd_ = tcp::listen(uri_, opts_, &address_);
    set_blocking(fd_.get(), false);
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len);
    listener_local_ = is_local(reinterpret_cast<sockaddr*>(&ss));
    if (tls::wanted(opts_, uri_)) {
      tls_ = std::make_unique<tls::Context>(opts_.tls, tls::Side::kServer, address_);
    }
    auth::check_listen_exposure(reinterpret_cast<sockaddr*>(&ss), opts_, address_);
  }
  ~StreamListener() override {
    if (uri_.scheme == "unix") ::unlink(uri_.path.c_str());
  }

  std::string address() const override { return address_; }
  std::vector<ChannelPtr> accept() override;
  void cancel() noexcept override { cancel_.signal(); }

 private:
  // A connection not yet in the session: its hello, then (with a key) its proof, arriving, then
  // (with TLS) its TLS handshake.
  struct Pending {
    Fd fd;
    std::string peer;
    std::string key;  // the peer it counts against in limits_ (peer_key)
    hs::Wire buf{};  // the peer's hello as it arrived
    size_t got = 0;
    Clock::time_point deadline;
    // Authentication: entered once the hellos crossed; the reply as sent and the peer's proof.
    bool proving = false;
    hs::Wire reply{};
    auth::FrameWire proof{};
    size_t proof_got = 0;
    // TLS: entered after the hellos (and proofs); what poll() waits for is what OpenSSL wants.
    std::unique_ptr<tls::Handshake> tls;
    short events = POLLIN;

    std::span<uint8_t> missing() {
      return proving ? std::span<uint8_t>(proof).subspan(proof_got)
                     : std::span<uint8_t>(buf).subspan(got);
    }
    void arrived(size_t n) { (proving ? proof_got : got) += n; }
    const char* stage() const { return proving ? "its proof" : "its hello"; }
    std::string progress() const {
      return proving ? std::to_string(proof_got) + " of " + std::to_string(auth::kFrameSize)
                     : std::to_string(got) + " of " + std::to_string(hs::kSize);
    }
  };

  void accept_new(std::vector<Pending>& pending);
  // Judges a connection accept4 returned against limits_; appends it to pending when admitted.
  void take_connection(Fd fd, const sockaddr_storage& ss, std::vector<Pending>& pending);
  // The peer a new connection counts against: its address, or for unix its process.
  std::string key_of(int fd, const sockaddr_storage& ss) const;
  // accept4 failed for want of resources (err): closes the oldest connection still in its
  // handshake, preferring one that has not passed its hello, and reports it. False when there
  // is none to close.
  bool free_a_connection(std::vector<Pending>& pending, int err);
  // Reads what arrived; returns true when the connection is settled (admitted or refused).
  bool read_pending(Pending& p);
  // Judges a complete hello and answers it. Returns true when the connection goes on to prove
  // the key (p stays pending), false when it was admitted or refused.
  bool evaluate(Pending& p);
  // Checks a complete proof, answers with this end's proof or a refusal. Returns true when the
  // connection goes on to TLS, false when it was admitted or refused.
  bool evaluate_proof(Pending& p);
  // After the hellos (and proofs): starts TLS (true: p stays pending) or admits (false).
  bool hellos_done(Pending& p);
  // Advances the TLS handshake; once done, judges again, sends the admission byte and admits
  // or refuses. Returns true while p stays pending.
  bool step_tls(Pending& p);
  void admit(Pending& p);
  void refuse(const Pending& p, int err, const std::string& why);

  Uri uri_;
  Options opts_;
  Fd fd_;
  std::string address_;
  bool listener_local_ = false;
  std::unique_ptr<tls::Context> tls_;  // with Options::tls
  CancelEvent cancel_;

  SessionAssembly<Connection> session_;
  AcceptLimits limits_;
};

void StreamListener::refuse(const Pending& p, int err, const std::string& why) {
  const bool shut_out = limits_.settled(p.key, true);
  session_.refuse(p.peer, err, shut_out ? why + limits_.shut_out_note(p.key) : why, on_refused_);
}

std::string StreamListener::key_of(int fd, const sockaddr_storage& ss) const {
  if (uri_.scheme != "unix") return peer_key(uri_.scheme, reinterpret_cast<const sockaddr*>(&ss));
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return "unix:?";
  return "unix:pid " + std::to_string(cred.pid);
}

bool StreamListener::free_a_connection(std::vector<Pending>& pending, int err) {
  if (pending.empty()) return false;
  // Oldest first; one that already passed its hello is more likely the real source.
  auto victim = std::find_if(pending.begin(), pending.end(),
                             [](const Pending& p) { return !p.proving; });
  if (victim == pending.end()) victim = pending.begin();
  limits_.settled(victim->key, false);  // not the peer's doing
  session_.refuse(victim->peer, err,
                  std::string("closed to make room for a new connection: accept failed (") +
                      std::strerror(err) + ")",
                  on_refused_);
  pending.erase(victim);
  return true;
}

void StreamListener::accept_new(std::vector<Pending>& pending) {
  for (;;) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int c = ::accept4(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len,
                      SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0) {
      take_connection(Fd(c), ss, pending);
      continue;
    }
    const int err = errno;
    if (err == EINTR || err == ECONNABORTED) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) return;
    if (out_of_resources(err) && free_a_connection(pending, err)) continue;
    if (out_of_resources(err)) {
      throw TransportError(-1, address_, err,
                           "accept: out of resources and no connection in its handshake to "
                           "close for room (" + std::to_string(session_.arrived()) + " of " +
                               std::to_string(session_.count()) +
                               " channels arrived); raise RLIMIT_NOFILE (ulimit -n) or hold "
                               "fewer descriptors");
    }
    throw TransportError(-1, address_, err, "accept");
  }
}

void StreamListener::take_connection(Fd fd, const sockaddr_storage& ss,
                                     std::vector<Pending>& pending) {
  const int c = fd.get();
  Pending p;
  p.key = key_of(c, ss);
  const AcceptDecision d = limits_.admit(p.key);
  if (!d.admitted()) {
    // Closed before a byte is read: the connection costs the listener nothing more.
    if (!d.why.empty()) session_.refuse(peer_of(c, uri_), EBUSY, d.why, on_refused_);
    return;
  }
  p.fd = std::move(fd);
  p.peer = peer_of(c, uri_);
  p.deadline = Clock::now() + opts_.handshake_timeout;
  // Buffers come from the listening socket unless the peer turns out to be local; NODELAY
  // is set here to be sure.
  const bool local = is_local(reinterpret_cast<const sockaddr*>(&ss));
  Options nodelay_only;
  nodelay_only.socket_buffer_bytes = 0;
  tune(c, ss.ss_family, nodelay_only, false);
  if (local && !listener_local_) set_buffers(c, opts_.local_socket_buffer_bytes);
  pending.push_back(std::move(p));
}

bool StreamListener::evaluate(Pending& p) {
  const hs::Hello peer = hs::decode(p.buf);
  const SessionVerdict v = session_.judge(peer, advertised(uri_, opts_));
  // Answer even a refusal, so the connector can name both values too.
  p.reply = hs::encode(v.reply);
  const int werr = hs::write_until(p.fd.get(), p.reply.data(), p.reply.size(),
                                   Clock::now() + opts_.handshake_timeout);
  if (!v.accepted()) {
    refuse(p, 0, v.refusal);
    return false;
  }
  if (werr != 0) {
    refuse(p, werr, "sending handshake reply");
    return false;
  }
  if (v.reply.auth == hs::Auth::kPsk) {
    p.proving = true;
    p.deadline = Clock::now() + opts_.handshake_timeout;
    return true;
  }
  return hellos_done(p);
}

bool StreamListener::hellos_done(Pending& p) {
  if (!tls_) {
    admit(p);
    return false;
  }
  p.tls = std::make_unique<tls::Handshake>(tls_->new_session(p.fd.get(), -1, p.peer));
  p.deadline = Clock::now() + opts_.handshake_timeout;
  return step_tls(p);  // the client's first flight may be here already
}

bool StreamListener::step_tls(Pending& p) {
  switch (p.tls->step()) {
    case tls::Handshake::Step::kWantRead: p.events = POLLIN; return true;
    case tls::Handshake::Step::kWantWrite: p.events = POLLOUT; return true;
    case tls::Handshake::Step::kFailed: refuse(p, EPROTO, p.tls->error()); return false;
    case tls::Handshake::Step::kDone: break;
  }
  // Another connection may have adopted the session or taken the index meanwhile.
  const SessionVerdict v = session_.judge(hs::decode(p.buf), advertised(uri_, opts_));
  std::string why;
  const int werr = tls::send_admission(p.tls->ssl(), p.fd.get(), v.status,
                                       Clock::now() + opts_.handshake_timeout, &why);
  if (!v.accepted()) {
    refuse(p, 0, v.refusal);
  } else if (werr != 0) {
    refuse(p, werr, "sending the admission after TLS" + (why.empty() ? "" : ": " + why));
  } else {
    admit(p);
  }
  return false;
}

bool StreamListener::evaluate_proof(Pending& p) {
  auth::FrameWire out{};
  const SessionVerdict v =
      session_.judge_proof(p.buf, p.reply, p.proof, advertised(uri_, opts_), &out);
  const int werr = hs::write_until(p.fd.get(), out.data(), out.size(),
                                   Clock::now() + opts_.handshake_timeout);
  if (!v.accepted()) {
    refuse(p, 0, v.refusal);
  } else if (werr != 0) {
    refuse(p, werr, "sending this end's proof");
  } else {
    return hellos_done(p);
  }
  return false;
}

void StreamListener::admit(Pending& p) {
  limits_.settled(p.key, false);
  set_blocking(p.fd.get(), true);
  Connection c{std::move(p.fd), p.tls ? p.tls->take() : nullptr};
  session_.admit(hs::decode(p.buf), p.peer, std::move(c));
}

bool StreamListener::read_pending(Pending& p) {
  if (p.tls) return !step_tls(p);
  ssize_t n = 0;
  // Until the socket is empty, so a close right behind the bytes is seen now.
  while (!p.missing().empty()) {
    const std::span<uint8_t> want = p.missing();
    n = ::read(p.fd.get(), want.data(), want.size());
    if (n <= 0) break;
    p.arrived(static_cast<size_t>(n));
  }
  if (p.missing().empty()) {
    return p.proving ? !evaluate_proof(p) : !evaluate(p);
  }
  if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
    refuse(p, n == 0 ? 0 : errno,
           "connection closed after " + p.progress() + " bytes of " + p.stage());
    return true;
  }
  return false;
}

std::vector<ChannelPtr> StreamListener::accept() {
  session_.start(opts_, address_);
  limits_.start(opts_);
  const auto deadline = Clock::now() + opts_.accept_timeout;
  std::vector<Pending> pending;
  std::vector<pollfd> pfds;
  while (!session_.complete()) {
    auto wake = deadline;
    for (const Pending& p : pending) wake = std::min(wake, p.deadline);
    pfds.assign(1, pollfd{fd_.get(), POLLIN, 0});
    for (const Pending& p : pending) pfds.push_back(pollfd{p.fd.get(), p.events, 0});
    pfds.push_back(cancel_.poll_entry());  // last, so pending i stays at pfds[i + 1]
    int r = ::poll(pfds.data(), pfds.size(), ms_until(wake));
    if (r < 0 && errno != EINTR) throw TransportError(-1, address_, errno, "poll");
    cancel_.throw_if_set(address_);
    const auto now = Clock::now();

    // Read what arrived, settle complete hellos, drop the silent and the closed. Connections
    // are independent: a bad one never holds up the others.
    for (size_t i = 0; i < pending.size();) {
      Pending& p = pending[i];
      bool drop = false;
      if (r > 0 && (pfds[i + 1].revents & (POLLIN | POLLOUT | POLLHUP | POLLERR))) {
        drop = read_pending(p);
      }
      if (!drop && now >= p.deadline) {
        const std::string what = p.tls ? std::string("did not finish its TLS handshake")
                                       : "sent " + p.progress() + " bytes of " + p.stage();
        refuse(p, ETIMEDOUT,
               what + " within " + std::to_string(opts_.handshake_timeout.count()) + " ms");
        drop = true;
      }
      if (drop) {
        pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(i));
        pfds.erase(pfds.begin() + static_cast<std::ptrdiff_t>(i) + 1);
      } else {
        ++i;
      }
    }
    if (r > 0 && (pfds[0].revents & POLLIN)) accept_new(pending);
    if (session_.complete()) break;
    if (Clock::now() >= deadline) throw session_.timeout_error(address_);
  }
  // Closed before the channels are made: their descriptors may be what the channels need.
  pending.clear();

  std::vector<ChannelPtr> out;
  out.reserve(session_.count());
  for (uint32_t i = 0; i < session_.count(); ++i) {
    const hs::Hello local = session_.local_hello(i, advertised(uri_, opts_));
    out.push_back(make_channel(uri_, session_.take(i), opts_, local, session_.peer_hello(i),
                               session_.peer_text(i)));
  }
  session_.clear();
  return out;
}

// With TLS: this end's client context for all of connect()'s channels.
std::unique_ptr<tls::Context> client_context(const Uri& uri, const Options& o) {
  if (!tls::wanted(o, uri)) return nullptr;
  return std::make_unique<tls::Context>(o.tls, tls::Side::kClient, uri.to_string());
}

}  // namespace

std::unique_ptr<Listener> listen(const Uri& uri, const Options& options) {
  auth::check_key(options, uri.to_string());
  return std::make_unique<StreamListener>(uri, options);
}

std::vector<ChannelPtr> connect(const Uri& uri, const Options& options) {
  if (options.channels == 0) {
    throw TransportError(-1, uri.to_string(), EINVAL, "connect: options.channels must be >= 1");
  }
  auth::check_key(options, uri.to_string());
  const std::unique_ptr<tls::Context> tls = client_context(uri, options);
  const uint64_t session = options.session_id ? options.session_id : hs::random_session_id();
  std::vector<ChannelPtr> out;
  out.reserve(options.channels);
  for (uint32_t i = 0; i < options.channels; ++i) {
    const int idx = static_cast<int>(i);
    Fd fd = tcp::connect(uri, options, idx);
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    std::string peer = uri.to_string();
    if (uri.scheme == "tcp" && ::getpeername(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      peer = endpoint_text(reinterpret_cast<sockaddr*>(&ss), len);
    }
    const hs::Hello local = hs::local_hello(options, hs::Role::kConnector, session, i,
                                            options.channels, advertised(uri, options));
    const hs::Hello remote =
        hs::connect_exchange(fd.get(), local, options.handshake_timeout, idx, peer, options.psk);
    Connection conn{std::move(fd), nullptr};
    if (tls) conn.tls = tls::connect(*tls, conn.fd.get(), options.handshake_timeout, idx, peer);
    out.push_back(make_channel(uri, std::move(conn), options, local, remote, peer));
  }
  return out;
}

}  // namespace ferry::transport::tcp
