// ferry's rdma channel throughput on one link, to set against perftest's ib_write_bw in the same
// boot (tests/rxe/bench.sh). Both ends in one process, one thread each:
//   ferry_rxe_bw SERVER_ADDR [seconds] [channels] [write|send]
// write: RDMA WRITE from a registered 8 MiB source into the receiver's registered 64 MiB region,
// 1 MiB per write_remote(), like ib_write_bw's 64 KiB..1 MiB messages; send: the stream path.
// Prints "ferry rdma <mode>: N MB/s" (MB = 10^6 bytes, as perftest reports).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "ferry/transport.h"

using namespace ferry::transport;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s SERVER_ADDR [seconds] [channels] [write|send]\n", argv[0]);
    return 2;
  }
  const std::string addr = argv[1];
  const double secs = argc > 2 ? std::atof(argv[2]) : 5.0;
  const uint32_t channels = argc > 3 ? static_cast<uint32_t>(std::atoi(argv[3])) : 1;
  const bool write = argc > 4 ? std::strcmp(argv[4], "send") != 0 : true;
  constexpr size_t kChunk = 1 << 20, kSrc = 8 << 20, kDst = 64 << 20;
  try {
    Options o;
    o.channels = channels;
    o.io_timeout = std::chrono::milliseconds(30'000);
    o.max_outstanding_sends = 8;  // 8 MiB in flight: the run ends close to its time
    o.insecure = true;            // the rxe address is not loopback; no key in a benchmark
    auto l = listen("rdma:" + addr + ":0", o);
    auto acc = std::async(std::launch::async, [&] { return l->accept(); });
    auto tx = connect(l->address(), o);
    auto rx = acc.get();
    std::vector<uint64_t> moved(channels);
    // Timed like perftest: from the first data operation to the last completion, per channel;
    // setup (zero-filling and pinning the regions, the address exchange) and teardown are not.
    std::vector<Clock::time_point> began(channels), ended(channels);
    std::vector<std::thread> threads;
    for (uint32_t c = 0; c < channels; ++c) {
      threads.emplace_back([&, c] {
        Channel& r = *rx[c];
        std::vector<uint8_t> dst(kDst);
        MemoryRegion mr = r.register_memory(dst.data(), dst.size());
        uint64_t adv[3] = {reinterpret_cast<uint64_t>(mr.addr), mr.length, mr.key};
        r.send_all(adv, sizeof adv);
        if (write) {
          uint64_t done = 0;
          r.recv(&done, sizeof done);
        } else {
          uint64_t total = 0;
          r.recv(&total, sizeof total);
          for (uint64_t got = 0; got < total; got += kChunk) r.recv(dst.data(), kChunk);
        }
        r.close();
      });
      threads.emplace_back([&, c] {
        Channel& t = *tx[c];
        std::vector<uint8_t> src(kSrc, 0x3C);
        MemoryRegion mr = t.register_memory(src.data(), src.size());
        uint64_t adv[3];
        t.recv(adv, sizeof adv);
        RemoteRegion remote{adv[0], adv[1], adv[2]};
        uint64_t n = 0;
        const auto end = Clock::now() + std::chrono::duration<double>(secs);
        if (!write) {
          // The count first: chunks until the time is up would leave the receiver guessing.
          // Measure 1 s to size the run.
          n = 0;
        }
        uint64_t sent = 0;
        began[c] = Clock::now();
        if (write) {
          while (Clock::now() < end) {
            for (int k = 0; k < 16; ++k, ++n) {
              iovec v{src.data() + (n % (kSrc / kChunk)) * kChunk, kChunk};
              t.write_remote(std::span<const iovec>(&v, 1), remote, (n % (kDst / kChunk)) * kChunk, n);
            }
            t.poll_completions();
          }
          t.wait_all();
          ended[c] = Clock::now();
          sent = n * kChunk;
          uint64_t done = 1;
          t.send_all(&done, sizeof done);
        } else {
          const uint64_t total = static_cast<uint64_t>(secs * 40e6) / kChunk * kChunk + kChunk;
          t.send_all(&total, sizeof total);
          for (uint64_t off = 0; off < total; off += kChunk) {
            iovec v{src.data() + (off / kChunk % (kSrc / kChunk)) * kChunk, kChunk};
            t.send(std::span<const iovec>(&v, 1), off);
          }
          t.wait_all();
          ended[c] = Clock::now();
          sent = total;
        }
        moved[c] = sent;
        t.deregister_memory(mr);
        t.close();
      });
    }
    for (auto& th : threads) th.join();
    const auto t0 = *std::min_element(began.begin(), began.end());
    const auto t1 = *std::max_element(ended.begin(), ended.end());
    const double took = std::chrono::duration<double>(t1 - t0).count();
    uint64_t total = 0;
    for (auto m : moved) total += m;
    std::printf("ferry rdma %s: %u channel(s), %.1f MB in %.2f s: %.2f MB/s\n",
                write ? "write" : "send", channels, total / 1e6, took, total / 1e6 / took);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ferry_rxe_bw: %s\n", e.what());
    return 1;
  }
  return 0;
}
