// MigrationDestination: checks what it is given, and hands each run() to a DestinationSession
// (the protocol's phases); the state shared with cancel() is ram::DestinationState.
#include "engine/device/device_state.h"
#include "engine/ram/block_check.h"
#include "engine/ram/destination_session.h"
#include "engine/ram/destination_state.h"
#include "ferry/migration.h"

namespace ferry {

struct MigrationDestination::Impl : ram::DestinationState {};

MigrationDestination::MigrationDestination(std::vector<RamBlock> blocks)
    : impl_(std::make_unique<Impl>()) {
  ram::check_blocks(blocks, "destination");
  impl_->blocks = std::move(blocks);
}

MigrationDestination::~MigrationDestination() = default;

void MigrationDestination::set_devices(std::vector<Device> devices) {
  device::check_devices(devices, "destination");
  impl_->devices = std::move(devices);
}

void MigrationDestination::cancel() noexcept { impl_->fail("cancelled"); }

DestinationStats MigrationDestination::run(std::vector<transport::ChannelPtr> channels) {
  return ram::DestinationSession(*impl_, std::move(channels)).run();
}

}  // namespace ferry
