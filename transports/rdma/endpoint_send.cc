// Endpoint, sending: the send queue, small-send batching, gather posting (registered memory in
// place, the rest through a bounce slot), RDMA WRITE, completions reported in call order, close.
#include <algorithm>
#include <cstring>

#include "transports/rdma/endpoint.h"

namespace ferry::transport::rdma {
namespace {

constexpr size_t kMaxWriteWr = 1 << 20;  // bytes per RDMA WRITE work request

}  // namespace

void Endpoint::ensure_sq_space(const char* op) {
  while (posted_ - completed_ >= kSendDepth) {
    if (peer_gone_ || flush_error_) lost(op);
    wait_progress(op, opts_.io_timeout);
    report();
  }
}

void Endpoint::lost(const char* op) {
  poll_cq();
  check_errors(op);
  fail(ECONNRESET, std::string(op) + ": connection to the peer lost (" +
                       (peer_gone_ ? "RDMA_CM_EVENT_DISCONNECTED" : "work requests flushed") +
                       ") with " + std::to_string(posted_ - completed_) +
                       " work requests outstanding");
}

bool Endpoint::try_batch(std::span<const iovec> iov, uint64_t bytes, uint64_t cookie,
                         const char* op) {
  if (bytes == 0 || bytes > kBatchMax) return false;
  if (batch_open_ && batch_bytes_ + bytes > kMessageBytes) flush_batch();
  if (!batch_open_) {
    if (posted_ == completed_) return false;  // idle: post now
    ensure_sq_space(op);  // reserves the slot of work request posted_
    if (posted_ == completed_) return false;
    batch_open_ = true;
    batch_bytes_ = 0;
  }
  uint8_t* slot = send_buf_->data() + (posted_ % kSendDepth) * kMessageBytes;
  for (const auto& v : iov) {
    if (v.iov_len == 0) continue;
    std::memcpy(slot + batch_bytes_, v.iov_base, v.iov_len);
    batch_bytes_ += v.iov_len;
  }
  records_.push_back(Record{cookie, posted_ + 1});
  if (batch_bytes_ + kBatchMax > kMessageBytes) flush_batch();
  return true;
}

void Endpoint::flush_batch() {
  if (!batch_open_) return;
  batch_open_ = false;
  Builder b;
  b.slot = send_buf_->data() + (posted_ % kSendDepth) * kMessageBytes;
  b.sge[0] = ibv_sge{reinterpret_cast<uint64_t>(b.slot), static_cast<uint32_t>(batch_bytes_),
                     send_mr_->lkey};
  b.n = 1;
  b.bytes = b.bounce = batch_bytes_;
  batch_bytes_ = 0;
  post_wr(b, false, 0, 0, true);
}

void Endpoint::post_gather(std::span<const iovec> iov, bool write, uint64_t raddr, uint32_t rkey,
                           const char* op) {
  flush_batch();  // in order: what was batched goes first
  const size_t wr_limit = write ? kMaxWriteWr : kMessageBytes;
  Builder b;
  bool started = false;
  auto start = [&] {
    ensure_sq_space(op);
    b.n = 0;
    b.bytes = 0;
    b.bounce = 0;
    b.slot = send_buf_->data() + (posted_ % kSendDepth) * kMessageBytes;
    started = true;
  };
  auto flush = [&](bool last) {
    post_wr(b, write, raddr, rkey, last);
    raddr += b.bytes;
    started = false;
  };
  for (size_t i = 0; i < iov.size(); ++i) {
    const uint8_t* p = static_cast<const uint8_t*>(iov[i].iov_base);
    size_t left = iov[i].iov_len;
    while (left > 0) {
      if (!started) start();
      const ibv_mr* mr = find_mr(p, left);
      size_t room = wr_limit - b.bytes;
      if (!mr) room = std::min(room, kMessageBytes - b.bounce);
      size_t take = std::min(left, room);
      uint64_t addr;
      uint32_t lkey;
      if (mr) {
        addr = reinterpret_cast<uint64_t>(p);
        lkey = mr->lkey;
      } else {
        std::memcpy(b.slot + b.bounce, p, take);
        addr = reinterpret_cast<uint64_t>(b.slot + b.bounce);
        lkey = send_mr_->lkey;
        b.bounce += take;
      }
      if (b.n > 0 && b.sge[b.n - 1].lkey == lkey &&
          b.sge[b.n - 1].addr + b.sge[b.n - 1].length == addr) {
        b.sge[b.n - 1].length += static_cast<uint32_t>(take);
      } else {
        b.sge[b.n++] = ibv_sge{addr, static_cast<uint32_t>(take), lkey};
      }
      b.bytes += take;
      p += take;
      left -= take;
      const bool full = b.bytes == wr_limit || b.n == max_sge_ ||
                        (b.bounce == kMessageBytes);
      if (full) {
        bool more = left > 0;
        for (size_t j = i + 1; !more && j < iov.size(); ++j) more = iov[j].iov_len > 0;
        flush(!more);
      }
    }
  }
  if (started) flush(true);
}

void Endpoint::post_wr(Builder& b, bool write, uint64_t raddr, uint32_t rkey, bool last) {
  ibv_send_wr wr{};
  wr.wr_id = posted_;
  wr.sg_list = b.n ? b.sge : nullptr;
  wr.num_sge = static_cast<int>(b.n);
  wr.opcode = write ? IBV_WR_RDMA_WRITE : IBV_WR_SEND;
  ++since_signal_;
  if (last || since_signal_ >= kSignalEvery) {
    wr.send_flags = IBV_SEND_SIGNALED;
    since_signal_ = 0;
  }
  if (write) {
    wr.wr.rdma.remote_addr = raddr;
    wr.wr.rdma.rkey = rkey;
  }
  ibv_send_wr* bad = nullptr;
  if (int e = ibv_post_send(qp_, &wr, &bad)) {
    fail_verb("ibv_post_send", e, write ? "RDMA_WRITE" : "SEND");
  }
  ++posted_;
  stats_.send_submissions++;
  if (b.bounce < b.bytes) stats_.zero_copy_submissions++;
  if (write) stats_.fixed_buffer_submissions += 0;
}

const ibv_mr* Endpoint::find_mr(const uint8_t* p, size_t len) const {
  const auto a = reinterpret_cast<uintptr_t>(p);
  for (const auto& r : regions_) {
    const auto base = reinterpret_cast<uintptr_t>(r.region.addr);
    if (a >= base && a < base + r.region.length) {
      // Only the part inside the region; the caller takes at most what fits.
      return a + len <= base + r.region.length ? r.mr : nullptr;
    }
  }
  return nullptr;
}

void Endpoint::send(std::span<const iovec> iov, uint64_t cookie, const char* op) {
  while (records_.size() >= std::max<uint32_t>(1, opts_.max_outstanding_sends)) {
    if (peer_gone_ || flush_error_) lost(op);
    wait_progress(op, opts_.io_timeout);
    report();
  }
  uint64_t bytes = 0;
  for (const auto& v : iov) bytes += v.iov_len;
  if (!try_batch(iov, bytes, cookie, op)) {
    post_gather(iov, false, 0, 0, op);
    records_.push_back(Record{cookie, posted_});
  }
  stats_.sends++;
  stats_.bytes_sent += bytes;
  report();
}

void Endpoint::write_remote(std::span<const iovec> local, const RemoteRegion& remote,
                            uint64_t offset, uint64_t cookie) {
  uint64_t bytes = 0;
  for (const auto& v : local) bytes += v.iov_len;
  // The peer's advertisement, then the request against it: nothing out of range is posted.
  if (remote.key > 0xFFFFFFFFull) {
    throw TransportError(channel_, peer_, EINVAL,
                         "write_remote: remote key " + std::to_string(remote.key) +
                             " is not an rkey (more than 32 bits)");
  }
  if (remote.addr + remote.length < remote.addr) {
    throw TransportError(channel_, peer_, EINVAL,
                         "write_remote: remote region at " + std::to_string(remote.addr) +
                             " of " + std::to_string(remote.length) +
                             " bytes wraps the address space");
  }
  if (offset > remote.length || bytes > remote.length - offset) {
    throw TransportError(channel_, peer_, EINVAL,
                         "write_remote: " + std::to_string(bytes) + " bytes at offset " +
                             std::to_string(offset) + " do not fit the peer's region of " +
                             std::to_string(remote.length) + " bytes");
  }
  while (records_.size() >= std::max<uint32_t>(1, opts_.max_outstanding_sends)) {
    if (peer_gone_ || flush_error_) lost("write_remote");
    wait_progress("write_remote", opts_.io_timeout);
    report();
  }
  post_gather(local, true, remote.addr + offset, static_cast<uint32_t>(remote.key),
              "write_remote");
  records_.push_back(Record{cookie, posted_});
  stats_.sends++;
  stats_.bytes_sent += bytes;
  report();
}

size_t Endpoint::report() {
  size_t n = 0;
  while (!records_.empty() && records_.front().end <= completed_) {
    const uint64_t cookie = records_.front().cookie;
    records_.pop_front();
    ++n;
    if (callback_ && *callback_) (*callback_)(cookie);
  }
  return n;
}

size_t Endpoint::poll_completions() {
  if (failed_ || aborted_.load()) return 0;
  flush_batch();
  poll_cq();
  handle_cm_events();
  check_errors("poll_completions");
  return report();
}

void Endpoint::wait_all(const char* op) {
  flush_batch();
  while (completed_ < posted_ || !records_.empty()) {
    poll_cq();
    report();
    if (completed_ >= posted_ && records_.empty()) break;
    if (peer_gone_ || flush_error_) lost(op);
    wait_progress(op, opts_.io_timeout);
  }
  report();
}

void Endpoint::close() {
  if (closed_) return;
  if (failed_ || aborted_.load() || peer_gone_) {
    closed_ = true;
    return;
  }
  wait_all("close");
  // End of stream: a zero-length SEND. Every byte before it was delivered (the wait above);
  // a peer that finished and disconnected first has nothing left to learn from it.
  Builder b;
  ensure_sq_space("close");
  post_wr(b, false, 0, 0, true);
  try {
    wait_all("close");
  } catch (const TransportError&) {
    if (aborted_.load()) throw;  // only the end-of-stream marker was outstanding
  }
  closed_ = true;
}

}  // namespace ferry::transport::rdma
