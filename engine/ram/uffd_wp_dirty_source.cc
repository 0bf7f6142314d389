#include "ferry/uffd_wp_dirty_source.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "engine/ram/linux_uapi_compat.h"

namespace ferry {
namespace {

std::string errno_name(int e) {
  const char* n = strerrorname_np(e);
  return std::string(n ? n : "errno " + std::to_string(e)) + " (" + std::strerror(e) + ")";
}

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string read_sysctl(const char* path) {
  std::ifstream f(path);
  std::string v;
  if (!(f >> v)) return "unreadable";
  return v;
}

[[noreturn]] void throw_errno(int e, const std::string& what) {
  throw std::system_error(e, std::generic_category(), "uffd-wp dirty tracking: " + what);
}

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// UFFD_USER_MODE_ONLY first: any user may create such a descriptor regardless of
// vm.unprivileged_userfaultfd (Linux 5.11+), and async write-protect never needs the kernel-mode
// fault handling it gives up. /dev/userfaultfd (6.1+) is the route access control can open up
// when the syscall itself is refused.
int open_userfaultfd() {
  const int base = O_CLOEXEC | O_NONBLOCK;
  int fd = static_cast<int>(::syscall(SYS_userfaultfd, base | UFFD_USER_MODE_ONLY));
  if (fd >= 0) return fd;
  int err = errno;
  if (err == EINVAL) {  // a kernel before 5.11 rejects the flag
    fd = static_cast<int>(::syscall(SYS_userfaultfd, base));
    if (fd >= 0) return fd;
    err = errno;
  }
  std::string dev_result;
  {
    Fd dev(::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC));
    if (dev.get() >= 0) {
      fd = ::ioctl(dev.get(), USERFAULTFD_IOC_NEW, base);
      if (fd >= 0) return fd;
      dev_result = "USERFAULTFD_IOC_NEW on it failed with " + errno_name(errno);
    } else {
      dev_result = "opening it failed with " + errno_name(errno);
    }
  }
  std::string why = "userfaultfd(2) failed with " + errno_name(err) + "; ";
  if (err == ENOSYS) {
    why += "the kernel lacks CONFIG_USERFAULTFD or a seccomp filter (e.g. a container's default "
           "profile) blocks the syscall; ";
  } else if (err == EPERM) {
    why += "vm.unprivileged_userfaultfd=" + read_sysctl("/proc/sys/vm/unprivileged_userfaultfd") +
           ", euid=" + std::to_string(::geteuid()) +
           "; even UFFD_USER_MODE_ONLY was refused, so a seccomp filter or LSM denies it (run as "
           "root/CAP_SYS_PTRACE, set vm.unprivileged_userfaultfd=1, or allow the syscall); ";
  }
  why += "/dev/userfaultfd: " + dev_result;
  throw_errno(err, why);
}

uint64_t supported_features() {
  // UFFDIO_API may be issued once per descriptor, so asking costs a descriptor of its own.
  Fd fd(open_userfaultfd());
  uffdio_api api{};
  api.api = UFFD_API;
  if (::ioctl(fd.get(), UFFDIO_API, &api) != 0) throw_errno(errno, "UFFDIO_API (query) failed");
  return api.features;
}

std::string missing_features(uint64_t have, uint64_t need) {
  std::string s;
  if ((need & UFFD_FEATURE_WP_ASYNC) && !(have & UFFD_FEATURE_WP_ASYNC)) s += " WP_ASYNC";
  if ((need & UFFD_FEATURE_WP_UNPOPULATED) && !(have & UFFD_FEATURE_WP_UNPOPULATED)) {
    s += " WP_UNPOPULATED";
  }
  return s;
}

std::string run_probe() {
  const size_t ps = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t n = 4;
  void* mem = ::mmap(nullptr, n * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return "probe: mmap of scratch pages failed with " + errno_name(errno);
  std::string why;
  try {
    UffdWpDirtySource src(mem, n * ps, 4);
    DirtyBitmap dirty(n);
    auto* bytes = static_cast<volatile unsigned char*>(mem);
    bytes[1 * ps] = 1;
    bytes[2 * ps + 7] = 1;
    src.sync(dirty);
    if (dirty.count() != 2 || !dirty.test(1) || !dirty.test(2)) {
      why = "probe: after writing pages 1 and 2 of 4, PAGEMAP_SCAN reported " +
            std::to_string(dirty.count()) + " written page(s) (pages 0..3: " +
            std::to_string(dirty.test(0)) + std::to_string(dirty.test(1)) +
            std::to_string(dirty.test(2)) + std::to_string(dirty.test(3)) + ")";
    } else {
      dirty.clear_all();
      src.sync(dirty);
      if (dirty.count() != 0) why = "probe: written pages were not write-protected again by the scan";
    }
  } catch (const std::exception& e) {
    why = e.what();
  }
  ::munmap(mem, n * ps);
  return why;
}

}  // namespace

void UffdWpDirtySource::RegionDeleter::operator()(page_region* p) const { delete[] p; }

std::string UffdWpDirtySource::probe() {
  static const std::string result = run_probe();
  return result;
}

UffdWpDirtySource::UffdWpDirtySource(void* base, size_t length, size_t scan_regions)
    : start_(reinterpret_cast<uintptr_t>(base)),
      length_(length),
      page_size_(static_cast<size_t>(::sysconf(_SC_PAGESIZE))),
      scan_regions_(std::max<size_t>(scan_regions, 1)) {
  if (length_ == 0 || start_ % page_size_ != 0 || length_ % page_size_ != 0) {
    throw std::invalid_argument("uffd-wp dirty tracking: range " + hex(start_) + "+" +
                                hex(length_) + " is empty or not aligned to the page size (" +
                                std::to_string(page_size_) + ")");
  }
  if (length_ / page_size_ > DirtyBitmap::kMaxPages) {
    throw std::invalid_argument("uffd-wp dirty tracking: range has more pages than a bitmap holds");
  }

  const uint64_t have = supported_features();
  const uint64_t need = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
  if ((have & need) != need) {
    throw std::runtime_error("uffd-wp dirty tracking: userfaultfd lacks" +
                             missing_features(have, need) + " (Linux 6.7+ needed; this kernel offers "
                             "features " + hex(have) + ")");
  }
  Fd uffd(open_userfaultfd());
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = need | (have & UFFD_FEATURE_WP_HUGETLBFS_SHMEM);
  if (::ioctl(uffd.get(), UFFDIO_API, &api) != 0) {
    throw_errno(errno, "UFFDIO_API with features " + hex(api.features) + " failed");
  }

  uffdio_register reg{};
  reg.range.start = start_;
  reg.range.len = length_;
  reg.mode = UFFDIO_REGISTER_MODE_WP;
  if (::ioctl(uffd.get(), UFFDIO_REGISTER, &reg) != 0) {
    const int e = errno;
    throw_errno(e, "UFFDIO_REGISTER (write-protect mode) of " + hex(start_) + "+" + hex(length_) +
                       " failed; the range must be mapped, private anonymous (or shmem/hugetlbfs)" +
                       (e == EBUSY ? ", and not registered with another userfaultfd" : ""));
  }
  if (!(reg.ioctls & (uint64_t{1} << _UFFDIO_WRITEPROTECT))) {
    throw std::runtime_error("uffd-wp dirty tracking: the kernel cannot write-protect this range "
                             "(UFFDIO_WRITEPROTECT not offered for it)");
  }
  uffdio_writeprotect wp{};
  wp.range = reg.range;
  wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
  if (::ioctl(uffd.get(), UFFDIO_WRITEPROTECT, &wp) != 0) {
    throw_errno(errno, "UFFDIO_WRITEPROTECT of the range failed");
  }

  Fd pagemap(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  if (pagemap.get() < 0) throw_errno(errno, "opening /proc/self/pagemap failed (is /proc mounted?)");
  // A report-only scan of the first page: finds a kernel without PAGEMAP_SCAN (ENOTTY/EINVAL) or
  // a range the kernel does not track asynchronously (EPERM) now rather than at the first sync.
  page_region one{};
  pm_scan_arg arg{};
  arg.size = sizeof arg;
  arg.flags = PM_SCAN_CHECK_WPASYNC;
  arg.start = start_;
  arg.end = start_ + page_size_;
  arg.vec = reinterpret_cast<uintptr_t>(&one);
  arg.vec_len = 1;
  arg.category_mask = PAGE_IS_WRITTEN;
  arg.return_mask = PAGE_IS_WRITTEN;
  if (::ioctl(pagemap.get(), PAGEMAP_SCAN, &arg) < 0) {
    const int e = errno;
    std::string why = "PAGEMAP_SCAN on /proc/self/pagemap failed";
    if (e == ENOTTY || e == EINVAL) why += ": the kernel has no PAGEMAP_SCAN ioctl (Linux 6.7+)";
    if (e == EPERM) why += ": the range is not under async write-protect";
    throw_errno(e, why);
  }

  regions_.reset(new page_region[scan_regions_]);
  uffd_ = uffd.release();
  pagemap_fd_ = pagemap.release();
}

UffdWpDirtySource::~UffdWpDirtySource() {
  if (pagemap_fd_ >= 0) ::close(pagemap_fd_);
  if (uffd_ >= 0) ::close(uffd_);
}

void UffdWpDirtySource::sync(DirtyBitmap& into) {
  if (into.size() != pages()) {
    throw std::invalid_argument("uffd-wp dirty tracking: syncing " + std::to_string(pages()) +
                                " pages into a bitmap of " + std::to_string(into.size()));
  }
  const uintptr_t end = start_ + length_;
  pm_scan_arg arg{};
  arg.size = sizeof arg;
  arg.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
  arg.end = end;
  arg.vec = reinterpret_cast<uintptr_t>(regions_.get());
  arg.vec_len = scan_regions_;
  arg.category_mask = PAGE_IS_WRITTEN;
  arg.return_mask = PAGE_IS_WRITTEN;

  ++stats_.syncs;
  uintptr_t cur = start_;
  while (cur < end) {
    arg.start = cur;
    arg.walk_end = 0;
    const long n = ::ioctl(pagemap_fd_, PAGEMAP_SCAN, &arg);
    const int e = errno;
    if (n < 0 || (n == 0 && arg.walk_end <= cur)) {
      // Whatever this call re-protected without telling us is unknown: report it all written.
      into.set_range((cur - start_) / page_size_, (end - cur) / page_size_);
      if (n < 0) throw_errno(e, "PAGEMAP_SCAN during sync failed");
      throw std::runtime_error("uffd-wp dirty tracking: PAGEMAP_SCAN made no progress at " +
                               hex(cur));
    }
    ++stats_.scan_calls;
    for (long i = 0; i < n; ++i) {
      const page_region& r = regions_.get()[i];
      const uintptr_t lo = std::max<uintptr_t>(r.start, start_);
      const uintptr_t hi = std::min<uintptr_t>(r.end, end);
      if (lo >= hi) continue;
      const size_t npages = (hi - lo) / page_size_;
      into.set_range((lo - start_) / page_size_, npages);
      ++stats_.regions;
      stats_.pages += npages;
    }
    // The kernel stops early only when the region buffer is full; walk_end is where to resume.
    cur = arg.walk_end;
  }
}

}  // namespace ferry
