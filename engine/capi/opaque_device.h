// ferry_device_ops: a device whose state is bytes the caller produces (save) and consumes (load).
// Each becomes an ordinary vmstate device, so it travels like any other DEVICE section: a
// generated description named after the idstr, version ops.version, with two fields over a
// buffer reserved at registration,
//   len   U32                      bytes in use
//   data  VARRAY32 of U8 (len)     capacity ops.max_bytes
// whose pre_save calls ops.save into the buffer and whose post_load hands it to ops.load.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "ferry/ferry.h"
#include "ferry/migration.h"

namespace ferry::capi {

// A device's state travels in one DEVICE packet (engine/ram/wire_format.h: at most 4 MiB, the
// section header and the len field included): max_bytes beyond this could never be sent.
inline constexpr size_t kMaxOpaqueDeviceBytes = (4u << 20) - 4096;

class OpaqueDevice {
 public:
  // Throws InvalidCall naming `function` for missing callbacks, a zero version, or max_bytes
  // outside 1..kMaxOpaqueDeviceBytes; std::bad_alloc if the buffer cannot be reserved.
  OpaqueDevice(std::string idstr, uint32_t instance_id, const ferry_device_ops& ops,
               void* opaque, const char* function);
  OpaqueDevice(const OpaqueDevice&) = delete;
  OpaqueDevice& operator=(const OpaqueDevice&) = delete;

  // The Device to register: its description and state live as long as this object.
  Device device() const;

 private:
  // The vmstate object: a header the fields point into, then the bytes.
  struct State {
    OpaqueDevice* owner;
    uint32_t len;
    uint32_t reserved;
  };
  static constexpr size_t kDataOffset = sizeof(State);

  static int pre_save(void* state);
  static int post_load(void* state, int version_id);
  uint8_t* data() const { return reinterpret_cast<uint8_t*>(storage_.get()) + kDataOffset; }
  State& state() const { return *reinterpret_cast<State*>(storage_.get()); }
  std::string who() const;

  std::string idstr_;
  uint32_t instance_id_;
  ferry_device_ops ops_;
  void* opaque_;
  std::unique_ptr<uint64_t[]> storage_;  // State, then max_bytes of data
  FerryVmsField fields_[3];
  FerryVmsDescription vmsd_;
};

}  // namespace ferry::capi
