// The per-send and per-receive paths must not touch the heap (docs/design.md: no per-page heap
// allocation). This binary replaces global operator new to count allocations made by the
// thread under test while it sends or receives in steady state.
#include <gtest/gtest.h>

#include <cstdlib>
#include <new>
#include <thread>
#include <vector>

#include "tests/common/alloc_counter.h"
#include "tests/transports/test_util.h"


namespace ferry::transport {
namespace {

using namespace testing;

using Counting = ferry::test::CountAllocations;

void steady_state(const std::string& uri, bool uring_recv = false) {
  constexpr int kRounds = 2000;
  std::vector<uint8_t> pages(64 * 4096), header(16), dst(pages.size() + header.size());
  size_t send_allocs = 99, recv_allocs = 99;
  uint64_t completed = 0;
  Options o = test_options();
  o.uring_recv = uring_recv;
  std::string err = run_session(
      uri, 1, o, o,
      [&](Channel& ch) {
        ch.set_send_callback([&](uint64_t) { ++completed; });
        iovec v[3] = {{header.data(), header.size()},
                      {pages.data(), pages.size() / 2},
                      {pages.data() + pages.size() / 2, pages.size() / 2}};
        ch.send(v, 0);  // warm-up: the ring is created on first use
        ch.wait_all();
        Counting c;
        for (int i = 0; i < kRounds; ++i) {
          ch.send(v, i);
          if (i % 16 == 0) ch.poll_completions();
        }
        ch.wait_all();
        send_allocs = c.count();
      },
      [&](Channel& ch) {
        iovec v[2] = {{dst.data(), header.size()}, {dst.data() + header.size(), pages.size()}};
        ch.recv(v);
        Counting c;
        for (int i = 0; i < kRounds; ++i) ch.recv(v);
        recv_allocs = c.count();
      });
  ASSERT_EQ(err, "");
  EXPECT_EQ(completed, kRounds + 1u);
  EXPECT_EQ(send_allocs, 0u);
  EXPECT_EQ(recv_allocs, 0u);
}

TEST(NoAlloc, TcpSendAndReceive) { steady_state("tcp:127.0.0.1:0"); }

TEST(NoAlloc, TcpReceiveThroughTheRing) { steady_state("tcp:127.0.0.1:0", true); }

TEST(NoAlloc, FileWriteAndRead) {
  TempDir dir;
  steady_state("file:" + dir.path() + "/s");
}

TEST(NoAlloc, CountingWorks) {
  Counting c;
  std::vector<int> v(4);
  EXPECT_GE(c.count(), 1u);
}

}  // namespace
}  // namespace ferry::transport
