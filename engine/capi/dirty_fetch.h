// The source's dirty sources behind ferry_source_add_ram (a C callback) and
// ferry_source_add_ram_kvm (KVM's dirty log of one memory slot). Both are HypervisorBitmapSource
// fetches: they fill one block's bitmap and re-arm logging in the same step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "ferry/dirty_source.h"
#include "ferry/ferry.h"
#include "ferry/migration.h"

namespace ferry::capi {

// The caller's fetch; a non-zero return throws MigrationError naming the block.
std::unique_ptr<DirtySource> callback_dirty_source(const RamBlock& block,
                                                   ferry_dirty_fetch_fn fetch, void* opaque);

// One KVM memory slot's dirty log: KVM_GET_DIRTY_LOG, and with manual_protect a
// KVM_CLEAR_DIRTY_LOG of exactly the reported pages (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2).
// Failures throw MigrationError naming the ioctl, the slot, the block and errno.
class KvmDirtyLog {
 public:
  KvmDirtyLog(std::string block, size_t pages, int vm_fd, uint32_t slot, bool manual_protect);
  // nwords = (pages + 63) / 64 zeroed words.
  void fetch(uint64_t* words, size_t nwords) const;

 private:
  [[noreturn]] void fail(const char* ioctl_name, int err) const;

  std::string block_;
  size_t pages_;
  int vm_fd_;
  uint32_t slot_;
  bool manual_protect_;
};

std::unique_ptr<DirtySource> kvm_dirty_source(const RamBlock& block, int vm_fd, uint32_t slot,
                                              uint32_t flags);

}  // namespace ferry::capi
