// What a MigrationDestination keeps across run() calls (MigrationDestination::Impl is this):
// the RAM to fill, the devices to load, and the stop machinery cancel() and the receiver
// threads share. The first error aborts every channel, so no thread waits for a peer that is
// gone or a receiver that gave up.
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "engine/ram/page_receiver.h"
#include "ferry/migration.h"
#include "ferry/transport.h"

namespace ferry::ram {

struct DestinationState {
  std::vector<RamBlock> blocks;
  std::vector<Device> devices;

  // `live` and `barrier` belong to the running run(); guarded by mu for cancel().
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::string error;
  std::vector<transport::Channel*> live;
  SyncBarrier* barrier = nullptr;

  // Records msg unless an error came first, aborts the live channels (but `telling`, the one
  // a receiver just sent the source an ERROR on and still lingers on), wakes the barrier.
  void fail(const std::string& msg, transport::Channel* telling = nullptr) noexcept {
    std::lock_guard lock(mu);
    if (error.empty()) error = msg;
    stop.store(true);
    for (auto* ch : live) {
      if (ch != telling) ch->abort();
    }
    if (barrier) barrier->wake();
  }
};

}  // namespace ferry::ram
