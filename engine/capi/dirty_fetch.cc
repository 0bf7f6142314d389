#include "engine/capi/dirty_fetch.h"

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

#include "ferry/bitmap_dirty_source.h"

namespace ferry::capi {

std::unique_ptr<DirtySource> callback_dirty_source(const RamBlock& block,
                                                   ferry_dirty_fetch_fn fetch, void* opaque) {
  const size_t pages = block.size / block.page_size;
  auto call = [fetch, opaque, name = block.name](uint64_t* words, size_t nwords) {
    const int rc = fetch(opaque, words, nwords);
    if (rc != 0) {
      throw MigrationError("dirty fetch of block '" + name + "' returned " + std::to_string(rc));
    }
  };
  return std::make_unique<HypervisorBitmapSource>(pages, std::move(call), "c-callback");
}

KvmDirtyLog::KvmDirtyLog(std::string block, size_t pages, int vm_fd, uint32_t slot,
                         bool manual_protect)
    : block_(std::move(block)),
      pages_(pages),
      vm_fd_(vm_fd),
      slot_(slot),
      manual_protect_(manual_protect) {}

void KvmDirtyLog::fail(const char* ioctl_name, int err) const {
  throw MigrationError(std::string(ioctl_name) + " of slot " + std::to_string(slot_) +
                       " (block '" + block_ + "') failed: errno " + std::to_string(err) + " (" +
                       std::strerror(err) + ")");
}

void KvmDirtyLog::fetch(uint64_t* words, size_t nwords) const {
  // KVM copies ALIGN(pages, 64) / 8 bytes: exactly our nwords words.
  kvm_dirty_log get{};
  get.slot = slot_;
  get.dirty_bitmap = words;
  if (::ioctl(vm_fd_, KVM_GET_DIRTY_LOG, &get) != 0) fail("KVM_GET_DIRTY_LOG", errno);
  if (!manual_protect_) return;  // KVM re-protected the slot inside the GET
  bool any = false;
  for (size_t w = 0; w < nwords && !any; ++w) any = words[w] != 0;
  if (!any) return;
  // With manual protection the GET left every page writable and its bit set: re-arm exactly
  // the pages it reported. first_page 0 is 64-aligned and num_pages reaches the end of the
  // slot, the two things KVM requires of a clear.
  kvm_clear_dirty_log clear{};
  clear.slot = slot_;
  clear.first_page = 0;
  clear.num_pages = static_cast<uint32_t>(pages_);
  clear.dirty_bitmap = words;
  if (::ioctl(vm_fd_, KVM_CLEAR_DIRTY_LOG, &clear) != 0) fail("KVM_CLEAR_DIRTY_LOG", errno);
}

std::unique_ptr<DirtySource> kvm_dirty_source(const RamBlock& block, int vm_fd, uint32_t slot,
                                              uint32_t flags) {
  const size_t pages = block.size / block.page_size;
  auto log = std::make_shared<const KvmDirtyLog>(block.name, pages, vm_fd, slot,
                                                 (flags & FERRY_KVM_MANUAL_PROTECT) != 0);
  auto call = [log](uint64_t* words, size_t nwords) { log->fetch(words, nwords); };
  return std::make_unique<HypervisorBitmapSource>(pages, std::move(call), "kvm-dirty-log");
}

}  // namespace ferry::capi
