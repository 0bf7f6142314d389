// Helpers shared by the rdma transport's parts: completion and event text, the RLIMIT_MEMLOCK
// check with the process-wide count of pinned bytes, page-aligned buffers, address resolution
// and endpoint text.
#pragma once

#include <infiniband/verbs.h>
#include <netdb.h>
#include <rdma/rdma_cma.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "ferry/transport.h"

namespace ferry::transport::rdma {

// ibv_reg_mr is a macro that masks `access` with another enum's value; passing plain ints keeps
// clang's -Wdeprecated-enum-enum-conversion quiet (the fuzz build compiles this with clang).
inline constexpr int kLocalWrite = IBV_ACCESS_LOCAL_WRITE;
inline constexpr int kRemoteWriteAccess = IBV_ACCESS_REMOTE_WRITE;

using Clock = std::chrono::steady_clock;

extern std::atomic<uint64_t> g_pinned;  // bytes this process registered through this transport

std::string wc_text(const ibv_wc& wc);
const char* opcode_name(ibv_wc_opcode op);
const char* event_name(rdma_cm_event_type t);

// Milliseconds from now until t, clamped to what poll() takes (0 when past).
int ms_until(Clock::time_point t);

// Throws ENOMEM with what to do when pinning `more` bytes would pass RLIMIT_MEMLOCK.
void check_memlock(uint64_t more, int channel, const std::string& peer, const char* what);

void set_nonblocking(int fd);

// Page-aligned, zeroed buffer.
struct Buffer {
  void* p = nullptr;
  size_t n = 0;
  explicit Buffer(size_t bytes);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  uint8_t* data() const { return static_cast<uint8_t*>(p); }
};

// "rdma:HOST:PORT" (numeric) of a socket address, for messages.
std::string endpoint_of(const sockaddr* sa);

struct AddrInfo {
  addrinfo* ai = nullptr;
  AddrInfo() = default;
  AddrInfo(AddrInfo&& o) noexcept : ai(std::exchange(o.ai, nullptr)) {}
  AddrInfo& operator=(AddrInfo&&) = delete;
  ~AddrInfo() {
    if (ai) ::freeaddrinfo(ai);
  }
};

AddrInfo resolve(const Uri& uri, bool passive);

}  // namespace ferry::transport::rdma
