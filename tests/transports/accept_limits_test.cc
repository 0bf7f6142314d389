// The accept side under pressure (transports/accept_limits.h, StreamListener::accept): a flood
// of idle connections is capped per peer and in all, a peer refused too often is shut out for
// the rest of the accept(), and the real source still assembles its session meanwhile. Running
// out of descriptors in accept4 closes a pending connection instead of failing the accept, or,
// with nothing to close, fails it with a clear error. Real loopback sockets: the flooders
// connect from 127.0.0.2 and .3 (all of 127/8 is loopback on Linux), the source from 127.0.0.1.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <future>
#include <mutex>
#include <thread>

#include "tests/transports/test_util.h"
#include "transports/accept_limits.h"

namespace ferry::transport {
namespace {

using namespace testing;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// The listener's refusals, as its on_refused callback reports them.
class Refusals {
 public:
  void attach(Listener& l) {
    l.on_refused([this](const TransportError& e) {
      std::lock_guard<std::mutex> g(mu_);
      all_.push_back(e.what());
    });
  }
  // How many mention `part`.
  size_t count(const std::string& part) {
    std::lock_guard<std::mutex> g(mu_);
    size_t n = 0;
    for (const auto& s : all_) n += s.find(part) != std::string::npos;
    return n;
  }
  size_t total() {
    std::lock_guard<std::mutex> g(mu_);
    return all_.size();
  }
  std::string text() {
    std::lock_guard<std::mutex> g(mu_);
    std::string t;
    for (const auto& s : all_) t += s + "\n";
    return t;
  }
  // Waits (bounded) until at least n refusals arrived.
  bool wait_for(size_t n) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (total() < n) {
      if (std::chrono::steady_clock::now() > until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> all_;
};

// A blocking connection to the listener from loopback address `from` that sends nothing. The
// kernel completes it from the listen backlog, before the listener accepts it.
Fd idle_from(const char* from, const std::string& listener) {
  const Uri to = parse_uri(listener);
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  ::inet_pton(AF_INET, from, &a.sin_addr);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << from;
  sockaddr_in b{};
  b.sin_family = AF_INET;
  b.sin_port = htons(to.port);
  ::inet_pton(AF_INET, "127.0.0.1", &b.sin_addr);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&b), sizeof b), 0) << strerror(errno);
  // A bound on the reads below: the listener closes these long before.
  timeval tv{10, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

// What the listener sent before it closed: bytes read until end of stream (-1 on error or
// when nothing ended within the receive timeout).
long read_until_closed(const Fd& fd) {
  uint8_t buf[256];
  long total = 0;
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n == 0) return total;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    total += n;
  }
}

void expect_working(std::vector<ChannelPtr>& src, std::vector<ChannelPtr>& dst) {
  ASSERT_EQ(dst.size(), src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    const uint32_t sent = 0xc0ffee00u + static_cast<uint32_t>(i);
    uint32_t got = 0;
    src[i]->send_all(&sent, sizeof sent);
    dst[i]->recv(&got, sizeof got);
    EXPECT_EQ(got, sent);
  }
}

TEST(AcceptLimits, FloodFromOneAddressIsCappedAndTheRealSourceGetsIn) {
  Options o = test_options();  // the default bounds: 64 pending, 8 per peer, 32 refusals
  o.channels = 2;
  auto l = listen("tcp:127.0.0.1:0", o);
  Refusals refused;
  refused.attach(*l);
  std::vector<Fd> flood;
  for (int i = 0; i < 100; ++i) flood.push_back(idle_from("127.0.0.2", l->address()));

  auto acc = std::async(std::launch::async, [&] { return l->accept(); });
  auto src = connect(l->address(), o);
  auto dst = acc.get();
  expect_working(src, dst);

  // All 100 waited in the backlog, so one pass took them: 8 pending, the next 32 refused at
  // once (the 32nd shutting the address out), the other 60 closed without a report.
  EXPECT_EQ(refused.count("(Options::max_pending_per_peer)"), 32u) << refused.text();
  EXPECT_EQ(refused.count("tcp:127.0.0.2 was refused 32 times (Options::max_refusals_per_peer): "
                          "its further connections are closed at once until this accept() "
                          "returns"),
            1u)
      << refused.text();
  EXPECT_EQ(refused.count("tcp:127.0.0.1"), 0u) << refused.text();
  // None is left open: the 8 pending ones were closed when accept() returned.
  for (const Fd& f : flood) EXPECT_EQ(read_until_closed(f), 0);
}

TEST(AcceptLimits, PendingCapClosesNewConnectionsAtOnceUntilOneLeaves) {
  Options o = test_options();
  o.max_pending_connections = 4;
  o.handshake_timeout = std::chrono::milliseconds(20'000);  // a refusal below is not a timeout
  auto l = listen("tcp:127.0.0.1:0", o);
  Refusals refused;
  refused.attach(*l);
  std::vector<Fd> flood;
  for (int i = 0; i < 4; ++i) flood.push_back(idle_from("127.0.0.2", l->address()));
  Fd fifth = idle_from("127.0.0.3", l->address());

  auto acc = std::async(std::launch::async, [&] { return l->accept(); });
  EXPECT_EQ(read_until_closed(fifth), 0) << "closed at once, without a reply";
  ASSERT_TRUE(refused.wait_for(1));
  EXPECT_THAT(refused.text(),
              HasSubstr("4 connections are already in their handshake "
                        "(Options::max_pending_connections); closed at once"));
  EXPECT_THAT(refused.text(), HasSubstr("(tcp:127.0.0.3:"));

  // One flooder leaves: once the listener saw it go (loopback may deliver its FIN after a
  // later SYN), its slot is free again and the real source takes it.
  flood[0] = Fd();
  ASSERT_TRUE(refused.wait_for(2));
  EXPECT_THAT(refused.text(), HasSubstr("connection closed after 0 of 64 bytes of its hello"));
  auto src = connect(l->address(), o);
  auto dst = acc.get();
  expect_working(src, dst);
  EXPECT_EQ(refused.count("max_pending_connections"), 1u) << refused.text();
}

TEST(AcceptLimits, AddressRefusedTooOftenIsShutOutAndOthersStillGetIn) {
  Options o = test_options();
  o.max_refusals_per_peer = 3;
  o.handshake_timeout = std::chrono::milliseconds(20'000);  // a close below is not a timeout
  auto l = listen("tcp:127.0.0.1:0", o);
  Refusals refused;
  refused.attach(*l);
  auto acc = std::async(std::launch::async, [&] { return l->accept(); });

  // Three hellos with a wrong magic: each answered with the listener's hello, then refused.
  const std::vector<uint8_t> bad = hello_bytes(0x12345678, 1, 0, 0, 1);
  for (int i = 0; i < 3; ++i) {
    Fd f = idle_from("127.0.0.2", l->address());
    ASSERT_EQ(::write(f.get(), bad.data(), bad.size()), static_cast<ssize_t>(bad.size()));
    EXPECT_GT(read_until_closed(f), 0) << "attempt " << i << " got the listener's reply";
  }
  ASSERT_TRUE(refused.wait_for(3));
  EXPECT_EQ(refused.count("(Options::max_refusals_per_peer)"), 1u) << refused.text();

  // Shut out: closed at accept (well within the handshake timeout), not reported again.
  Fd fourth = idle_from("127.0.0.2", l->address());
  EXPECT_EQ(read_until_closed(fourth), 0);

  auto src = connect(l->address(), o);  // from 127.0.0.1
  auto dst = acc.get();
  expect_working(src, dst);
  EXPECT_EQ(refused.total(), 3u) << refused.text();
}

TEST(AcceptLimits, CountsPerPeerAndInAllAndZeroMeansUnbounded) {
  Options o;
  o.max_pending_connections = 3;
  o.max_pending_per_peer = 2;
  o.max_refusals_per_peer = 2;
  AcceptLimits lim;
  lim.start(o);
  EXPECT_TRUE(lim.admit("a").admitted());
  EXPECT_TRUE(lim.admit("a").admitted());
  AcceptDecision third = lim.admit("a");
  EXPECT_EQ(third.kind, AcceptDecision::Kind::kRefuse);
  EXPECT_THAT(third.why, HasSubstr("a already has 2 connections in their handshake"));
  EXPECT_TRUE(lim.admit("b").admitted());
  EXPECT_THAT(lim.admit("c").why, HasSubstr("3 connections are already in their handshake"));
  EXPECT_EQ(lim.pending(), 3u);
  // a's second refusal (a pending one refused) shuts it out; an admitted one does not count.
  EXPECT_FALSE(lim.settled("b", false));
  EXPECT_TRUE(lim.settled("a", true));
  EXPECT_EQ(lim.admit("a").kind, AcceptDecision::Kind::kDrop);
  EXPECT_TRUE(lim.admit("b").admitted());
  EXPECT_FALSE(lim.settled("nobody", true)) << "unknown peers change nothing";
  // A new accept() forgets it all.
  lim.start(o);
  EXPECT_TRUE(lim.admit("a").admitted());

  Options unbounded;
  unbounded.max_pending_connections = 0;
  unbounded.max_pending_per_peer = 0;
  unbounded.max_refusals_per_peer = 0;
  lim.start(unbounded);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(lim.admit("a").admitted());
}

TEST(AcceptLimits, PeerKeyIsTheAddressWithoutThePort) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(4242);
  ::inet_pton(AF_INET, "10.1.2.3", &a.sin_addr);
  EXPECT_EQ(peer_key("tcp", reinterpret_cast<sockaddr*>(&a)), "tcp:10.1.2.3");
  sockaddr_in6 b{};
  b.sin6_family = AF_INET6;
  ::inet_pton(AF_INET6, "::ffff:10.1.2.3", &b.sin6_addr);
  EXPECT_EQ(peer_key("rdma", reinterpret_cast<sockaddr*>(&b)), "rdma:10.1.2.3");
  ::inet_pton(AF_INET6, "2001:db8::7", &b.sin6_addr);
  EXPECT_EQ(peer_key("tcp", reinterpret_cast<sockaddr*>(&b)), "tcp:[2001:db8::7]");
}

// ---- Out of descriptors in accept4 ---------------------------------------------------------

// Lowers RLIMIT_NOFILE so that exactly `room` more descriptors can be opened.
void leave_room_for(int room) {
  rlimit r{};
  ::getrlimit(RLIMIT_NOFILE, &r);
  int fd = 0;
  for (int free_seen = 0;; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1) continue;
    if (free_seen == room) break;
    ++free_seen;
  }
  r.rlim_cur = static_cast<rlim_t>(fd);
  if (::setrlimit(RLIMIT_NOFILE, &r) != 0) _exit(3);
}

// Runs l.accept() in a forked child that may open only `room` more descriptors; returns what
// it reported through `result` (read by wait_report) and its pid.
pid_t accept_in_child(Listener& l, int room, int result[2]) {
  if (::pipe2(result, O_CLOEXEC) != 0) return -1;
  const pid_t pid = ::fork();
  if (pid != 0) {
    ::close(result[1]);
    return pid;
  }
  ::close(result[0]);
  int closed_for_room = 0;
  l.on_refused([&](const TransportError& e) {
    closed_for_room += std::strstr(e.what(), "closed to make room") != nullptr;
  });
  leave_room_for(room);
  std::string report;
  try {
    auto channels = l.accept();
    report = "assembled " + std::to_string(channels.size()) + ", closed for room " +
             std::to_string(closed_for_room);
  } catch (const TransportError& e) {
    report = "error " + std::to_string(e.error_code()) + ": " + e.what();
  }
  const ssize_t n = ::write(result[1], report.data(), report.size());
  _exit(n == static_cast<ssize_t>(report.size()) ? 0 : 4);
}

std::string wait_report(pid_t pid, int fd) {
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  return out;
}

TEST(AcceptLimits, OutOfDescriptorsClosesAPendingConnectionAndTheSessionAssembles) {
#ifdef FERRY_SANITIZE
  // In the ASan+UBSan build the forked acceptor, its RLIMIT_NOFILE lowered, fails inside the
  // sanitizer runtime (UBSan: "invalid vptr" constructing TransportError in transports/error.cc)
  // and the first case then hangs. Not understood yet; the release build runs both cases.
  GTEST_SKIP() << "not under sanitizers: the forked acceptor with RLIMIT_NOFILE lowered fails "
                  "in the sanitizer runtime (under investigation)";
#endif
  Options o = test_options();
  o.channels = 2;
  o.max_pending_per_peer = 0;  // only the descriptor limit bounds the flood here
  auto l = listen("tcp:127.0.0.1:0", o);
  int result[2];
  // Room for 6: the flood fills it, each newcomer closes the oldest flooder, and once the
  // session is complete the flooders' descriptors go to the channels' rings.
  const pid_t child = accept_in_child(*l, 6, result);
  ASSERT_GT(child, 0);
  std::vector<Fd> flood;
  for (int i = 0; i < 12; ++i) flood.push_back(idle_from("127.0.0.2", l->address()));
  std::vector<ChannelPtr> src;
  std::string err;
  try {
    src = connect(l->address(), o);
  } catch (const TransportError& e) {
    err = e.what();
  }
  const std::string report = wait_report(child, result[0]);
  EXPECT_EQ(err, "");
  EXPECT_THAT(report, StartsWith("assembled 2, closed for room "));
  EXPECT_THAT(report, Not(HasSubstr("closed for room 0")));
}

TEST(AcceptLimits, OutOfDescriptorsWithNothingToCloseFailsTheAcceptClearly) {
#ifdef FERRY_SANITIZE
  // In the ASan+UBSan build the forked acceptor, its RLIMIT_NOFILE lowered, fails inside the
  // sanitizer runtime (UBSan: "invalid vptr" constructing TransportError in transports/error.cc)
  // and the first case then hangs. Not understood yet; the release build runs both cases.
  GTEST_SKIP() << "not under sanitizers: the forked acceptor with RLIMIT_NOFILE lowered fails "
                  "in the sanitizer runtime (under investigation)";
#endif
  Options o = test_options();
  auto l = listen("tcp:127.0.0.1:0", o);
  int result[2];
  const pid_t child = accept_in_child(*l, 0, result);
  ASSERT_GT(child, 0);
  Fd source = idle_from("127.0.0.1", l->address());
  const std::string report = wait_report(child, result[0]);
  EXPECT_THAT(report, StartsWith("error " + std::to_string(EMFILE) + ": "));
  EXPECT_THAT(report, HasSubstr("accept: out of resources and no connection in its handshake to "
                                "close for room (0 of 1 channels arrived); raise RLIMIT_NOFILE"));
}

}  // namespace
}  // namespace ferry::transport
