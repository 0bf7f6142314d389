// Endpoint: verbs resources, completions and waiting, abort, teardown, memory registration.
#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "transports/rdma/endpoint.h"

namespace ferry::transport::rdma {

constexpr uint64_t kRecvFlag = 1ull << 63;

Endpoint::Endpoint(int channel, std::string peer, const Options& o)
    : channel_(channel), peer_(std::move(peer)), opts_(o) {
  abort_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

void Endpoint::fail(int err, const std::string& what) {
  if (!failed_) {
    failed_ = true;
    fail_errno_ = err;
    fail_what_ = what;
  }
  throw TransportError(channel_, peer_, err, what);
}

void Endpoint::fail_verb(const char* verb, int err, const std::string& what) {
  fail(err, std::string(verb) + (what.empty() ? "" : ": " + what));
}

void Endpoint::create_resources() {
  ibv_context* ctx = id_->verbs;
  if (!ctx) {
    fail(ENODEV, std::string("no RDMA device serves this address; ") + kCreateDeviceHint);
  }
  const uint64_t pin = uint64_t{kRecvDepth + kSendDepth} * kMessageBytes;
  check_memlock(pin, channel_, peer_, "buffers");
  ibv_device_attr attr{};
  if (int e = ibv_query_device(ctx, &attr)) fail_verb("ibv_query_device", e);
  max_sge_ = std::min<uint32_t>(kMaxSge, static_cast<uint32_t>(attr.max_sge));
  if (!(pd_ = ibv_alloc_pd(ctx))) fail_verb("ibv_alloc_pd", errno ? errno : ENOMEM);
  if (!(comp_ = ibv_create_comp_channel(ctx))) fail_verb("ibv_create_comp_channel", errno);
  set_nonblocking(comp_->fd);
  cq_ = ibv_create_cq(ctx, kSendDepth + kRecvDepth + 16, nullptr, comp_, 0);
  if (!cq_) fail_verb("ibv_create_cq", errno ? errno : ENOMEM);
  ibv_qp_init_attr qa{};
  qa.send_cq = cq_;
  qa.recv_cq = cq_;
  qa.qp_type = IBV_QPT_RC;
  qa.cap.max_send_wr = kSendDepth;
  qa.cap.max_recv_wr = kRecvDepth;
  qa.cap.max_send_sge = max_sge_;
  qa.cap.max_recv_sge = 1;
  qa.sq_sig_all = 0;
  if (rdma_create_qp(id_, pd_, &qa) != 0) fail_verb("rdma_create_qp", errno);
  qp_ = id_->qp;
  recv_buf_ = std::make_unique<Buffer>(size_t{kRecvDepth} * kMessageBytes);
  send_buf_ = std::make_unique<Buffer>(size_t{kSendDepth} * kMessageBytes);
  recv_mr_ = ibv_reg_mr(pd_, recv_buf_->data(), recv_buf_->n, kLocalWrite);
  if (!recv_mr_) fail_verb("ibv_reg_mr", errno, memlock_hint(recv_buf_->n));
  send_mr_ = ibv_reg_mr(pd_, send_buf_->data(), send_buf_->n, kLocalWrite);
  if (!send_mr_) fail_verb("ibv_reg_mr", errno, memlock_hint(send_buf_->n));
  pinned_ += pin;
  g_pinned += pin;
  for (uint32_t i = 0; i < kRecvDepth; ++i) post_recv(i);
}

std::string Endpoint::memlock_hint(size_t n) {
  return "registering " + std::to_string(n) + " bytes (check RLIMIT_MEMLOCK: `ulimit -l`)";
}

rdma_conn_param Endpoint::conn_param() {
  rdma_conn_param p{};
  p.initiator_depth = 1;
  p.responder_resources = 1;
  p.retry_count = 7;
  p.rnr_retry_count = 7;  // receiver not ready: retry forever (flow control)
  return p;
}

void Endpoint::post_recv(uint32_t idx) {
  ibv_sge sge{reinterpret_cast<uint64_t>(recv_buf_->data() + size_t{idx} * kMessageBytes),
              static_cast<uint32_t>(kMessageBytes), recv_mr_->lkey};
  ibv_recv_wr wr{};
  wr.wr_id = kRecvFlag | idx;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  ibv_recv_wr* bad = nullptr;
  if (int e = ibv_post_recv(qp_, &wr, &bad)) fail_verb("ibv_post_recv", e);
}

size_t Endpoint::poll_cq() {
  if (!cq_) return 0;
  ibv_wc wcs[32];
  size_t total = 0;
  for (;;) {
    int n = ibv_poll_cq(cq_, 32, wcs);
    if (n < 0) fail_verb("ibv_poll_cq", EIO);
    for (int i = 0; i < n; ++i) on_completion(wcs[i]);
    total += static_cast<size_t>(n);
    if (n < 32) return total;
  }
}

void Endpoint::on_completion(const ibv_wc& wc) {
  const bool is_recv = wc.wr_id & kRecvFlag;
  if (wc.status != IBV_WC_SUCCESS) {
    if (wc.status == IBV_WC_WR_FLUSH_ERR) {
      flushed_ = true;
      if (!is_recv && !flush_error_) flush_error_ = true;
      return;
    }
    if (!error_text_.empty()) return;
    error_text_ = std::string("ibv_poll_cq: ") + (is_recv ? "RECV" : opcode_name(wc.opcode)) +
                  " work request " + std::to_string(wc.wr_id & ~kRecvFlag) +
                  " failed: " + wc_text(wc);
    return;
  }
  if (is_recv) {
    ready_.push_back(Ready{static_cast<uint32_t>(wc.wr_id & ~kRecvFlag), wc.byte_len, 0});
    stats_.recv_submissions++;
  } else {
    completed_ = std::max(completed_, wc.wr_id + 1);
  }
}

void Endpoint::handle_cm_events() {
  if (!ec_) return;
  rdma_cm_event* ev = nullptr;
  while (rdma_get_cm_event(ec_, &ev) == 0) {
    const rdma_cm_event_type t = ev->event;
    rdma_ack_cm_event(ev);
    if (t == RDMA_CM_EVENT_DISCONNECTED || t == RDMA_CM_EVENT_DEVICE_REMOVAL ||
        t == RDMA_CM_EVENT_TIMEWAIT_EXIT) {
      peer_gone_ = true;
      connected_ = false;
      // Flush what is outstanding so the waits below see it.
      if (qp_) {
        ibv_qp_attr a{};
        a.qp_state = IBV_QPS_ERR;
        ibv_modify_qp(qp_, &a, IBV_QP_STATE);
      }
    }
  }
}

void Endpoint::check_errors(const char* op) {
  if (aborted_.load()) fail(ECONNABORTED, std::string(op) + ": aborted");
  if (!error_text_.empty()) fail(peer_gone_ ? ECONNRESET : EIO, error_text_);
}

void Endpoint::wait_progress(const char* op, std::chrono::milliseconds timeout) {
  flush_batch();  // never wait while bytes the peer may be waiting for sit unposted
  handle_cm_events();
  check_errors(op);
  for (int spin = 0; spin < 64; ++spin) {
    if (poll_cq()) return;
  }
  if (int e = ibv_req_notify_cq(cq_, 0)) fail_verb("ibv_req_notify_cq", e);
  if (poll_cq()) return;
  pollfd p[3] = {{comp_->fd, POLLIN, 0}, {abort_fd_, POLLIN, 0}, {ec_ ? ec_->fd : -1, POLLIN, 0}};
  int r;
  do {
    r = ::poll(p, ec_ ? 3 : 2, timeout.count() > 0 ? static_cast<int>(timeout.count()) : -1);
  } while (r < 0 && errno == EINTR);
  if (r < 0) fail_verb("poll", errno);
  if (p[0].revents & POLLIN) {
    ibv_cq* cq = nullptr;
    void* ctx = nullptr;
    if (ibv_get_cq_event(comp_, &cq, &ctx) == 0) ibv_ack_cq_events(cq, 1);
  }
  handle_cm_events();
  check_errors(op);
  if (r == 0) {
    if (poll_cq()) return;
    fail(ETIMEDOUT, std::string(op) + ": no progress for " + std::to_string(timeout.count()) +
                        " ms");
  }
}

void Endpoint::check_usable(const char* op) {
  if (aborted_.load()) fail(ECONNABORTED, std::string(op) + ": aborted");
  if (closed_) {
    throw TransportError(channel_, peer_, EBADF, std::string(op) + " after close()");
  }
  if (failed_) {
    throw TransportError(channel_, peer_, fail_errno_,
                         std::string(op) + " after an earlier error: " + fail_what_);
  }
}

void Endpoint::abort() noexcept {
  aborted_ = true;
  uint64_t one = 1;
  if (abort_fd_ >= 0) (void)!::write(abort_fd_, &one, sizeof one);
  std::lock_guard<std::mutex> lock(id_mutex_);
  if (id_ && connected_) {
    rdma_disconnect(id_);
    connected_ = false;
  }
}

MemoryRegion Endpoint::register_memory(void* addr, size_t len) {
  check_usable("register_memory");
  check_memlock(len, channel_, peer_, "register_memory");
  ibv_mr* mr = ibv_reg_mr(pd_, addr, len, kLocalWrite | kRemoteWriteAccess);
  if (!mr) {
    const int e = errno;
    throw TransportError(channel_, peer_, e,
                         "ibv_reg_mr: registering " + std::to_string(len) +
                             " bytes failed (pinning whole regions; check RLIMIT_MEMLOCK "
                             "with `ulimit -l`)");
  }
  g_pinned += len;
  Region r;
  r.region = MemoryRegion{next_region_id_++, addr, len, mr->rkey};
  r.mr = mr;
  regions_.push_back(r);
  return r.region;
}

void Endpoint::deregister_memory(const MemoryRegion& region) {
  for (auto it = regions_.begin(); it != regions_.end(); ++it) {
    if (it->region.id == region.id && region.id != 0) {
      // Sends may still reference it.
      if (!failed_ && !aborted_.load()) wait_all("deregister_memory");
      ibv_dereg_mr(it->mr);
      g_pinned -= it->region.length;
      regions_.erase(it);
      return;
    }
  }
  throw TransportError(channel_, peer_, EINVAL,
                       "deregister_memory: region " + std::to_string(region.id) +
                           " is not registered with this channel");
}

void Endpoint::teardown() {
  {
    std::lock_guard<std::mutex> lock(id_mutex_);
    if (id_ && connected_) rdma_disconnect(id_);
    connected_ = false;
  }
  if (id_ && id_->qp) rdma_destroy_qp(id_);
  qp_ = nullptr;
  for (auto& r : regions_) {
    ibv_dereg_mr(r.mr);
    g_pinned -= r.region.length;
  }
  regions_.clear();
  if (recv_mr_) ibv_dereg_mr(recv_mr_);
  if (send_mr_) ibv_dereg_mr(send_mr_);
  recv_mr_ = send_mr_ = nullptr;
  g_pinned -= pinned_;
  pinned_ = 0;
  if (cq_) ibv_destroy_cq(cq_);
  cq_ = nullptr;
  if (comp_) ibv_destroy_comp_channel(comp_);
  comp_ = nullptr;
  if (pd_) ibv_dealloc_pd(pd_);
  pd_ = nullptr;
  {
    std::lock_guard<std::mutex> lock(id_mutex_);
    if (id_) rdma_destroy_id(id_);
    id_ = nullptr;
  }
  if (ec_) rdma_destroy_event_channel(ec_);
  ec_ = nullptr;
  if (abort_fd_ >= 0) ::close(abort_fd_);
  abort_fd_ = -1;
}

std::string Endpoint::send_path() const {
  return "rdma RC: SEND/RECV through " + std::to_string(kMessageBytes >> 10) +
         " KiB messages (registered memory sent in place, other memory copied to a bounce "
         "slot), RDMA WRITE for write_remote";
}

}  // namespace ferry::transport::rdma
