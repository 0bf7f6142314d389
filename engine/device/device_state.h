// Device state on ferry's main channel (issue 5 item 4). After the final RAM pass, with the guest
// stopped, the source saves every registered Device (include/ferry/migration.h) as one QEMU section per
// DEVICE packet and then sends a VMDESC packet: their count and QEMU's vmdesc JSON describing
// every section (engine/vmstate/vmdesc_json.h), so a reader without the device code can decode
// them. The destination looks each section up by idstr/instance id, loads it through the vmstate
// walker (post_load hooks run) and only then confirms completion. Wire layout: the DEVICE and
// VMDESC entries in engine/ram/wire_format.h.
//
// The bodies are byte for byte what QEMU's savevm.c writes for a vmstate device, so "QEVM", be32
// 3, the DEVICE bodies, EOF and the VMDESC trailer make a QEMU stream (qemu_device_stream) that
// `ferry dump` and scripts/analyze-migration.py decode.
#pragma once

#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ferry/migration.h"

namespace ferry::device {

// Throws MigrationError unless every device has an idstr of 1..255 bytes, a description with a
// name and a field table, and a unique (idstr, instance id). `side` prefixes the message.
void check_devices(const std::vector<Device>& devices, const char* side);

struct SavedDevices {
  std::vector<std::vector<uint8_t>> sections;  // DEVICE bodies, in registration order
  std::vector<uint8_t> vmdesc;                 // the VMDESC body
  std::string vmdesc_json;                     // the JSON inside it
  uint64_t bytes() const;                      // all bodies together
};

// Saves every device (section id = its index): pre_save hooks run; a failing hook or description
// throws MigrationError "device 'idstr' instance N: ...". page_size goes into the vmdesc.
SavedDevices save_devices(const std::vector<Device>& devices, uint32_t page_size);

// A QEMU migration stream of only these sections: "QEVM", be32 3, the sections, QEMU_VM_EOF and
// the vmdesc trailer (0x06, be32 length, JSON).
std::vector<uint8_t> qemu_device_stream(const SavedDevices& saved);

// The destination's side. Errors are MigrationError naming the device (and for malformed bytes
// "channel 0, packet P, offset O: ..."). A failed load may leave a device half loaded: allocated
// list elements stay reachable from its object (ferry_vms_release frees them).
class DeviceLoader {
 public:
  explicit DeviceLoader(const std::vector<Device>& devices) : devices_(devices) {}

  // One DEVICE body: header, lookup (unknown idstr/instance: refused), version checks, the
  // body through the walker (post_load runs), footer, nothing after it.
  void load_section(std::span<const uint8_t> body, uint64_t packet);
  // The VMDESC body: the DEVICE count matches, the JSON parses and lists that many devices.
  void load_vmdesc(std::span<const uint8_t> body, uint64_t packet);
  // After the last device message (or none): every registered device arrived, and the VMDESC.
  void finish() const;

  uint32_t loaded() const { return static_cast<uint32_t>(loaded_.size()); }
  const std::string& vmdesc() const { return vmdesc_; }

 private:
  const std::vector<Device>& devices_;
  std::set<std::pair<std::string, uint32_t>> loaded_;
  uint32_t sections_ = 0;
  bool have_vmdesc_ = false;
  std::string vmdesc_;
};

}  // namespace ferry::device
