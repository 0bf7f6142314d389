// One receiver thread per channel on the destination: reads a header, checks it, reads the
// records, checks every one against the destination's blocks, then reads all payloads of the
// packet with one scatter receive (NORMAL pages straight into destination RAM, encoded ones
// into a scratch area) and applies ZERO runs, XBZRLE deltas and LZ4 pages in place.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ferry/migration.h"
#include "ferry/dirty_bitmap.h"
#include "engine/ram/page_digest.h"
#include "engine/ram/wire_format.h"

namespace ferry::ram {

// The per-iteration barrier: a receiver that read SYNC(n) waits here until every receiver has,
// so no packet of iteration n+1 is applied while another channel may still hold iteration n
// copies of the same page.
class SyncBarrier {
 public:
  enum class Result { kContinue, kFinal, kStopped };
  SyncBarrier(uint32_t parties, const std::atomic<bool>* stop) : parties_(parties), stop_(stop) {}
  // Throws MigrationError when the channels disagree about whether this SYNC is the last.
  Result arrive(uint32_t channel, uint64_t packet, uint32_t iteration, bool final_pass);
  void wake();
  bool stopped() const { return stop_->load(); }

 private:
  const uint32_t parties_;
  const std::atomic<bool>* stop_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint32_t arrived_ = 0;
  uint32_t finals_ = 0;
  uint64_t generation_ = 0;
  bool last_final_ = false;
  bool last_mixed_ = false;
};

struct ReceiverCounters {
  PageCounts pages;
  uint64_t wire_bytes = 0;
  uint64_t zero_pages_skipped = 0;
  uint32_t iterations = 0;
  uint64_t placed_pages = 0;  // NORMAL pages the source RDMA-wrote into place
};

// How a receiver reports the first error it meets. `telling` is its channel when it has just
// sent the source an ERROR on it: the destination then aborts every other channel but leaves this
// one to the receiver, which lingers on it (kErrorLinger) so the source can read the reason.
using ReceiverErrorFn = std::function<void(const std::string& error, transport::Channel* telling)>;

// How long a receiver that told the source why it failed keeps its channel open, reading and
// discarding what the source still sends, before it aborts it: the source learns of the failure
// when its sends fail, and finds the ERROR queued ahead of the reset (engine/ram/control.h,
// read_peer_error). Ends early when the source closes; a source that goes on sending cannot
// hold the destination longer.
inline constexpr std::chrono::milliseconds kErrorLinger{1000};

class PageReceiver {
 public:
  PageReceiver(uint32_t index, transport::Channel& channel, const wire::DataLimits& limits,
               SyncBarrier& barrier, uint64_t first_packet, ReceiverErrorFn on_error,
               std::vector<DirtyBitmap>* written = nullptr, uint64_t first_send_packet = 1);
  ~PageReceiver();
  // Verification: keep every page's digest term as it lands (before start()).
  void keep_digests(DigestTable* table, size_t blocks);
  void start();
  void join();
  // After join().
  const DigestSums& digest_sums() const { return sums_; }  // per block
  const ReceiverCounters& counters() const { return counters_; }
  uint64_t next_packet() const { return packet_; }
  uint64_t next_send_packet() const { return send_packet_; }  // after SYNC_ACKs (placement)
  bool finished() const { return finished_; }

 private:
  void thread_main();
  void handle_data(const wire::Header& h);
  // The data phase failed here: ERROR with the reason to the source, then the linger.
  void fail_telling_source(const std::string& reason);
  void linger_for_source() noexcept;
  void note_landed(uint32_t block, uint32_t page, const uint8_t* bytes);
  void note_zeroed(uint32_t block, uint32_t first, uint32_t count);

  const uint32_t index_;
  transport::Channel& ch_;
  wire::DataLimits lim_;
  SyncBarrier& barrier_;
  uint64_t packet_;
  uint64_t send_packet_;
  ReceiverErrorFn on_error_;
  bool source_reported_ = false;  // the failure is the source's own ERROR: nothing to answer
  // Per block, for known_zero blocks (others have size 0): pages written since run() began.
  std::vector<DirtyBitmap>* written_;
  uint32_t iteration_ = 0;
  bool finished_ = false;
  ReceiverCounters counters_;
  DigestTable* digests_ = nullptr;
  DigestSums sums_;  // this receiver's share of the destination's digests
  std::unique_ptr<uint8_t[]> records_;
  std::unique_ptr<wire::Record[]> recs_;
  std::unique_ptr<uint8_t[]> scratch_;
  std::vector<iovec> iov_;
  std::thread thread_;
};

}  // namespace ferry::ram
