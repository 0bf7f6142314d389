#include "transports/rdma/rdma_transport.h"

#include <fcntl.h>
#include <infiniband/verbs.h>
#include <netdb.h>
#include <poll.h>
#include <rdma/rdma_cma.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "transports/cancel_event.h"
#include "transports/handshake.h"

namespace ferry::transport::rdma {
namespace {

// ibv_reg_mr is a macro that masks `access` with another enum's value; passing plain ints keeps
// clang's -Wdeprecated-enum-enum-conversion quiet (the fuzz build compiles this with clang).
constexpr int kLocalWrite = IBV_ACCESS_LOCAL_WRITE;
constexpr int kRemoteWriteAccess = IBV_ACCESS_REMOTE_WRITE;

namespace hs = handshake;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kRecvFlag = 1ull << 63;
constexpr Capabilities kCaps = kRemoteWrite | kZeroCopySend;
constexpr uint32_t kMaxSge = 16;
constexpr size_t kMaxWriteWr = 1 << 20;  // bytes per RDMA WRITE work request

std::atomic<uint64_t> g_pinned{0};  // bytes this process registered through this transport

std::string wc_text(const ibv_wc& wc) {
  std::string hint;
  if (wc.status == IBV_WC_REM_ACCESS_ERR || wc.status == IBV_WC_RETRY_EXC_ERR ||
      wc.status == IBV_WC_REM_INV_REQ_ERR || wc.status == IBV_WC_REM_OP_ERR) {
    hint = "; the peer is gone (process ended, memory deregistered) or refused the request";
  }
  return std::string(ibv_wc_status_str(wc.status)) + " (status " + std::to_string(wc.status) +
         ", vendor error " + std::to_string(wc.vendor_err) + ")" + hint;
}

const char* opcode_name(ibv_wc_opcode op) {
  switch (op) {
    case IBV_WC_SEND: return "SEND";
    case IBV_WC_RDMA_WRITE: return "RDMA_WRITE";
    case IBV_WC_RECV: return "RECV";
    default: return "work request";
  }
}

int ms_until(Clock::time_point t) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(t - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 1 << 30));
}

// Throws ENOMEM with what to do when pinning `more` bytes would pass RLIMIT_MEMLOCK.
void check_memlock(uint64_t more, int channel, const std::string& peer, const char* what) {
  if (geteuid() == 0) return;  // CAP_IPC_LOCK: the kernel does not count against the limit
  rlimit rl{};
  if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return;
  const uint64_t need = g_pinned.load() + more;
  if (need <= rl.rlim_cur) return;
  if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_MEMLOCK, &raised) == 0) return;
  }
  throw TransportError(
      channel, peer, ENOMEM,
      std::string(what) + ": RLIMIT_MEMLOCK is " + std::to_string(rl.rlim_cur >> 10) +
          " KiB (hard " +
          (rl.rlim_max == RLIM_INFINITY ? std::string("unlimited")
                                        : std::to_string(rl.rlim_max >> 10)) +
          " KiB) but the rdma transport needs " + std::to_string(need >> 10) +
          " KiB pinned: raise it (`ulimit -l unlimited`, LimitMEMLOCK=infinity in a systemd "
          "unit, or memlock in /etc/security/limits.conf)");
}

void set_nonblocking(int fd) {
  int fl = ::fcntl(fd, F_GETFL);
  if (fl >= 0) ::fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

// Page-aligned, zeroed buffer.
struct Buffer {
  void* p = nullptr;
  size_t n = 0;
  explicit Buffer(size_t bytes) : n(bytes) {
    p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
  }
  ~Buffer() {
    if (p) ::munmap(p, n);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  uint8_t* data() const { return static_cast<uint8_t*>(p); }
};

std::string endpoint_of(const sockaddr* sa) {
  char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
  if (!sa) return "?";
  socklen_t len = sa->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  ::getnameinfo(sa, len, host, sizeof host, port, sizeof port, NI_NUMERICHOST | NI_NUMERICSERV);
  std::string h = host;
  if (h.find(':') != std::string::npos) h = "[" + h + "]";
  return "rdma:" + h + ":" + port;
}

struct AddrInfo {
  addrinfo* ai = nullptr;
  ~AddrInfo() {
    if (ai) ::freeaddrinfo(ai);
  }
};

AddrInfo resolve(const Uri& uri, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  AddrInfo r;
  const std::string port = std::to_string(uri.port);
  int e = ::getaddrinfo(uri.host.empty() ? nullptr : uri.host.c_str(), port.c_str(), &hints, &r.ai);
  if (e != 0) {
    throw TransportError(-1, uri.to_string(), 0,
                         std::string("cannot resolve '") + uri.host + "': " + gai_strerror(e));
  }
  return r;
}

// One RC connection and everything it owns. The Channel is a thin shell around it; the listener
// and connect() drive it through the handshake before the channel exists.
class Endpoint {
 public:
  Endpoint(int channel, std::string peer, const Options& o)
      : channel_(channel), peer_(std::move(peer)), opts_(o) {
    abort_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  }
  ~Endpoint() { teardown(); }
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  int channel_;
  std::string peer_;
  Options opts_;
  Channel::SendCallback* callback_ = nullptr;

  rdma_event_channel* ec_ = nullptr;  // owned; null while the listener's channel delivers events
  rdma_cm_id* id_ = nullptr;
  bool connected_ = false;
  ChannelStats stats_;

  [[noreturn]] void fail(int err, const std::string& what) {
    if (!failed_) {
      failed_ = true;
      fail_errno_ = err;
      fail_what_ = what;
    }
    throw TransportError(channel_, peer_, err, what);
  }
  [[noreturn]] void fail_verb(const char* verb, int err, const std::string& what = "") {
    fail(err, std::string(verb) + (what.empty() ? "" : ": " + what));
  }

  // Verbs resources, QP and pre-posted receives for id_ (address and route resolved, or a
  // connect request).
  void create_resources() {
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

  std::string memlock_hint(size_t n) {
    return "registering " + std::to_string(n) + " bytes (check RLIMIT_MEMLOCK: `ulimit -l`)";
  }

  static rdma_conn_param conn_param() {
    rdma_conn_param p{};
    p.initiator_depth = 1;
    p.responder_resources = 1;
    p.retry_count = 7;
    p.rnr_retry_count = 7;  // receiver not ready: retry forever (flow control)
    return p;
  }

  void post_recv(uint32_t idx) {
    ibv_sge sge{reinterpret_cast<uint64_t>(recv_buf_->data() + size_t{idx} * kMessageBytes),
                static_cast<uint32_t>(kMessageBytes), recv_mr_->lkey};
    ibv_recv_wr wr{};
    wr.wr_id = kRecvFlag | idx;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    ibv_recv_wr* bad = nullptr;
    if (int e = ibv_post_recv(qp_, &wr, &bad)) fail_verb("ibv_post_recv", e);
  }

  // ---- completions and waiting -----------------------------------------------------------

  // Polls the CQ without blocking; returns how many completions were taken.
  size_t poll_cq() {
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

  void on_completion(const ibv_wc& wc) {
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

  void handle_cm_events() {
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

  void check_errors(const char* op) {
    if (aborted_.load()) fail(ECONNABORTED, std::string(op) + ": aborted");
    if (!error_text_.empty()) fail(peer_gone_ ? ECONNRESET : EIO, error_text_);
  }

  // Waits for a completion, a connection event or abort(); `timeout` 0 = forever. Throws on
  // abort and when the wait passes the timeout with nothing at all happening.
  void wait_progress(const char* op, std::chrono::milliseconds timeout) {
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

  // ---- sending ----------------------------------------------------------------------------

  void ensure_sq_space(const char* op) {
    while (posted_ - completed_ >= kSendDepth) {
      if (peer_gone_ || flush_error_) lost(op);
      wait_progress(op, opts_.io_timeout);
      report();
    }
  }

  [[noreturn]] void lost(const char* op) {
    poll_cq();
    check_errors(op);
    fail(ECONNRESET, std::string(op) + ": connection to the peer lost (" +
                         (peer_gone_ ? "RDMA_CM_EVENT_DISCONNECTED" : "work requests flushed") +
                         ") with " + std::to_string(posted_ - completed_) +
                         " work requests outstanding");
  }

  struct Builder {
    ibv_sge sge[kMaxSge];
    uint32_t n = 0;
    size_t bytes = 0;
    size_t bounce = 0;  // bytes used in this WR's bounce slot
    uint8_t* slot = nullptr;
  };

  // Posts iov as SENDs (raddr == 0 and rkey unused) or RDMA WRITEs at raddr. The last WR is
  // signalled. Returns after every WR is posted.
  // ---- small-send batching -------------------------------------------------------------------
  // A small send() while earlier work requests are still in flight is copied into the bounce
  // slot of the next work request and not posted yet; following small sends join it until the
  // slot is nearly full, anything else is posted, or the caller waits, polls, receives or
  // closes. One SEND (one RECV at the peer, one completion) then carries many messages. A
  // small send on an idle queue pair is posted at once, so a lone message is never delayed.
  static constexpr size_t kBatchMax = 4096;  // sends up to this many bytes may be batched

  bool try_batch(std::span<const iovec> iov, uint64_t bytes, uint64_t cookie, const char* op) {
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

  void flush_batch() {
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

  void post_gather(std::span<const iovec> iov, bool write, uint64_t raddr, uint32_t rkey,
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

  void post_wr(Builder& b, bool write, uint64_t raddr, uint32_t rkey, bool last) {
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

  const ibv_mr* find_mr(const uint8_t* p, size_t len) const {
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

  void check_usable(const char* op) {
    if (aborted_.load()) fail(ECONNABORTED, std::string(op) + ": aborted");
    if (closed_) {
      throw TransportError(channel_, peer_, EBADF, std::string(op) + " after close()");
    }
    if (failed_) {
      throw TransportError(channel_, peer_, fail_errno_,
                           std::string(op) + " after an earlier error: " + fail_what_);
    }
  }

  void send(std::span<const iovec> iov, uint64_t cookie, const char* op) {
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

  void write_remote(std::span<const iovec> local, const RemoteRegion& remote, uint64_t offset,
                    uint64_t cookie) {
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

  size_t report() {
    size_t n = 0;
    while (!records_.empty() && records_.front().end <= completed_) {
      const uint64_t cookie = records_.front().cookie;
      records_.pop_front();
      ++n;
      if (callback_ && *callback_) (*callback_)(cookie);
    }
    return n;
  }

  size_t poll_completions() {
    if (failed_ || aborted_.load()) return 0;
    flush_batch();
    poll_cq();
    handle_cm_events();
    check_errors("poll_completions");
    return report();
  }

  void wait_all(const char* op) {
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

  // ---- receiving --------------------------------------------------------------------------

  // Copies exactly the total of iov. deadline_ms: per wait, 0 = forever.
  void recv(std::span<const iovec> iov, std::chrono::milliseconds timeout, const char* op) {
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

  // ---- close / abort / teardown -------------------------------------------------------------

  void close() {
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

  void abort() noexcept {
    aborted_ = true;
    uint64_t one = 1;
    if (abort_fd_ >= 0) (void)!::write(abort_fd_, &one, sizeof one);
    std::lock_guard<std::mutex> lock(id_mutex_);
    if (id_ && connected_) {
      rdma_disconnect(id_);
      connected_ = false;
    }
  }

  MemoryRegion register_memory(void* addr, size_t len) {
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

  void deregister_memory(const MemoryRegion& region) {
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

  void teardown() {
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

  // The first complete message, if one arrived (listener: the hello). Returns its length or -1.
  long take_message(void* out, size_t cap) {
    if (ready_.empty()) return -1;
    Ready r = ready_.front();
    ready_.pop_front();
    std::memcpy(out, recv_buf_->data() + size_t{r.idx} * kMessageBytes, std::min<size_t>(r.len, cap));
    post_recv(r.idx);
    return r.len;
  }

  bool has_error() const { return !error_text_.empty() || flushed_; }

  std::string send_path() const {
    return "rdma RC: SEND/RECV through " + std::to_string(kMessageBytes >> 10) +
           " KiB messages (registered memory sent in place, other memory copied to a bounce "
           "slot), RDMA WRITE for write_remote";
  }

  bool failed_ = false;
  bool closed_ = false;
  std::atomic<bool> aborted_{false};

 private:
  struct Record {
    uint64_t cookie;
    uint64_t end;  // complete once completed_ >= end
  };
  struct Ready {
    uint32_t idx;
    uint32_t len;
    uint32_t off;
  };
  struct Region {
    MemoryRegion region;
    ibv_mr* mr = nullptr;
  };

  int fail_errno_ = 0;
  std::string fail_what_;
  std::string error_text_;  // first failed completion
  bool peer_gone_ = false;
  bool flushed_ = false;
  bool flush_error_ = false;
  bool eof_ = false;

  int abort_fd_ = -1;
  std::mutex id_mutex_;
  ibv_pd* pd_ = nullptr;
  ibv_comp_channel* comp_ = nullptr;
  ibv_cq* cq_ = nullptr;
  ibv_qp* qp_ = nullptr;
  uint32_t max_sge_ = 1;
  std::unique_ptr<Buffer> recv_buf_, send_buf_;
  ibv_mr* recv_mr_ = nullptr;
  ibv_mr* send_mr_ = nullptr;
  uint64_t pinned_ = 0;

  uint64_t posted_ = 0;     // work requests posted
  uint64_t completed_ = 0;  // every work request below this completed
  uint32_t since_signal_ = 0;
  bool batch_open_ = false;  // small sends copied into slot posted_ % kSendDepth, not posted
  size_t batch_bytes_ = 0;
  std::deque<Record> records_;
  std::deque<Ready> ready_;
  std::vector<Region> regions_;
  uint32_t next_region_id_ = 1;
};

class RdmaChannel final : public Channel {
 public:
  RdmaChannel(std::unique_ptr<Endpoint> ep, Identity id) : Channel(std::move(id)), ep_(std::move(ep)) {
    ep_->channel_ = static_cast<int>(index());
    ep_->callback_ = &on_send_;
    ep_->stats_ = ChannelStats{};  // the handshake is not the caller's traffic
  }
  ~RdmaChannel() override = default;

  static ChannelPtr make(std::unique_ptr<Endpoint> ep, const hs::Hello& local,
                         const hs::Hello& peer) {
    Identity id;
    id.index = local.index;
    id.count = local.count;
    id.session_id = local.session_id;
    id.peer = ep->peer_;
    id.peer_caps = peer.capabilities;
    return std::make_unique<RdmaChannel>(std::move(ep), std::move(id));
  }

  Capabilities capabilities() const override { return kCaps; }
  ChannelStats stats() const override { return ep_->stats_; }
  std::string send_path() const override { return ep_->send_path(); }

  void send(std::span<const iovec> iov, uint64_t cookie) override {
    ep_->check_usable("send");
    ep_->send(iov, cookie, "send");
  }
  size_t poll_completions() override { return ep_->poll_completions(); }
  void wait_all() override {
    ep_->check_usable("wait_all");
    ep_->wait_all("wait_all");
  }
  void recv(std::span<const iovec> iov) override {
    ep_->check_usable("recv");
    ep_->recv(iov, ep_->opts_.io_timeout, "recv");
  }
  void close() override { ep_->close(); }
  void abort() noexcept override { ep_->abort(); }
  MemoryRegion register_memory(void* addr, size_t len) override {
    return ep_->register_memory(addr, len);
  }
  void deregister_memory(const MemoryRegion& region) override { ep_->deregister_memory(region); }
  void write_remote(std::span<const iovec> local, const RemoteRegion& remote, uint64_t offset,
                    uint64_t cookie) override {
    ep_->check_usable("write_remote");
    ep_->write_remote(local, remote, offset, cookie);
  }

 private:
  std::unique_ptr<Endpoint> ep_;
};

ChannelPtr make_channel(std::unique_ptr<Endpoint> ep, const hs::Hello& local,
                        const hs::Hello& peer) {
  return RdmaChannel::make(std::move(ep), local, peer);
}

const char* event_name(rdma_cm_event_type t) { return rdma_event_str(t); }

// Waits on ec (blocking with poll) for the next event of id; returns its type and status.
rdma_cm_event_type wait_event(rdma_event_channel* ec, Clock::time_point deadline, int* status) {
  for (;;) {
    rdma_cm_event* ev = nullptr;
    if (rdma_get_cm_event(ec, &ev) == 0) {
      const rdma_cm_event_type t = ev->event;
      *status = ev->status;
      rdma_ack_cm_event(ev);
      return t;
    }
    if (errno != EAGAIN) return RDMA_CM_EVENT_CONNECT_ERROR;
    pollfd p{ec->fd, POLLIN, 0};
    int r = ::poll(&p, 1, ms_until(deadline));
    if (r == 0) {
      *status = ETIMEDOUT;
      return static_cast<rdma_cm_event_type>(-1);
    }
  }
}

struct Refused {
  int err;
  std::string what;
  bool retry;
};

// One attempt at channel i: resolve, connect, hello. Returns the endpoint ready for a channel.
std::unique_ptr<Endpoint> connect_once(const Uri& uri, const Options& o, uint32_t i,
                                       uint64_t session, Clock::time_point deadline,
                                       hs::Hello* peer_hello, Refused* refused) {
  const int idx = static_cast<int>(i);
  auto ep = std::make_unique<Endpoint>(idx, uri.to_string(), o);
  ep->ec_ = rdma_create_event_channel();
  if (!ep->ec_) {
    throw TransportError(idx, uri.to_string(), errno,
                         std::string("rdma_create_event_channel (no rdma_cm device?); ") +
                             kCreateDeviceHint);
  }
  set_nonblocking(ep->ec_->fd);
  if (rdma_create_id(ep->ec_, &ep->id_, nullptr, RDMA_PS_TCP) != 0) {
    throw TransportError(idx, uri.to_string(), errno, "rdma_create_id");
  }
  AddrInfo ai = resolve(uri, false);
  const int step_ms = std::max(100, std::min(2000, ms_until(deadline)));
  if (rdma_resolve_addr(ep->id_, nullptr, ai.ai->ai_addr, step_ms) != 0) {
    throw TransportError(idx, uri.to_string(), errno, "rdma_resolve_addr");
  }
  int st = 0;
  rdma_cm_event_type t = wait_event(ep->ec_, deadline, &st);
  if (t != RDMA_CM_EVENT_ADDR_RESOLVED) {
    std::string what = std::string("rdma_resolve_addr: ") +
                       (static_cast<int>(t) == -1 ? "timed out" : event_name(t)) +
                       " (is there an RDMA device on the route to " + uri.host + "? " +
                       kCreateDeviceHint + ")";
    // The kernel gives up on one neighbour resolution (ARP) after step_ms; a slow first ARP
    // (seen under emulation) is worth another attempt while the connect budget lasts.
    const bool arp_timeout =
        t == RDMA_CM_EVENT_ADDR_ERROR && (st == -ETIMEDOUT || st == ETIMEDOUT);
    if (arp_timeout || static_cast<int>(t) == -1) {  // -1: our connect budget ran out
      refused->retry = arp_timeout;
      refused->err = ETIMEDOUT;
      refused->what = std::move(what);
      return nullptr;
    }
    throw TransportError(idx, uri.to_string(), st < 0 ? -st : st, what);
  }
  if (rdma_resolve_route(ep->id_, step_ms) != 0) {
    throw TransportError(idx, uri.to_string(), errno, "rdma_resolve_route");
  }
  t = wait_event(ep->ec_, deadline, &st);
  if (static_cast<int>(t) == -1) {  // the connect budget ran out: the caller reports it
    refused->err = ETIMEDOUT;
    refused->what = "rdma_resolve_route: timed out";
    return nullptr;
  }
  if (t != RDMA_CM_EVENT_ROUTE_RESOLVED) {
    throw TransportError(idx, uri.to_string(), st < 0 ? -st : st,
                         std::string("rdma_resolve_route: ") + event_name(t));
  }
  ep->peer_ = endpoint_of(rdma_get_peer_addr(ep->id_));
  ep->create_resources();
  rdma_conn_param p = Endpoint::conn_param();
  if (rdma_connect(ep->id_, &p) != 0) ep->fail_verb("rdma_connect", errno);
  t = wait_event(ep->ec_, deadline, &st);
  if (t != RDMA_CM_EVENT_ESTABLISHED) {
    refused->retry = t == RDMA_CM_EVENT_REJECTED;
    refused->err = t == RDMA_CM_EVENT_REJECTED ? ECONNREFUSED
                   : static_cast<int>(t) == -1 ? ETIMEDOUT
                                                : ECONNRESET;
    refused->what = std::string("rdma_connect: ") +
                    (static_cast<int>(t) == -1 ? "timed out" : event_name(t)) + " (status " +
                    std::to_string(st) + ")";
    return nullptr;
  }
  ep->connected_ = true;
  // The hello, as the first message each way.
  const hs::Hello local = hs::local_hello(o, hs::Role::kConnector, session, i, o.channels, kCaps);
  const hs::Wire out = hs::encode(local);
  iovec v{const_cast<uint8_t*>(out.data()), out.size()};
  ep->send(std::span<const iovec>(&v, 1), 0, "handshake");
  hs::Wire in{};
  iovec r{in.data(), in.size()};
  try {
    ep->recv(std::span<const iovec>(&r, 1), o.handshake_timeout, "handshake");
  } catch (const TransportError& e) {
    throw TransportError(idx, ep->peer_, e.error_code(),
                         "handshake: no hello from the peer: " + e.detail());
  }
  const hs::Hello h = hs::decode(in);
  std::string msg;
  if (hs::check_basic(local, h, hs::Role::kAcceptor, &msg) != hs::Status::kOk) {
    throw TransportError(idx, ep->peer_, 0, "handshake refused: " + msg);
  }
  if (h.status != hs::Status::kOk) {
    std::string m = hs::mismatch_message(h.status, local, h);
    if (h.status == hs::Status::kIndexOutOfRange || h.status == hs::Status::kDuplicateIndex) {
      m = std::string(hs::to_string(h.status)) + ": local index " + std::to_string(local.index) +
          ", peer expects " + std::to_string(h.count) + " channels";
    }
    throw TransportError(idx, ep->peer_, 0, "handshake refused by peer: " + m);
  }
  hs::Status s = hs::Status::kOk;
  if (h.session_id != local.session_id) s = hs::Status::kSessionMismatch;
  else if (h.count != local.count) s = hs::Status::kCountMismatch;
  else if (h.index != local.index) s = hs::Status::kIndexOutOfRange;
  if (s != hs::Status::kOk) {
    throw TransportError(idx, ep->peer_, 0, "handshake refused: " + hs::mismatch_message(s, local, h));
  }
  ep->wait_all("handshake");
  *peer_hello = h;
  return ep;
}

class RdmaListener final : public Listener {
 public:
  RdmaListener(Uri uri, const Options& o) : uri_(std::move(uri)), opts_(o) {
    if (std::string why = unavailable_reason(); !why.empty()) {
      throw TransportError(-1, uri_.to_string(), ENODEV, why);
    }
    ec_ = rdma_create_event_channel();
    if (!ec_) {
      throw TransportError(-1, uri_.to_string(), errno,
                           std::string("rdma_create_event_channel; ") + kCreateDeviceHint);
    }
    set_nonblocking(ec_->fd);
    if (rdma_create_id(ec_, &id_, nullptr, RDMA_PS_TCP) != 0) {
      throw TransportError(-1, uri_.to_string(), errno, "rdma_create_id");
    }
    AddrInfo ai = resolve(uri_, true);
    if (rdma_bind_addr(id_, ai.ai->ai_addr) != 0) {
      const int e = errno;
      throw TransportError(-1, uri_.to_string(), e,
                           std::string("rdma_bind_addr") +
                               (e == ENODEV || e == EADDRNOTAVAIL
                                    ? std::string(" (no RDMA device owns this address; ") +
                                          kCreateDeviceHint + ")"
                                    : std::string()));
    }
    if (rdma_listen(id_, 64) != 0) throw TransportError(-1, uri_.to_string(), errno, "rdma_listen");
    const uint16_t port = ntohs(rdma_get_src_port(id_));
    Uri a = uri_;
    a.port = port;
    address_ = a.to_string();
  }
  ~RdmaListener() override {
    pending_.clear();
    if (id_) rdma_destroy_id(id_);
    if (ec_) rdma_destroy_event_channel(ec_);
  }

  std::string address() const override { return address_; }
  std::vector<ChannelPtr> accept() override;
  void cancel() noexcept override { cancel_.signal(); }

 private:
  struct Pending {
    std::unique_ptr<Endpoint> ep;
    Clock::time_point deadline;
    bool established = false;
  };

  void refuse(const std::string& peer, int err, const std::string& why) {
    TransportError e(-1, peer, err, "refused connection: " + why);
    last_refusal_ = e.what();
    if (on_refused_) on_refused_(e);
  }
  void on_request(rdma_cm_id* id);
  bool evaluate(Pending& p, const hs::Wire& in);

  Uri uri_;
  Options opts_;
  rdma_event_channel* ec_ = nullptr;
  rdma_cm_id* id_ = nullptr;
  std::string address_;
  CancelEvent cancel_;
  std::vector<Pending> pending_;

  uint64_t session_ = 0;
  uint32_t count_ = 0;
  std::vector<std::unique_ptr<Endpoint>> eps_;
  std::vector<hs::Hello> hellos_;
  uint32_t arrived_ = 0;
  std::string last_refusal_;
};

void RdmaListener::on_request(rdma_cm_id* id) {
  auto ep = std::make_unique<Endpoint>(-1, endpoint_of(rdma_get_peer_addr(id)), opts_);
  ep->id_ = id;
  try {
    ep->create_resources();
    rdma_conn_param p = Endpoint::conn_param();
    if (rdma_accept(id, &p) != 0) ep->fail_verb("rdma_accept", errno);
  } catch (const TransportError& e) {
    rdma_reject(id, nullptr, 0);
    refuse(ep->peer_, e.error_code(), e.detail());
    return;  // ep's destructor destroys the id
  }
  pending_.push_back(Pending{std::move(ep), Clock::now() + opts_.handshake_timeout, false});
}

bool RdmaListener::evaluate(Pending& p, const hs::Wire& in) {
  const hs::Hello peer = hs::decode(in);
  hs::Hello local = hs::local_hello(opts_, hs::Role::kAcceptor, session_ ? session_ : peer.session_id,
                                    peer.index, count_ ? count_ : peer.count, kCaps);
  std::string msg;
  hs::Status s = hs::check_basic(local, peer, hs::Role::kConnector, &msg);
  if (s == hs::Status::kOk) {
    if (peer.session_id != local.session_id) s = hs::Status::kSessionMismatch;
    else if (peer.count != local.count) s = hs::Status::kCountMismatch;
    else if (peer.index >= peer.count) s = hs::Status::kIndexOutOfRange;
    else if (!eps_.empty() && eps_[peer.index]) s = hs::Status::kDuplicateIndex;
    if (s != hs::Status::kOk) msg = hs::mismatch_message(s, local, peer);
  }
  local.status = s;
  const hs::Wire out = hs::encode(local);
  iovec v{const_cast<uint8_t*>(out.data()), out.size()};
  try {
    p.ep->send(std::span<const iovec>(&v, 1), 0, "handshake reply");
    p.ep->wait_all("handshake reply");
  } catch (const TransportError& e) {
    refuse(p.ep->peer_, e.error_code(), "sending handshake reply: " + e.detail());
    return false;
  }
  if (s != hs::Status::kOk) {
    refuse(p.ep->peer_, 0, msg);
    return false;
  }
  if (eps_.empty()) {
    session_ = local.session_id;
    count_ = local.count;
    eps_.resize(count_);
    hellos_.resize(count_);
  }
  p.ep->channel_ = static_cast<int>(peer.index);
  eps_[peer.index] = std::move(p.ep);
  hellos_[peer.index] = peer;
  ++arrived_;
  return true;
}

std::vector<ChannelPtr> RdmaListener::accept() {
  session_ = opts_.session_id;
  count_ = opts_.channels;
  eps_.clear();
  hellos_.clear();
  arrived_ = 0;
  last_refusal_.clear();
  const auto deadline = Clock::now() + opts_.accept_timeout;
  while (eps_.empty() || arrived_ < count_) {
    int wait = ms_until(deadline);
    for (const Pending& p : pending_) {
      wait = std::min(wait, p.established ? 2 : ms_until(p.deadline));
    }
    pollfd pf[2] = {{ec_->fd, POLLIN, 0}, cancel_.poll_entry()};
    ::poll(pf, 2, wait);
    cancel_.throw_if_set(address_);
    rdma_cm_event* ev = nullptr;
    while (rdma_get_cm_event(ec_, &ev) == 0) {
      const rdma_cm_event_type t = ev->event;
      rdma_cm_id* id = ev->id;
      if (t == RDMA_CM_EVENT_CONNECT_REQUEST) {
        rdma_ack_cm_event(ev);
        on_request(id);
        continue;
      }
      rdma_ack_cm_event(ev);
      for (size_t i = 0; i < pending_.size(); ++i) {
        Pending& p = pending_[i];
        if (p.ep->id_ != id) continue;
        if (t == RDMA_CM_EVENT_ESTABLISHED) {
          p.established = true;
          p.ep->connected_ = true;
        } else {
          refuse(p.ep->peer_, ECONNRESET,
                 std::string("connection ended before its hello (") + event_name(t) + ")");
          pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(i));
        }
        break;
      }
    }
    const auto now = Clock::now();
    for (size_t i = 0; i < pending_.size();) {
      Pending& p = pending_[i];
      bool drop = false;
      if (p.established) {
        try {
          p.ep->poll_cq();
        } catch (const TransportError&) {
        }
        hs::Wire in{};
        long n = p.ep->take_message(in.data(), in.size());
        if (n >= 0) {
          if (n != static_cast<long>(hs::kSize)) {
            refuse(p.ep->peer_, 0,
                   "its first message is " + std::to_string(n) + " bytes, not a " +
                       std::to_string(hs::kSize) + "-byte hello");
          } else {
            evaluate(p, in);
          }
          drop = true;
        } else if (p.ep->has_error()) {
          refuse(p.ep->peer_, ECONNRESET, "connection failed before its hello");
          drop = true;
        }
      }
      if (!drop && now >= p.deadline) {
        refuse(p.ep->peer_, ETIMEDOUT,
               "sent no hello within " + std::to_string(opts_.handshake_timeout.count()) + " ms");
        drop = true;
      }
      if (drop) {
        pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
    if (!eps_.empty() && arrived_ == count_) break;
    if (Clock::now() >= deadline) {
      throw accept_timeout_error(address_, arrived_, count_, opts_.accept_timeout.count(),
                                 last_refusal_);
    }
  }
  std::vector<ChannelPtr> out;
  out.reserve(count_);
  for (uint32_t i = 0; i < count_; ++i) {
    auto& ep = eps_[i];
    // Its own event channel from now on, so it sees its disconnect without the listener.
    ep->ec_ = rdma_create_event_channel();
    if (!ep->ec_ || rdma_migrate_id(ep->id_, ep->ec_) != 0) {
      throw TransportError(static_cast<int>(i), ep->peer_, errno, "rdma_migrate_id");
    }
    set_nonblocking(ep->ec_->fd);
    const hs::Hello local =
        hs::local_hello(opts_, hs::Role::kAcceptor, session_, i, count_, kCaps);
    out.push_back(make_channel(std::move(ep), local, hellos_[i]));
  }
  eps_.clear();
  return out;
}

}  // namespace

std::string unavailable_reason() {
  int n = 0;
  ibv_device** list = ibv_get_device_list(&n);
  if (!list || n == 0) {
    if (list) ibv_free_device_list(list);
    return std::string("no RDMA device: ") + kCreateDeviceHint;
  }
  bool active = false;
  std::string names;
  for (int i = 0; i < n && !active; ++i) {
    names += std::string(names.empty() ? "" : ", ") + ibv_get_device_name(list[i]);
    ibv_context* ctx = ibv_open_device(list[i]);
    if (!ctx) continue;
    ibv_port_attr pa{};
    if (ibv_query_port(ctx, 1, &pa) == 0 && pa.state == IBV_PORT_ACTIVE) active = true;
    ibv_close_device(ctx);
  }
  ibv_free_device_list(list);
  if (!active) return "no RDMA device with an active port (devices: " + names + "); " + kCreateDeviceHint;
  return "";
}

std::unique_ptr<Listener> listen(const Uri& uri, const Options& options) {
  return std::make_unique<RdmaListener>(uri, options);
}

std::vector<ChannelPtr> connect(const Uri& uri, const Options& options) {
  if (options.channels == 0) {
    throw TransportError(-1, uri.to_string(), EINVAL, "connect: options.channels must be >= 1");
  }
  if (std::string why = unavailable_reason(); !why.empty()) {
    throw TransportError(-1, uri.to_string(), ENODEV, why);
  }
  const uint64_t session = options.session_id ? options.session_id : hs::random_session_id();
  std::vector<ChannelPtr> out;
  out.reserve(options.channels);
  for (uint32_t i = 0; i < options.channels; ++i) {
    const auto deadline = Clock::now() + options.connect_timeout;
    int attempts = 0;
    Refused last_refusal{0, "", false};  // the peer's last answer, if any attempt got one
    for (;;) {
      ++attempts;
      Refused refused{0, "", false};
      hs::Hello peer;
      std::unique_ptr<Endpoint> ep =
          connect_once(uri, options, i, session, deadline, &peer, &refused);
      if (ep) {
        const hs::Hello local =
            hs::local_hello(options, hs::Role::kConnector, session, i, options.channels, kCaps);
        out.push_back(make_channel(std::move(ep), local, peer));
        break;
      }
      if (refused.err == ECONNREFUSED) last_refusal = refused;
      if (!refused.retry || Clock::now() + std::chrono::milliseconds(100) >= deadline) {
        // The deadline can cut the last attempt short while the peer keeps refusing (a slow
        // rdma_cm under emulation): the refusals are what the caller needs to hear about.
        if (refused.err == ETIMEDOUT && last_refusal.err == ECONNREFUSED) {
          refused = last_refusal;
          refused.what += " (the next attempt ran into the deadline)";
        }
        std::string what = refused.what + " after " + std::to_string(attempts) + " attempt" +
                           (attempts == 1 ? "" : "s") + " within " +
                           std::to_string(options.connect_timeout.count()) + " ms";
        if (refused.err == ECONNREFUSED) what = "connection refused: " + what;
        throw TransportError(static_cast<int>(i), uri.to_string(), refused.err, what);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  return out;
}

}  // namespace ferry::transport::rdma
