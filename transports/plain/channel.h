// The plain channel: a connected stream socket (tcp, unix) or a stream file driven by blocking
// syscalls, for builds without liburing and kernels or sandboxes that refuse io_uring.
//
// send() writes everything with sendmsg (files: pwritev at the stream offset) before it returns,
// so its completion is reported from inside send(), in order, and wait_all() and
// poll_completions() have nothing left to do. recv() loops recvmsg(MSG_WAITALL) (files: preadv)
// until the exact length arrived. io_timeout bounds each blocking call through SO_SNDTIMEO /
// SO_RCVTIMEO; abort() from another thread shuts the socket down, which ends a blocked call.
// Nothing is pinned: register_memory() returns unpinned regions (key kNoFixedBuffer).
//
// Unlike the io_uring channel, a send blocks until the kernel took its bytes: both ends sending
// more than the socket buffers hold without either receiving would wait for each other. The
// engine does not do that (the destination's receivers read every channel all along and answer
// with short control messages), and io_timeout turns such a mistake into an error, not a hang.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "ferry/transport.h"
#include "transports/fd.h"
#include "transports/stream_channel.h"

namespace ferry::transport::plain {

class PlainChannel final : public Channel {
 public:
  // why: the reason io_uring is not in use, for send_path().
  PlainChannel(StreamChannelSpec spec, std::string why);
  ~PlainChannel() override;

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

  // MemoryRegion::key of every region: nothing is pinned.
  static constexpr uint64_t kNoFixedBuffer = ~uint64_t{0};

 private:
  void check_usable(const char* op);
  [[noreturn]] void fail(int err, const std::string& what);
  // Copies iov[*next...] into scratch_ (at most IOV_MAX entries, empty ones dropped) and
  // returns how many entries it holds; advances *next past what was taken.
  size_t gather(std::span<const iovec> iov, size_t* next);
  // One blocking transfer of scratch_[first, first+n): the bytes moved, or -1 with errno set.
  ssize_t transfer_once(bool sending, size_t first, size_t n);
  // Moves every byte of scratch_[0, n) in one direction; *done counts bytes across calls.
  void transfer_all(bool sending, size_t n, uint64_t* done, uint64_t total);

  bool file_;
  std::string transport_;
  std::string why_plain_;
  Fd fd_;
  std::mutex fd_mutex_;  // abort() from another thread against close() releasing fd_
  Options opts_;
  bool file_writer_;
  uint64_t file_write_off_;
  uint64_t file_read_off_;

  std::atomic<bool> aborted_{false};
  bool closed_ = false;
  bool failed_ = false;
  int fail_errno_ = 0;
  std::string fail_what_;

  std::vector<iovec> scratch_;  // preallocated: a send or receive does not allocate
  std::vector<uint32_t> regions_;
  uint32_t next_region_id_ = 1;
  ChannelStats stats_;
};

}  // namespace ferry::transport::plain
