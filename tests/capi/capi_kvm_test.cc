// ferry_source_add_ram_kvm against a real KVM VM: a slot with dirty logging and manual
// protection (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 with INITIALLY_SET), no vCPU. Skips where
// /dev/kvm cannot be used.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "engine/capi/dirty_fetch.h"
#include "tests/capi/capi_test_util.h"

namespace ferry::capi_test {
namespace {

using ::testing::HasSubstr;

// 100 pages: not a multiple of 64, so the clear's num_pages is legal only because it reaches
// the end of the slot.
constexpr size_t kSlotPages = 100;
constexpr uint32_t kSlot = 0;

class KvmVm {
 public:
  // "" when the VM and its slot are ready, else why not.
  std::string open(void* memory, size_t bytes) {
    kvm_ = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm_ < 0) return std::string("/dev/kvm: ") + std::strerror(errno);
    vm_ = ::ioctl(kvm_, KVM_CREATE_VM, 0);
    if (vm_ < 0) return std::string("KVM_CREATE_VM: ") + std::strerror(errno);
    if (::ioctl(vm_, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) <= 0) {
      return "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 not offered";
    }
    kvm_enable_cap cap{};
    cap.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2;
    cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;  // 3
    if (::ioctl(vm_, KVM_ENABLE_CAP, &cap) != 0) {
      return std::string("KVM_ENABLE_CAP(MANUAL_DIRTY_LOG_PROTECT2): ") + std::strerror(errno);
    }
    kvm_userspace_memory_region region{};
    region.slot = kSlot;
    region.flags = KVM_MEM_LOG_DIRTY_PAGES;
    region.guest_phys_addr = 0;
    region.memory_size = bytes;
    region.userspace_addr = reinterpret_cast<uint64_t>(memory);
    if (::ioctl(vm_, KVM_SET_USER_MEMORY_REGION, &region) != 0) {
      return std::string("KVM_SET_USER_MEMORY_REGION: ") + std::strerror(errno);
    }
    return "";
  }
  ~KvmVm() {
    if (vm_ >= 0) ::close(vm_);
    if (kvm_ >= 0) ::close(kvm_);
  }
  int fd() const { return vm_; }

 private:
  int kvm_ = -1;
  int vm_ = -1;
};

size_t set_bits(const std::vector<uint64_t>& words) {
  size_t n = 0;
  for (uint64_t w : words) n += static_cast<size_t>(__builtin_popcountll(w));
  return n;
}

TEST(CapiKvm, FirstFetchReportsEveryPageAndNoneAfterTheClear) {
  Memory mem(kSlotPages * 4096);
  KvmVm vm;
  if (std::string why = vm.open(mem.data(), mem.size()); !why.empty()) GTEST_SKIP() << why;
  const capi::KvmDirtyLog log("pc.ram", kSlotPages, vm.fd(), kSlot, /*manual_protect=*/true);
  std::vector<uint64_t> words((kSlotPages + 63) / 64, 0);
  log.fetch(words.data(), words.size());
  EXPECT_EQ(set_bits(words), kSlotPages);  // INITIALLY_SET: all of them, nothing past the end
  std::fill(words.begin(), words.end(), 0);
  log.fetch(words.data(), words.size());
  EXPECT_EQ(set_bits(words), 0u) << "the first fetch's KVM_CLEAR_DIRTY_LOG did not clear";
}

TEST(CapiKvm, IoctlFailuresNameTheIoctlSlotAndErrno) {
  Memory mem(kSlotPages * 4096);
  KvmVm vm;
  if (std::string why = vm.open(mem.data(), mem.size()); !why.empty()) GTEST_SKIP() << why;
  const capi::KvmDirtyLog log("pc.ram", kSlotPages, vm.fd(), 7, true);  // no slot 7
  std::vector<uint64_t> words((kSlotPages + 63) / 64, 0);
  try {
    log.fetch(words.data(), words.size());
    FAIL() << "fetch of a missing slot succeeded";
  } catch (const MigrationError& e) {
    EXPECT_THAT(e.what(), HasSubstr("KVM_GET_DIRTY_LOG of slot 7 (block 'pc.ram') failed: errno"));
  }
}

// The whole path through the C API: the source's dirty log is KVM's. Nothing writes the
// slot (no vCPU), so after the bulk pass the sync must find no page dirty: the clear worked.
TEST(CapiKvm, MigratesAKvmSlotThroughTheCApi) {
  Memory mem(kSlotPages * 4096);
  for (size_t i = 0; i < mem.size(); i += 4096) static_cast<uint8_t*>(mem.data())[i + 5] = i / 4096;
  KvmVm vm;
  if (std::string why = vm.open(mem.data(), mem.size()); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  Destination dst(mem.size());
  const std::string address = dst.listen("unix:" + dir.path() + "/sock");
  dst.start();
  ferry_source* src = nullptr;
  ASSERT_EQ(ferry_source_new(nullptr, &src), FERRY_OK);
  const ferry_ram_block b = {"pc.ram", mem.data(), mem.size(), 4096, 0};
  ASSERT_EQ(ferry_source_add_ram_kvm(src, &b, vm.fd(), kSlot, FERRY_KVM_MANUAL_PROTECT), FERRY_OK)
      << ferry_last_error();
  ASSERT_EQ(ferry_source_connect(src, address.c_str()), FERRY_OK) << ferry_last_error();
  ASSERT_EQ(ferry_source_run(src), FERRY_OK) << ferry_last_error();
  const Outcome d = dst.wait();
  ASSERT_EQ(d.status, FERRY_OK) << d.error;
  EXPECT_EQ(std::memcmp(mem.data(), dst.memory(), mem.size()), 0);
  const nlohmann::json st = source_stats(src);
  EXPECT_EQ(st["dirty-tracking"], "kvm-dirty-log");
  EXPECT_EQ(st["converged-by"], "nothing-dirty");
  EXPECT_EQ(st["iterations"][0]["remaining-dirty-pages"], 0);
  ferry_source_free(src);
}

}  // namespace
}  // namespace ferry::capi_test
