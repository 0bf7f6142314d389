// Helpers for the migration tests: guest memory with canaries around it, loopback channel
// pairs, a guest writer thread that marks what it writes, and a runner for both sides.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ferry/migration.h"
#include "ferry/bitmap_dirty_source.h"
#include "transports/rdma/rdma_transport.h"
#include "ferry/transport.h"

namespace ferry::testing {

inline constexpr uint8_t kCanary = 0xA5;

// size bytes aligned to `align`, with canary bytes on both sides to catch stray writes.
class GuardedMem {
 public:
  GuardedMem(size_t size, size_t align = 4096) : size_(size) {
    guard_ = std::max<size_t>(64 << 10, align);
    map_len_ = size + 2 * guard_ + align;
    map_ = static_cast<uint8_t*>(
        mmap(nullptr, map_len_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (map_ == MAP_FAILED) throw std::runtime_error("mmap");
    auto start = reinterpret_cast<uintptr_t>(map_) + guard_;
    start = (start + align - 1) / align * align;
    data_ = reinterpret_cast<uint8_t*>(start);
    std::memset(data_ - guard_, kCanary, guard_);
    std::memset(data_ + size_, kCanary, guard_);
  }
  ~GuardedMem() { munmap(map_, map_len_); }
  GuardedMem(const GuardedMem&) = delete;
  GuardedMem& operator=(const GuardedMem&) = delete;
  uint8_t* data() { return data_; }
  size_t size() const { return size_; }
  bool canaries_intact() const {
    for (size_t i = 0; i < guard_; ++i) {
      if (data_[-static_cast<ptrdiff_t>(i) - 1] != kCanary || data_[size_ + i] != kCanary) {
        return false;
      }
    }
    return true;
  }

 private:
  size_t size_;
  size_t guard_;
  size_t map_len_;
  uint8_t* map_;
  uint8_t* data_;
};

// Forwards every call to a real channel: tests derive from it and override what they change.
// Send completions reach whatever callback the engine sets on the wrapper.
class ForwardingChannel : public transport::Channel {
 public:
  explicit ForwardingChannel(transport::ChannelPtr inner)
      : Channel(Identity{inner->index(), inner->count(), inner->session_id(), inner->peer(),
                         inner->peer_capabilities()}),
        inner_(std::move(inner)) {
    inner_->set_send_callback([this](uint64_t cookie) {
      if (on_send_) on_send_(cookie);
    });
  }
  transport::Capabilities capabilities() const override { return inner_->capabilities(); }
  transport::ChannelStats stats() const override { return inner_->stats(); }
  std::string send_path() const override { return inner_->send_path(); }
  std::string encryption() const override { return inner_->encryption(); }
  void send(std::span<const iovec> iov, uint64_t cookie) override { inner_->send(iov, cookie); }
  size_t poll_completions() override { return inner_->poll_completions(); }
  void wait_all() override { inner_->wait_all(); }
  void recv(std::span<const iovec> iov) override { inner_->recv(iov); }
  size_t recv_leftover(void* data, size_t len, std::chrono::milliseconds wait) noexcept override {
    return inner_->recv_leftover(data, len, wait);
  }
  void close() override { inner_->close(); }
  void abort() noexcept override { inner_->abort(); }
  transport::MemoryRegion register_memory(void* addr, size_t len) override {
    return inner_->register_memory(addr, len);
  }
  void deregister_memory(const transport::MemoryRegion& r) override {
    inner_->deregister_memory(r);
  }

 protected:
  transport::ChannelPtr inner_;
};

// Sleeps before every receive: a slow receiver on demand, so tests can make one channel lag
// behind the others.
class DelayRecvChannel final : public ForwardingChannel {
 public:
  DelayRecvChannel(transport::ChannelPtr inner, std::chrono::microseconds delay)
      : ForwardingChannel(std::move(inner)), delay_(delay) {}
  void recv(std::span<const iovec> iov) override {
    std::this_thread::sleep_for(delay_);
    inner_->recv(iov);
  }

 private:
  std::chrono::microseconds delay_;
};

// A DirtySource that forwards to one the test keeps (MigrationSource owns its sources).
class DirtySourceProxy final : public DirtySource {
 public:
  explicit DirtySourceProxy(DirtySource* inner) : inner_(inner) {}
  void sync(DirtyBitmap& into) override { inner_->sync(into); }
  size_t pages() const override { return inner_->pages(); }
  const char* name() const override { return inner_->name(); }

 private:
  DirtySource* inner_;
};

// Reports every page dirty on every sync (after syncing the source it wraps): the dirty set
// never shrinks, so a run lasts exactly max_iterations whatever the timing.
class AllDirty final : public DirtySource {
 public:
  explicit AllDirty(std::unique_ptr<DirtySource> inner) : inner_(std::move(inner)) {}
  void sync(DirtyBitmap& into) override {
    inner_->sync(into);
    into.set_all();
  }
  size_t pages() const override { return inner_->pages(); }
  const char* name() const override { return inner_->name(); }

 private:
  std::unique_ptr<DirtySource> inner_;
};

struct ChannelPair {
  std::vector<transport::ChannelPtr> src;
  std::vector<transport::ChannelPtr> dst;
};

inline std::string unix_uri() {
  static std::atomic<int> n{0};
  return "unix:/tmp/ferry-engine-test-" + std::to_string(getpid()) + "-" +
         std::to_string(n++) + ".sock";
}

// An rdma: URI for the soft-RoCE VM's server address (tools/rxe/run-in-vm sets
// FERRY_RXE_SERVER_ADDR), or why rdma tests must skip here ("" when *uri was set).
inline std::string rdma_uri_or_skip_reason(std::string* uri) {
  std::string why = transport::rdma::unavailable_reason();
  const char* a = std::getenv("FERRY_RXE_SERVER_ADDR");
  if (why.empty() && !a) why = "FERRY_RXE_SERVER_ADDR unset (run under tools/rxe/run-in-vm)";
  if (why.empty()) *uri = std::string("rdma:") + a + ":0";
  return why;
}

// o: further transport options (TLS, a key); channels and io_timeout are set here.
inline ChannelPair make_channels(const std::string& uri, uint32_t n, transport::Options o = {}) {
  o.channels = n;
  // A bound on every blocking call: a bug shows as an error, not a hung test.
  o.io_timeout = std::chrono::milliseconds(60'000);
  o.insecure = true;  // without a key on the soft-RoCE VM's rdma address, which is not loopback
  auto listener = transport::listen(uri, o);
  ChannelPair p;
  std::thread t([&] { p.dst = listener->accept(); });
  p.src = transport::connect(listener->address(), o);
  t.join();
  return p;
}

// Deterministic content: some zero pages, some random, some sharing most bytes.
inline void fill_guest(uint8_t* p, size_t size, size_t page, uint32_t seed) {
  std::mt19937_64 rng(seed);
  for (size_t off = 0; off < size; off += page) {
    const uint64_t kind = rng() % 4;
    if (kind == 0) {
      std::memset(p + off, 0, page);
    } else if (kind == 1) {
      std::memset(p + off, static_cast<int>(rng() & 0xff), page);
      p[off + rng() % page] ^= 1;
    } else {
      for (size_t i = 0; i < page; i += 8) {
        const uint64_t v = rng();
        std::memcpy(p + off + i, &v, std::min<size_t>(8, page - i));
      }
    }
  }
}

// A guest vCPU: writes pages (partly, wholly, or zeroes them) and marks them, until stopped.
// Optionally mirrors every write into `shadow` so a test can tell our writes from anyone's.
// `marks` may be null when the kernel tracks the writes (UffdWpDirtySource). By default it
// writes as fast as it can (with short pauses); set_rate() paces it, and set_throttle() is
// what a MigrationHooks::throttle callback calls.
class GuestWriter {
 public:
  GuestWriter(uint8_t* mem, size_t size, size_t page, ExplicitMarkSource* marks,
              uint32_t seed, uint8_t* shadow = nullptr)
      : mem_(mem), size_(size), page_(page), marks_(marks), seed_(seed), shadow_(shadow) {}
  ~GuestWriter() { stop(); }
  void start() {
    thread_ = std::thread([this] { loop(); });
  }
  void stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  uint64_t writes() const { return writes_.load(); }
  // Page writes per second (0: as fast as it goes). Call before start().
  void set_rate(double writes_per_s) { rate_ = writes_per_s; }
  // Auto-converge: paused `percent` of the time. A paced writer stretches the gap between
  // writes by as much, which is the same on average and keeps writes spread out.
  void set_throttle(uint32_t percent) { throttle_.store(std::min<uint32_t>(percent, 99)); }
  // Returns once the thread has written n times (at most 5 s): a test that needs the guest to
  // dirty pages during a bulk pass of a few ms must not start it before the writer runs.
  void wait_for_writes(uint64_t n) const {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (writes_.load() < n && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

 private:
  void write(size_t off, const void* src, size_t n) {
    std::memcpy(mem_ + off, src, n);
    if (shadow_) std::memcpy(shadow_ + off, src, n);
  }
  void loop() {
    std::mt19937_64 rng(seed_);
    const size_t pages = size_ / page_;
    std::vector<uint8_t> buf(page_);
    uint64_t counter = 0;
    auto due = std::chrono::steady_clock::now();
    while (!stop_.load(std::memory_order_relaxed)) {
      const size_t pg = rng() % pages;
      const size_t off = pg * page_;
      ++counter;
      switch (rng() % 8) {
        case 0:  // zero the page
          std::memset(buf.data(), 0, page_);
          write(off, buf.data(), page_);
          break;
        case 1:  // rewrite the page from a counter
          for (size_t i = 0; i + 8 <= page_; i += 8) {
            const uint64_t v = counter * 0x9E3779B97F4A7C15ull + i;
            std::memcpy(buf.data() + i, &v, 8);
          }
          write(off, buf.data(), page_);
          break;
        default: {  // a few bytes change: the XBZRLE case
          const size_t at = (rng() % (page_ / 64)) * 64;
          write(off + at, &counter, sizeof counter);
          break;
        }
      }
      if (marks_) marks_->mark(pg);
      writes_.fetch_add(1, std::memory_order_relaxed);
      if (rate_ > 0) {
        pace(due);
      } else if (counter % 32 == 0) {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
  }
  // Each write is due one interval after the previous one; the writer sleeps only when 1 ms
  // ahead (short sleeps overshoot), and a writer the scheduler held back catches up at most
  // 5 ms worth, so the rate asked is also the most it writes over any stretch of time.
  void pace(std::chrono::steady_clock::time_point& due) {
    using namespace std::chrono;
    const double running = 1.0 - throttle_.load(std::memory_order_relaxed) / 100.0;
    due += duration_cast<steady_clock::duration>(duration<double>(1.0 / (rate_ * running)));
    const auto now = steady_clock::now();
    if (due < now - milliseconds(5)) {
      due = now - milliseconds(5);
    } else if (due > now + milliseconds(1)) {
      std::this_thread::sleep_until(due);
    }
  }

  uint8_t* mem_;
  size_t size_;
  size_t page_;
  ExplicitMarkSource* marks_;
  uint32_t seed_;
  uint8_t* shadow_;
  double rate_ = 0;
  std::atomic<uint32_t> throttle_{0};
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> writes_{0};
  std::thread thread_;
};

// Offset of the first differing page, or -1.
inline int64_t first_diff_page(const uint8_t* a, const uint8_t* b, size_t size, size_t page) {
  for (size_t off = 0; off < size; off += page) {
    if (std::memcmp(a + off, b + off, page) != 0) return static_cast<int64_t>(off / page);
  }
  return -1;
}

}  // namespace ferry::testing
