// Helpers for the transport tests: scratch directories, content patterns that make a wrong or
// misplaced byte visible, scatter layouts with canaries between the pieces, a runner that drives
// every channel of a session from its own thread, and raw sockets that misbehave on purpose.
#pragma once

#include <sys/uio.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "transports/fd.h"
#include "ferry/transport.h"

namespace ferry::transport::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Byte at stream offset `off` of the stream identified by `seed`.
inline uint8_t pattern_byte(uint64_t seed, uint64_t off) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + (off >> 3) + 1;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<uint8_t>(z >> (8 * (off & 7)));
}
void fill_pattern(uint8_t* p, size_t n, uint64_t seed, uint64_t off);
// Offset of the first byte that differs from the pattern, or -1.
int64_t find_mismatch(const uint8_t* p, size_t n, uint64_t seed, uint64_t off);

constexpr uint8_t kCanary = 0xA5;
constexpr size_t kGap = 16;

// `total` bytes split into pieces of [min_piece, max_piece] bytes laid out with kGap canary
// bytes between them, so no two pieces are adjacent (nothing can merge them) and a write past a
// piece's end shows.
struct Scatter {
  std::vector<uint8_t> storage;
  std::vector<iovec> iov;
  uint64_t total = 0;
};
Scatter make_scatter(uint64_t total, size_t min_piece, size_t max_piece, uint32_t rng_seed);
void fill_scatter(Scatter& s, uint64_t seed);
// Checks every piece against the pattern and every canary; returns "" or what is wrong.
std::string verify_scatter(const Scatter& s, uint64_t seed);

// Bounded timeouts, no fsync, and insecure (listening without a key off loopback allowed: the
// rdma cases use the soft-RoCE VM's address).
Options test_options();

// Drives channel i of both ends of a session from threads of its own: senders and receivers
// concurrently for sockets, writers to completion before readers for files. Exceptions thrown
// inside are collected and returned as text ("" when none).
using ChannelFn = std::function<void(Channel&)>;
std::string run_session(const std::string& listen_uri, uint32_t channels, const Options& send_opts,
                        const Options& recv_opts, const ChannelFn& sender, const ChannelFn& receiver);

// Connected pair for streaming transports: the accepted and the connecting channels.
struct Session {
  std::vector<ChannelPtr> accepted;
  std::vector<ChannelPtr> connected;
};
Session open_session(Listener& l, uint32_t channels, const Options& o);

// Raw stream socket to a listener's address (tcp:... or unix:...), blocking, no handshake.
Fd raw_connect(const std::string& address);
std::vector<uint8_t> hello_bytes(uint32_t magic, uint16_t version, uint64_t session, uint32_t index,
                                 uint32_t count);

// Runs fn and returns how long it took.
double seconds(const std::function<void()>& fn);

}  // namespace ferry::transport::testing
