#include "engine/capi/device_list.h"

#include "engine/capi/errors.h"
#include "engine/device/device_state.h"

namespace ferry::capi {

void DeviceList::add_checked(Device d, const char* function) {
  std::vector<Device> all = devices_;
  all.push_back(std::move(d));
  try {
    device::check_devices(all, function);  // "<function>: device ...: why"
  } catch (const MigrationError& e) {
    throw InvalidCall(e.what());
  }
  devices_ = std::move(all);
}

void DeviceList::add_vmstate(const char* idstr, uint32_t instance_id,
                             const FerryVmsDescription* vmsd, void* opaque,
                             const char* function) {
  require_arg(idstr, function, "idstr");
  require_arg(vmsd, function, "vmsd");
  add_checked(Device{idstr, instance_id, vmsd, opaque}, function);
}

void DeviceList::add_opaque(const char* idstr, uint32_t instance_id,
                            const ferry_device_ops* ops, void* opaque, const char* function) {
  require_arg(idstr, function, "idstr");
  require_arg(ops, function, "ops");
  auto dev = std::make_unique<OpaqueDevice>(idstr, instance_id, *ops, opaque, function);
  opaque_.reserve(opaque_.size() + 1);  // the push_back below cannot fail after add_checked
  add_checked(dev->device(), function);
  opaque_.push_back(std::move(dev));
}

}  // namespace ferry::capi
