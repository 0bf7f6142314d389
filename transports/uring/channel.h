// The io_uring channel behind the tcp, unix and file transports: one ring per channel, driven by
// the thread that drives the channel.
//
// Rings are IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN where the kernel has them: completion work
// runs only when the owner waits in the ring, which moved 1 GiB over loopback ~12% faster than
// COOP_TASKRUN (bench/transports). Only the thread that created such a ring may use it, while a
// channel may be driven by one thread and then another (the engine's control thread and a sender
// take turns on channel 0). So a different thread finding the ring idle re-creates it (and
// re-registers the fixed buffers); finding it busy is a usage error (one driver at a time).
//
// Sends: send() copies the caller's iovecs into a preallocated ring (adjacent buffers merged) and
// records (cookie, stream offset where the send ends) in a preallocated array, so the per-send path
// does not allocate. One kernel operation is in flight at a time (a stream socket gives no order
// between two in-flight sends); it carries every queued iovec up to IOV_MAX / kMaxOpBytes, so
// many small sends share one submission. Sockets use sendmsg with MSG_WAITALL, or sendmsg_zc
// (send_zc for one registered buffer) when the submission is large enough; files use writev at
// the stream offset.
//
// Zero-copy: a zero-copy submission completes twice: the result (bytes sent, IORING_CQE_F_MORE
// when a notification follows) and later the notification (IORING_CQE_F_NOTIF) when the kernel
// released the pages. A send is reported complete only when every byte up to its end was sent and
// every zero-copy submission that started at or before its end was notified, in send order.
// With ZeroCopy::kAuto the notification's IORING_NOTIF_USAGE_ZC_COPIED bit (loopback, a device
// without scatter/gather) switches the channel to plain sendmsg: copying twice in the kernel plus a
// second completion is slower than one copy. A socket that refuses zero-copy (AF_UNIX:
// EOPNOTSUPP) switches it off and the same submission is retried as a plain send.
//
// Receives go straight into the caller's scatter list and loop until the exact length arrived.
// Sockets use a blocking recvmsg(MSG_WAITALL) when no send is in flight or queued: on loopback
// it cost ~5% less CPU per GiB than the ring's poll-and-retry (bench/transports). Otherwise the
// receive goes through the ring (recvmsg, MSG_WAITALL) so our sends keep moving while we wait;
// Options::uring_recv forces that path. Files use readv at the stream offset.
// The blocking path is bounded by SO_RCVTIMEO (io_timeout) and ended by abort()'s shutdown().
#pragma once

#include <liburing.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <string>
#include <vector>

#include "transports/fd.h"
#include "ferry/transport.h"

namespace ferry::transport::uring {

class UringChannel final : public Channel {
 public:
  enum class Kind { kSocket, kFile };

  struct Config {
    Kind kind = Kind::kSocket;
    std::string transport;       // "tcp", "unix", "file": for messages
    Fd fd;
    uint64_t file_offset = 0;    // files: where the stream starts (after the hello)
    bool file_writer = false;    // files: written (and synced on close) rather than read
    Options options;
    Identity identity;
  };

  explicit UringChannel(Config config);
  ~UringChannel() override;

  Capabilities capabilities() const override;
  ChannelStats stats() const override { return stats_; }
  std::string send_path() const override;

  void send(std::span<const iovec> iov, uint64_t cookie) override;
  size_t poll_completions() override;
  void wait_all() override;
  void recv(std::span<const iovec> iov) override;
  size_t recv_leftover(void* data, size_t len, std::chrono::milliseconds wait) noexcept override;
  void close() override;
  void abort() noexcept override;
  MemoryRegion register_memory(void* addr, size_t len) override;
  void deregister_memory(const MemoryRegion& region) override;

  // Largest single kernel submission; bigger iovecs are split when queued.
  static constexpr size_t kMaxOpBytes = 8u << 20;
  // MemoryRegion::key of a region that could not be pinned as fixed buffers.
  static constexpr uint64_t kNoFixedBuffer = ~uint64_t{0};

 private:
  enum class ZcState { kOn, kOffOption, kOffKernel, kOffRefused, kOffCopied };
  struct Record {
    uint64_t cookie;
    uint64_t end;  // stream offset just past this send
  };
  struct ZcSlot {
    uint64_t start;  // stream offset where the submission began
    bool result = false;
    bool more = false;  // a notification will follow the result
    bool notified = false;
  };
  struct Region {
    MemoryRegion region;
    uint32_t first_slot = 0;
    uint32_t slots = 0;  // fixed buffers covering it (each at most 1 GiB); 0 = none
  };

  void ensure_ring();
  void check_usable(const char* op);
  void record_failure(int err, const std::string& what);  // first failure wins
  [[noreturn]] void fail(int err, const std::string& what);
  [[noreturn]] void rethrow_failure();
  bool in_flight() const;
  // Drives the ring until done() or failure; io_timeout bounds each wait without completions.
  template <typename Done>
  void progress_until(Done done, const char* what);

  void queue_iovec(const iovec& v);
  void kick();  // prepares the next send submission when none is in flight
  bool prep_fixed_zc(io_uring_sqe* sqe, const iovec& v);
  io_uring_sqe* get_sqe();
  void submit_pending();
  bool wait_event(bool bounded, std::chrono::steady_clock::time_point deadline);
  void process_cqes();
  void on_send_result(int res, bool zc, uint32_t zc_slot, bool more);
  void on_notification(uint32_t zc_slot, int res);
  void pop_zc_slots();
  uint64_t released_offset() const;
  size_t report();
  void drain_in_flight();
  void teardown();

  Kind kind_;
  std::string transport_;
  Fd fd_;
  std::mutex fd_mutex_;  // abort() from another thread against teardown() closing fd_
  Options opts_;
  bool file_writer_;
  uint64_t file_write_off_;
  uint64_t file_read_off_;

  io_uring ring_{};
  bool ring_live_ = false;
  bool ring_single_issuer_ = false;  // ring_ may only be used by ring_owner_
  std::thread::id ring_owner_;       // the thread that created ring_
  std::atomic<bool> aborted_{false};
  bool closed_ = false;
  bool failed_ = false;
  int fail_errno_ = 0;
  std::string fail_what_;
  bool reporting_ = false;

  // Queued iovecs: [iov_head_, iov_tail_) not yet sent, monotonic indices modulo iov_.size().
  std::vector<iovec> iov_;
  uint64_t iov_head_ = 0;
  uint64_t iov_tail_ = 0;
  uint64_t queued_end_ = 0;  // stream offset after everything queued
  uint64_t sent_ = 0;        // stream offset confirmed sent

  std::vector<Record> records_;
  uint64_t rec_head_ = 0;
  uint64_t rec_tail_ = 0;

  // The send submission in flight.
  bool op_busy_ = false;
  uint32_t op_count_ = 0;  // iovecs it covers from iov_head_
  msghdr op_msg_{};

  ZcState zc_state_;
  int zc_refused_errno_ = 0;
  bool zc_report_usage_ = true;
  std::vector<ZcSlot> zc_slots_;
  uint64_t zc_head_ = 0;
  uint64_t zc_tail_ = 0;

  // The receive in flight (only inside recv()).
  std::vector<iovec> recv_iov_;
  msghdr recv_msg_{};
  bool recv_busy_ = false;
  bool recv_done_ = false;
  int recv_res_ = 0;
  unsigned cancels_in_flight_ = 0;

  std::vector<Region> regions_;
  uint32_t next_region_id_ = 1;
  bool fixed_table_ = false;
  std::vector<bool> fixed_used_;
  std::vector<iovec> fixed_iov_;  // what each fixed-buffer slot holds, to re-register it

  ChannelStats stats_;
};

}  // namespace ferry::transport::uring
