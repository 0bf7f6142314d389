// Kernel UAPI that Debian 12's linux-libc-dev (6.1) is too old to declare, copied by value from
// include/uapi/linux/userfaultfd.h and include/uapi/linux/fs.h (Linux 6.7+). Every definition is
// guarded, so newer headers win; the static_asserts catch a layout that drifted from the kernel's.
// Whether the running kernel implements them is decided at run time (UffdWpDirtySource::probe()).
#pragma once

#include <linux/fs.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#include <cstdint>

// userfaultfd.h
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC
#define USERFAULTFD_IOC 0xAA
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00)
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

// fs.h: the PAGEMAP_SCAN ioctl on /proc/<pid>/pagemap.
#ifndef PAGEMAP_SCAN
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#define PAGE_IS_HUGE (1 << 6)
#define PAGE_IS_SOFT_DIRTY (1 << 7)

struct page_region {
  __u64 start;
  __u64 end;  // exclusive
  __u64 categories;
};

#define PM_SCAN_WP_MATCHING (1 << 0)    // write-protect the pages that matched
#define PM_SCAN_CHECK_WPASYNC (1 << 1)  // fail (EPERM) on a VMA without async uffd-wp

struct pm_scan_arg {
  __u64 size;
  __u64 flags;
  __u64 start;
  __u64 end;
  __u64 walk_end;  // written by the kernel: where the walk stopped (== end when complete)
  __u64 vec;
  __u64 vec_len;
  __u64 max_pages;
  __u64 category_inverted;
  __u64 category_mask;
  __u64 category_anyof_mask;
  __u64 return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif  // PAGEMAP_SCAN

static_assert(sizeof(page_region) == 24, "struct page_region layout differs from the kernel's");
static_assert(sizeof(pm_scan_arg) == 96, "struct pm_scan_arg layout differs from the kernel's");
static_assert(PAGEMAP_SCAN == 0xc0606610u, "PAGEMAP_SCAN ioctl number differs from the kernel's");
