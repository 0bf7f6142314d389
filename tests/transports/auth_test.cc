// Pre-shared-key authentication (transports/auth.h) on real loopback tcp and unix sockets: the
// right key carries data both ways on every channel, a wrong or missing key is refused on both
// ends with a message saying which end lacks what, a hijacker that connects first cannot take a
// session_id-0 listener's session, and the listen policy (no key off loopback, short keys).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <future>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "ferry/transport.h"
#include "transports/auth.h"
#include "transports/handshake.h"
#include "transports/rdma/rdma_transport.h"
#include "tests/transports/test_util.h"

namespace ferry::transport {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;
using testing::test_options;
namespace hs = handshake;

std::vector<uint8_t> key(uint8_t first, size_t n = 32) {
  std::vector<uint8_t> k(n);
  std::iota(k.begin(), k.end(), first);
  return k;
}

Options with_key(std::vector<uint8_t> psk) {
  Options o = test_options();
  o.psk = std::move(psk);
  return o;
}

// The listener's refusals, as its on_refused callback reports them.
class Refusals {
 public:
  void attach(Listener& l) {
    l.on_refused([this](const TransportError& e) {
      std::lock_guard<std::mutex> g(mu_);
      all_.push_back(e.what());
    });
  }
  std::string text() {
    std::lock_guard<std::mutex> g(mu_);
    std::string t;
    for (const auto& s : all_) t += s + "\n";
    return t;
  }
  size_t count() {
    std::lock_guard<std::mutex> g(mu_);
    return all_.size();
  }

 private:
  std::mutex mu_;
  std::vector<std::string> all_;
};

std::string connect_error(const std::string& address, const Options& o) {
  try {
    connect(address, o);
  } catch (const TransportError& e) {
    return e.what();
  }
  return "";
}

// ---- The proof itself ----------------------------------------------------------------------

hs::Wire kat_hello(hs::Role role, Capabilities caps, uint8_t nonce_first) {
  hs::Hello h;
  h.role = role;
  h.session_id = 0x1122334455667788ull;
  h.index = 1;
  h.count = 2;
  h.capabilities = caps;
  h.auth = hs::Auth::kPsk;
  std::iota(h.nonce.begin(), h.nonce.end(), nonce_first);
  return hs::encode(h);
}

std::string hex(const auth::Tag& t) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (uint8_t b : t) s += {d[b >> 4], d[b & 15]};
  return s;
}

// Known answers computed outside ferry (Python's hmac/hashlib: HKDF per RFC 5869 and HMAC over
// the layout documented in transports/auth.h and handshake.h), so the code matches its comment.
TEST(AuthProof, MatchesTheDocumentedConstruction) {
  const std::vector<uint8_t> psk = key(0);
  const hs::Wire c = kat_hello(hs::Role::kConnector, 0, 0x10);
  const hs::Wire a = kat_hello(hs::Role::kAcceptor, 5, 0x20);
  EXPECT_EQ(hex(auth::proof(psk, hs::Role::kConnector, c, a)),
            "6f2ecd356c377d0b7562241f563acf9f916a2a3ce31967f03218c1888858baf4");
  EXPECT_EQ(hex(auth::proof(psk, hs::Role::kAcceptor, c, a)),
            "2ced92342be58c61e3e419276227f20ba775af55c1cc0d1015991581941cbdff");
}

TEST(AuthProof, AnyChangedHelloByteOrKeyByteFailsVerification) {
  const std::vector<uint8_t> psk = key(0);
  const hs::Wire c = kat_hello(hs::Role::kConnector, 0, 0x10);
  const hs::Wire a = kat_hello(hs::Role::kAcceptor, 0, 0x20);
  const auth::Tag tag = auth::proof(psk, hs::Role::kConnector, c, a);
  EXPECT_TRUE(auth::verify(psk, hs::Role::kConnector, c, a, tag));
  EXPECT_FALSE(auth::verify(psk, hs::Role::kAcceptor, c, a, tag)) << "reflected to the other role";
  for (size_t i = 0; i < hs::kSize; ++i) {
    hs::Wire c2 = c, a2 = a;
    c2[i] ^= 1;
    a2[i] ^= 1;
    EXPECT_FALSE(auth::verify(psk, hs::Role::kConnector, c2, a, tag)) << "connector byte " << i;
    EXPECT_FALSE(auth::verify(psk, hs::Role::kConnector, c, a2, tag)) << "acceptor byte " << i;
  }
  for (size_t i = 0; i < psk.size(); ++i) {
    std::vector<uint8_t> k2 = psk;
    k2[i] ^= 0x80;
    EXPECT_FALSE(auth::verify(k2, hs::Role::kConnector, c, a, tag)) << "key byte " << i;
  }
}

TEST(AuthProof, HellosCarryFreshNonces) {
  Options o = with_key(key(1));
  const hs::Hello h1 = hs::local_hello(o, hs::Role::kConnector, 1, 0, 1, 0);
  const hs::Hello h2 = hs::local_hello(o, hs::Role::kConnector, 1, 0, 1, 0);
  EXPECT_EQ(h1.auth, hs::Auth::kPsk);
  EXPECT_NE(h1.nonce, h2.nonce);
  EXPECT_NE(h1.nonce, hs::Nonce{});
  const hs::Hello plain = hs::local_hello(test_options(), hs::Role::kConnector, 1, 0, 1, 0);
  EXPECT_EQ(plain.auth, hs::Auth::kNone);
  EXPECT_EQ(plain.nonce, hs::Nonce{});
  const hs::Hello back = hs::decode(hs::encode(h1));
  EXPECT_EQ(back.auth, hs::Auth::kPsk);
  EXPECT_EQ(back.nonce, h1.nonce);
}

// ---- Sessions over real sockets ------------------------------------------------------------

struct Case {
  const char* scheme;
  uint32_t channels;
};

// rdma runs on soft-RoCE inside tools/rxe/run-in-vm (ctest -L rxe: rxe.transports), which sets
// FERRY_RXE_SERVER_ADDR; elsewhere those cases skip.
class AuthSession : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    if (scheme() != "rdma") return;
    if (std::string why = rdma::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
    if (!std::getenv("FERRY_RXE_SERVER_ADDR")) GTEST_SKIP() << "FERRY_RXE_SERVER_ADDR is not set";
  }
  std::string scheme() const { return GetParam().scheme; }
  std::string listen_uri() {
    if (scheme() == "unix") return "unix:" + dir_.path() + "/auth.sock";
    if (scheme() == "rdma") return std::string("rdma:") + std::getenv("FERRY_RXE_SERVER_ADDR") + ":0";
    return "tcp:127.0.0.1:0";
  }
  // What each side said when `first` connected to a listener with options `lo` (allowing 1.5 s
  // for a session), and then, if given, `then` connected too.
  struct Attempt {
    std::string connector_error;  // what the first connect() threw ("" if it got in)
    std::string accept_error;     // what accept() threw ("" if it took a session)
    size_t accepted = 0;          // channels of the session accept() took
    std::string refusals;         // what the listener reported through on_refused
    size_t refusal_count = 0;
  };
  Attempt attempt(Options lo, Options first, Options* then = nullptr) {
    lo.channels = 0;
    lo.accept_timeout = std::chrono::milliseconds(1'500);
    auto l = listen(listen_uri(), lo);
    Refusals refused;
    refused.attach(*l);
    auto accepted = std::async(std::launch::async, [&] { return l->accept(); });
    Attempt a;
    first.channels = GetParam().channels;
    a.connector_error = connect_error(l->address(), first);
    std::vector<ChannelPtr> connected;
    if (then != nullptr) {
      then->channels = GetParam().channels;
      connected = connect(l->address(), *then);
    }
    try {
      a.accepted = accepted.get().size();
    } catch (const TransportError& e) {
      a.accept_error = e.what();
    }
    a.refusals = refused.text();
    a.refusal_count = refused.count();
    return a;
  }
  TempDir dir_;
};

// Every channel authenticates and then carries bytes both ways.
TEST_P(AuthSession, RightKeyCarriesDataBothWaysOnEveryChannel) {
  const uint32_t n = GetParam().channels;
  Options o = with_key(key(7));
  o.channels = n;
  auto l = listen(listen_uri(), o);
  Refusals refused;
  refused.attach(*l);
  testing::Session s = testing::open_session(*l, n, o);
  ASSERT_EQ(s.accepted.size(), n);
  ASSERT_EQ(s.connected.size(), n);
  EXPECT_EQ(refused.count(), 0u) << refused.text();
  std::vector<std::thread> threads;
  std::vector<std::string> errors(n);
  for (uint32_t i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      try {
        Channel& src = *s.connected[i];
        Channel& dst = *s.accepted[i];
        EXPECT_EQ(src.session_id(), dst.session_id());
        EXPECT_EQ(dst.index(), i);
        std::vector<uint8_t> out(1 << 20), in(out.size());
        testing::fill_pattern(out.data(), out.size(), i + 1, 0);
        auto sent = std::async(std::launch::async, [&] { src.send_all(out.data(), out.size()); });
        dst.recv(in.data(), in.size());
        sent.get();
        EXPECT_EQ(testing::find_mismatch(in.data(), in.size(), i + 1, 0), -1);
        const uint32_t ack = 0xACC0 + i;
        dst.send_all(&ack, sizeof ack);
        uint32_t got = 0;
        src.recv(&got, sizeof got);
        EXPECT_EQ(got, ack);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (uint32_t i = 0; i < n; ++i) EXPECT_EQ(errors[i], "") << "channel " << i;
}

// Wrong key: the listener says the peer did not prove the key, the connector that its proof
// was found wrong; the listener goes on and takes the right peer.
TEST_P(AuthSession, WrongKeyIsRefusedOnBothSides) {
  Options right = with_key(key(1));
  const Attempt a = attempt(with_key(key(1)), with_key(key(2)), &right);
  EXPECT_THAT(a.connector_error, HasSubstr("found this end's proof of the pre-shared key wrong"))
      << a.connector_error;
  EXPECT_EQ(a.accept_error, "");
  EXPECT_EQ(a.accepted, GetParam().channels);
  EXPECT_THAT(a.refusals, HasSubstr("the peer did not prove the pre-shared key"));
  EXPECT_EQ(a.refusal_count, 1u) << a.refusals;
}

TEST_P(AuthSession, KeyOnListenerOnlyIsRefusedOnBothSides) {
  const Attempt a = attempt(with_key(key(1)), test_options());
  EXPECT_THAT(a.connector_error,
              HasSubstr("the peer requires authentication and this end has no pre-shared key"))
      << a.connector_error;
  EXPECT_NE(a.accept_error, "") << "accept() took an unauthenticated session";
  EXPECT_THAT(a.refusals,
              HasSubstr("this end requires authentication (a pre-shared key), the peer offered "
                        "none"));
}

TEST_P(AuthSession, KeyOnConnectorOnlyIsRefusedOnBothSides) {
  const Attempt a = attempt(test_options(), with_key(key(1)));
  EXPECT_THAT(a.connector_error,
              HasSubstr("this end requires authentication (a pre-shared key), the peer has none"))
      << a.connector_error;
  EXPECT_THAT(a.accept_error,
              HasSubstr("the peer requires authentication and this end has no pre-shared key"));
  EXPECT_EQ(a.accepted, 0u);
}

INSTANTIATE_TEST_SUITE_P(Transports, AuthSession,
                         ::testing::Values(Case{"tcp", 1}, Case{"tcp", 2}, Case{"unix", 1},
                                           Case{"unix", 2}, Case{"rdma", 1}, Case{"rdma", 2}),
                         [](const auto& info) {
                           return std::string(info.param.scheme) + "_" +
                                  std::to_string(info.param.channels) + "ch";
                         });

// ---- Hijacking a session_id-0 listener ---------------------------------------------------

// A hijacker connects first, with a wrong key and then with none, announcing its own session id
// and channel count; a listener that adopted either would refuse the real source (session id
// mismatch). The real source must get in with its own session.
TEST(AuthHijack, WrongKeyFirstDoesNotTakeTheSession) {
  Options lo = with_key(key(1));
  lo.channels = 0;
  lo.session_id = 0;
  auto l = listen("tcp:127.0.0.1:0", lo);
  Refusals refused;
  refused.attach(*l);
  auto accepted = std::async(std::launch::async, [&] { return l->accept(); });

  Options hijacker = with_key(key(9));
  hijacker.channels = 1;
  hijacker.session_id = 0xBAD;
  EXPECT_THAT(connect_error(l->address(), hijacker), HasSubstr("proof of the pre-shared key"));
  Options keyless = test_options();
  keyless.channels = 3;
  keyless.session_id = 0xBAD2;
  EXPECT_THAT(connect_error(l->address(), keyless), HasSubstr("requires authentication"));

  Options source = with_key(key(1));
  source.channels = 2;
  source.session_id = 0x5EC;
  auto ch = connect(l->address(), source);
  auto acc = accepted.get();
  ASSERT_EQ(acc.size(), 2u);
  EXPECT_EQ(acc[0]->session_id(), 0x5ECu);
  EXPECT_EQ(refused.count(), 2u) << refused.text();
  EXPECT_THAT(refused.text(), HasSubstr("did not prove the pre-shared key"));
}

// The hijacker's hello passes (it asks for authentication) and it then sits on its proof while
// the real source connects: the listener must neither wait for it nor let it hold the session.
TEST(AuthHijack, StalledProofDoesNotHoldUpTheRealSource) {
  Options lo = with_key(key(1));
  lo.channels = 0;
  auto l = listen("tcp:127.0.0.1:0", lo);
  Refusals refused;
  refused.attach(*l);
  auto accepted = std::async(std::launch::async, [&] { return l->accept(); });

  Fd stalled = testing::raw_connect(l->address());
  hs::Hello h = hs::local_hello(with_key(key(9)), hs::Role::kConnector, 0xBAD, 0, 1, 0);
  const hs::Wire w = hs::encode(h);
  ASSERT_EQ(::write(stalled.get(), w.data(), w.size()), static_cast<ssize_t>(w.size()));
  hs::Wire reply{};
  ASSERT_EQ(::read(stalled.get(), reply.data(), reply.size()), static_cast<ssize_t>(reply.size()));
  EXPECT_EQ(hs::decode(reply).status, hs::Status::kOk);  // the hello itself was fine

  Options source = with_key(key(1));
  source.channels = 2;
  source.session_id = 0x5EC;
  auto ch = connect(l->address(), source);
  auto acc = accepted.get();
  ASSERT_EQ(acc.size(), 2u);
  EXPECT_EQ(acc[1]->session_id(), 0x5ECu);

  // A frame of garbage where the proof belongs is refused as an unproven key.
  auto again = std::async(std::launch::async, [&] { return l->accept(); });
  Fd garbage = testing::raw_connect(l->address());
  const hs::Wire w2 = hs::encode(hs::local_hello(with_key(key(9)), hs::Role::kConnector, 7, 0, 1, 0));
  ASSERT_EQ(::write(garbage.get(), w2.data(), w2.size()), static_cast<ssize_t>(w2.size()));
  ASSERT_EQ(::read(garbage.get(), reply.data(), reply.size()), static_cast<ssize_t>(reply.size()));
  auth::FrameWire junk{};
  junk.fill(0x5A);
  ASSERT_EQ(::write(garbage.get(), junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
  auth::FrameWire answer{};
  ASSERT_EQ(::read(garbage.get(), answer.data(), answer.size()),
            static_cast<ssize_t>(answer.size()));
  EXPECT_EQ(auth::decode(answer).status, hs::Status::kAuthFailed);
  EXPECT_EQ(auth::decode(answer).tag, auth::Tag{}) << "an acceptor proves nothing to a stranger";
  l->cancel();
  EXPECT_THROW(again.get(), TransportError);
  EXPECT_THAT(refused.text(), HasSubstr("did not prove the pre-shared key"));
}

// ---- Policy ------------------------------------------------------------------------------

// Options as a listener gets them by default: insecure off.
Options secure_options() {
  Options o = test_options();
  o.insecure = false;
  return o;
}

TEST(AuthPolicy, NonLoopbackListenNeedsAKeyOrInsecure) {
  try {
    listen("tcp:0.0.0.0:0", secure_options());
    ADD_FAILURE() << "listened on 0.0.0.0 without a key";
  } catch (const TransportError& e) {
    EXPECT_EQ(e.error_code(), EACCES);
    EXPECT_THAT(e.what(), HasSubstr("not loopback without authentication"));
  }
  Options insecure = test_options();
  insecure.insecure = true;
  EXPECT_NO_THROW(listen("tcp:0.0.0.0:0", insecure));
  Options keyed = with_key(key(3));
  keyed.insecure = false;
  EXPECT_NO_THROW(listen("tcp:0.0.0.0:0", keyed));
  EXPECT_NO_THROW(listen("tcp:127.0.0.1:0", secure_options()));
  TempDir dir;
  EXPECT_NO_THROW(listen("unix:" + dir.path() + "/s", secure_options()));
}

// The rule as the rdma listener applies it too (one function, one text), without a device.
TEST(AuthPolicy, ListenRuleOffLoopbackIsOneFunctionWithTheListenersText) {
  Options secure;
  sockaddr_in remote{};
  remote.sin_family = AF_INET;
  ::inet_pton(AF_INET, "192.0.2.7", &remote.sin_addr);
  const auto* sa = reinterpret_cast<const sockaddr*>(&remote);
  std::string direct;
  try {
    auth::check_listen_exposure(sa, secure, "rdma:192.0.2.7:4791");
    ADD_FAILURE() << "no refusal";
  } catch (const TransportError& e) {
    EXPECT_EQ(e.error_code(), EACCES);
    direct = e.detail();
  }
  EXPECT_THAT(direct, HasSubstr("not loopback without authentication"));
  // The same words as the tcp listener's refusal (one function says both).
  try {
    listen("tcp:0.0.0.0:0", secure);
    ADD_FAILURE() << "tcp listened on 0.0.0.0 without a key";
  } catch (const TransportError& e) {
    EXPECT_EQ(e.detail(), direct);
  }

  Options keyed;
  keyed.psk = std::vector<uint8_t>(32, 1);
  EXPECT_NO_THROW(auth::check_listen_exposure(sa, keyed, "x"));
  Options insecure;
  insecure.insecure = true;
  EXPECT_NO_THROW(auth::check_listen_exposure(sa, insecure, "x"));
  sockaddr_in loop = remote;
  ::inet_pton(AF_INET, "127.0.0.9", &loop.sin_addr);
  EXPECT_NO_THROW(auth::check_listen_exposure(reinterpret_cast<sockaddr*>(&loop), secure, "x"));
  sockaddr_in6 loop6{};
  loop6.sin6_family = AF_INET6;
  loop6.sin6_addr = in6addr_loopback;
  EXPECT_NO_THROW(auth::check_listen_exposure(reinterpret_cast<sockaddr*>(&loop6), secure, "x"));
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  EXPECT_NO_THROW(auth::check_listen_exposure(reinterpret_cast<sockaddr*>(&un), secure, "x"));
}

TEST(AuthPolicy, KeyShorterThan256BitsIsRefused) {
  const Options short_key = with_key(key(1, 31));
  try {
    listen("tcp:127.0.0.1:0", short_key);
    ADD_FAILURE() << "listened with a 31-byte key";
  } catch (const TransportError& e) {
    EXPECT_EQ(e.error_code(), EINVAL);
    EXPECT_THAT(e.what(), HasSubstr("the pre-shared key is 31 bytes; at least 32"));
  }
  auto l = listen("tcp:127.0.0.1:0", with_key(key(1)));
  EXPECT_THAT(connect_error(l->address(), short_key), HasSubstr("at least 32"));
}

#ifdef FERRY_HAVE_RDMA
TEST(AuthPolicy, RdmaRefusesAShortKeyBeforeTouchingADevice) {
  try {
    // The rdma module itself: uri_test replaces the registry's rdma entry for its own test.
    rdma::listen(parse_uri("rdma:127.0.0.1:0"), with_key(key(1, 16)));
    ADD_FAILURE() << "rdma listened with a 16-byte key";
  } catch (const TransportError& e) {
    EXPECT_EQ(e.error_code(), EINVAL) << e.what();
  }
}
#endif

// ---- Options::psk ------------------------------------------------------------------------

TEST(SecureBytes, TakesAVectorAndWipesTheOneItWasMovedFrom) {
  std::vector<uint8_t> key(32, 0x5a);
  const uint8_t* old = key.data();
  Options o;
  o.psk = std::move(key);
  EXPECT_EQ(o.psk.size(), 32u);
  EXPECT_EQ(o.psk[31], 0x5a);
  // Moved-from: emptied, and its buffer (still owned by the vector, capacity kept) zeroed.
  EXPECT_TRUE(key.empty());  // NOLINT(bugprone-use-after-move): the wipe is what is tested
  ASSERT_EQ(key.data(), old);
  for (size_t i = 0; i < 32; ++i) ASSERT_EQ(old[i], 0) << i;

  const std::vector<uint8_t> copy(33, 7);
  o.psk = copy;
  EXPECT_EQ(copy.size(), 33u) << "a copied vector is left alone";
  const std::span<const uint8_t> view = o.psk;
  EXPECT_EQ(view.size(), 33u);
  Options copied = o;
  EXPECT_EQ(copied.psk, o.psk);

  uint8_t buf[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  secure_wipe(buf, sizeof buf);
  for (uint8_t b : buf) EXPECT_EQ(b, 0);
}

}  // namespace
}  // namespace ferry::transport
