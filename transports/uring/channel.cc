#include "transports/uring/channel.h"

#include <limits.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "transports/leftover.h"
#include "transports/uring/features.h"

// liburing 2.3 predates these (kernel 6.2). A kernel older than that refuses the flag with EINVAL
// and the channel then retries without it.
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

namespace ferry::transport::uring {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kIovMax = IOV_MAX;
constexpr size_t kZcSlots = 128;
constexpr uint32_t kFixedSlots = 64;
constexpr size_t kFixedChunk = size_t{1} << 30;  // io_uring's limit per fixed buffer
constexpr size_t kMaxRecvBytes = size_t{1} << 30;  // a result must fit in an int
constexpr unsigned kRingEntries = 16;
constexpr unsigned kCqEntries = 512;
constexpr auto kTeardownWait = std::chrono::seconds(2);

enum Tag : uint64_t { kTagSend = 1, kTagZc = 2, kTagRecv = 3, kTagCancel = 4 };

uint64_t user_data(Tag tag, uint64_t slot = 0) { return tag | (slot << 8); }

// Drops `bytes` from the front of the iovecs starting at v[first].
void advance(std::vector<iovec>& v, size_t& first, size_t bytes) {
  while (bytes > 0) {
    iovec& e = v[first];
    if (bytes >= e.iov_len) {
      bytes -= e.iov_len;
      ++first;
    } else {
      e.iov_base = static_cast<char*>(e.iov_base) + bytes;
      e.iov_len -= bytes;
      bytes = 0;
    }
  }
}

const int kSendFlags = MSG_WAITALL | MSG_NOSIGNAL;

}  // namespace

UringChannel::UringChannel(Config c)
    : Channel(std::move(c.identity)),
      kind_(c.kind),
      transport_(std::move(c.transport)),
      fd_(std::move(c.fd)),
      opts_(c.options),
      file_writer_(c.file_writer),
      file_write_off_(c.file_offset),
      file_read_off_(c.file_offset),
      iov_(std::max<size_t>(opts_.max_queued_iovecs, 16)),
      records_(std::max<size_t>(opts_.max_outstanding_sends, 1)),
      zc_slots_(kZcSlots),
      recv_iov_(kIovMax) {
  if (kind_ == Kind::kSocket && opts_.io_timeout.count() > 0) {
    // Bounds the blocking recvmsg path; ring waits have their own timeout.
    const auto ms = opts_.io_timeout.count();
    timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  if (kind_ == Kind::kFile || opts_.zero_copy == ZeroCopy::kNever) {
    zc_state_ = ZcState::kOffOption;
  } else if (!features().sendmsg_zc) {
    zc_state_ = ZcState::kOffKernel;
  } else {
    zc_state_ = ZcState::kOn;
  }
}

UringChannel::~UringChannel() { teardown(); }

Capabilities UringChannel::capabilities() const {
  Capabilities c = 0;
  if (zc_state_ == ZcState::kOn) c |= kZeroCopySend;
  if (kind_ == Kind::kSocket && opts_.fixed_buffers && features().send_zc) c |= kFixedBuffers;
  if (kind_ == Kind::kFile) c |= kOneWay;
  return c;
}

std::string UringChannel::send_path() const {
  if (kind_ == Kind::kFile) return "io_uring writev (" + transport_ + ")";
  std::string plain = "io_uring sendmsg (" + transport_ + ", zero-copy off: ";
  switch (zc_state_) {
    case ZcState::kOn:
      return "io_uring sendmsg_zc (" + transport_ + ") for submissions >= " +
             std::to_string(opts_.zero_copy_threshold) + " bytes, sendmsg below";
    case ZcState::kOffOption:
      return plain + "by option)";
    case ZcState::kOffKernel:
      return plain + "kernel lacks IORING_OP_SENDMSG_ZC)";
    case ZcState::kOffRefused:
      return plain + "socket refused it: " + std::strerror(zc_refused_errno_) + ")";
    case ZcState::kOffCopied:
      return plain + "the kernel reported copying the data anyway, e.g. loopback)";
  }
  return plain + "?)";
}

void UringChannel::ensure_ring() {
  if (ring_live_) {
    if (!ring_single_issuer_ || ring_owner_ == std::this_thread::get_id()) return;
    // Another thread takes over the channel: it needs a ring of its own (see channel.h).
    if (in_flight()) {
      fail(EBUSY, "channel driven by a second thread while the first has operations in flight");
    }
    io_uring_queue_exit(&ring_);
    ring_live_ = false;
  }
  const Features& f = features();
  if (f.setup_error) fail(f.setup_error, "io_uring setup");
  io_uring_params p{};
  p.flags = f.channel_setup_flags();
  ring_single_issuer_ = p.flags & IORING_SETUP_SINGLE_ISSUER;
  p.cq_entries = kCqEntries;
  int r = io_uring_queue_init_params(kRingEntries, &ring_, &p);
  if (r < 0) fail(-r, "io_uring_queue_init");
  ring_live_ = true;
  ring_owner_ = std::this_thread::get_id();
  if (fixed_table_) {
    // The same slots on the new ring, so the keys handed out stay valid.
    if (io_uring_register_buffers_sparse(&ring_, kFixedSlots) != 0 ||
        io_uring_register_buffers_update_tag(&ring_, 0, fixed_iov_.data(), nullptr,
                                             kFixedSlots) != static_cast<int>(kFixedSlots)) {
      fail(ENOMEM, "re-registering fixed buffers on the ring of the channel's new thread");
    }
  }
}

void UringChannel::check_usable(const char* op) {
  if (reporting_) {
    throw std::logic_error("ferry transport: send callback must not call into its channel");
  }
  if (aborted_.load(std::memory_order_relaxed) && !failed_) {
    record_failure(ECONNABORTED, "channel aborted");
  }
  if (failed_) rethrow_failure();
  if (closed_) {
    throw TransportError(static_cast<int>(index()), peer(), EBADF,
                         std::string(op) + " on a closed channel");
  }
}

void UringChannel::record_failure(int err, const std::string& what) {
  if (failed_) return;
  failed_ = true;
  if (aborted_.load(std::memory_order_relaxed)) {
    fail_errno_ = ECONNABORTED;
    fail_what_ = "channel aborted (" + what + ")";
  } else {
    fail_errno_ = err;
    fail_what_ = what;
  }
}

void UringChannel::fail(int err, const std::string& what) {
  record_failure(err, what);
  rethrow_failure();
}

void UringChannel::rethrow_failure() {
  throw TransportError(static_cast<int>(index()), peer(), fail_errno_, fail_what_);
}

bool UringChannel::in_flight() const {
  return op_busy_ || recv_busy_ || cancels_in_flight_ > 0 || zc_head_ != zc_tail_;
}

template <typename Done>
void UringChannel::progress_until(Done done, const char* what) {
  const bool bounded = opts_.io_timeout.count() > 0;
  auto deadline = Clock::now() + opts_.io_timeout;
  for (;;) {
    process_cqes();
    kick();
    report();
    if (failed_) break;
    if (done()) return;
    if (!in_flight()) {
      record_failure(EIO, std::string("internal error: ") + what + " waits with nothing in flight");
      break;
    }
    if (wait_event(bounded, deadline)) {
      deadline = Clock::now() + opts_.io_timeout;
      continue;
    }
    process_cqes();
    report();
    if (failed_) break;
    if (done()) return;
    record_failure(ETIMEDOUT, std::string(what) + " made no progress for " +
                                  std::to_string(opts_.io_timeout.count()) + " ms");
    break;
  }
  // A failed channel must not leave the kernel writing into caller memory after we return.
  drain_in_flight();
  rethrow_failure();
}

bool UringChannel::wait_event(bool bounded, Clock::time_point deadline) {
  for (;;) {
    ++stats_.ring_enters;
    io_uring_cqe* cqe = nullptr;
    int r;
    if (bounded) {
      auto left = deadline - Clock::now();
      if (left <= Clock::duration::zero()) return false;
      auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
      __kernel_timespec ts{ns / 1'000'000'000, ns % 1'000'000'000};
      r = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
    } else {
      r = io_uring_submit_and_wait(&ring_, 1);
    }
    if (r >= 0) return true;
    if (r == -ETIME) return io_uring_cq_ready(&ring_) > 0;
    if (r == -EINTR || r == -EAGAIN || r == -EBUSY) continue;
    if (r == -EEXIST) {
      // A single-issuer ring entered by a thread other than its creator (e.g. closing from the
      // control thread what an exited sender left in flight): no completion can be waited for
      // here, and retrying only spins until the deadline.
      record_failure(EEXIST, "io_uring_enter from a thread that does not own the channel's ring");
      return false;
    }
    record_failure(-r, "io_uring_enter");
    return true;
  }
}

void UringChannel::submit_pending() {
  if (io_uring_sq_ready(&ring_) == 0) return;
  ++stats_.ring_enters;
  int r = io_uring_submit(&ring_);
  if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) record_failure(-r, "io_uring_submit");
}

io_uring_sqe* UringChannel::get_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (!sqe) {
    submit_pending();
    sqe = io_uring_get_sqe(&ring_);
  }
  if (!sqe) fail(EBUSY, "io_uring submission queue full");
  return sqe;
}

void UringChannel::process_cqes() {
  if (!ring_live_) return;
  // With COOP_TASKRUN completions may wait in task work (or an overflow list) until we enter
  // the kernel; the flags say when that is worth a syscall.
  if (io_uring_cq_ready(&ring_) == 0 &&
      (IO_URING_READ_ONCE(*ring_.sq.kflags) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW))) {
    ++stats_.ring_enters;
    io_uring_get_events(&ring_);
  }
  unsigned head;
  unsigned n = 0;
  io_uring_cqe* cqe;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    ++n;
    const uint64_t ud = cqe->user_data;
    const uint32_t slot = static_cast<uint32_t>(ud >> 8);
    switch (static_cast<Tag>(ud & 0xff)) {
      case kTagSend:
        on_send_result(cqe->res, false, 0, false);
        break;
      case kTagZc:
        if (cqe->flags & IORING_CQE_F_NOTIF) {
          on_notification(slot, cqe->res);
        } else {
          on_send_result(cqe->res, true, slot, cqe->flags & IORING_CQE_F_MORE);
        }
        break;
      case kTagRecv:
        recv_busy_ = false;
        recv_done_ = true;
        recv_res_ = cqe->res;
        break;
      case kTagCancel:
        --cancels_in_flight_;
        break;
    }
  }
  io_uring_cq_advance(&ring_, n);
}

void UringChannel::on_send_result(int res, bool zc, uint32_t slot, bool more) {
  op_busy_ = false;
  if (zc) {
    ZcSlot& s = zc_slots_[slot];
    s.result = true;
    s.more = more;
  }
  if (res < 0) {
    const int err = -res;
    if (zc && !aborted_.load(std::memory_order_relaxed) && (err == EOPNOTSUPP || err == EINVAL)) {
      // Not carried: retry the same bytes, without the usage report if that is what an older
      // kernel objects to, otherwise without zero-copy at all.
      if (err == EINVAL && zc_report_usage_) {
        zc_report_usage_ = false;
      } else {
        zc_state_ = ZcState::kOffRefused;
        zc_refused_errno_ = err;
      }
    } else if (err != EINTR && err != EAGAIN) {
      record_failure(err, std::string(kind_ == Kind::kFile ? "write" : "send") + " at stream offset " +
                              std::to_string(sent_));
    }
  } else if (res == 0) {
    record_failure(EPIPE, "send: the kernel accepted no bytes at stream offset " +
                              std::to_string(sent_));
  } else {
    size_t left = static_cast<size_t>(res);
    sent_ += left;
    stats_.bytes_sent += left;
    const size_t cap = iov_.size();
    while (left > 0) {
      iovec& v = iov_[iov_head_ % cap];
      if (left >= v.iov_len) {
        left -= v.iov_len;
        ++iov_head_;
      } else {
        v.iov_base = static_cast<char*>(v.iov_base) + left;
        v.iov_len -= left;
        left = 0;
      }
    }
  }
  pop_zc_slots();
}

void UringChannel::on_notification(uint32_t slot, int res) {
  zc_slots_[slot].notified = true;
  if (zc_report_usage_ && (static_cast<uint32_t>(res) & IORING_NOTIF_USAGE_ZC_COPIED)) {
    ++stats_.zero_copy_copied;
    if (opts_.zero_copy == ZeroCopy::kAuto && zc_state_ == ZcState::kOn) {
      zc_state_ = ZcState::kOffCopied;
    }
  }
  pop_zc_slots();
}

void UringChannel::pop_zc_slots() {
  while (zc_head_ != zc_tail_) {
    const ZcSlot& s = zc_slots_[zc_head_ % kZcSlots];
    if (!s.result || (s.more && !s.notified)) break;
    ++zc_head_;
  }
}

uint64_t UringChannel::released_offset() const {
  return zc_head_ != zc_tail_ ? zc_slots_[zc_head_ % kZcSlots].start : sent_;
}

size_t UringChannel::report() {
  if (reporting_) return 0;
  const uint64_t released = released_offset();
  const size_t cap = records_.size();
  size_t n = 0;
  reporting_ = true;
  struct Reset {
    bool& flag;
    ~Reset() { flag = false; }
  } reset{reporting_};
  while (rec_head_ != rec_tail_ && records_[rec_head_ % cap].end <= released) {
    const uint64_t cookie = records_[rec_head_ % cap].cookie;
    ++rec_head_;
    ++n;
    if (on_send_) on_send_(cookie);
  }
  return n;
}

void UringChannel::kick() {
  if (op_busy_ || failed_ || iov_head_ == iov_tail_) return;
  const size_t cap = iov_.size();
  const size_t start = iov_head_ % cap;
  const size_t avail = std::min<uint64_t>(iov_tail_ - iov_head_, cap - start);
  const size_t max_n = std::min(avail, kIovMax);
  size_t n = 0;
  size_t bytes = 0;
  while (n < max_n && (n == 0 || bytes + iov_[start + n].iov_len <= kMaxOpBytes)) {
    bytes += iov_[start + n].iov_len;
    ++n;
  }

  io_uring_sqe* sqe = get_sqe();
  if (kind_ == Kind::kFile) {
    io_uring_prep_writev(sqe, fd_.get(), &iov_[start], static_cast<unsigned>(n),
                         file_write_off_ + sent_);
    io_uring_sqe_set_data64(sqe, user_data(kTagSend));
  } else {
    op_msg_ = msghdr{};
    op_msg_.msg_iov = &iov_[start];
    op_msg_.msg_iovlen = n;
    const bool zc = zc_state_ == ZcState::kOn && bytes >= opts_.zero_copy_threshold &&
                    zc_tail_ - zc_head_ < kZcSlots;
    if (zc) {
      const uint64_t slot = zc_tail_++ % kZcSlots;
      zc_slots_[slot] = ZcSlot{sent_};
      if (!(n == 1 && prep_fixed_zc(sqe, iov_[start]))) {
        io_uring_prep_sendmsg_zc(sqe, fd_.get(), &op_msg_, kSendFlags);
      }
      if (zc_report_usage_) sqe->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
      io_uring_sqe_set_data64(sqe, user_data(kTagZc, slot));
      ++stats_.zero_copy_submissions;
    } else {
      io_uring_prep_sendmsg(sqe, fd_.get(), &op_msg_, kSendFlags);
      io_uring_sqe_set_data64(sqe, user_data(kTagSend));
    }
  }
  op_busy_ = true;
  op_count_ = static_cast<uint32_t>(n);
  ++stats_.send_submissions;
}

bool UringChannel::prep_fixed_zc(io_uring_sqe* sqe, const iovec& v) {
  const auto* p = static_cast<const char*>(v.iov_base);
  for (const Region& r : regions_) {
    if (r.slots == 0) continue;
    const auto* base = static_cast<const char*>(r.region.addr);
    if (p < base || p + v.iov_len > base + r.region.length) continue;
    const size_t off = static_cast<size_t>(p - base);
    if (off / kFixedChunk != (off + v.iov_len - 1) / kFixedChunk) return false;
    io_uring_prep_send_zc_fixed(sqe, fd_.get(), v.iov_base, v.iov_len, kSendFlags, 0,
                                r.first_slot + static_cast<uint32_t>(off / kFixedChunk));
    ++stats_.fixed_buffer_submissions;
    return true;
  }
  return false;
}

void UringChannel::queue_iovec(const iovec& v) {
  auto* base = static_cast<char*>(v.iov_base);
  size_t len = v.iov_len;
  const size_t cap = iov_.size();
  while (len > 0) {
    size_t take = std::min(len, kMaxOpBytes);
    // Adjacent buffers (consecutive pages) become one iovec, unless the kernel owns the last.
    const uint64_t first_free = iov_head_ + (op_busy_ ? op_count_ : 0);
    bool merged = false;
    if (iov_tail_ > first_free) {
      iovec& last = iov_[(iov_tail_ - 1) % cap];
      if (static_cast<char*>(last.iov_base) + last.iov_len == base &&
          last.iov_len + take <= kMaxOpBytes) {
        last.iov_len += take;
        merged = true;
      }
    }
    if (!merged) {
      if (iov_tail_ - iov_head_ >= cap) {
        progress_until([&] { return iov_tail_ - iov_head_ < cap; }, "send (iovec queue full)");
      }
      iov_[iov_tail_++ % cap] = iovec{base, take};
    }
    queued_end_ += take;
    base += take;
    len -= take;
  }
}

void UringChannel::send(std::span<const iovec> iov, uint64_t cookie) {
  check_usable("send");
  ensure_ring();
  ++stats_.sends;
  const size_t rcap = records_.size();
  if (rec_tail_ - rec_head_ >= rcap) {
    progress_until([&] { return rec_tail_ - rec_head_ < rcap; }, "send (outstanding sends full)");
  }
  for (const iovec& v : iov) queue_iovec(v);
  records_[rec_tail_++ % rcap] = Record{cookie, queued_end_};
  process_cqes();
  kick();
  submit_pending();
  report();
  if (failed_) {
    drain_in_flight();
    rethrow_failure();
  }
}

size_t UringChannel::poll_completions() {
  check_usable("poll_completions");
  if (!ring_live_) return 0;
  ensure_ring();
  process_cqes();
  kick();
  submit_pending();
  size_t n = report();
  if (failed_) {
    drain_in_flight();
    rethrow_failure();
  }
  return n;
}

void UringChannel::wait_all() {
  check_usable("wait_all");
  if (rec_head_ == rec_tail_) return;
  ensure_ring();
  progress_until([&] { return rec_head_ == rec_tail_; }, "wait_all");
}

void UringChannel::recv(std::span<const iovec> iov) {
  check_usable("recv");
  ensure_ring();
  uint64_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  uint64_t got = 0;
  size_t ci = 0;    // next caller iovec
  size_t coff = 0;  // bytes of it already taken
  while (got < total) {
    // Next chunk of the caller's scatter list: merged, at most IOV_MAX entries and 1 GiB.
    size_t n = 0;
    size_t chunk = 0;
    while (ci < iov.size() && chunk < kMaxRecvBytes) {
      auto* p = static_cast<char*>(iov[ci].iov_base) + coff;
      size_t len = std::min(iov[ci].iov_len - coff, kMaxRecvBytes - chunk);
      if (len == 0) {
        ++ci;
        coff = 0;
        continue;
      }
      if (n > 0 && static_cast<char*>(recv_iov_[n - 1].iov_base) + recv_iov_[n - 1].iov_len == p) {
        recv_iov_[n - 1].iov_len += len;
      } else if (n == kIovMax) {
        break;
      } else {
        recv_iov_[n++] = iovec{p, len};
      }
      chunk += len;
      coff += len;
      if (coff == iov[ci].iov_len) {
        ++ci;
        coff = 0;
      }
    }
    size_t first = 0;
    // A blocking recvmsg costs less than the ring's poll-and-retry, but only waiting in the
    // ring keeps our own sends moving (their task work would wait for us, and the peer may wait
    // for their bytes before it sends), so it is used only when no send is in flight or queued.
    const bool syscall = kind_ == Kind::kSocket && !opts_.uring_recv && !op_busy_ &&
                         iov_tail_ == iov_head_;
    while (syscall && first < n) {
      recv_msg_ = msghdr{};
      recv_msg_.msg_iov = &recv_iov_[first];
      recv_msg_.msg_iovlen = n - first;
      ++stats_.recv_submissions;
      const ssize_t r = ::recvmsg(fd_.get(), &recv_msg_, MSG_WAITALL);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        fail(ETIMEDOUT, "recv made no progress for " + std::to_string(opts_.io_timeout.count()) +
                            " ms after " + std::to_string(got) + " of " + std::to_string(total) +
                            " bytes");
      }
      if (r < 0) {
        fail(errno, "recv after " + std::to_string(got) + " of " + std::to_string(total) + " bytes");
      }
      if (r == 0) {
        fail(0, "peer closed the stream after " + std::to_string(got) + " of " +
                    std::to_string(total) + " bytes of a receive");
      }
      size_t left = static_cast<size_t>(r);
      got += left;
      stats_.bytes_received += left;
      advance(recv_iov_, first, left);
    }
    while (first < n) {
      io_uring_sqe* sqe = get_sqe();
      if (kind_ == Kind::kFile) {
        io_uring_prep_readv(sqe, fd_.get(), &recv_iov_[first], static_cast<unsigned>(n - first),
                            file_read_off_);
      } else {
        recv_msg_ = msghdr{};
        recv_msg_.msg_iov = &recv_iov_[first];
        recv_msg_.msg_iovlen = n - first;
        io_uring_prep_recvmsg(sqe, fd_.get(), &recv_msg_, MSG_WAITALL);
      }
      io_uring_sqe_set_data64(sqe, user_data(kTagRecv));
      recv_busy_ = true;
      recv_done_ = false;
      ++stats_.recv_submissions;
      progress_until([&] { return recv_done_; }, "recv");
      const int res = recv_res_;
      if (res < 0) {
        if (res == -EINTR || res == -EAGAIN) continue;
        fail(-res, "recv after " + std::to_string(got) + " of " + std::to_string(total) + " bytes");
      }
      if (res == 0) {
        fail(0, std::string(kind_ == Kind::kFile ? "end of file" : "peer closed the stream") +
                    " after " + std::to_string(got) + " of " + std::to_string(total) +
                    " bytes of a receive");
      }
      const size_t left = static_cast<size_t>(res);
      got += left;
      file_read_off_ += left;
      stats_.bytes_received += left;
      advance(recv_iov_, first, left);
    }
  }
}

// Plain syscalls, not the ring: they work from any thread, and after a failure, when the ring
// has nothing of ours in flight that could take these bytes first.
size_t UringChannel::recv_leftover(void* data, size_t len, std::chrono::milliseconds wait) noexcept {
  if (kind_ != Kind::kSocket || closed_ || recv_busy_) return 0;
  // No fd_mutex_: only the driving thread (this one) releases fd_, and abort() must not wait.
  return read_leftover(fd_.get(), data, len, wait);
}

void UringChannel::drain_in_flight() {
  if (!ring_live_ || !(op_busy_ || recv_busy_)) return;
  // Cancel what still reads or writes caller memory; zero-copy notifications need no wait (the
  // kernel holds its own page references).
  if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_)) {
    io_uring_prep_cancel_fd(sqe, fd_.get(), IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, user_data(kTagCancel));
    ++cancels_in_flight_;
  }
  bool shut = false;
  auto deadline = Clock::now() + kTeardownWait;
  while (op_busy_ || recv_busy_) {
    if (!wait_event(true, deadline) && (op_busy_ || recv_busy_)) {
      if (shut || kind_ != Kind::kSocket) break;
      // Cancellation did not finish the operation: end the connection, which does.
      abort();
      shut = true;
      deadline = Clock::now() + kTeardownWait;
    }
    process_cqes();
  }
  // Anything still in flight belongs to a ring we are about to leave alone: mark it done so the
  // caller's view is consistent; teardown will not reuse it.
  op_busy_ = false;
  recv_busy_ = false;
}

void UringChannel::close() {
  if (closed_) return;
  if (!failed_ && !aborted_.load(std::memory_order_relaxed)) {
    wait_all();
    if (kind_ == Kind::kSocket) {
      ::shutdown(fd_.get(), SHUT_WR);
    } else if (file_writer_ && opts_.file_sync && ::fdatasync(fd_.get()) != 0) {
      fail(errno, "fdatasync");
    }
  }
  teardown();
  closed_ = true;
}

void UringChannel::abort() noexcept {
  std::lock_guard<std::mutex> lock(fd_mutex_);
  aborted_.store(true, std::memory_order_relaxed);
  if (fd_ && kind_ == Kind::kSocket) ::shutdown(fd_.get(), SHUT_RDWR);
}

void UringChannel::teardown() {
  if (ring_live_) {
    drain_in_flight();
    io_uring_queue_exit(&ring_);
    ring_live_ = false;
  }
  std::lock_guard<std::mutex> lock(fd_mutex_);
  fd_.reset();
}

MemoryRegion UringChannel::register_memory(void* addr, size_t len) {
  check_usable("register_memory");
  ensure_ring();
  Region r;
  r.region = MemoryRegion{next_region_id_++, addr, len, kNoFixedBuffer};
  if (kind_ == Kind::kSocket && opts_.fixed_buffers && features().send_zc && len > 0) {
    if (!fixed_table_ && io_uring_register_buffers_sparse(&ring_, kFixedSlots) == 0) {
      fixed_table_ = true;
      fixed_used_.assign(kFixedSlots, false);
      fixed_iov_.assign(kFixedSlots, iovec{nullptr, 0});
    }
    const uint32_t need = static_cast<uint32_t>((len + kFixedChunk - 1) / kFixedChunk);
    for (uint32_t first = 0; fixed_table_ && first + need <= kFixedSlots; ++first) {
      if (std::any_of(fixed_used_.begin() + first, fixed_used_.begin() + first + need,
                      [](bool used) { return used; })) {
        continue;
      }
      std::vector<iovec> chunks;
      for (size_t off = 0; off < len; off += kFixedChunk) {
        chunks.push_back(iovec{static_cast<char*>(addr) + off, std::min(kFixedChunk, len - off)});
      }
      // Pinning can fail (RLIMIT_MEMLOCK without CAP_IPC_LOCK): the region then works unpinned.
      if (io_uring_register_buffers_update_tag(&ring_, first, chunks.data(), nullptr, need) ==
          static_cast<int>(need)) {
        std::fill(fixed_used_.begin() + first, fixed_used_.begin() + first + need, true);
        std::copy(chunks.begin(), chunks.end(), fixed_iov_.begin() + first);
        r.first_slot = first;
        r.slots = need;
        r.region.key = first;
      }
      break;
    }
  }
  regions_.push_back(r);
  return r.region;
}

void UringChannel::deregister_memory(const MemoryRegion& region) {
  auto it = std::find_if(regions_.begin(), regions_.end(),
                         [&](const Region& r) { return r.region.id == region.id; });
  if (it == regions_.end()) {
    throw TransportError(static_cast<int>(index()), peer(), EINVAL,
                         "deregister_memory: region " + std::to_string(region.id) +
                             " is not registered");
  }
  if (it->slots > 0) {
    // A fixed buffer must not vanish under a send in flight.
    if (!failed_ && !closed_) wait_all();
    if (ring_live_) {
      ensure_ring();  // register calls too belong to a single-issuer ring's owner
      std::vector<iovec> empty(it->slots, iovec{nullptr, 0});
      io_uring_register_buffers_update_tag(&ring_, it->first_slot, empty.data(), nullptr,
                                           it->slots);
    }
    std::fill(fixed_used_.begin() + it->first_slot,
              fixed_used_.begin() + it->first_slot + it->slots, false);
    std::fill(fixed_iov_.begin() + it->first_slot,
              fixed_iov_.begin() + it->first_slot + it->slots, iovec{nullptr, 0});
  }
  regions_.erase(it);
}

}  // namespace ferry::transport::uring
