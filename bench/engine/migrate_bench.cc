// End-to-end RAM migration over loopback TCP against raw TCP.
//
// BM_MigrateLoopback/random/<channels>, BM_MigrateLoopback/zero/<channels> (1 and 2 channels)
//   One MigrationSource::run() of a 1 GiB block of 4 KiB pages to a MigrationDestination in a
//   thread of this process, over a fresh tcp:127.0.0.1 session: a bulk pass and nothing else
//   (dirty sources that never report a page, no writer), XBZRLE off, zero-page detection on.
//   "random" pages are incompressible (all go NORMAL) and land in a populated buffer (the one
//   the baseline receives into). "zero" pages are populated zeroes on the source (all ZERO
//   records: the cost is detection, not the wire) and go to a fresh, never-touched mapping
//   registered as RamBlock::known_zero, as a new VM's memory is. Session setup (listen,
//   connect, accept, the fresh mapping) is outside the timed part. bytes_per_second = image
//   bytes moved per wall second.
// BM_MigrateLoopbackVerified/random/<channels>
//   BM_MigrateLoopback/random with MigrationConfig::verify (digests, as `ferry send` does by
//   default): the ratio of the two is what verification costs.
// BM_MigrateLoopbackPopulated/zero/1 (for the record, no target)
//   The zero case into a populated, zeroed destination that is not known_zero: the receiver
//   must look at every page to know it need not clear it.
// BM_BaselineRawTcp
//   The same 1 GiB, from the same source image into the same destination memory, through one
//   plain blocking loopback socket pair given what ferry's tcp transport gives a local peer
//   (TCP_NODELAY, transport::Options::local_socket_buffer_bytes, forced): send() loop on one
//   thread, recv() loop on another, up to 1 MiB per call, taking what each call returns (as
//   iperf3 does; MSG_WAITALL cost more CPU per GiB). It must be at least as strong as iperf3
//   single stream on the same loopback, the standard tool (bench/summary measures both; target
//   BM_BaselineRawTcp / iperf3 >= 0.95), and is the denominator of bench/summary's
//   BM_MigrateLoopback/random/1 / BM_BaselineRawTcp. Checked equal to the source afterwards.
#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "ferry/migration.h"
#include "ferry/transport.h"

namespace ferry {
namespace {

constexpr size_t kImage = size_t{1} << 30;
constexpr size_t kPage = 4096;
constexpr size_t kChunk = size_t{1} << 20;

// A populated anonymous mapping, unmapped at exit.
struct Mapping {
  explicit Mapping(size_t n) : size(n) {
    void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    data = p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
    if (data != nullptr) madvise(data, n, MADV_NOHUGEPAGE);
  }
  ~Mapping() {
    if (data != nullptr) munmap(data, size);
  }
  uint8_t* data = nullptr;
  size_t size = 0;
};

// Images are built once per process and shared by the benchmarks.
const Mapping& random_image() {
  static const Mapping m = [] {
    Mapping x(kImage);
    if (x.data != nullptr) {
      uint64_t s = 0x243F6A8885A308D3ull;
      for (size_t i = 0; i < kImage; i += 8) {
        s += 0x9E3779B97F4A7C15ull;
        uint64_t z = s;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        std::memcpy(x.data + i, &z, 8);
      }
    }
    return x;
  }();
  return m;
}

const Mapping& zero_image() {
  static const Mapping m = [] {
    Mapping x(kImage);
    // Populated: real guest zero pages are distinct zeroed frames, not the shared zero page.
    if (x.data != nullptr) std::memset(x.data, 0, kImage);
    return x;
  }();
  return m;
}

Mapping& destination() {
  static Mapping m = [] {
    Mapping x(kImage);
    if (x.data != nullptr) std::memset(x.data, 0, kImage);
    return x;
  }();
  return m;
}

class NothingDirty final : public DirtySource {
 public:
  explicit NothingDirty(size_t pages) : pages_(pages) {}
  void sync(DirtyBitmap&) override {}
  size_t pages() const override { return pages_; }
  const char* name() const override { return "none"; }

 private:
  size_t pages_;
};

std::vector<RamBlock> block(void* host, bool known_zero = false) {
  RamBlock b;
  b.name = "pc.ram";
  b.host = host;
  b.size = kImage;
  b.page_size = kPage;
  b.known_zero = known_zero;
  return {b};
}

// Whether destination() holds only zeroes; BM_MigrateLoopbackPopulated restores that outside
// the timed part (the random runs and the baseline fill it) so it measures zero pages, not
// clearing.
bool g_destination_zero = true;

enum class Kind { kRandom, kZero, kZeroPopulated };

void migrate_loopback(benchmark::State& state, Kind kind, bool verify = false) {
  const bool random = kind == Kind::kRandom;
  const auto channels = static_cast<uint32_t>(state.range(0));
  const Mapping& src = random ? random_image() : zero_image();
  Mapping& dst = destination();
  if (src.data == nullptr || dst.data == nullptr) {
    state.SkipWithError("mmap of the 1 GiB images failed");
    return;
  }
  transport::Options o;
  o.channels = channels;
  o.io_timeout = std::chrono::seconds(60);
  MigrationConfig cfg;
  cfg.xbzrle = false;
  cfg.zero_pages = true;
  cfg.verify = verify;
  uint64_t wire = 0;
  std::unique_ptr<Mapping> fresh;
  for (auto _ : state) {
    state.PauseTiming();
    fresh.reset();  // unmapping the previous one is not part of the migration
    std::vector<transport::ChannelPtr> tx, rx;
    try {
      auto l = transport::listen("tcp:127.0.0.1:0", o);
      auto accepted = std::async(std::launch::async, [&] { return l->accept(); });
      tx = transport::connect(l->address(), o);
      rx = accepted.get();
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      return;
    }
    uint8_t* into = dst.data;
    if (kind == Kind::kZero) {
      fresh = std::make_unique<Mapping>(kImage);
      if (fresh->data == nullptr) {
        state.SkipWithError("mmap of the destination failed");
        return;
      }
      into = fresh->data;
    } else if (kind == Kind::kZeroPopulated && !g_destination_zero) {
      std::memset(dst.data, 0, kImage);
      g_destination_zero = true;
    } else if (random) {
      g_destination_zero = false;
    }
    std::vector<std::unique_ptr<DirtySource>> dirty;
    dirty.push_back(std::make_unique<NothingDirty>(kImage / kPage));
    MigrationSource source(block(src.data), std::move(dirty), cfg);
    MigrationDestination dest(block(into, kind == Kind::kZero));
    state.ResumeTiming();

    std::string dest_error;
    std::thread receiver([&] {
      try {
        dest.run(std::move(rx));
      } catch (const std::exception& e) {
        dest_error = e.what();
      }
    });
    std::string error;
    try {
      const MigrationStats stats = source.run(std::move(tx));
      wire += stats.wire_bytes;
    } catch (const std::exception& e) {
      error = e.what();
      dest.cancel();
    }
    receiver.join();
    if (!error.empty() || !dest_error.empty()) {
      state.SkipWithError((error.empty() ? "destination: " + dest_error : error).c_str());
      return;
    }
  }
  if (random && std::memcmp(src.data, dst.data, kImage) != 0) {
    state.SkipWithError("destination differs from the source image");
    return;
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kImage));
  state.counters["wire_bytes_per_iteration"] =
      state.iterations() ? static_cast<double>(wire) / static_cast<double>(state.iterations()) : 0;
}

void BM_MigrateLoopbackRandom(benchmark::State& state) { migrate_loopback(state, Kind::kRandom); }
void BM_MigrateLoopbackZero(benchmark::State& state) { migrate_loopback(state, Kind::kZero); }
// The same with verification by digests (what `ferry send` does by default): its cost is the
// ratio to BM_MigrateLoopback/random.
void BM_MigrateLoopbackVerifiedRandom(benchmark::State& state) {
  migrate_loopback(state, Kind::kRandom, /*verify=*/true);
}
void BM_MigrateLoopbackPopulatedZero(benchmark::State& state) {
  migrate_loopback(state, Kind::kZeroPopulated);
}

// One end of the baseline's socket pair: a failed peer ends the run instead of hanging it, and
// the options are ferry's for a peer on this host (transports/tcp/socket.cc tune()): TCP_NODELAY
// and local_socket_buffer_bytes forced past rmem_max/wmem_max. With the kernel's autotuned
// buffers the receive queue grows to many MiB while the receiver writes into cold memory, the
// queued bytes fall out of the cache and the receiver's copy slows further (issue 10 measured
// 1.54 GiB/s that way against iperf3's 3.86: iperf3's receiver copies into a hot 128 KiB
// buffer and keeps ahead). Bounded buffers keep what lies between the two copies in the cache.
void tune_like_ferry(int fd) {
  timeval tv{30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int bytes = transport::Options{}.local_socket_buffer_bytes;
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
  }
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  }
}

// A connected loopback TCP pair {sender, receiver}, both tuned; {-1, -1} on failure.
std::pair<int, int> loopback_pair() {
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0) return {-1, -1};
  tune_like_ferry(lfd);  // the accepted socket inherits the buffer sizes from its listener
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof a;
  int tx = -1, rx = -1;
  if (bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && listen(lfd, 1) == 0 &&
      getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &alen) == 0) {
    tx = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (tx >= 0) tune_like_ferry(tx);
    if (tx >= 0 && connect(tx, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      rx = accept(lfd, nullptr, nullptr);
    }
  }
  close(lfd);
  if (rx < 0) {
    if (tx >= 0) close(tx);
    return {-1, -1};
  }
  tune_like_ferry(rx);
  return {tx, rx};
}

// Moves the image from src to dst through the pair, send() on this thread and recv() on
// another; false when a call failed or the peer closed.
bool copy_through(int tx, int rx, const uint8_t* src, uint8_t* dst) {
  std::atomic<bool> failed{false};
  std::thread receiver([&] {
    for (size_t off = 0; off < kImage && !failed;) {
      const ssize_t r = recv(rx, dst + off, std::min(kChunk, kImage - off), 0);
      if (r <= 0) failed = true;
      off += r > 0 ? static_cast<size_t>(r) : 0;
    }
  });
  for (size_t off = 0; off < kImage && !failed;) {
    const ssize_t r = send(tx, src + off, std::min(kChunk, kImage - off), MSG_NOSIGNAL);
    if (r <= 0) failed = true;
    off += r > 0 ? static_cast<size_t>(r) : 0;
  }
  receiver.join();
  return !failed;
}

void BM_BaselineRawTcp(benchmark::State& state) {
  const Mapping& src = random_image();
  Mapping& dst = destination();
  if (src.data == nullptr || dst.data == nullptr) {
    state.SkipWithError("mmap of the 1 GiB images failed");
    return;
  }
  const auto [tx, rx] = loopback_pair();
  if (tx < 0) {
    state.SkipWithError("baseline loopback connection failed");
    return;
  }
  g_destination_zero = false;
  bool ok = true;
  for (auto _ : state) {
    if (!(ok = copy_through(tx, rx, src.data, dst.data))) break;
  }
  close(tx);
  close(rx);
  if (!ok) {
    state.SkipWithError("baseline send/recv failed");
    return;
  }
  if (std::memcmp(src.data, dst.data, kImage) != 0) {
    state.SkipWithError("baseline: destination differs from the source image");
    return;
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kImage));
}

// Registered names are what reports show (bench_main.cc drops the "/real_time" suffix of
// these), e.g. BM_MigrateLoopback/random/1: scripts look them up.
[[maybe_unused]] const bool kRegistered = [] {
  for (auto [name, fn] : {std::pair{"BM_MigrateLoopback/random", &BM_MigrateLoopbackRandom},
                          std::pair{"BM_MigrateLoopback/zero", &BM_MigrateLoopbackZero}}) {
    benchmark::RegisterBenchmark(name, fn)
        ->Arg(1)
        ->Arg(2)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("BM_MigrateLoopbackVerified/random", &BM_MigrateLoopbackVerifiedRandom)
      ->Arg(1)
      ->Arg(2)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_MigrateLoopbackPopulated/zero", &BM_MigrateLoopbackPopulatedZero)
      ->Arg(1)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_BaselineRawTcp", &BM_BaselineRawTcp)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  return true;
}();

}  // namespace
}  // namespace ferry
