// One MigrationDestination::run(): the setup handshake on channel 0, a PageReceiver thread per
// channel until the final SYNC, then device state and completion on channel 0 again. Any
// failure ends in rollback(), which tells the source why when channel 0 is free to.
#pragma once

#include <chrono>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "engine/ram/control.h"
#include "engine/ram/page_digest.h"
#include "engine/ram/destination_state.h"
#include "engine/ram/page_receiver.h"
#include "engine/ram/wire_format.h"
#include "ferry/dirty_bitmap.h"
#include "ferry/migration.h"
#include "ferry/transport.h"

namespace ferry::ram {

class DestinationSession {
 public:
  DestinationSession(DestinationState& state, std::vector<transport::ChannelPtr> channels);
  // The stats of a completed migration; otherwise throws MigrationError after rollback().
  DestinationStats run();

 private:
  using Clock = std::chrono::steady_clock;

  // The phases, in protocol order (destination_session.cc, destination_completion.cc).
  void admit_channels();
  void setup();
  void receive_pages();
  ControlLink::Message load_devices();  // returns the COMPLETE that follows them
  void confirm_completion(const ControlLink::Message& complete);
  void verify_and_hear_done();
  DestinationStats finish();
  [[noreturn]] void rollback(const std::exception& e);

  // setup
  void check_block_list(const wire::Hello& hello) const;
  void check_payload_bound(const wire::Hello& hello) const;
  void answer_hello(const wire::Hello& hello);
  // receive_pages
  void start_receivers();
  void sum_receiver_counters();
  // verification and DONE
  std::vector<uint64_t> destination_digests();
  void check_recorded_digests(const ControlLink::Message& hashes);
  void check_done(const ControlLink::Message& done);
  void forget_channels();

  DestinationState& m_;
  std::vector<transport::ChannelPtr> channels_;
  const Clock::time_point t0_;
  DestinationStats st_;
  ControlLink link_;  // channel 0 while no receiver owns it
  bool one_way_ = false;  // reading a stream file: nobody to answer
  // Channel 0 is between exchanges and ours: an error may be sent to the source.
  bool may_tell_source_ = true;
  wire::Hello hello_;
  bool placement_ = false;  // the source may RDMA-write NORMAL pages in place

  // Declared before the receivers, which point into them.
  std::vector<DirtyBitmap> written_;  // per known_zero block: pages written by this run
  std::unique_ptr<DigestTable> digests_;  // HELLO asked for verification by digests
  std::vector<uint64_t> landed_digests_;  // summed over the receivers once they are joined
  std::unique_ptr<SyncBarrier> barrier_;
  std::vector<std::unique_ptr<PageReceiver>> receivers_;
};

}  // namespace ferry::ram
