// One RC connection and everything it owns: rdma_cm id, protection domain, completion queue and
// channel, queue pair, the pre-posted receive buffers and the send bounce slots. The Channel is a
// thin shell around it (channel.cc); the listener and the connector drive it through the
// handshake before the channel exists. Its parts: endpoint.cc (resources, completions and
// waiting, abort, teardown, memory registration), endpoint_send.cc (send queue, batching, RDMA
// WRITE, completions, close), endpoint_recv.cc (the byte stream out of the receive buffers).
#pragma once

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "ferry/transport.h"
#include "transports/rdma/rdma_transport.h"
#include "transports/rdma/verbs_util.h"

namespace ferry::transport::rdma {

inline constexpr uint32_t kMaxSge = 16;

class Endpoint {
 public:
  Endpoint(int channel, std::string peer, const Options& o);
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

  [[noreturn]] void fail(int err, const std::string& what);
  [[noreturn]] void fail_verb(const char* verb, int err, const std::string& what = "");

  // Verbs resources, QP and pre-posted receives for id_ (address and route resolved, or a
  // connect request).
  void create_resources();
  std::string memlock_hint(size_t n);
  static rdma_conn_param conn_param();
  void post_recv(uint32_t idx);

  // ---- completions and waiting -----------------------------------------------------------

  // Polls the CQ without blocking; returns how many completions were taken.
  size_t poll_cq();
  void on_completion(const ibv_wc& wc);
  void handle_cm_events();
  void check_errors(const char* op);

  // Waits for a completion, a connection event or abort(); `timeout` 0 = forever. Throws on
  // abort and when the wait passes the timeout with nothing at all happening.
  void wait_progress(const char* op, std::chrono::milliseconds timeout);

  // ---- sending ----------------------------------------------------------------------------

  void ensure_sq_space(const char* op);
  [[noreturn]] void lost(const char* op);

  struct Builder {
    ibv_sge sge[kMaxSge];
    uint32_t n = 0;
    size_t bytes = 0;
    size_t bounce = 0;  // bytes used in this WR's bounce slot
    uint8_t* slot = nullptr;
  };

  // ---- small-send batching -------------------------------------------------------------------
  // A small send() while earlier work requests are still in flight is copied into the bounce
  // slot of the next work request and not posted yet; following small sends join it until the
  // slot is nearly full, anything else is posted, or the caller waits, polls, receives or
  // closes. One SEND (one RECV at the peer, one completion) then carries many messages. A
  // small send on an idle queue pair is posted at once, so a lone message is never delayed.
  static constexpr size_t kBatchMax = 4096;  // sends up to this many bytes may be batched

  bool try_batch(std::span<const iovec> iov, uint64_t bytes, uint64_t cookie, const char* op);
  void flush_batch();

  // Posts iov as SENDs (raddr == 0 and rkey unused) or RDMA WRITEs at raddr. The last WR is
  // signalled. Returns after every WR is posted.
  void post_gather(std::span<const iovec> iov, bool write, uint64_t raddr, uint32_t rkey,
                   const char* op);
  void post_wr(Builder& b, bool write, uint64_t raddr, uint32_t rkey, bool last);
  const ibv_mr* find_mr(const uint8_t* p, size_t len) const;
  void check_usable(const char* op);
  void send(std::span<const iovec> iov, uint64_t cookie, const char* op);
  void write_remote(std::span<const iovec> local, const RemoteRegion& remote, uint64_t offset,
                    uint64_t cookie);
  size_t report();
  size_t poll_completions();
  void wait_all(const char* op);

  // ---- receiving --------------------------------------------------------------------------

  // Copies exactly the total of iov. timeout: per wait, 0 = forever.
  void recv(std::span<const iovec> iov, std::chrono::milliseconds timeout, const char* op);

  // ---- close / abort / teardown -------------------------------------------------------------

  void close();
  void abort() noexcept;
  MemoryRegion register_memory(void* addr, size_t len);
  void deregister_memory(const MemoryRegion& region);
  void teardown();

  // The first complete message, if one arrived (listener: the hello). Returns its length or -1.
  long take_message(void* out, size_t cap);
  bool has_error() const { return !error_text_.empty() || flushed_; }

  std::string send_path() const;

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

}  // namespace ferry::transport::rdma
