// The C++ entry points of ferry's live RAM migration: a source that moves registered RAM blocks
// while the guest keeps writing them, and a destination that places them. The caller owns the
// memory, the dirty sources and the channels (transport::connect / Listener::accept); ferry owns
// the threads that move pages between them. See docs/design.md for the data flow and the
// precopy state machine, and engine/ram/wire_format.h for the bytes on the channels.
//
// Guarantees:
//  - The source never writes guest memory. Any error or cancel() before the destination has
//    confirmed completion leaves the guest running (resume_guest is called if stop_guest was)
//    and run() throws MigrationError.
//  - The destination writes only inside its registered blocks, whatever arrives on the wire.
//  - run() returns only after every thread it started has ended.
#pragma once

#include "ferry/export.h"
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "ferry/dirty_source.h"
#include "ferry/transport.h"

struct FerryVmsDescription;  // include/ferry/vmstate.h

namespace ferry {

// A device whose state travels on the main channel after the final RAM pass (guest stopped),
// like one of QEMU's SaveStateEntry: a section named idstr/instance_id holding the vmstate body
// of `vmsd` over `opaque`. Both sides register the same devices (set_devices); the destination
// refuses a section it does not know, or a version newer than its description (or older than
// its minimum_version_id), naming the device. Device code: engine/device/device_state.h.
struct Device {
  std::string idstr;                          // unique with instance_id, 1..255 bytes
  uint32_t instance_id = 0;
  const FerryVmsDescription* vmsd = nullptr;  // must outlive run()
  void* opaque = nullptr;                     // the state (source: read; destination: loaded)
};

// One contiguous piece of guest RAM (a KVM memory slot, a QEMU RAMBlock). Both sides register
// the same list (names, sizes, page sizes); the destination refuses a mismatch naming the block.
struct RamBlock {
  std::string name;       // unique, <= 255 bytes
  void* host = nullptr;   // page_size aligned
  size_t size = 0;        // multiple of page_size
  size_t page_size = 4096;  // 4 KiB or 2 MiB
  // Destination only: the block is all zero when run() starts (fresh anonymous memory). A ZERO
  // record for a page nothing was written to yet then costs neither a read nor a write; without
  // it the receiver reads the page to see whether it must clear it (faulting in every page of
  // untouched memory).
  bool known_zero = false;
};

class FERRY_API MigrationError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class PageKind : uint8_t { kNormal = 0, kZero = 1, kXbzrle = 2, kLz4 = 3 };

struct PageCounts {
  uint64_t normal = 0;
  uint64_t zero = 0;
  uint64_t xbzrle = 0;
  uint64_t lz4 = 0;
  uint64_t total() const { return normal + zero + xbzrle + lz4; }
};

struct IterationStats {
  uint32_t iteration = 0;          // 0 = bulk pass; the final (stopped) pass is flagged
  bool final_pass = false;
  uint64_t dirty_pages = 0;        // pages found dirty by this iteration's sync (all blocks)
  PageCounts pages;                // pages sent, by kind
  uint64_t wire_bytes = 0;         // bytes put on the channels (headers included)
  double seconds = 0;
  double throughput_bytes_per_s = 0;   // wire_bytes / seconds
  double dirty_rate_pages_per_s = 0;   // pages dirtied per second during this iteration
  uint64_t remaining_dirty_pages = 0;  // found by the sync after this iteration
  double expected_downtime_s = 0;      // remaining bytes / best throughput of any pass so far
  uint32_t throttle_percent = 0;       // auto-converge throttle asked for after it
};

struct MigrationStats {
  std::string status;              // "completed", "failed", "cancelled"
  std::string error;               // when not completed
  std::string dirty_tracking;      // dirty source names, e.g. "uffd-wp"
  std::string converged_by;        // "downtime-limit", "max-iterations", "nothing-dirty"
  uint32_t channels = 0;
  double setup_seconds = 0;
  double total_seconds = 0;
  // What the guest waits: stop_guest .. the destination may run it (every page and device in
  // place, verification done, DONE sent). The figure to compare with other migrations.
  double blackout_seconds = 0;
  // stop_guest .. the destination confirmed every page and loaded every device: the blackout
  // minus the verification at the end (the two differ much only with verify_full).
  double downtime_seconds = 0;
  double verify_seconds = 0;       // comparing digests (or the full re-hash): in the blackout
  uint64_t ram_bytes = 0;          // registered RAM
  uint64_t wire_bytes = 0;
  uint32_t devices = 0;            // device sections sent (set_devices)
  uint64_t device_bytes = 0;       // DEVICE + VMDESC bodies (inside the downtime)
  PageCounts pages;
  uint64_t xbzrle_cache_hits = 0;
  uint64_t xbzrle_cache_misses = 0;
  uint64_t xbzrle_overflows = 0;   // delta did not fit the threshold: sent otherwise
  uint64_t xbzrle_bytes = 0;
  uint64_t zero_pages_unread = 0;  // of pages.zero: known from the page tables, never read
  bool verified = false;           // per-block digests compared equal
  // The channels were one-way (a stream file, transport::kOneWay): nobody confirmed anything;
  // with verify the digests went into the stream for its reader to check.
  bool one_way = false;
  // How NORMAL pages reached the destination: "rdma-write" (RDMA WRITE into the destination's
  // registered blocks, records only in the stream), or "stream" with the reason in parentheses.
  std::string placement;
  uint64_t placed_pages = 0;       // NORMAL pages RDMA-written into place
  std::vector<IterationStats> iterations;
};

// QEMU query-migrate-like JSON of the stats (engine/ram/stats_json.cc).
FERRY_API std::string to_json(const MigrationStats& stats);

// A snapshot for progress bars, readable from any thread while run() is going.
struct Progress {
  uint32_t iteration = 0;
  bool final_pass = false;
  uint64_t pages_sent_this_iteration = 0;
  uint64_t pages_dirty_this_iteration = 0;  // to send in this iteration (found by its sync)
  uint64_t wire_bytes = 0;                  // total so far
  double elapsed_seconds = 0;
  double throughput_bytes_per_s = 0;        // recent
};

struct MigrationConfig {
  bool zero_pages = true;
  // With zero_pages: pages of private anonymous memory that the page tables show unpopulated
  // (or mapping the shared zero page) go as ZERO without being read (Linux 6.7+
  // PAGEMAP_SCAN; engine/ram/page_population.h). Off: every page is read, as QEMU does.
  bool zero_from_page_tables = true;
  bool xbzrle = false;
  size_t xbzrle_cache_bytes = 256u << 20;  // per migration, split across sender threads
  // A delta larger than this share of a page is not worth it: the page goes NORMAL/LZ4.
  double xbzrle_max_ratio = 0.7;
  bool lz4 = false;
  int lz4_acceleration = 1;
  std::chrono::milliseconds downtime_limit{300};
  uint32_t max_iterations = 30;            // then stop the guest anyway
  uint64_t bandwidth_limit_bytes_per_s = 0;  // 0 = unlimited
  bool auto_converge = true;               // ask the caller to throttle (hooks.throttle)
  // Per-block digest check in the completion handshake (engine/ram/page_digest.h): both sides
  // keep a digest of every page as it is sent and as it lands, so the check costs one round
  // trip of 8 bytes per block, no pass over memory. It catches pages lost, damaged or misplaced
  // on the way, not pages the dirty tracking failed to report.
  bool verify = false;
  // With verify: instead, both sides re-hash all their RAM after the final pass. Also catches
  // missed dirty pages, at the cost of a pass over memory inside the blackout.
  bool verify_full = false;
  size_t batch_pages = 128;                // pages per packet / scanner batch
  // When every channel can RDMA-write (rdma:), NORMAL pages go by RDMA WRITE straight into the
  // destination's pages if it advertises its blocks (MigrationStats::placement says which).
  bool rdma_placement = true;
  // Testing only: moves each page to another channel every iteration ((page / batch_pages +
  // iteration) % channels) so that only the per-iteration SYNC keeps copies in order. Breaks
  // the private per-channel XBZRLE caches, so run() refuses it together with xbzrle.
  bool rotate_partition_for_testing = false;
};

struct MigrationHooks {
  // Called once, on the thread running MigrationSource::run(), when precopy has converged.
  // After it returns the caller's writers must not touch guest memory.
  std::function<void()> stop_guest;
  // Called if the migration fails or is cancelled after stop_guest: the guest runs on here.
  std::function<void()> resume_guest;
  // Auto-converge: percent of time (0..99) the caller should keep its writers paused. Called
  // after a pass that did not converge in which the guest dirtied more than half of what the
  // pass sent: 20, then 10 more each time (at most 99); and 0 at the end if it was called.
  std::function<void(uint32_t percent)> throttle;
  // After each iteration (including bulk and final pass).
  std::function<void(const IterationStats&)> on_iteration;
};

class FERRY_API MigrationSource {
 public:
  // dirty[i] tracks blocks[i] (same page count); tracking must already run: pages written
  // since its construction are resent. The bulk pass sends every page regardless.
  MigrationSource(std::vector<RamBlock> blocks,
                  std::vector<std::unique_ptr<DirtySource>> dirty,
                  MigrationConfig config = {}, MigrationHooks hooks = {});
  ~MigrationSource();
  MigrationSource(const MigrationSource&) = delete;
  MigrationSource& operator=(const MigrationSource&) = delete;

  // Devices saved (pre_save hooks run) after the final RAM pass, before completion; a failing
  // pre_save fails the migration (the guest resumes). Call before run().
  void set_devices(std::vector<Device> devices);

  // Runs the whole precopy over the given channels (1..N, from transport::connect) and returns
  // the stats when the destination has confirmed. Throws MigrationError with the stats' error.
  MigrationStats run(std::vector<transport::ChannelPtr> channels);
  // From any thread: run() stops soon, throws MigrationError("cancelled"), the guest runs on.
  void cancel() noexcept;
  Progress progress() const;
  // The stats of the last run(), also when it threw (status "failed"/"cancelled", error set).
  MigrationStats last_stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct DestinationStats {
  PageCounts pages;
  uint64_t wire_bytes = 0;
  uint64_t zero_pages_skipped = 0;  // ZERO records for pages already zero: not written
  uint64_t placed_pages = 0;        // NORMAL pages the source RDMA-wrote into place
  uint32_t iterations = 0;
  bool verify_requested = false;  // the source asked for verification (MigrationConfig::verify)
  bool verified = false;
  double seconds = 0;
  uint32_t devices = 0;  // device sections loaded
  std::string vmdesc;    // the source's JSON description of them (empty without devices)
};

class FERRY_API MigrationDestination {
 public:
  explicit MigrationDestination(std::vector<RamBlock> blocks);
  ~MigrationDestination();
  MigrationDestination(const MigrationDestination&) = delete;
  MigrationDestination& operator=(const MigrationDestination&) = delete;

  // Devices to load (post_load hooks run) before completion is confirmed. Every registered
  // device must arrive, and nothing else. Call before run().
  void set_devices(std::vector<Device> devices);

  // Receives until the source's completion handshake, from the channels of one session
  // (Listener::accept). Throws MigrationError naming channel, packet and offset on bad input.
  DestinationStats run(std::vector<transport::ChannelPtr> channels);
  void cancel() noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry
