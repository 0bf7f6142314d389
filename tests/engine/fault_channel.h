// A channel that breaks on purpose, once, at a chosen phase of the migration protocol: the
// connection closes, stalls, is slow, ends in the middle of a packet, or delivers a damaged
// header. It wraps a real channel and reads the 40-byte packet headers going through it (in
// either direction) to know where the protocol is; the fault fires on the first packet of the
// planned phase. Used by tests/engine/fault_matrix_test.cc.
#pragma once

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/ram/wire_format.h"
#include "ferry/transport_error.h"
#include "tests/engine/migration_test_util.h"

namespace ferry::testing {

enum class Fault { kClose, kStall, kDelay, kTruncate, kBitFlip };
enum class Phase {
  kHandshake,    // HELLO, HELLO_ACK
  kBulk,         // DATA before the first SYNC
  kIteration,    // DATA after it, guest still running
  kSync,         // the first SYNC (or SYNC_ACK)
  kFinalPass,    // DATA after stop_guest
  kDevices,      // DEVICE, VMDESC
  kCompletion,   // COMPLETE, CONFIRM
  kVerification, // HASHES, VERIFY
  kDone,         // DONE: the source hands the guest over
};

inline const char* fault_name(Fault f) {
  switch (f) {
    case Fault::kClose: return "close";
    case Fault::kStall: return "stall";
    case Fault::kDelay: return "delay";
    case Fault::kTruncate: return "truncate";
    case Fault::kBitFlip: return "bit-flip";
  }
  return "?";
}

inline const char* phase_name(Phase p) {
  switch (p) {
    case Phase::kHandshake: return "handshake";
    case Phase::kBulk: return "bulk";
    case Phase::kIteration: return "iteration";
    case Phase::kSync: return "sync";
    case Phase::kFinalPass: return "final pass";
    case Phase::kDevices: return "devices";
    case Phase::kCompletion: return "completion";
    case Phase::kVerification: return "verification";
    case Phase::kDone: return "done";
  }
  return "?";
}

struct FaultPlan {
  Fault fault = Fault::kClose;
  Phase phase = Phase::kHandshake;
  // A stalled link fails after this long, as a transport's io_timeout would.
  std::chrono::milliseconds stall_limit{1000};
  std::chrono::milliseconds delay{200};
  // Set by the test's stop_guest hook: DATA after it belongs to the final pass.
  const std::atomic<bool>* guest_stopped = nullptr;
  // Set when the fault fires; owned by the test, since the engine destroys its channels when
  // run() returns.
  std::atomic<bool>* fired = nullptr;
};

class FaultChannel final : public ForwardingChannel {
 public:
  FaultChannel(transport::ChannelPtr inner, FaultPlan plan)
      : ForwardingChannel(std::move(inner)), plan_(plan) {}

  void send(std::span<const iovec> iov, uint64_t cookie) override {
    if (!iov.empty() && iov[0].iov_len >= wire::kHeaderSize &&
        due(static_cast<const uint8_t*>(iov[0].iov_base))) {
      send_with_fault(iov, cookie);
      return;
    }
    inner_->send(iov, cookie);
  }

  void recv(std::span<const iovec> iov) override {
    inner_->recv(iov);
    // The engine reads every header on its own, 40 bytes into one buffer.
    if (iov.size() != 1 || iov[0].iov_len != wire::kHeaderSize) return;
    auto* head = static_cast<uint8_t*>(iov[0].iov_base);
    if (due(head)) recv_fault(head);
  }

  void abort() noexcept override {
    {
      std::lock_guard lock(mu_);
      aborted_ = true;
    }
    cv_.notify_all();
    inner_->abort();
  }

 private:
  static bool is_header(const uint8_t* p) {
    uint32_t magic = 0;
    std::memcpy(&magic, p, 4);
    return magic == wire::kMagic;
  }

  Phase phase_of(wire::PacketType type) {
    using T = wire::PacketType;
    switch (type) {
      case T::kHello:
      case T::kHelloAck: return Phase::kHandshake;
      case T::kData:
        if (plan_.guest_stopped && plan_.guest_stopped->load()) return Phase::kFinalPass;
        return syncs_ == 0 ? Phase::kBulk : Phase::kIteration;
      case T::kSync:
      case T::kSyncAck: ++syncs_; return Phase::kSync;
      case T::kDevice:
      case T::kVmdesc: return Phase::kDevices;
      case T::kComplete:
      case T::kConfirm: return Phase::kCompletion;
      case T::kVerify:
      case T::kHashes: return Phase::kVerification;
      case T::kDone: return Phase::kDone;
      default: return Phase::kHandshake;  // ERROR: never a target (checked in due())
    }
  }

  // Whether the fault fires on this packet: the first one of the planned phase.
  bool due(const uint8_t* head) {
    if (!is_header(head)) return false;
    const auto type = static_cast<wire::PacketType>(head[5]);
    std::lock_guard lock(mu_);
    const Phase p = phase_of(type);
    if (fired_ || type == wire::PacketType::kError || p != plan_.phase) return false;
    fired_ = true;
    if (plan_.fired) plan_.fired->store(true);
    return true;
  }

  [[noreturn]] void fail(int err, const std::string& what) {
    throw transport::TransportError(static_cast<int>(index()), peer(), err,
                                    "fault injected: " + what);
  }

  // Blocks like a link that carries nothing: until aborted, or until the stall limit.
  [[noreturn]] void stall() {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, plan_.stall_limit, [&] { return aborted_; });
    if (aborted_) fail(ECONNABORTED, "channel aborted while the link was stalled");
    fail(ETIMEDOUT, "no progress for " + std::to_string(plan_.stall_limit.count()) + " ms");
  }

  void send_with_fault(std::span<const iovec> iov, uint64_t cookie) {
    switch (plan_.fault) {
      case Fault::kDelay:
        std::this_thread::sleep_for(plan_.delay);
        inner_->send(iov, cookie);
        return;
      case Fault::kClose:
        inner_->abort();
        fail(ECONNRESET, "connection closed before a packet");
      case Fault::kStall:
        stall();
      case Fault::kTruncate:
        inner_->send_all(iov[0].iov_base, 20);
        inner_->abort();
        fail(EPIPE, "connection lost after 20 bytes of a packet");
      case Fault::kBitFlip: {
        // A copy: the engine's header buffer stays as it made it.
        flipped_.assign(static_cast<const uint8_t*>(iov[0].iov_base),
                        static_cast<const uint8_t*>(iov[0].iov_base) + iov[0].iov_len);
        flipped_[9] ^= 0x04;  // a packet-number bit: only the header checksum can tell
        std::vector<iovec> v(iov.begin(), iov.end());
        v[0].iov_base = flipped_.data();
        inner_->send(v, cookie);
        return;
      }
    }
  }

  void recv_fault(uint8_t* head) {
    switch (plan_.fault) {
      case Fault::kDelay:
        std::this_thread::sleep_for(plan_.delay);
        return;
      case Fault::kClose:
        inner_->abort();
        fail(ECONNRESET, "connection closed by the link");
      case Fault::kStall:
        stall();
      case Fault::kTruncate:
        inner_->abort();
        fail(0, "end of stream after 20 of the 40 bytes of a header");
      case Fault::kBitFlip:
        head[9] ^= 0x04;
        return;
    }
  }

  const FaultPlan plan_;
  std::mutex mu_;
  uint32_t syncs_ = 0;  // SYNC or SYNC_ACK seen; guarded by mu_
  std::condition_variable cv_;
  bool fired_ = false;
  bool aborted_ = false;
  std::vector<uint8_t> flipped_;
};

}  // namespace ferry::testing
