// The devices one side registers (both sides keep one): vmstate devices over the caller's
// objects and opaque devices whose description and buffer this list owns.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/capi/opaque_device.h"
#include "ferry/ferry.h"
#include "ferry/migration.h"

namespace ferry::capi {

class DeviceList {
 public:
  // Both throw InvalidCall naming `function` for NULL arguments, a bad idstr or description,
  // or an (idstr, instance_id) already registered.
  void add_vmstate(const char* idstr, uint32_t instance_id, const FerryVmsDescription* vmsd,
                   void* opaque, const char* function);
  void add_opaque(const char* idstr, uint32_t instance_id, const ferry_device_ops* ops,
                  void* opaque, const char* function);

  const std::vector<Device>& devices() const { return devices_; }

 private:
  void add_checked(Device d, const char* function);

  std::vector<Device> devices_;
  std::vector<std::unique_ptr<OpaqueDevice>> opaque_;  // devices_ point into these
};

}  // namespace ferry::capi
