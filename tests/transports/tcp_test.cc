// What only the socket transports have: zero-copy policy and its fallbacks, fixed buffers, name
// resolution, the io_uring feature report.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/transports/test_util.h"
#if FERRY_HAVE_URING
#include "transports/uring/features.h"
#endif

namespace ferry::transport {
namespace {

using namespace testing;
using ::testing::HasSubstr;

struct Result {
  ChannelStats stats;
  std::string path;
};

// Moves `total` bytes in 1 MiB page-iovec sends and returns the sender's stats and send path.
Result transfer(const std::string& uri, const Options& o, uint64_t total, bool register_src = false) {
  std::vector<uint8_t> src(16 << 20), dst(16 << 20);
  fill_pattern(src.data(), src.size(), 3, 0);
  Result r;
  std::string err = run_session(
      uri, 1, o, o,
      [&](Channel& ch) {
        MemoryRegion mr;
        if (register_src) mr = ch.register_memory(src.data(), src.size());
        for (uint64_t off = 0; off < total; off += 1 << 20) {
          iovec pages[256];
          for (int i = 0; i < 256; ++i) {
            pages[i] = iovec{src.data() + (off % src.size()) + i * 4096u, 4096};
          }
          ch.send(pages, off);
        }
        ch.wait_all();
        r.stats = ch.stats();
        r.path = ch.send_path();
        if (register_src) ch.deregister_memory(mr);
      },
      [&](Channel& ch) {
        for (uint64_t off = 0; off < total; off += dst.size()) {
          ch.recv(dst.data(), dst.size());
          int64_t bad = find_mismatch(dst.data(), dst.size(), 3, 0);
          ASSERT_EQ(bad, -1) << "at " << off;
        }
      });
  EXPECT_EQ(err, "");
  return r;
}

#if FERRY_HAVE_URING
TEST(UringFeatures, ProbedOnceAndDescribed) {
  const uring::Features& f = uring::features();
  EXPECT_EQ(&f, &uring::features());
  ASSERT_EQ(f.setup_error, 0) << "io_uring unavailable";
  EXPECT_TRUE(f.sendmsg && f.recvmsg && f.readv && f.writev);
  EXPECT_THAT(f.describe(), HasSubstr("channels use:"));
  std::printf("%s\n", f.describe().c_str());
}

TEST(ZeroCopy, AutoSwitchesOffWhenLoopbackCopies) {
  if (!uring::features().sendmsg_zc) GTEST_SKIP() << "kernel without IORING_OP_SENDMSG_ZC";
  Options o = test_options();
  o.zero_copy = ZeroCopy::kAuto;
  Result r = transfer("tcp:127.0.0.1:0", o, 128 << 20);
  EXPECT_GE(r.stats.zero_copy_submissions, 1u);
  EXPECT_GE(r.stats.zero_copy_copied, 1u);
  // The first notifications turn it off; the rest of the 128 MiB goes as plain sendmsg.
  EXPECT_LT(r.stats.zero_copy_submissions, r.stats.send_submissions / 2);
  EXPECT_THAT(r.path, HasSubstr("reported copying"));
  EXPECT_EQ(r.stats.bytes_sent, 128u << 20);
}

TEST(ZeroCopy, AlwaysKeepsUsingItAndStillDeliversEveryByte) {
  if (!uring::features().sendmsg_zc) GTEST_SKIP() << "kernel without IORING_OP_SENDMSG_ZC";
  Options o = test_options();
  o.zero_copy = ZeroCopy::kAlways;
  Result r = transfer("tcp:[::1]:0", o, 64 << 20);
  EXPECT_EQ(r.stats.zero_copy_submissions, r.stats.send_submissions);
  EXPECT_THAT(r.path, HasSubstr("sendmsg_zc"));
}

TEST(ZeroCopy, AlwaysWithRegisteredMemoryUsesFixedBuffers) {
  if (!uring::features().send_zc) GTEST_SKIP() << "kernel without IORING_OP_SEND_ZC";
  Options o = test_options();
  o.zero_copy = ZeroCopy::kAlways;
  Result r = transfer("tcp:127.0.0.1:0", o, 64 << 20, true);
  EXPECT_GT(r.stats.fixed_buffer_submissions, 0u);
}

TEST(ZeroCopy, NeverMeansPlainSends) {
  Options o = test_options();
  o.zero_copy = ZeroCopy::kNever;
  Result r = transfer("tcp:127.0.0.1:0", o, 32 << 20);
  EXPECT_EQ(r.stats.zero_copy_submissions, 0u);
  EXPECT_THAT(r.path, HasSubstr("off: by option"));
}

TEST(ZeroCopy, UnixSocketRefusesAndFallsBackToPlainSend) {
  if (!uring::features().sendmsg_zc) GTEST_SKIP() << "kernel without IORING_OP_SENDMSG_ZC";
  TempDir dir;
  Options o = test_options();
  o.zero_copy = ZeroCopy::kAlways;
  Result r = transfer("unix:" + dir.path() + "/s", o, 32 << 20);
  EXPECT_EQ(r.stats.zero_copy_submissions, 1u);
  EXPECT_THAT(r.path, HasSubstr("socket refused it"));
}

TEST(ZeroCopy, SmallSendsAreNeverZeroCopy) {
  if (!uring::features().sendmsg_zc) GTEST_SKIP() << "kernel without IORING_OP_SENDMSG_ZC";
  Options o = test_options();
  o.zero_copy = ZeroCopy::kAlways;
  o.zero_copy_threshold = 1 << 30;
  Result r = transfer("tcp:127.0.0.1:0", o, 16 << 20);
  EXPECT_EQ(r.stats.zero_copy_submissions, 0u);
}

TEST(Receive, ThroughTheRingAsWell) {
  // By default a receive blocks in recvmsg unless sends are queued; this forces the ring path.
  Options o = test_options();
  o.uring_recv = true;
  Result r = transfer("tcp:127.0.0.1:0", o, 64 << 20);
  EXPECT_EQ(r.stats.bytes_sent, 64u << 20);
}

#else  // built without liburing: tcp and unix go through the plain channel

TEST(PlainChannel, CarriesTcpAndUnixWithBlockingSyscalls) {
  TempDir dir;
  for (const std::string& uri : {std::string("tcp:127.0.0.1:0"), "unix:" + dir.path() + "/s"}) {
    SCOPED_TRACE(uri);
    Result r = transfer(uri, test_options(), 64 << 20, true);
    EXPECT_EQ(r.stats.bytes_sent, 64u << 20);
    EXPECT_EQ(r.stats.zero_copy_submissions, 0u);
    EXPECT_EQ(r.stats.fixed_buffer_submissions, 0u);
    EXPECT_THAT(r.path, HasSubstr("blocking sendmsg"));
    EXPECT_THAT(r.path, HasSubstr("built without io_uring"));
  }
}

#endif

TEST(Names, HostNamesResolve) {
  auto l = listen("tcp:127.0.0.1:0", test_options());
  const Uri bound = parse_uri(l->address());
  Session s = open_session(*l, 1, test_options());
  (void)s;
  auto l2 = listen("tcp:localhost:0", test_options());
  EXPECT_THAT(l2->address(), ::testing::StartsWith("tcp:"));
  Options co = test_options();
  co.connect_timeout = std::chrono::milliseconds(300);
  try {
    connect("tcp:no-such-host.invalid:" + std::to_string(bound.port), co);
    ADD_FAILURE() << "resolved an .invalid name";
  } catch (const TransportError& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot resolve host 'no-such-host.invalid'"));
  }
}

TEST(Names, ListenerAddressCarriesTheKernelChosenPort) {
  auto l = listen("tcp:[::1]:0", test_options());
  Uri u = parse_uri(l->address());
  EXPECT_EQ(u.host, "::1");
  EXPECT_NE(u.port, 0);
}

}  // namespace
}  // namespace ferry::transport
