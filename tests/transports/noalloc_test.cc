// The per-send and per-receive paths must not touch the heap (DESIGN.md: no per-page heap
// allocation). This binary replaces global operator new to count allocations made by the
// thread under test while it sends or receives in steady state.
#include <gtest/gtest.h>

#include <cstdlib>
#include <new>
#include <thread>
#include <vector>

#include "tests/transports/test_util.h"

namespace {
thread_local bool g_counting = false;
thread_local size_t g_allocations = 0;
}  // namespace

void* operator new(size_t n) {
  if (g_counting) ++g_allocations;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }

#ifndef FERRY_SANITIZE
// liburing or libc reaching for malloc would count too. The sanitizer runtimes own malloc, so
// this half of the check runs in the normal build only.
extern "C" void* __libc_malloc(size_t);
extern "C" void* __libc_calloc(size_t, size_t);
extern "C" void* __libc_realloc(void*, size_t);
extern "C" void* malloc(size_t n) {
  if (g_counting) ++g_allocations;
  return __libc_malloc(n);
}
extern "C" void* calloc(size_t n, size_t m) {
  if (g_counting) ++g_allocations;
  return __libc_calloc(n, m);
}
extern "C" void* realloc(void* p, size_t n) {
  if (g_counting) ++g_allocations;
  return __libc_realloc(p, n);
}
#endif

namespace ferry::transport {
namespace {

using namespace testing;

class Counting {
 public:
  Counting() {
    g_allocations = 0;
    g_counting = true;
  }
  ~Counting() { g_counting = false; }
  size_t count() const { return g_allocations; }
};

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
