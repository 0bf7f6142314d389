// One sender thread per channel on the source. The scanner hands it batches of dirty page
// indices of one block; it classifies each page (ZERO run / XBZRLE / LZ4 / NORMAL), builds
// DATA packets in preallocated buffers and sends them asynchronously, recycling a buffer when
// the channel reports its send complete. Pages are partitioned to senders by a fixed function
// of their index, so each sender's XBZRLE cache is private (no locks) and every copy of a page
// travels on the same channel, in order.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "codecs/xbzrle_cache.h"
#include "engine/ram/page_digest.h"
#include "engine/ram/page_population.h"
#include "ferry/migration.h"
#include "engine/ram/wire_format.h"

namespace ferry::ram {

// What the senders share with the source, owned by it.
struct SenderShared {
  const std::vector<RamBlock>* blocks = nullptr;
  const MigrationConfig* config = nullptr;
  uint32_t channels = 1;
  size_t owned_payload_cap = 0;
  std::atomic<bool>* stop = nullptr;               // error or cancel: give up now
  // First error wins; aborts the channels. link_broke: a TransportError, which may just be the
  // destination going away after telling why (see PageSender::peer_error()).
  std::function<void(const std::string&, bool link_broke)> on_error;
  // Live progress (relaxed; summed over senders).
  std::atomic<uint64_t>* wire_bytes = nullptr;
  std::atomic<uint64_t>* pages_sent = nullptr;
  // Pacing sleeps wait here so cancel() can cut them short.
  std::mutex* stop_mu = nullptr;
  std::condition_variable* stop_cv = nullptr;
  // RDMA placement (the destination's validated advertisement), [channel][block]; null =
  // every page travels in the stream. NORMAL pages are then RDMA-written into place and their
  // records flagged kRecordPlaced; SYNC(n) waits for the destination's SYNC_ACK(n).
  const std::vector<std::vector<transport::RemoteRegion>>* placement = nullptr;
  // Verification (engine/ram/page_digest.h): every page's term, updated with the bytes sent.
  DigestTable* digests = nullptr;
  // Pages known zero from the page tables (engine/ram/page_population.h), for the blocks
  // flagged in population_blocks (private anonymous memory); null = read every page.
  const PagePopulation* population = nullptr;
  const std::vector<uint8_t>* population_blocks = nullptr;
};

struct WorkItem {
  enum class Kind : uint8_t { kBatch, kSync };
  Kind kind = Kind::kBatch;
  bool final_pass = false;
  uint32_t block = 0;
  uint32_t count = 0;
  uint32_t iteration = 0;
  std::unique_ptr<uint32_t[]> pages;  // batch_pages entries, allocated once
};

// Counters one sender keeps; read by the scanner after wait_synced() (the queue's mutex orders
// them), so plain integers.
struct SenderCounters {
  PageCounts pages;
  uint64_t wire_bytes = 0;
  uint64_t xbzrle_hits = 0;
  uint64_t xbzrle_misses = 0;
  uint64_t xbzrle_overflows = 0;
  uint64_t xbzrle_bytes = 0;
  uint64_t placed_pages = 0;  // NORMAL pages RDMA-written into place
  uint64_t zero_unread = 0;   // ZERO pages known from the page tables, never read
};

class PageSender {
 public:
  // Packet numbers on the channel continue from first_packet (channel 0 carried HELLO).
  PageSender(uint32_t index, transport::Channel& channel, const SenderShared& shared,
             uint64_t first_packet, uint64_t first_recv_packet = 1);
  ~PageSender();
  PageSender(const PageSender&) = delete;
  PageSender& operator=(const PageSender&) = delete;

  void start();
  void join();

  // Scanner side. acquire() blocks for a free slot; nullptr once stopping.
  WorkItem* acquire();
  void publish();  // the item from the last acquire()
  // Blocks until SYNC(iteration) was sent and completed, the thread ended, or stopping. Returns
  // true only in the first case.
  bool wait_synced(uint32_t iteration);
  // Wakes waits on both sides (after *stop was set).
  void wake();

  SenderCounters counters() const;
  uint64_t next_packet() const { return packet_; }  // after join()
  uint64_t next_recv_packet() const { return recv_packet_; }  // after join(): SYNC_ACKs read
  const DigestSums& digest_sums() const { return sums_; }     // after join(), per block
  // After join() of a stopped sender: the reason the destination sent in an ERROR on this
  // channel before it went away, or "".
  const std::string& peer_error() const { return peer_error_; }

 private:
  struct PacketBuf {
    std::unique_ptr<uint8_t[]> head;   // header + records
    std::unique_ptr<uint8_t[]> owned;  // encoded / copied payloads (codecs on only)
    std::vector<iovec> iov;
    bool busy = false;
  };

  void thread_main();
  WorkItem* next_item();
  void release_item();
  void process_batch(const WorkItem& item);
  // Before a dense batch's pages are read: which are known zero (states_), and the bulk
  // pass's fault-in of what must be read. Returns the first page states_ describes.
  uint32_t prepare_batch(const WorkItem& item, const uint8_t* base, size_t page_size);
  bool known_zero(uint32_t page, uint32_t first) const;
  void send_sync(uint32_t iteration, bool final_pass);
  void quiesce_channel() noexcept;

  void begin_packet(uint32_t block);
  void flush_packet();
  void add_record(uint32_t page, uint32_t length, PageKind kind);
  void add_payload(const uint8_t* p, size_t len);
  // Placement: queue an RDMA WRITE of len bytes at p to `offset` in the current block (adjacent
  // ones merge); flush_placed() posts what is queued, always before the packet's header.
  void add_placed(const uint8_t* p, uint64_t offset, size_t len);
  void flush_placed();
  void pace(size_t bytes);
  // The digest terms of what was just queued: these bytes (a zero page: none) for this page.
  void note_page(uint32_t page, const uint8_t* bytes);
  void note_zero_page(uint32_t page);

  const uint32_t index_;
  transport::Channel& ch_;
  SenderShared shared_;
  uint64_t packet_;
  uint64_t recv_packet_;
  const size_t max_records_;
  const std::vector<transport::RemoteRegion>* remote_ = nullptr;  // per block, placement only
  std::vector<transport::MemoryRegion> owned_regions_;  // owned buffers registered for writes

  // Queue of work items (ring), scanner -> sender.
  mutable std::mutex mu_;
  std::condition_variable cv_items_;
  std::condition_variable cv_space_;
  std::condition_variable cv_synced_;
  std::vector<WorkItem> ring_;
  uint64_t head_ = 0;  // next to process
  uint64_t tail_ = 0;  // next to fill
  uint64_t synced_ = 0;  // SYNCs completed
  bool exited_ = false;
  SenderCounters counters_;  // published under mu_ at each SYNC
  SenderCounters local_;     // the thread's running copy

  // Packet building (sender thread only).
  std::vector<PacketBuf> bufs_;
  size_t next_buf_ = 0;
  PacketBuf* cur_ = nullptr;
  uint32_t cur_block_ = 0;
  uint32_t nrec_ = 0;
  uint32_t cur_pages_ = 0;
  uint64_t cur_payload_ = 0;
  size_t owned_used_ = 0;
  uint64_t cur_placed_ = 0;               // bytes RDMA-written for the current packet
  const uint8_t* wr_local_ = nullptr;     // queued RDMA WRITE
  uint64_t wr_offset_ = 0;
  size_t wr_len_ = 0;
  wire::Record last_;
  std::unique_ptr<uint8_t[]> scratch_;  // a stable copy of the page being encoded
  std::vector<std::optional<xbzrle::PageCache>> caches_;  // per block, when XBZRLE is on
  uint32_t generation_ = 0;
  bool final_pass_ = false;
  DigestSums sums_;  // per block: this sender's share of the source's digests
  std::vector<PageState> states_;     // the current batch's span, from prepare_batch()
  std::vector<uint64_t> scan_space_;  // PagePopulation::classify's region buffer
  std::string peer_error_;

  // Pacing (bandwidth_limit / channels).
  double rate_ = 0;
  std::chrono::steady_clock::time_point pace_start_;
  uint64_t pace_bytes_ = 0;

  std::thread thread_;
};

}  // namespace ferry::ram
