// One suite, run over every transport (as UCX's uct tests are): tcp over IPv4 and IPv6, unix,
// file. Every failure case is bounded by the options' timeouts and asserted to finish in time.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>

#include "tests/transports/test_util.h"
#include "transports/file/file_transport.h"
#include "transports/handshake.h"
#include "transports/rdma/rdma_transport.h"

namespace ferry::transport {
namespace {

using namespace testing;
using ::testing::HasSubstr;

struct Param {
  const char* name;
  const char* kind;  // tcp4, tcp6, unix, file, rdma
};

// rdma runs where an RDMA device exists (inside tools/rxe/run-in-vm, which sets
// FERRY_RXE_SERVER_ADDR); elsewhere it skips with the reason. "" = runnable.
std::string rdma_skip_reason() {
  std::string why = rdma::unavailable_reason();
  if (!why.empty()) return why;
  if (!std::getenv("FERRY_RXE_SERVER_ADDR")) {
    return "set FERRY_RXE_SERVER_ADDR to an address of a netdev with an RDMA device (tools/rxe/run-in-vm does)";
  }
  return "";
}

std::string rdma_listen_uri() {
  const char* a = std::getenv("FERRY_RXE_SERVER_ADDR");
  return std::string("rdma:") + (a ? a : "127.0.0.1") + ":0";
}

void PrintTo(const Param& p, std::ostream* os) { *os << p.name; }

class TransportTest : public ::testing::TestWithParam<Param> {
 public:
  void SetUp() override {
    if (kind() == "rdma") {
      if (std::string why = rdma_skip_reason(); !why.empty()) GTEST_SKIP() << why;
    }
  }
  bool is_rdma() const { return kind() == "rdma"; }
  std::string kind() const { return GetParam().kind; }
  bool is_file() const { return kind() == "file"; }
  std::string listen_uri() const {
    if (kind() == "tcp4") return "tcp:127.0.0.1:0";
    if (kind() == "tcp6") return "tcp:[::1]:0";
    if (kind() == "unix") return "unix:" + dir_.path() + "/sock";
    if (kind() == "rdma") return rdma_listen_uri();
    return "file:" + dir_.path() + "/stream";
  }
  // An address nobody serves.
  std::string dead_uri() const {
    if (kind() == "unix") return "unix:" + dir_.path() + "/nobody";
    if (kind() == "file") return "file:" + dir_.path() + "/missing";
    // Bind a port, learn it, close it: connecting there is refused.
    auto l = listen(listen_uri(), test_options());
    return l->address();
  }

  TempDir dir_;
};

// Sends `s` in one send() and waits; receives into `r` in one recv().
void send_scatter(Channel& ch, const Scatter& s) {
  std::atomic<int> done{0};
  ch.set_send_callback([&](uint64_t cookie) {
    EXPECT_EQ(cookie, 7u);
    ++done;
  });
  ch.send(s.iov, 7);
  ch.wait_all();
  EXPECT_EQ(done.load(), 1);
}

TEST_P(TransportTest, LargeScatterGatherTransferArrivesIntact) {
  constexpr uint64_t kTotal = 48ull << 20;
  constexpr uint64_t kSeed = 11;
  Scatter src = make_scatter(kTotal, 1, 256 << 10, 1);
  fill_scatter(src, kSeed);
  // Different piece boundaries on the receiving side, so pieces cross each other.
  Scatter dst = make_scatter(kTotal, 1, 300 << 10, 2);
  Options o = test_options();
  std::string err = run_session(
      listen_uri(), 1, o, o, [&](Channel& ch) { send_scatter(ch, src); },
      [&](Channel& ch) {
        ch.recv(dst.iov);
        EXPECT_EQ(ch.stats().bytes_received, kTotal);
      });
  ASSERT_EQ(err, "");
  EXPECT_EQ(verify_scatter(dst, kSeed), "");
}

TEST_P(TransportTest, IovecListsLongerThanIovMaxAndSmallQueues) {
  // 6000 tiny pieces in one send and one recv (IOV_MAX is 1024), with queues far smaller than the
  // send so send() must block and drain.
  constexpr uint64_t kTotal = 1500000;
  Scatter src = make_scatter(kTotal, 1, 500, 3);
  ASSERT_GT(src.iov.size(), 4000u);
  fill_scatter(src, 5);
  Scatter dst = make_scatter(kTotal, 1, 400, 4);
  Options o = test_options();
  o.max_queued_iovecs = 64;
  o.max_outstanding_sends = 4;
  std::string err = run_session(
      listen_uri(), 1, o, o,
      [&](Channel& ch) {
        // Also as many separate sends, each of a handful of pieces.
        for (size_t i = 0; i < src.iov.size(); i += 5) {
          size_t n = std::min<size_t>(5, src.iov.size() - i);
          ch.send(std::span<const iovec>(&src.iov[i], n), i);
        }
        ch.wait_all();
        ch.send(src.iov, 1);
        ch.wait_all();
      },
      [&](Channel& ch) {
        ch.recv(dst.iov);
        EXPECT_EQ(verify_scatter(dst, 5), "");
        std::fill(dst.storage.begin(), dst.storage.end(), kCanary);
        ch.recv(dst.iov);
      });
  ASSERT_EQ(err, "");
  EXPECT_EQ(verify_scatter(dst, 5), "");
}

TEST_P(TransportTest, ManySmallMessagesInOrder) {
  constexpr uint32_t kMessages = 20000;
  struct Header {
    uint32_t seq;
    uint32_t len;
  };
  std::vector<Header> headers(kMessages);
  std::vector<std::vector<uint8_t>> payloads(kMessages);
  for (uint32_t i = 0; i < kMessages; ++i) {
    headers[i] = Header{i, i % 97};
    payloads[i].resize(i % 97 + 1);  // never empty, so .data() is a real buffer
    fill_pattern(payloads[i].data(), payloads[i].size(), i, 0);
  }
  Options o = test_options();
  o.max_outstanding_sends = 64;
  std::string err = run_session(
      listen_uri(), 1, o, o,
      [&](Channel& ch) {
        uint64_t expect = 0;
        ch.set_send_callback([&](uint64_t cookie) { ASSERT_EQ(cookie, expect++); });
        for (uint32_t i = 0; i < kMessages; ++i) {
          iovec v[2] = {{&headers[i], sizeof(Header)}, {payloads[i].data(), headers[i].len}};
          ch.send(v, i);
        }
        ch.wait_all();
        EXPECT_EQ(expect, kMessages);
        EXPECT_EQ(ch.stats().sends, kMessages);
      },
      [&](Channel& ch) {
        std::vector<uint8_t> buf(128);
        for (uint32_t i = 0; i < kMessages; ++i) {
          Header h{};
          ch.recv(&h, sizeof h);
          ASSERT_EQ(h.seq, i);
          ASSERT_EQ(h.len, i % 97);
          ch.recv(buf.data(), h.len);
          ASSERT_EQ(find_mismatch(buf.data(), h.len, i, 0), -1) << "message " << i;
        }
      });
  ASSERT_EQ(err, "");
}

class ChannelsTest : public ::testing::TestWithParam<std::tuple<Param, uint32_t>> {
 protected:
  void SetUp() override {
    if (std::string(std::get<0>(GetParam()).kind) == "rdma") {
      if (std::string why = rdma_skip_reason(); !why.empty()) GTEST_SKIP() << why;
    }
  }
  TempDir dir_;
};

TEST_P(ChannelsTest, ParallelChannelsFromSeparateThreads) {
  const Param p = std::get<0>(GetParam());
  const uint32_t n = std::get<1>(GetParam());
  const std::string kind = p.kind;
  std::string uri = kind == "tcp4"   ? "tcp:127.0.0.1:0"
                    : kind == "tcp6" ? "tcp:[::1]:0"
                    : kind == "unix" ? "unix:" + dir_.path() + "/sock"
                    : kind == "rdma" ? rdma_listen_uri()
                                     : "file:" + dir_.path() + "/stream";
  constexpr uint64_t kPerChannel = 8ull << 20;
  Options o = test_options();
  o.session_id = 0xF00D;
  std::vector<std::vector<uint8_t>> src(n), dst(n);
  for (uint32_t i = 0; i < n; ++i) {
    src[i].resize(kPerChannel);
    fill_pattern(src[i].data(), kPerChannel, 100 + i, 0);
    dst[i].assign(kPerChannel, 0);
  }
  std::atomic<uint32_t> seen_mask{0};
  std::string err = run_session(
      uri, n, o, o,
      [&](Channel& ch) {
        ASSERT_EQ(ch.count(), n);
        ASSERT_EQ(ch.session_id(), 0xF00Du);
        // 4 KiB pages, 64 per send, several sends in flight.
        const uint8_t* base = src[ch.index()].data();
        std::vector<iovec> pages(kPerChannel / 4096);
        for (size_t k = 0; k < pages.size(); ++k) pages[k] = iovec{const_cast<uint8_t*>(base) + k * 4096, 4096};
        for (size_t k = 0; k < pages.size(); k += 64) ch.send(std::span<const iovec>(&pages[k], 64), k);
        ch.wait_all();
      },
      [&](Channel& ch) {
        ASSERT_EQ(ch.count(), n);
        ASSERT_EQ(ch.session_id(), 0xF00Du);
        seen_mask |= 1u << ch.index();
        ch.recv(dst[ch.index()].data(), kPerChannel);
      });
  ASSERT_EQ(err, "");
  EXPECT_EQ(seen_mask.load(), (1u << n) - 1);
  for (uint32_t i = 0; i < n; ++i) {
    EXPECT_EQ(find_mismatch(dst[i].data(), kPerChannel, 100 + i, 0), -1) << "channel " << i;
  }
}

TEST_P(TransportTest, PeerClosingMidTransferIsAnErrorNotAHang) {
  std::vector<uint8_t> buf(4 << 20);
  fill_pattern(buf.data(), buf.size(), 9, 0);
  std::string recv_error;
  double took = 0;
  std::string err = run_session(
      listen_uri(), 1, test_options(), test_options(),
      [&](Channel& ch) { ch.send_all(buf.data(), 1 << 20); },  // then close(): 1 of 4 MiB
      [&](Channel& ch) {
        took = seconds([&] {
          try {
            ch.recv(buf.data(), buf.size());
          } catch (const TransportError& e) {
            recv_error = e.what();
            EXPECT_EQ(e.channel(), 0);
          }
        });
      });
  ASSERT_EQ(err, "");
  EXPECT_THAT(recv_error, HasSubstr("after 1048576 of 4194304 bytes"));
  EXPECT_LT(took, 5.0);
}

TEST_P(TransportTest, ReceivingWhileOwnSendsAreInFlightDoesNotDeadlock) {
  // The completion-handshake shape: send a lot, then wait for the peer's answer without waiting
  // for the send; the peer answers only after it has every byte.
  if (is_file()) GTEST_SKIP() << "a file stream goes one way";
  auto l = listen(listen_uri(), test_options());
  Session s = open_session(*l, 1, test_options());
  std::vector<uint8_t> big(6 << 20), got(big.size());  // one submission, many buffers full
  fill_pattern(big.data(), big.size(), 21, 0);
  std::thread peer([&] {
    try {
      s.accepted[0]->recv(got.data(), got.size());
      uint64_t ok = 1;
      s.accepted[0]->send_all(&ok, sizeof ok);
    } catch (const TransportError& e) {
      ADD_FAILURE() << "peer: " << e.what();
    }
  });
  uint64_t answer = 0;
  double took = seconds([&] {
    try {
      iovec v{big.data(), big.size()};
      s.connected[0]->send(std::span<const iovec>(&v, 1), 1);
      s.connected[0]->recv(&answer, sizeof answer);
      s.connected[0]->wait_all();
    } catch (const TransportError& e) {
      ADD_FAILURE() << e.what();
      s.accepted[0]->abort();
    }
  });
  peer.join();
  EXPECT_EQ(answer, 1u);
  EXPECT_EQ(find_mismatch(got.data(), got.size(), 21, 0), -1);
  EXPECT_LT(took, 10.0);
}

TEST_P(TransportTest, ReceiverVanishingFailsTheSender) {
  if (is_file()) GTEST_SKIP() << "a file has no receiver that could vanish";
  auto l = listen(listen_uri(), test_options());
  Session s = open_session(*l, 1, test_options());
  std::vector<uint8_t> buf(64 << 20);
  std::string send_error;
  std::thread receiver([&] {
    std::vector<uint8_t> part(1 << 20);
    try {
      s.accepted[0]->recv(part.data(), part.size());
    } catch (const TransportError& e) {
      ADD_FAILURE() << e.what();
    }
    s.accepted[0].reset();  // closes the socket with unread data: the sender gets a reset
  });
  double took = seconds([&] {
    try {
      for (int i = 0; i < 64; ++i) s.connected[0]->send_all(buf.data(), buf.size());
    } catch (const TransportError& e) {
      send_error = e.what();
    }
  });
  receiver.join();
  EXPECT_FALSE(send_error.empty());
  EXPECT_THAT(send_error, HasSubstr("channel 0"));
  EXPECT_LT(took, 10.0);
}

TEST_P(TransportTest, AbortFromAnotherThreadEndsABlockedReceive) {
  Options o = test_options();
  o.io_timeout = std::chrono::milliseconds(0);  // only abort() can end the wait
  std::unique_ptr<Listener> l;
  Session s;
  if (is_file()) {
    auto w = connect(listen_uri(), o);
    w[0]->close();
    l = listen(listen_uri(), o);
    s.accepted = l->accept();
  } else {
    l = listen(listen_uri(), o);
    s = open_session(*l, 1, o);
  }
  std::string error;
  int code = 0;
  std::thread t([&] {
    try {
      uint64_t v;
      s.accepted[0]->recv(&v, sizeof v);
    } catch (const TransportError& e) {
      error = e.what();
      code = e.error_code();
    }
  });
  if (!is_file()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  double took = seconds([&] {
    s.accepted[0]->abort();
    t.join();
  });
  EXPECT_LT(took, 5.0);
  if (is_file()) {
    // A file never blocks: the read either ended (empty stream) or saw the abort.
    EXPECT_FALSE(error.empty());
  } else {
    EXPECT_THAT(error, HasSubstr("aborted"));
    EXPECT_EQ(code, ECONNABORTED);
  }
  EXPECT_THROW(s.accepted[0]->recv(&code, sizeof code), TransportError);
}

TEST_P(TransportTest, ReceiveTimesOutWhenNothingArrives) {
  if (is_file()) GTEST_SKIP() << "a file ends instead of waiting";
  Options o = test_options();
  o.io_timeout = std::chrono::milliseconds(200);
  auto l = listen(listen_uri(), o);
  Session s = open_session(*l, 1, o);
  uint64_t v;
  int code = 0;
  double took = seconds([&] {
    try {
      s.accepted[0]->recv(&v, sizeof v);
    } catch (const TransportError& e) {
      code = e.error_code();
      EXPECT_THAT(e.what(), HasSubstr("no progress for 200 ms"));
    }
  });
  EXPECT_EQ(code, ETIMEDOUT);
  EXPECT_LT(took, 3.0);
}

TEST_P(TransportTest, ConnectingToNothingIsAClearBoundedError) {
  Options o = test_options();
  // rdma_cm's reject travels through the soft-RoCE VM's emulated CPU (TCG): one attempt can
  // take more than 100 ms there, and the first address resolution (ARP over the veth pair)
  // took over 2 s on a loaded machine, so rdma gets 5 s; the bound below follows the budget.
  o.connect_timeout = std::chrono::milliseconds(is_rdma() ? 5000 : 300);
  const std::string uri = dead_uri();
  std::string error;
  int code = 0;
  double took = seconds([&] {
    try {
      if (is_file()) {
        listen(uri, o)->accept();
      } else {
        connect(uri, o);
      }
    } catch (const TransportError& e) {
      error = e.what();
      code = e.error_code();
    }
  });
  EXPECT_LT(took, std::chrono::duration<double>(o.connect_timeout).count() + 3.0);
  const std::string path_or_addr = is_file() ? uri.substr(5) : uri;
  EXPECT_THAT(error, HasSubstr(path_or_addr));
  if (kind() == "tcp4" || kind() == "tcp6" || is_rdma()) {
    EXPECT_EQ(code, ECONNREFUSED) << error;
    EXPECT_THAT(error, HasSubstr("Connection refused"));
    EXPECT_THAT(error, HasSubstr("attempt"));
  } else {
    EXPECT_EQ(code, ENOENT) << error;
  }
}

// Listener::cancel() from another thread ends an accept() that is waiting for peers, well before
// accept_timeout, and every later accept() at once. A file listener never waits: it is
// cancelled before it opens anything.
TEST_P(TransportTest, CancelEndsAnAcceptInProgressAndLaterOnes) {
  Options o = test_options();
  o.accept_timeout = std::chrono::milliseconds(30'000);
  auto l = listen(listen_uri(), o);
  auto expect_cancelled = [&](const char* when) {
    try {
      l->accept();
      ADD_FAILURE() << "accept() returned " << when;
    } catch (const TransportError& e) {
      EXPECT_EQ(e.error_code(), ECANCELED) << when << ": " << e.what();
      EXPECT_THAT(e.what(), HasSubstr("cancelled")) << when;
    }
  };
  if (!is_file()) {
    std::atomic<bool> waiting{false};
    std::chrono::steady_clock::time_point cancelled_at;
    auto f = std::async(std::launch::async, [&] {
      waiting = true;
      expect_cancelled("after cancel() during accept");
      return std::chrono::steady_clock::now();
    });
    while (!waiting) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // inside poll() by now
    cancelled_at = std::chrono::steady_clock::now();
    l->cancel();
    const double took = std::chrono::duration<double>(f.get() - cancelled_at).count();
    // It wakes on the eventfd at once; the bound leaves room for a loaded machine (without
    // cancel() it would wait the whole 30 s).
    EXPECT_LT(took, 0.5) << "accept() ended " << took << " s after cancel()";
  } else {
    l->cancel();
  }
  const double again = seconds([&] { expect_cancelled("after cancel()"); });
  EXPECT_LT(again, 0.5);
}

// Both ends are real ferry transports that disagree; each names both values.
void expect_both_refuse(TransportTest& t, const Options& connector, const std::string& want_connector,
                        const std::string& want_listener) {
  Options lo = test_options();
  lo.accept_timeout = std::chrono::milliseconds(1'500);
  std::string connect_error, accept_error, refusal;
  double took = seconds([&] {
    if (t.is_file()) {
      auto w = connect(t.listen_uri(), connector);
      w[0]->close();
      try {
        listen(t.listen_uri(), lo)->accept();
      } catch (const TransportError& e) {
        accept_error = e.what();
      }
      return;
    }
    auto l = listen(t.listen_uri(), lo);
    l->on_refused([&](const TransportError& e) { refusal = e.what(); });
    auto f = std::async(std::launch::async, [&] {
      try {
        l->accept();
      } catch (const TransportError& e) {
        accept_error = e.what();
      }
    });
    try {
      connect(l->address(), connector);
    } catch (const TransportError& e) {
      connect_error = e.what();
    }
    f.get();
  });
  EXPECT_LT(took, 5.0);
  EXPECT_THAT(accept_error, HasSubstr(want_listener));
  if (!t.is_file()) {
    EXPECT_THAT(refusal, HasSubstr(want_listener));
    EXPECT_THAT(connect_error, HasSubstr(want_connector));
  }
}

TEST_P(TransportTest, WrongMagicIsRefusedOnBothEndsNamingBothValues) {
  Options o = test_options();
  o.handshake_magic = 0x12345678;
  expect_both_refuse(*this, o, "bad magic: local 0x12345678, peer 0x43595246",
                     "bad magic: local 0x43595246, peer 0x12345678");
}

TEST_P(TransportTest, WrongVersionIsRefusedOnBothEndsNamingBothValues) {
  Options o = test_options();
  o.protocol_version = 7;
  expect_both_refuse(*this, o, "protocol version mismatch: local 7, peer 1",
                     "protocol version mismatch: local 1, peer 7");
}

TEST_P(TransportTest, ChannelCountMismatchIsRefused) {
  Options o = test_options();
  o.channels = 2;
  Options lo = test_options();
  lo.channels = 3;
  lo.accept_timeout = std::chrono::milliseconds(1'000);
  if (is_file()) {
    for (auto& w : connect(listen_uri(), o)) w->close();
    EXPECT_THROW(
        {
          try {
            listen(listen_uri(), lo)->accept();
          } catch (const TransportError& e) {
            EXPECT_THAT(e.what(), HasSubstr("channel count mismatch: local 3, peer 2"));
            throw;
          }
        },
        TransportError);
    return;
  }
  auto l = listen(listen_uri(), lo);
  auto f = std::async(std::launch::async, [&] { EXPECT_THROW(l->accept(), TransportError); });
  try {
    connect(l->address(), o);
    ADD_FAILURE() << "connect succeeded";
  } catch (const TransportError& e) {
    EXPECT_THAT(e.what(), HasSubstr("channel count mismatch: local 2, peer 3"));
  }
  f.get();
}

// The first hello's count sizes the session's slots: a peer announcing 100000 channels is
// refused (naming both values) instead of making the listener allocate for them, and the
// listener goes on to accept a good session.
TEST_P(TransportTest, HelloAnnouncingTooManyChannelsIsRefusedAndAGoodSessionFollows) {
  if (is_file()) GTEST_SKIP() << "files have no connections";
  Options lo = test_options();
  lo.channels = 0;  // the first valid hello says how many
  auto l = listen(listen_uri(), lo);
  std::mutex mu;
  std::vector<std::string> refusals;
  l->on_refused([&](const TransportError& e) {
    std::lock_guard<std::mutex> lock(mu);
    refusals.push_back(e.what());
  });
  auto f = std::async(std::launch::async, [&] { return l->accept(); });

  Options greedy = test_options();
  greedy.channels = 100000;
  try {
    connect(l->address(), greedy);
    ADD_FAILURE() << "connect of 100000 channels succeeded";
  } catch (const TransportError& e) {
    EXPECT_THAT(e.what(), HasSubstr("handshake refused by peer: channel count mismatch: "
                                    "local 100000, peer 256"));
  }

  Options co = test_options();
  co.channels = 2;
  std::vector<ChannelPtr> connected = connect(l->address(), co);
  std::vector<ChannelPtr> accepted = f.get();
  ASSERT_EQ(accepted.size(), 2u);
  EXPECT_EQ(accepted[1]->count(), 2u);
  uint64_t v = 0x1122334455667788ull, got = 0;
  connected[1]->send_all(&v, sizeof v);
  accepted[1]->recv(&got, sizeof got);
  EXPECT_EQ(got, v);

  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(refusals.size(), 1u);
  EXPECT_THAT(refusals[0], HasSubstr("refused connection: channel count mismatch: peer announces "
                                     "100000 channels, more than the 256 a session may have"));
}

TEST_P(TransportTest, GarbageSilenceAndPartialHeadersDoNotDisturbTheSession) {
  if (is_rdma()) GTEST_SKIP() << "needs raw stream sockets to misbehave with";
  if (is_file()) {
    // A file that holds only part of a header.
    const std::string path = dir_.path() + "/stream";
    std::ofstream(path, std::ios::binary).write("FRYC\x01\x00partial", 14);
    try {
      listen(listen_uri(), test_options())->accept();
      ADD_FAILURE() << "accepted a truncated header";
    } catch (const TransportError& e) {
      EXPECT_THAT(e.what(), HasSubstr("holds 14 of the 64 bytes"));
    }
    return;
  }
  Options o = test_options();
  o.handshake_timeout = std::chrono::milliseconds(300);
  o.channels = 0;  // the first valid hello says how many
  auto l = listen(listen_uri(), o);
  std::mutex mu;
  std::vector<std::string> refusals;
  l->on_refused([&](const TransportError& e) {
    std::lock_guard<std::mutex> lock(mu);
    refusals.push_back(e.what());
  });
  auto f = std::async(std::launch::async, [&] { return l->accept(); });

  // Before the real channels: a partial header then close, 64 bytes of garbage, and silence.
  Fd partial = raw_connect(l->address());
  std::vector<uint8_t> hello = hello_bytes(handshake::kMagic, 1, 1, 0, 2);
  ASSERT_EQ(::send(partial.get(), hello.data(), 10, MSG_NOSIGNAL), 10);
  partial.reset();
  Fd garbage = raw_connect(l->address());
  std::vector<uint8_t> junk(64, 0x5A);
  ASSERT_EQ(::send(garbage.get(), junk.data(), junk.size(), MSG_NOSIGNAL), 64);
  Fd silent = raw_connect(l->address());

  Options co = test_options();
  co.channels = 2;
  std::vector<ChannelPtr> connected = connect(l->address(), co);
  std::vector<ChannelPtr> accepted = f.get();
  ASSERT_EQ(accepted.size(), 2u);

  // The session works.
  uint64_t v = 0x1122334455667788ull, got = 0;
  connected[1]->send_all(&v, sizeof v);
  accepted[1]->recv(&got, sizeof got);
  EXPECT_EQ(got, v);

  // The garbage connection got our hello back (refusing it) and then end of stream; the silent
  // one is closed by the listener, at the latest when the session is complete.
  uint8_t reply[64];
  EXPECT_EQ(::recv(garbage.get(), reply, sizeof reply, MSG_WAITALL), 64);
  handshake::Hello h = handshake::decode(std::span<const uint8_t, 64>(reply, 64));
  EXPECT_EQ(h.status, handshake::Status::kBadMagic);
  timeval tv{5, 0};
  ::setsockopt(silent.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  EXPECT_EQ(::recv(silent.get(), reply, sizeof reply, 0), 0);

  std::lock_guard<std::mutex> lock(mu);
  std::string all;
  for (const auto& r : refusals) all += r + "\n";
  EXPECT_THAT(all, HasSubstr("closed after 10 of 64 bytes"));
  EXPECT_THAT(all, HasSubstr("bad magic: local 0x43595246, peer 0x5a5a5a5a"));
}

TEST_P(TransportTest, SilentConnectionTimesOutAndSessionStillCompletes) {
  if (is_file()) GTEST_SKIP() << "files have no connections";
  if (is_rdma()) GTEST_SKIP() << "needs a raw stream socket to stay silent with";
  Options o = test_options();
  o.handshake_timeout = std::chrono::milliseconds(200);
  auto l = listen(listen_uri(), o);
  std::atomic<int> refused{0};
  std::string why;
  l->on_refused([&](const TransportError& e) {
    why = e.what();
    ++refused;
  });
  Fd silent = raw_connect(l->address());
  auto f = std::async(std::launch::async, [&] { return l->accept(); });
  // The real channel arrives only after the silent one timed out.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  Options co = test_options();
  auto connected = connect(l->address(), co);
  auto accepted = f.get();
  EXPECT_EQ(refused.load(), 1);
  EXPECT_THAT(why, HasSubstr("sent 0 of 64 bytes of its hello within 200 ms"));
  ASSERT_EQ(accepted.size(), 1u);
}

TEST_P(TransportTest, RegisteredMemoryIsUsableForSends) {
  std::vector<uint8_t> src(16 << 20), dst(16 << 20);
  fill_pattern(src.data(), src.size(), 77, 0);
  Options o = test_options();
  std::string err = run_session(
      listen_uri(), 1, o, o,
      [&](Channel& ch) {
        MemoryRegion r = ch.register_memory(src.data(), src.size());
        EXPECT_NE(r.id, 0u);
        EXPECT_EQ(r.addr, src.data());
        for (size_t off = 0; off < src.size(); off += 4 << 20) {
          iovec v{src.data() + off, 4 << 20};
          ch.send(std::span<const iovec>(&v, 1), off);
        }
        ch.wait_all();
        ch.deregister_memory(r);
        EXPECT_THROW(ch.deregister_memory(r), TransportError);
      },
      [&](Channel& ch) { ch.recv(dst.data(), dst.size()); });
  ASSERT_EQ(err, "");
  EXPECT_EQ(find_mismatch(dst.data(), dst.size(), 77, 0), -1);
}

TEST_P(TransportTest, UseAfterCloseIsAnErrorAndRemoteWriteIsNotOffered) {
  std::string err = run_session(
      listen_uri(), 1, test_options(), test_options(),
      [&](Channel& ch) {
        // rdma offers remote placement; RemoteRegion{} is then refused as out of range.
        EXPECT_EQ(bool(ch.capabilities() & kRemoteWrite), is_rdma());
        EXPECT_FALSE(ch.send_path().empty());
        iovec v{&ch, 1};
        EXPECT_THROW(ch.write_remote(std::span<const iovec>(&v, 1), RemoteRegion{}, 0, 0),
                     TransportError);
        ch.close();
        try {
          ch.send_all(&v, 1);
          ADD_FAILURE() << "send after close";
        } catch (const TransportError& e) {
          EXPECT_EQ(e.error_code(), EBADF);
        }
      },
      [&](Channel&) {});
  ASSERT_EQ(err, "");
}

const Param kTransports[] = {{"tcp4", "tcp4"}, {"tcp6", "tcp6"}, {"unix", "unix"},
                             {"file", "file"}, {"rdma", "rdma"}};

std::string param_name(const ::testing::TestParamInfo<Param>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(All, TransportTest, ::testing::ValuesIn(kTransports), param_name);

INSTANTIATE_TEST_SUITE_P(
    All, ChannelsTest, ::testing::Combine(::testing::ValuesIn(kTransports), ::testing::Values(1u, 2u, 4u, 8u)),
    [](const ::testing::TestParamInfo<std::tuple<Param, uint32_t>>& info) {
      return std::string(std::get<0>(info.param).name) + "_" +
             std::to_string(std::get<1>(info.param)) + "ch";
    });

}  // namespace
}  // namespace ferry::transport
