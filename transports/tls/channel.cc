#include "transports/tls/channel.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "transports/tls/handshake.h"

namespace ferry::transport::tls {
namespace {

uint64_t total_length(std::span<const iovec> iov) {
  uint64_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  return total;
}

std::string of_bytes(uint64_t done, uint64_t total) {
  return std::to_string(done) + " of " + std::to_string(total) + " bytes";
}

}  // namespace

TlsChannel::TlsChannel(StreamChannelSpec s)
    : Channel(Identity{s.index, s.count, s.session_id, std::move(s.peer), s.peer_caps}),
      transport_(std::move(s.transport)),
      fd_(std::move(s.fd)),
      ssl_(std::move(s.tls)),
      opts_(s.options),
      description_(describe(ssl_.get())),
      stage_(kStageBytes) {
  if (opts_.io_timeout.count() > 0) {
    const auto ms = opts_.io_timeout.count();
    timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
}

TlsChannel::~TlsChannel() {
  std::lock_guard<std::mutex> lock(fd_mutex_);
  ssl_.reset();
  fd_.reset();
}

std::string TlsChannel::send_path() const {
  return "tls-user: " + description_ + ", OpenSSL SSL_write on blocking " + transport_ +
         " sockets (kernel TLS not used)";
}

void TlsChannel::check_usable(const char* op) {
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

void TlsChannel::fail(int err, const std::string& what) {
  if (!failed_) {
    failed_ = true;
    const bool aborted = aborted_.load(std::memory_order_relaxed);
    fail_errno_ = aborted ? ECONNABORTED : err;
    fail_what_ = aborted ? "channel aborted (" + what + ")" : what;
  }
  throw TransportError(static_cast<int>(index()), peer(), fail_errno_, fail_what_);
}

void TlsChannel::ssl_failed(int ret, const char* op, uint64_t done, uint64_t total) {
  const int saved_errno = errno;
  const int e = SSL_get_error(ssl_.get(), ret);
  const std::string after = " after " + of_bytes(done, total);
  // A blocking socket's SO_*TIMEO expiring comes back as "want read/write".
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    fail(ETIMEDOUT, std::string(op) + " made no progress for " +
                        std::to_string(opts_.io_timeout.count()) + " ms" + after);
  }
  if (e == SSL_ERROR_ZERO_RETURN) fail(0, "peer closed the TLS stream" + after + " of a receive");
  if (e == SSL_ERROR_SYSCALL && saved_errno != 0) {
    fail(saved_errno, std::string(op) + after + ": " + std::strerror(saved_errno));
  }
  fail(EPROTO, std::string(op) + after + ": TLS: " + failure_text(ssl_.get(), e));
}

void TlsChannel::write_all(const uint8_t* p, size_t n, uint64_t* done, uint64_t total) {
  while (n > 0) {
    ERR_clear_error();
    errno = 0;
    size_t written = 0;
    ++stats_.send_submissions;
    const int r = SSL_write_ex(ssl_.get(), p, n, &written);
    if (r != 1) ssl_failed(r, "send", *done, total);
    p += written;
    n -= written;
    *done += written;
    stats_.bytes_sent += written;
  }
}

void TlsChannel::read_all(uint8_t* p, size_t n, uint64_t* done, uint64_t total) {
  while (n > 0) {
    ERR_clear_error();
    errno = 0;
    size_t got = 0;
    ++stats_.recv_submissions;
    const int r = SSL_read_ex(ssl_.get(), p, n, &got);
    if (r != 1) ssl_failed(r, "recv", *done, total);
    p += got;
    n -= got;
    *done += got;
    stats_.bytes_received += got;
  }
}

void TlsChannel::flush_stage(uint64_t* done, uint64_t total) {
  if (staged_ == 0) return;
  const size_t n = std::exchange(staged_, 0);
  write_all(stage_.data(), n, done, total);
}

void TlsChannel::send(std::span<const iovec> iov, uint64_t cookie) {
  check_usable("send");
  ++stats_.sends;
  const uint64_t total = total_length(iov);
  uint64_t done = 0;
  for (const iovec& v : iov) {
    const auto* p = static_cast<const uint8_t*>(v.iov_base);
    if (v.iov_len >= kStageBytes / 4) {  // large: in place, after what is staged before it
      flush_stage(&done, total);
      write_all(p, v.iov_len, &done, total);
      continue;
    }
    if (staged_ + v.iov_len > stage_.size()) flush_stage(&done, total);
    std::memcpy(stage_.data() + staged_, p, v.iov_len);
    staged_ += v.iov_len;
  }
  flush_stage(&done, total);
  // Every byte is encrypted into records the kernel took: the caller's buffers are free.
  if (on_send_) on_send_(cookie);
}

size_t TlsChannel::poll_completions() {
  check_usable("poll_completions");
  return 0;  // send() reports its own completion before it returns
}

void TlsChannel::wait_all() { check_usable("wait_all"); }

void TlsChannel::recv(std::span<const iovec> iov) {
  check_usable("recv");
  const uint64_t total = total_length(iov);
  uint64_t done = 0;
  for (const iovec& v : iov) read_all(static_cast<uint8_t*>(v.iov_base), v.iov_len, &done, total);
}

void TlsChannel::close() {
  if (closed_) return;
  closed_ = true;
  if (!failed_ && !aborted_.load(std::memory_order_relaxed)) {
    ERR_clear_error();
    SSL_shutdown(ssl_.get());  // close_notify; the peer's own is not awaited
    ::shutdown(fd_.get(), SHUT_WR);
  }
  std::lock_guard<std::mutex> lock(fd_mutex_);
  ssl_.reset();
  fd_.reset();
}

void TlsChannel::abort() noexcept {
  std::lock_guard<std::mutex> lock(fd_mutex_);
  aborted_.store(true, std::memory_order_relaxed);
  if (fd_) ::shutdown(fd_.get(), SHUT_RDWR);
}

MemoryRegion TlsChannel::register_memory(void* addr, size_t len) {
  check_usable("register_memory");
  regions_.push_back(next_region_id_);
  return MemoryRegion{next_region_id_++, addr, len, kNoFixedBuffer};
}

void TlsChannel::deregister_memory(const MemoryRegion& region) {
  auto it = std::find(regions_.begin(), regions_.end(), region.id);
  if (it == regions_.end()) {
    throw TransportError(static_cast<int>(index()), peer(), EINVAL,
                         "deregister_memory: region " + std::to_string(region.id) +
                             " is not registered");
  }
  regions_.erase(it);
}

}  // namespace ferry::transport::tls
