// ferry_bench_transports: 1 GiB of 4 KiB pages per iteration, sender thread -> receiver thread
// over loopback, one thread pair per channel, with wall-clock rates.
//
//   BM_TcpUring/channels:N              ferry's tcp transport, default options.
//   BM_BaselineBlockingSend/channels:N  plain blocking sockets with ferry's options for a local
//                                       peer (TCP_NODELAY, the same buffer size), one blocking send()
//                                       and one recv(MSG_WAITALL) per 1 MiB step: raw loopback TCP
//                                       at its best, the baseline of the issue's ratio.
// For the record (not targets):
//   BM_BaselineBlockingSendKernelBuffers  the baseline with the kernel's autotuned buffers: the
//                                       receive queue outgrows the cache (~1.5x the CPU per GiB on
//                                       the 2-vCPU VM); it used to be the baseline and flattered ferry.
//   BM_TcpUringLargeBuffers             ferry with the remote-peer buffer size on loopback.
//   BM_TcpUringZeroCopyAlways           SEND_ZC forced on; loopback copies anyway.
//   BM_TcpTls/channels:N                TLS 1.3 (Options::tls, user-space OpenSSL), against
//                                       BM_TcpUring in bench/summary: what encryption costs.
//
// Every variant moves the same bytes in the same 1 MiB steps of 256 page iovecs (ferry) or one
// 1 MiB buffer (baseline) and receives into place in a separate buffer, checked after the run.
// cpu_s_per_GiB is the whole process's CPU time (all threads, including kernel work done for
// them, e.g. io_uring task work) divided by GiB moved.
#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "bench/common/plain_names.h"
#include "ferry/transport.h"
#include "tests/transports/tls_certs.h"
#if FERRY_HAVE_URING
#include "transports/uring/features.h"
#endif

namespace {

using namespace ferry::transport;

constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr uint64_t kBytesPerIteration = kGiB;
constexpr size_t kPage = 4096;
constexpr size_t kStep = 1 << 20;  // bytes per send()/recv() call
constexpr size_t kPagesPerStep = kStep / kPage;
constexpr size_t kBufferBytes = 64 << 20;  // per channel and side, cycled through

double process_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double context_switches() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_nvcsw + ru.ru_nivcsw);
}

struct Buffers {
  std::vector<std::vector<uint8_t>> src, dst;
  explicit Buffers(size_t n) : src(n), dst(n) {
    for (size_t i = 0; i < n; ++i) {
      src[i].resize(kBufferBytes);
      for (size_t k = 0; k < kBufferBytes; k += 8) {
        uint64_t v = (k + i * 0x9E3779B97F4A7C15ull) * 0xBF58476D1CE4E5B9ull;
        std::memcpy(&src[i][k], &v, 8);
      }
      dst[i].assign(kBufferBytes, 0);
    }
  }
  // Each step lands at the same offset on both sides, so after a run dst must equal src.
  bool intact() const {
    for (size_t i = 0; i < src.size(); ++i) {
      if (src[i] != dst[i]) return false;
    }
    return true;
  }
};

// Times iterations and records cpu_s_per_GiB (and context switches, which explain outliers).
class Meter {
 public:
  void start() {
    cpu0_ = process_cpu_seconds();
    sw0_ = context_switches();
  }
  void stop() {
    cpu_ += process_cpu_seconds() - cpu0_;
    switches_ += context_switches() - sw0_;
  }
  void finish(benchmark::State& state, const Buffers& b) const {
    const double gib = static_cast<double>(state.iterations() * kBytesPerIteration) / kGiB;
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kBytesPerIteration));
    state.counters["cpu_s_per_GiB"] = cpu_ / gib;
    state.counters["ctx_switches_per_GiB"] = switches_ / gib;
    if (!b.intact()) state.SkipWithError("received bytes differ from the sent ones");
  }

 private:
  double cpu0_ = 0, sw0_ = 0, cpu_ = 0, switches_ = 0;
};

// Runs send(i) and recv(i) for every channel i, each on a thread of its own.
void run_pairs(size_t n, const std::function<void(size_t)>& send,
               const std::function<void(size_t)>& recv) {
  std::vector<std::thread> threads;
  for (size_t i = 0; i < n; ++i) {
    threads.emplace_back(recv, i);
    threads.emplace_back(send, i);
  }
  for (auto& t : threads) t.join();
}

void step_pages(iovec* pages, uint8_t* base) {
  for (size_t p = 0; p < kPagesPerStep; ++p) pages[p] = iovec{base + p * kPage, kPage};
}

void tcp_uring(benchmark::State& state, Options o) {
  const size_t n = static_cast<size_t>(state.range(0));
  o.channels = static_cast<uint32_t>(n);
  o.io_timeout = std::chrono::seconds(30);
  std::vector<ChannelPtr> rx, tx;
  try {
    auto l = listen("tcp:127.0.0.1:0", o);
    auto accepted = std::async(std::launch::async, [&] { return l->accept(); });
    tx = connect(l->address(), o);
    rx = accepted.get();
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  Buffers b(n);
  const uint64_t per_channel = kBytesPerIteration / n;
  std::mutex mu;
  std::string error;
  auto guard = [&](const std::function<void()>& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(mu);
      error = e.what();
    }
  };
  Meter m;
  for (auto _ : state) {
    m.start();
    run_pairs(
        n,
        [&](size_t i) {
          guard([&] {
            iovec pages[kPagesPerStep];
            for (uint64_t off = 0; off < per_channel; off += kStep) {
              step_pages(pages, b.src[i].data() + off % kBufferBytes);
              tx[i]->send(pages, off);
            }
            tx[i]->wait_all();
          });
        },
        [&](size_t i) {
          guard([&] {
            iovec pages[kPagesPerStep];
            for (uint64_t off = 0; off < per_channel; off += kStep) {
              step_pages(pages, b.dst[i].data() + off % kBufferBytes);
              rx[i]->recv(pages);
            }
          });
        });
    m.stop();
    if (!error.empty()) {
      for (auto& c : tx) c->abort();
      for (auto& c : rx) c->abort();
      state.SkipWithError(error.c_str());
      return;
    }
  }
  state.SetLabel(tx[0]->send_path());
  m.finish(state, b);
}

void BM_TcpUring(benchmark::State& state) { tcp_uring(state, Options{}); }

void BM_TcpUringLargeBuffers(benchmark::State& state) {
  Options o;
  o.local_socket_buffer_bytes = o.socket_buffer_bytes;
  tcp_uring(state, o);
}

void BM_TcpUringZeroCopyAlways(benchmark::State& state) {
  Options o;
  o.zero_copy = ZeroCopy::kAlways;
  tcp_uring(state, o);
}

// A CA and one certificate for both ends, made once in a temporary directory.
Options::Tls bench_tls() {
  static const Options::Tls files = [] {
    char dir[] = "/tmp/ferry-bench-tls-XXXXXX";
    if (!::mkdtemp(dir)) return Options::Tls{};
    ferry::transport::testing::TestPki pki(dir, "bench-ca");
    return pki.issue("bench-peer");
  }();
  return files;
}

void BM_TcpTls(benchmark::State& state) {
  Options o;
  o.tls = bench_tls();
  tcp_uring(state, o);
}

// tuned: ferry's options for a local peer; otherwise the kernel's defaults (autotuning).
void blocking_send(benchmark::State& state, bool tuned) {
  const size_t n = static_cast<size_t>(state.range(0));
  auto setup = [tuned](int fd) {
    // A failed peer must end the run, not hang it.
    timeval tv{30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (!tuned) return;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int buf = Options{}.local_socket_buffer_bytes;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf) != 0) {
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    }
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf) != 0) {
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    }
  };
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  setup(lfd);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof a;
  if (bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(lfd, 16) != 0 ||
      getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &alen) != 0) {
    state.SkipWithError("baseline listen failed");
    close(lfd);
    return;
  }
  std::vector<int> tx(n, -1), rx(n, -1);
  bool ok = true;
  for (size_t i = 0; i < n && ok; ++i) {
    tx[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setup(tx[i]);
    ok = connect(tx[i], reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    rx[i] = ok ? accept(lfd, nullptr, nullptr) : -1;
    if (rx[i] >= 0) setup(rx[i]);
  }
  close(lfd);
  Buffers b(n);
  const uint64_t per_channel = kBytesPerIteration / n;
  std::atomic<bool> failed{!ok};
  Meter m;
  for (auto _ : state) {
    if (failed) break;
    m.start();
    run_pairs(
        n,
        [&](size_t i) {
          for (uint64_t off = 0; off < per_channel && !failed; off += kStep) {
            const uint8_t* p = b.src[i].data() + off % kBufferBytes;
            for (size_t done = 0; done < kStep;) {
              ssize_t r = send(tx[i], p + done, kStep - done, MSG_NOSIGNAL);
              if (r <= 0) {
                failed = true;
                return;
              }
              done += static_cast<size_t>(r);
            }
          }
        },
        [&](size_t i) {
          for (uint64_t off = 0; off < per_channel && !failed; off += kStep) {
            // One MSG_WAITALL per step, as ferry's receive: here it cost less CPU per GiB than
            // taking what each recv() returns.
            if (recv(rx[i], b.dst[i].data() + off % kBufferBytes, kStep, MSG_WAITALL) !=
                static_cast<ssize_t>(kStep)) {
              failed = true;
              return;
            }
          }
        });
    m.stop();
  }
  for (size_t i = 0; i < n; ++i) {
    if (tx[i] >= 0) close(tx[i]);
    if (rx[i] >= 0) close(rx[i]);
  }
  if (failed) {
    state.SkipWithError("baseline connect/send/recv failed");
    return;
  }
  m.finish(state, b);
}

void BM_BaselineBlockingSend(benchmark::State& state) { blocking_send(state, true); }
void BM_BaselineBlockingSendKernelBuffers(benchmark::State& state) { blocking_send(state, false); }

#define FERRY_CHANNELS(b, ...) \
  BENCHMARK(b)->ArgName("channels")__VA_ARGS__->UseRealTime()->Unit(benchmark::kMillisecond)

FERRY_CHANNELS(BM_TcpUring, ->Arg(1)->Arg(2)->Arg(4));
FERRY_CHANNELS(BM_BaselineBlockingSend, ->Arg(1)->Arg(2)->Arg(4));
FERRY_CHANNELS(BM_BaselineBlockingSendKernelBuffers, ->Arg(1));
FERRY_CHANNELS(BM_TcpUringLargeBuffers, ->Arg(1));
FERRY_CHANNELS(BM_TcpUringZeroCopyAlways, ->Arg(1));
FERRY_CHANNELS(BM_TcpTls, ->Arg(1)->Arg(2));

}  // namespace

// Every benchmark here uses real time; bench/summary looks them up without "/real_time".
int main(int argc, char** argv) {
  return ferry::bench::run_benchmarks(
      argc, argv, [](const std::string&) { return true; }, [] {
#if FERRY_HAVE_URING
        benchmark::AddCustomContext("io_uring", ferry::transport::uring::features().describe());
#else
        benchmark::AddCustomContext("io_uring", "not built (plain blocking-syscall channels)");
#endif
      });
}
