// Kernel write tracking of a range of THIS process's memory: userfaultfd write-protect in async
// mode plus the PAGEMAP_SCAN ioctl (Linux 6.7+). For a VMM whose guest RAM is its own anonymous
// memory, or for tests and demos, when no hypervisor dirty log exists.
//
// How: the range is registered with UFFDIO_REGISTER_MODE_WP and write-protected once. With
// UFFD_FEATURE_WP_ASYNC a write to a protected page is resolved inside the kernel (no message,
// no handler thread): it just drops the page's uffd-wp bit. sync() then asks PAGEMAP_SCAN for the
// pages without the bit (PAGE_IS_WRITTEN) and, in the same page-table walk under the page-table
// lock, protects them again (PM_SCAN_WP_MATCHING): a racing write lands in this round or the
// next. UFFD_FEATURE_WP_UNPOPULATED puts markers on never-touched pages so their first write is
// seen as well; without it the kernel refuses async scans of anonymous memory.
//
// Granularity is the base page (4 KiB on x86-64), also for transparent huge pages: a write to a
// protected THP splits it and only the 4 KiB page written is reported. A hugetlbfs page cannot
// be split, so a write marks all of its base pages. Kernel copies into the range (read(2),
// recv(2), ...) fault like user writes and are tracked: async WP is resolved before the
// userfaultfd handler that UFFD_USER_MODE_ONLY restricts. Not seen: DMA through pages pinned
// before the write (RDMA/VFIO registrations, io_uring fixed buffers), pages the range loses
// (munmap, MADV_DONTNEED), and children after fork().
#pragma once

#include "ferry/export.h"
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "ferry/dirty_bitmap.h"
#include "ferry/dirty_source.h"

struct page_region;  // <linux/fs.h>; see engine/ram/linux_uapi_compat.h

namespace ferry {

class FERRY_API UffdWpDirtySource final : public DirtySource {
 public:
  // page_region entries per PAGEMAP_SCAN call (24 bytes each); a sync whose written pages form
  // more ranges than this loops from where the kernel stopped (walk_end).
  static constexpr size_t kDefaultScanRegions = 1024;

  // Empty when this process can track its memory this way, else one line saying why not (no
  // userfaultfd syscall or not permitted, missing WP_ASYNC, no PAGEMAP_SCAN, ...). Runs the real
  // thing once on a few scratch pages (write two, sync, expect exactly those) and caches it.
  static std::string probe();

  // Starts tracking [base, base + length); both multiples of the page size, the range mapped
  // private anonymous (shmem/hugetlbfs also work where the kernel offers
  // UFFD_FEATURE_WP_HUGETLBFS_SHMEM) and registered with no other userfaultfd. The first sync()
  // reports writes since this constructor. Throws std::system_error / std::runtime_error whose
  // what() says which step failed and why; std::invalid_argument for a misaligned range.
  UffdWpDirtySource(void* base, size_t length, size_t scan_regions = kDefaultScanRegions);
  // Closing the userfaultfd unregisters the range and drops the protection (kernel side).
  ~UffdWpDirtySource() override;
  UffdWpDirtySource(const UffdWpDirtySource&) = delete;
  UffdWpDirtySource& operator=(const UffdWpDirtySource&) = delete;

  // On an ioctl failure, marks every page not yet scanned in this call as dirty (never loses a
  // write) and throws std::system_error. No allocation.
  void sync(DirtyBitmap& into) override;
  size_t pages() const override { return length_ / page_size_; }
  const char* name() const override { return "uffd-wp"; }
  size_t page_size() const { return page_size_; }

  // Cumulative, for benchmarks and logs.
  struct Stats {
    uint64_t syncs = 0;
    uint64_t scan_calls = 0;  // PAGEMAP_SCAN ioctls (> syncs when the region buffer filled up)
    uint64_t regions = 0;     // written ranges returned
    uint64_t pages = 0;       // written pages returned
  };
  const Stats& stats() const { return stats_; }

 private:
  struct RegionDeleter {
    void operator()(page_region* p) const;
  };

  uintptr_t start_;
  size_t length_;
  size_t page_size_;
  size_t scan_regions_;
  int uffd_ = -1;
  int pagemap_fd_ = -1;
  std::unique_ptr<page_region, RegionDeleter> regions_;
  Stats stats_;
};

}  // namespace ferry
