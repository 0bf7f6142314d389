// One MigrationSource::run(): the precopy protocol as a sequence of phases on the calling thread,
// which is also the scanner (dirty sync + take_batch, handing batches to the PageSender threads
// that own the data path). Channel 0 carries the handshakes before the senders start and after
// they are joined. Any failure, in a phase or a sender thread, ends in rollback().
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "engine/ram/control.h"
#include "engine/ram/page_digest.h"
#include "engine/ram/page_sender.h"
#include "engine/ram/placement.h"
#include "engine/ram/source_state.h"
#include "ferry/migration.h"
#include "ferry/transport.h"

namespace ferry::ram {

class SourceSession {
 public:
  SourceSession(SourceState& state, std::vector<transport::ChannelPtr> channels);
  // The stats of a completed migration; otherwise throws MigrationError after rollback().
  MigrationStats run();

 private:
  using Clock = std::chrono::steady_clock;

  // The phases, in protocol order (source_session.cc, source_passes.cc, source_completion.cc).
  void admit_channels();
  void setup();
  void start_senders();
  void open_page_population(SenderShared& shared);
  uint32_t iterate();  // returns the last live iteration
  void switchover(uint32_t last_iteration);
  void send_devices();
  void complete();
  void verify_and_say_done();
  MigrationStats finish();
  [[noreturn]] void rollback(const std::exception& e);

  // setup
  wire::Hello make_hello() const;
  bool offer_placement(wire::Hello& hello) const;
  // iterate / switchover
  void run_pass(uint32_t iteration, bool final_pass, IterationStats& is);
  void publish_pass_start(uint32_t iteration, bool final_pass, uint64_t dirty_pages,
                          Clock::time_point start);
  void hand_out_block(uint32_t block, uint32_t iteration, bool final_pass);
  WorkItem* start_batch(uint32_t sender, uint32_t block, uint32_t iteration, bool final_pass);
  void sync_senders(uint32_t iteration, bool final_pass);
  void estimate_downtime(IterationStats& is);
  const char* convergence(uint32_t iteration, const IterationStats& is) const;
  void throttle_if_falling_behind(uint32_t iteration, IterationStats& is);
  void report(const IterationStats& is);
  void stop_guest();
  void take_back_control_channel();
  // completion
  void check_confirm(const ControlLink::Message& confirm) const;
  std::vector<uint64_t> source_digests();
  std::string compare_digests(const std::vector<uint64_t>& mine,
                              const ControlLink::Message& theirs) const;
  // finish / rollback
  void record_sender_counters(const SenderCounters& c);
  void close_channels_after_abort() noexcept;
  std::string with_destination_reason(const std::string& link_error);
  std::string release_guest();

  SourceState& m_;
  std::vector<transport::ChannelPtr> channels_;
  const Clock::time_point t0_;
  MigrationStats st_;
  ControlLink link_;  // channel 0 while no sender owns it
  bool one_way_ = false;  // a stream file: nobody answers (wire_format.h, "One-way streams")
  size_t owned_payload_cap_ = 0;
  SourcePlacement placement_;  // the senders point into it until they are destroyed
  SenderCounters sent_;        // every page sent, once the senders are joined
  std::unique_ptr<PagePopulation> population_;  // zero_from_page_tables, when the kernel can
  std::vector<uint8_t> population_blocks_;        // per block: private anonymous memory
  std::unique_ptr<DigestTable> digests_;  // with verify: the senders keep it up to date
  std::vector<uint64_t> sent_digests_;    // summed over the senders once they are joined

  // Scanner scratch for one pass: the pages taken from a bitmap, and per sender the batch
  // being filled.
  std::vector<uint32_t> taken_;
  std::vector<WorkItem*> staging_;

  // What rollback() must undo.
  uint32_t throttle_ = 0;  // percent asked of hooks.throttle
  double best_throughput_ = 0;  // bytes/s: the best pass so far (estimate_downtime)
  bool guest_stopped_ = false;

  Clock::time_point t_stop_;  // stop_guest: the downtime and the blackout start
};

}  // namespace ferry::ram
