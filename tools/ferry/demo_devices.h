// Device state for `ferry demo/send/recv`: two synthetic devices described with the vmstate
// layer travel with the image, as a hypervisor's would (after the final RAM pass, in the
// downtime). "cpu" has registers, a variable array of MSRs and a subsection sent only when a
// TSC deadline is armed; "virtio-net" has counters, a MAC and a QTAILQ of in-flight requests
// (marker-byte loop, malloc'd elements). Both sides derive the expected state from --seed, so
// the receiver can check the devices it loaded, like the image.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ferry/migration.h"

namespace ferry::cli {

class DemoDevices {
 public:
  // source: the state the seed gives; destination (!source): empty, for the engine to load.
  DemoDevices(uint64_t seed, bool source);
  ~DemoDevices();
  DemoDevices(const DemoDevices&) = delete;
  DemoDevices& operator=(const DemoDevices&) = delete;

  // What to pass to MigrationSource/MigrationDestination::set_devices (points into this).
  std::vector<Device> devices();
  // Destination, after run(): "" when the loaded state equals what the seed gives, else what
  // differs first.
  std::string compare_with_seed() const;

  struct State;

 private:
  uint64_t seed_;
  std::unique_ptr<State> state_;
};

}  // namespace ferry::cli
