// Endpoint, receiving: the byte stream copied out of the pre-posted receive buffers, each buffer
// reposted once drained; and the listener's look at the first message (the hello).
#include <algorithm>
#include <cstring>

#include "transports/rdma/endpoint.h"

namespace ferry::transport::rdma {

void Endpoint::recv(std::span<const iovec> iov, std::chrono::milliseconds timeout, const char* op) {
  flush_batch();  // the peer may answer only what we batched
  uint64_t total = 0;
  for (const auto& v : iov) total += v.iov_len;
  uint64_t got = 0;
  size_t vi = 0, voff = 0;
  while (got < total) {
    if (!ready_.empty()) {
      Ready& r = ready_.front();
      if (r.len == 0) {  // end of stream
        eof_ = true;
        const uint32_t idx = r.idx;
        ready_.pop_front();
        if (!peer_gone_ && !flushed_) post_recv(idx);
        continue;
      }
      const uint8_t* src = recv_buf_->data() + size_t{r.idx} * kMessageBytes + r.off;
      while (r.off < r.len && vi < iov.size()) {
        size_t n = std::min<size_t>(r.len - r.off, iov[vi].iov_len - voff);
        std::memcpy(static_cast<uint8_t*>(iov[vi].iov_base) + voff, src, n);
        src += n;
        r.off += static_cast<uint32_t>(n);
        voff += n;
        got += n;
        if (voff == iov[vi].iov_len) {
          ++vi;
          voff = 0;
        }
      }
      if (r.off == r.len) {
        const uint32_t idx = r.idx;
        ready_.pop_front();
        if (!peer_gone_ && !flushed_) post_recv(idx);
      }
      // Skip empty iovecs.
      while (vi < iov.size() && iov[vi].iov_len == 0) ++vi;
      continue;
    }
    if (eof_) {
      stats_.bytes_received += got;
      throw TransportError(channel_, peer_, 0,
                           std::string(op) + ": end of stream after " + std::to_string(got) +
                               " of " + std::to_string(total) + " bytes");
    }
    if (peer_gone_ || flushed_) {
      poll_cq();
      if (!ready_.empty()) continue;
      stats_.bytes_received += got;
      fail(ECONNRESET, std::string(op) + ": connection to the peer lost after " +
                           std::to_string(got) + " of " + std::to_string(total) + " bytes");
    }
    wait_progress(op, timeout);
    report();
  }
  stats_.bytes_received += got;
}

long Endpoint::take_message(void* out, size_t cap) {
  if (ready_.empty()) return -1;
  Ready r = ready_.front();
  ready_.pop_front();
  std::memcpy(out, recv_buf_->data() + size_t{r.idx} * kMessageBytes, std::min<size_t>(r.len, cap));
  post_recv(r.idx);
  return r.len;
}

}  // namespace ferry::transport::rdma
