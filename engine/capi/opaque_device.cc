#include "engine/capi/opaque_device.h"

#include <cstring>

#include "engine/capi/errors.h"

namespace ferry::capi {

OpaqueDevice::OpaqueDevice(std::string idstr, uint32_t instance_id, const ferry_device_ops& ops,
                           void* opaque, const char* function)
    : idstr_(std::move(idstr)), instance_id_(instance_id), ops_(ops), opaque_(opaque) {
  require(ops.save != nullptr, function, "ops->save is NULL");
  require(ops.load != nullptr, function, "ops->load is NULL");
  require(ops.version >= 1 && ops.version <= INT32_MAX, function,
          "ops->version " + std::to_string(ops.version) + " is not >= 1");
  require(ops.max_bytes >= 1 && ops.max_bytes <= kMaxOpaqueDeviceBytes, function,
          "ops->max_bytes " + std::to_string(ops.max_bytes) + " is not in 1.." +
              std::to_string(kMaxOpaqueDeviceBytes) +
              " (a device's state travels in one packet of at most 4 MiB)");
  const size_t words = (kDataOffset + ops.max_bytes + 7) / 8;
  storage_ = std::make_unique_for_overwrite<uint64_t[]>(words);
  state() = State{this, 0, 0};

  fields_[0] = FerryVmsField{"len", FERRY_VMS_U32, FERRY_VMS_SINGLE, offsetof(State, len),
                             sizeof(uint32_t), 0, 0, 0, nullptr, nullptr, nullptr, nullptr};
  fields_[1] = FerryVmsField{"data", FERRY_VMS_U8, FERRY_VMS_VARRAY32, kDataOffset, 1,
                             static_cast<uint32_t>(ops.max_bytes), offsetof(State, len), 0,
                             nullptr, nullptr, nullptr, nullptr};
  fields_[2] = FerryVmsField{nullptr, FERRY_VMS_END, FERRY_VMS_SINGLE, 0, 0, 0, 0, 0,
                             nullptr, nullptr, nullptr, nullptr};
  // Older versions load too (the bytes are the caller's to interpret); newer ones are refused.
  vmsd_ = FerryVmsDescription{idstr_.c_str(), static_cast<int>(ops.version), 1, nullptr,
                              &OpaqueDevice::pre_save, &OpaqueDevice::post_load, fields_,
                              nullptr};
}

Device OpaqueDevice::device() const {
  return Device{idstr_, instance_id_, &vmsd_, storage_.get()};
}

std::string OpaqueDevice::who() const {
  return "device '" + idstr_ + "' instance " + std::to_string(instance_id_);
}

// The hooks throw MigrationError instead of returning a code so the message says what the
// callback did; the walker calls them outside any partly built state, and the engine reports
// a MigrationError from a device save or load like its own (naming the device).
int OpaqueDevice::pre_save(void* state) {
  auto& s = *static_cast<State*>(state);
  const OpaqueDevice& d = *s.owner;
  size_t len = 0;
  const int rc = d.ops_.save(d.opaque_, d.data(), d.ops_.max_bytes, &len);
  if (rc != 0) throw MigrationError(d.who() + ": save returned " + std::to_string(rc));
  if (len > d.ops_.max_bytes) {
    throw MigrationError(d.who() + ": save reported " + std::to_string(len) +
                         " bytes, more than its capacity of " +
                         std::to_string(d.ops_.max_bytes));
  }
  s.len = static_cast<uint32_t>(len);
  return 0;
}

int OpaqueDevice::post_load(void* state, int /*version_id*/) {
  auto& s = *static_cast<State*>(state);
  const OpaqueDevice& d = *s.owner;
  const int rc = d.ops_.load(d.opaque_, d.data(), s.len);
  if (rc != 0) throw MigrationError(d.who() + ": load returned " + std::to_string(rc));
  return 0;
}

}  // namespace ferry::capi
