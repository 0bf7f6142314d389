#include "transports/plain/channel.h"

#include <limits.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "transports/leftover.h"

namespace ferry::transport::plain {
namespace {

constexpr size_t kIovMax = IOV_MAX;

// Drops `bytes` from the front of the iovecs starting at v[*first].
void advance(std::vector<iovec>& v, size_t* first, size_t bytes) {
  while (bytes > 0) {
    iovec& e = v[*first];
    if (bytes >= e.iov_len) {
      bytes -= e.iov_len;
      ++*first;
    } else {
      e.iov_base = static_cast<char*>(e.iov_base) + bytes;
      e.iov_len -= bytes;
      bytes = 0;
    }
  }
}

uint64_t total_length(std::span<const iovec> iov) {
  uint64_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  return total;
}

std::string of_bytes(uint64_t done, uint64_t total) {
  return std::to_string(done) + " of " + std::to_string(total) + " bytes";
}

}  // namespace

PlainChannel::PlainChannel(StreamChannelSpec s, std::string why)
    : Channel(Identity{s.index, s.count, s.session_id, std::move(s.peer), s.peer_caps}),
      file_(s.file),
      transport_(std::move(s.transport)),
      why_plain_(std::move(why)),
      fd_(std::move(s.fd)),
      opts_(s.options),
      file_writer_(s.file_writer),
      file_write_off_(s.file_offset),
      file_read_off_(s.file_offset),
      scratch_(kIovMax) {
  if (!file_ && opts_.io_timeout.count() > 0) {
    const auto ms = opts_.io_timeout.count();
    timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
}

PlainChannel::~PlainChannel() {
  std::lock_guard<std::mutex> lock(fd_mutex_);
  fd_.reset();
}

Capabilities PlainChannel::capabilities() const { return file_ ? Capabilities{kOneWay} : 0; }

std::string PlainChannel::send_path() const {
  const char* call = file_ ? "pwritev" : "sendmsg";
  return std::string("blocking ") + call + " (" + transport_ + ", " + why_plain_ + ")";
}

void PlainChannel::check_usable(const char* op) {
  if (aborted_.load(std::memory_order_relaxed) && !failed_) {
    failed_ = true;
    fail_errno_ = ECONNABORTED;
    fail_what_ = "channel aborted";
  }
  if (failed_) throw TransportError(static_cast<int>(index()), peer(), fail_errno_, fail_what_);
  if (closed_) {
    throw TransportError(static_cast<int>(index()), peer(), EBADF,
                         std::string(op) + " on a closed channel");
  }
}

void PlainChannel::fail(int err, const std::string& what) {
  if (!failed_) {
    failed_ = true;
    const bool aborted = aborted_.load(std::memory_order_relaxed);
    fail_errno_ = aborted ? ECONNABORTED : err;
    fail_what_ = aborted ? "channel aborted (" + what + ")" : what;
  }
  throw TransportError(static_cast<int>(index()), peer(), fail_errno_, fail_what_);
}

size_t PlainChannel::gather(std::span<const iovec> iov, size_t* next) {
  size_t n = 0;
  while (*next < iov.size() && n < scratch_.size()) {
    const iovec& v = iov[(*next)++];
    if (v.iov_len > 0) scratch_[n++] = v;
  }
  return n;
}

ssize_t PlainChannel::transfer_once(bool sending, size_t first, size_t n) {
  const int cnt = static_cast<int>(n);
  if (file_ && sending) {
    const ssize_t r = ::pwritev(fd_.get(), &scratch_[first], cnt, static_cast<off_t>(file_write_off_));
    if (r > 0) file_write_off_ += static_cast<uint64_t>(r);
    return r;
  }
  if (file_) {
    const ssize_t r = ::preadv(fd_.get(), &scratch_[first], cnt, static_cast<off_t>(file_read_off_));
    if (r > 0) file_read_off_ += static_cast<uint64_t>(r);
    return r;
  }
  msghdr m{};
  m.msg_iov = &scratch_[first];
  m.msg_iovlen = n;
  return sending ? ::sendmsg(fd_.get(), &m, MSG_NOSIGNAL) : ::recvmsg(fd_.get(), &m, MSG_WAITALL);
}

void PlainChannel::transfer_all(bool sending, size_t n, uint64_t* done, uint64_t total) {
  const char* op = sending ? (file_ ? "write" : "send") : "recv";
  size_t first = 0;
  while (first < n) {
    ++(sending ? stats_.send_submissions : stats_.recv_submissions);
    const ssize_t r = transfer_once(sending, first, n - first);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      fail(ETIMEDOUT, std::string(op) + " made no progress for " +
                          std::to_string(opts_.io_timeout.count()) + " ms after " +
                          of_bytes(*done, total));
    }
    if (r < 0) fail(errno, std::string(op) + " after " + of_bytes(*done, total));
    if (r == 0 && sending) {
      fail(EPIPE, std::string(op) + ": the kernel accepted no bytes after " + of_bytes(*done, total));
    }
    if (r == 0) {
      fail(0, std::string(file_ ? "end of file" : "peer closed the stream") + " after " +
                  of_bytes(*done, total) + " of a receive");
    }
    const auto moved = static_cast<size_t>(r);
    *done += moved;
    (sending ? stats_.bytes_sent : stats_.bytes_received) += moved;
    advance(scratch_, &first, moved);
  }
}

void PlainChannel::send(std::span<const iovec> iov, uint64_t cookie) {
  check_usable("send");
  if (file_ && !file_writer_) fail(EBADF, "send on a file opened for reading");
  ++stats_.sends;
  const uint64_t total = total_length(iov);
  uint64_t done = 0;
  size_t next = 0;
  while (next < iov.size()) transfer_all(true, gather(iov, &next), &done, total);
  // The kernel has copied every byte: the caller's buffers are free.
  if (on_send_) on_send_(cookie);
}

size_t PlainChannel::poll_completions() {
  check_usable("poll_completions");
  return 0;  // send() reports its own completion before it returns
}

void PlainChannel::wait_all() { check_usable("wait_all"); }

void PlainChannel::recv(std::span<const iovec> iov) {
  check_usable("recv");
  const uint64_t total = total_length(iov);
  uint64_t done = 0;
  size_t next = 0;
  while (next < iov.size()) transfer_all(false, gather(iov, &next), &done, total);
}

size_t PlainChannel::recv_leftover(void* data, size_t len, std::chrono::milliseconds wait) noexcept {
  if (file_ || closed_) return 0;
  // No fd_mutex_: only the driving thread (this one) releases fd_, and abort() must not wait.
  return read_leftover(fd_.get(), data, len, wait);
}

void PlainChannel::close() {
  if (closed_) return;
  closed_ = true;
  const bool orderly = !failed_ && !aborted_.load(std::memory_order_relaxed);
  int sync_err = 0;
  if (orderly && !file_) ::shutdown(fd_.get(), SHUT_WR);
  if (orderly && file_ && file_writer_ && opts_.file_sync && ::fdatasync(fd_.get()) != 0) {
    sync_err = errno;
  }
  {
    std::lock_guard<std::mutex> lock(fd_mutex_);
    fd_.reset();
  }
  if (sync_err != 0) fail(sync_err, "fdatasync");
}

void PlainChannel::abort() noexcept {
  std::lock_guard<std::mutex> lock(fd_mutex_);
  aborted_.store(true, std::memory_order_relaxed);
  if (fd_ && !file_) ::shutdown(fd_.get(), SHUT_RDWR);
}

MemoryRegion PlainChannel::register_memory(void* addr, size_t len) {
  check_usable("register_memory");
  regions_.push_back(next_region_id_);
  return MemoryRegion{next_region_id_++, addr, len, kNoFixedBuffer};
}

void PlainChannel::deregister_memory(const MemoryRegion& region) {
  auto it = std::find(regions_.begin(), regions_.end(), region.id);
  if (it == regions_.end()) {
    throw TransportError(static_cast<int>(index()), peer(), EINVAL,
                         "deregister_memory: region " + std::to_string(region.id) +
                             " is not registered");
  }
  regions_.erase(it);
}

}  // namespace ferry::transport::plain
