// TLS 1.3 channels (transports/tls/): real certificates made in the test (tls_certs.h), real
// loopback sockets. Bytes move both ways and arrive intact; what crosses the wire is not the
// plaintext; a certificate from another CA, and a peer with TLS on one end only, are refused on
// both ends with errors saying why.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <future>
#include <mutex>
#include <thread>

#include "tests/transports/test_util.h"
#include "tests/transports/tls_certs.h"
#include "transports/handshake.h"

namespace ferry::transport {
namespace {

using namespace testing;
using ::testing::HasSubstr;

class Tls : public ::testing::Test {
 protected:
  TempDir dir;
  TestPki pki{dir.path(), "ferry-test-ca"};
  Options server = with_tls(pki.issue("ferry-destination"));
  Options client = with_tls(pki.issue("ferry-source"));

  static Options with_tls(Options::Tls t) {
    Options o = test_options();
    o.tls = std::move(t);
    return o;
  }
};

// Each channel: the connector sends a scatter list, the acceptor checks it and answers with
// another, which the connector checks.
void exchange_both_ways(uint32_t channels, const Options& client, const Options& server) {
  const std::string err = run_session(
      "tcp:127.0.0.1:0", channels, client, server,
      [](Channel& ch) {
        EXPECT_EQ(ch.encryption(), "tls-user");
        EXPECT_TRUE(ch.peer_capabilities() & kTls);
        EXPECT_THAT(ch.send_path(), HasSubstr("TLSv1.3"));
        EXPECT_THAT(ch.send_path(), HasSubstr("CN=ferry-destination"));
        Scatter out = make_scatter(3 << 20, 1, 300'000, ch.index() + 1);
        fill_scatter(out, 10 + ch.index());
        ch.send_all(out.iov);
        Scatter back = make_scatter(1 << 20, 1, 70'000, ch.index() + 7);
        ch.recv(back.iov);
        EXPECT_EQ(verify_scatter(back, 20 + ch.index()), "");
        ch.close();
      },
      [](Channel& ch) {
        EXPECT_EQ(ch.encryption(), "tls-user");
        EXPECT_THAT(ch.send_path(), HasSubstr("CN=ferry-source"));
        Scatter in = make_scatter(3 << 20, 1, 300'000, ch.index() + 5);
        ch.recv(in.iov);
        EXPECT_EQ(verify_scatter(in, 10 + ch.index()), "");
        Scatter back = make_scatter(1 << 20, 1, 70'000, ch.index() + 9);
        fill_scatter(back, 20 + ch.index());
        ch.send_all(back.iov);
        uint8_t after_end = 0;
        EXPECT_THROW(ch.recv(&after_end, 1), TransportError);  // the peer's close_notify
        ch.close();
      });
  EXPECT_EQ(err, "");
}

TEST_F(Tls, OneChannelMovesBytesBothWays) { exchange_both_ways(1, client, server); }
TEST_F(Tls, TwoChannelsMoveBytesBothWays) { exchange_both_ways(2, client, server); }

TEST_F(Tls, WithPskTheProofStillRuns) {
  client.psk.assign(32, 7);
  server.psk.assign(32, 7);
  exchange_both_ways(1, client, server);
  server.psk.assign(32, 8);  // another key: the proof refuses before TLS starts
  auto l = listen("tcp:127.0.0.1:0", server);
  auto accepted = std::async(std::launch::async, [&] {
    try { l->accept(); } catch (const TransportError&) {}
  });
  EXPECT_THROW(connect(l->address(), client), TransportError);
  l->cancel();
  accepted.get();
}

// Connects with `client` to a listener with `server`; returns the connector's error and the
// listener's first refusal.
std::pair<std::string, std::string> refused(const Options& client, const Options& server) {
  auto l = listen("tcp:127.0.0.1:0", server);
  std::mutex m;
  std::string refusal;
  std::promise<void> refused_once;
  l->on_refused([&](const TransportError& e) {
    std::lock_guard<std::mutex> lock(m);
    if (refusal.empty()) {
      refusal = e.what();
      refused_once.set_value();
    }
  });
  auto accepted = std::async(std::launch::async, [&] {
    try { l->accept(); } catch (const TransportError&) {}
  });
  std::string connect_error = "(connect succeeded)";
  try {
    connect(l->address(), client);
  } catch (const TransportError& e) {
    connect_error = e.what();
  }
  refused_once.get_future().wait_for(std::chrono::seconds(10));
  l->cancel();
  accepted.get();
  std::lock_guard<std::mutex> lock(m);
  return {connect_error, refusal};
}

TEST_F(Tls, ClientCertificateFromAnotherCaIsRefusedOnBothEnds) {
  TestPki other(dir.path(), "other-ca");
  Options stranger = test_options();
  stranger.tls = other.issue("stranger");
  stranger.tls.ca_file = pki.ca_file();  // it trusts our CA, we do not trust its
  auto [at_connector, at_listener] = refused(stranger, server);
  EXPECT_THAT(at_connector, HasSubstr("unknown ca"));
  EXPECT_THAT(at_listener, HasSubstr("TLS handshake failed"));
  EXPECT_THAT(at_listener, HasSubstr("unable to get local issuer certificate"));
}

TEST_F(Tls, ServerCertificateFromAnotherCaIsRefused) {
  TestPki other(dir.path(), "other-ca");
  Options impostor = test_options();
  impostor.tls = other.issue("impostor");
  impostor.tls.ca_file = pki.ca_file();
  auto [at_connector, at_listener] = refused(client, impostor);
  EXPECT_THAT(at_connector, HasSubstr("certificate verify failed"));
  EXPECT_THAT(at_listener, HasSubstr("TLS handshake failed"));
}

TEST_F(Tls, PlainConnectorIsRefusedByTlsListener) {
  auto [at_connector, at_listener] = refused(test_options(), server);
  EXPECT_THAT(at_connector, HasSubstr("the peer requires TLS and this end has none configured"));
  EXPECT_THAT(at_listener, HasSubstr("this end requires TLS"));
}

TEST_F(Tls, TlsConnectorIsRefusedByPlainListener) {
  auto [at_connector, at_listener] = refused(client, test_options());
  EXPECT_THAT(at_connector, HasSubstr("this end requires TLS (Options::tls), the peer has none"));
  EXPECT_THAT(at_listener, HasSubstr("the peer requires TLS and this end has none configured"));
}

// A raw peer whose hello asks for TLS, then sends `after` instead of a TLS handshake: the
// listener's refusal.
std::string refusal_after_hello(const Options& server, const std::string& after) {
  auto l = listen("tcp:127.0.0.1:0", server);
  std::promise<std::string> refusal;
  std::once_flag once;
  l->on_refused([&](const TransportError& e) {
    std::call_once(once, [&] { refusal.set_value(e.what()); });
  });
  auto accepted = std::async(std::launch::async, [&] {
    try { l->accept(); } catch (const TransportError&) {}
  });
  Fd fd = raw_connect(l->address());
  const auto hello = handshake::encode(
      handshake::local_hello(test_options(), handshake::Role::kConnector, 42, 0, 1, kTls));
  EXPECT_EQ(::send(fd.get(), hello.data(), hello.size(), MSG_NOSIGNAL), 64);
  uint8_t reply[64];
  EXPECT_EQ(::recv(fd.get(), reply, sizeof reply, MSG_WAITALL), 64);
  if (!after.empty()) ::send(fd.get(), after.data(), after.size(), MSG_NOSIGNAL);
  auto f = refusal.get_future();
  const bool refused = f.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  l->cancel();
  accepted.get();
  return refused ? f.get() : "(no refusal)";
}

TEST_F(Tls, GarbageInsteadOfTlsIsRefused) {
  EXPECT_THAT(refusal_after_hello(server, std::string(200, 'x')),
              HasSubstr("TLS handshake failed"));
}

TEST_F(Tls, SilenceInsteadOfTlsIsRefusedAtTheHandshakeTimeout) {
  server.handshake_timeout = std::chrono::milliseconds(200);
  EXPECT_THAT(refusal_after_hello(server, ""), HasSubstr("did not finish its TLS handshake"));
}

TEST_F(Tls, BadFilesAreNamed) {
  Options o = server;
  o.tls.key_file = dir.path() + "/missing.key.pem";
  try {
    listen("tcp:127.0.0.1:0", o);
    ADD_FAILURE() << "listen() accepted a missing key file";
  } catch (const TransportError& e) {
    EXPECT_THAT(e.what(), HasSubstr("missing.key.pem"));
  }
  o.tls.key_file.clear();
  EXPECT_THROW(connect("tcp:127.0.0.1:1", o), TransportError);
  Options wrong_key = server;
  wrong_key.tls.key_file = client.tls.key_file;
  try {
    listen("tcp:127.0.0.1:0", wrong_key);
    ADD_FAILURE() << "listen() accepted a key that does not match the certificate";
  } catch (const TransportError& e) {
    EXPECT_THAT(e.what(), HasSubstr("key values mismatch"));
  }
  EXPECT_THROW(listen("file:" + dir.path() + "/stream", server), TransportError);
}

// A loopback TCP relay that keeps a copy of what goes from the connector to the listener.
class Tap {
 public:
  explicit Tap(uint16_t target_port) : target_(target_port) {
    listen_fd_ = Fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    EXPECT_EQ(::bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&a), len), 0);
    EXPECT_EQ(::listen(listen_fd_.get(), 4), 0);
    ::getsockname(listen_fd_.get(), reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    relay_ = std::thread([this] { run(); });
  }
  ~Tap() { relay_.join(); }
  std::string address() const { return "tcp:127.0.0.1:" + std::to_string(port_); }
  // Valid once the relay ended (both sides closed).
  const std::vector<uint8_t>& upstream() const { return upstream_; }
  void join() { relay_.join(); relay_ = std::thread([] {}); }

 private:
  void run() {
    Fd in(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    Fd out = raw_connect("tcp:127.0.0.1:" + std::to_string(target_));
    pollfd p[2] = {{in.get(), POLLIN, 0}, {out.get(), POLLIN, 0}};
    bool open[2] = {true, true};
    std::vector<uint8_t> buf(1 << 16);
    while (open[0] || open[1]) {
      if (::poll(p, 2, 10'000) <= 0) return;
      for (int i = 0; i < 2; ++i) {
        if (!open[i] || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const ssize_t n = ::read(p[i].fd, buf.data(), buf.size());
        if (n <= 0) {
          ::shutdown(p[1 - i].fd, SHUT_WR);
          open[i] = false;
          p[i].fd = -1;
          continue;
        }
        if (i == 0) upstream_.insert(upstream_.end(), buf.begin(), buf.begin() + n);
        if (::send(p[1 - i].fd, buf.data(), static_cast<size_t>(n), MSG_NOSIGNAL) != n) return;
      }
    }
  }

  uint16_t target_;
  uint16_t port_ = 0;
  Fd listen_fd_;
  std::vector<uint8_t> upstream_;
  std::thread relay_;
};

TEST_F(Tls, WireCarriesNoPlaintext) {
  auto l = listen("tcp:127.0.0.1:0", server);
  const uint16_t port = static_cast<uint16_t>(std::stoi(l->address().substr(l->address().rfind(':') + 1)));
  Tap tap(port);
  const std::string marker = "ferry plaintext marker: guest page contents";
  std::string payload;
  while (payload.size() < (256 << 10)) payload += marker;
  auto accepted = std::async(std::launch::async, [&] { return l->accept(); });
  auto tx = connect(tap.address(), client);
  auto rx = accepted.get();
  tx[0]->send_all(payload.data(), payload.size());
  std::string got(payload.size(), '\0');
  rx[0]->recv(got.data(), got.size());
  EXPECT_EQ(got, payload);
  tx[0]->close();
  rx[0]->close();
  tap.join();
  const std::string wire(tap.upstream().begin(), tap.upstream().end());
  EXPECT_GT(wire.size(), payload.size());  // it all went through the tap
  EXPECT_EQ(wire.find(marker.substr(0, 16)), std::string::npos);
  EXPECT_EQ(wire.find("ferry-source"), std::string::npos);  // TLS 1.3 encrypts certificates too
}

}  // namespace
}  // namespace ferry::transport
