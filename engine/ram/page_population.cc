#include "engine/ram/page_population.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "engine/ram/linux_uapi_compat.h"

namespace ferry::ram {
namespace {

constexpr size_t kBasePage = 4096;
constexpr uint64_t kAsked = PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_PFNZERO;
// Regions one scan may return: adjacent pages of one kind merge, so a batch rarely needs many.
constexpr size_t kMaxRegions = 1024;

int scan(int fd, uintptr_t start, uintptr_t end, page_region* vec, size_t vec_len,
         uint64_t& walk_end) {
  pm_scan_arg arg{};
  arg.size = sizeof arg;
  arg.start = start;
  arg.end = end;
  arg.vec = reinterpret_cast<uintptr_t>(vec);
  arg.vec_len = vec_len;
  // Every populated page (present or swapped), with whether it is the zero page; the gaps
  // between the returned regions are the unpopulated pages.
  arg.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
  arg.return_mask = kAsked;
  const int n = ::ioctl(fd, PAGEMAP_SCAN, &arg);
  walk_end = arg.walk_end;
  return n;
}

PageState state_of(uint64_t categories) {
  if (categories & PAGE_IS_PRESENT) {
    return (categories & PAGE_IS_PFNZERO) ? PageState::kZero : PageState::kPresent;
  }
  return PageState::kSwapped;
}

// A page made of several base pages is as hard to know as its hardest part.
PageState combine(PageState a, PageState b) {
  if (a == PageState::kUnknown || b == PageState::kUnknown) return PageState::kUnknown;
  return std::max(a, b);
}

// The kernel answers what it was asked on two fresh pages: one written, one untouched.
bool scan_works(int fd) {
  void* mem = ::mmap(nullptr, 2 * kBasePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
  if (mem == MAP_FAILED) return false;
  static_cast<volatile uint8_t*>(mem)[0] = 1;
  page_region r[2]{};
  uint64_t walk_end = 0;
  const auto start = reinterpret_cast<uintptr_t>(mem);
  const int n = scan(fd, start, start + 2 * kBasePage, r, 2, walk_end);
  const bool ok = n == 1 && r[0].start == start && r[0].end == start + kBasePage &&
                  state_of(r[0].categories) == PageState::kPresent &&
                  walk_end == start + 2 * kBasePage;
  ::munmap(mem, 2 * kBasePage);
  return ok;
}

bool anonymous_private_line(const std::string& line, uintptr_t& lo, uintptr_t& hi) {
  std::istringstream in(line);
  std::string range, perms, offset, dev, path;
  unsigned long long inode = 0;
  if (!(in >> range >> perms >> offset >> dev >> inode)) return false;
  std::getline(in >> std::ws, path);
  unsigned long long a = 0, b = 0;
  if (std::sscanf(range.c_str(), "%llx-%llx", &a, &b) != 2) return false;
  lo = static_cast<uintptr_t>(a);
  hi = static_cast<uintptr_t>(b);
  // "[anon:NAME]" is a private anonymous mapping named with PR_SET_VMA_ANON_NAME.
  const bool anonymous = path.empty() || path == "[heap]" || path.rfind("[anon:", 0) == 0;
  return perms.size() == 4 && perms[3] == 'p' && inode == 0 && anonymous;
}

}  // namespace

std::unique_ptr<PagePopulation> PagePopulation::open() {
  const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return nullptr;
  if (!scan_works(fd)) {
    ::close(fd);
    return nullptr;
  }
  return std::unique_ptr<PagePopulation>(new PagePopulation(fd));
}

PagePopulation::~PagePopulation() { ::close(fd_); }

bool PagePopulation::private_anonymous(const void* addr, size_t len) {
  std::ifstream maps("/proc/self/maps");
  auto want = reinterpret_cast<uintptr_t>(addr);
  const uintptr_t end = want + len;
  std::string line;
  // Lines come sorted by address: the range must be covered without a gap.
  while (want < end && std::getline(maps, line)) {
    uintptr_t lo = 0, hi = 0;
    const bool fits = anonymous_private_line(line, lo, hi);
    if (hi <= want) continue;
    if (lo > want || !fits) return false;
    want = hi;
  }
  return want >= end;
}

bool PagePopulation::classify(const uint8_t* begin, size_t pages, size_t page_size,
                              std::vector<PageState>& states,
                              std::vector<uint64_t>& scratch) const {
  states.assign(pages, PageState::kUnknown);
  const auto start = reinterpret_cast<uintptr_t>(begin);
  const uintptr_t end = start + pages * page_size;
  if (pages == 0 || start % kBasePage != 0 || page_size % kBasePage != 0) return false;
  static_assert(sizeof(page_region) == 3 * sizeof(uint64_t));
  const size_t vec_len = std::min(kMaxRegions, pages * (page_size / kBasePage));
  scratch.resize(3 * vec_len);
  auto* vec = reinterpret_cast<page_region*>(scratch.data());
  uint64_t walk_end = 0;
  const int n = scan(fd_, start, end, vec, vec_len, walk_end);
  if (n < 0 || walk_end <= start || walk_end > end) return false;
  // Pages wholly inside the walked span start as "unpopulated"; the regions say otherwise.
  const size_t walked = (walk_end - start) / page_size;
  std::fill_n(states.begin(), walked, PageState::kZero);
  for (int i = 0; i < n; ++i) {
    const page_region& r = vec[i];
    const size_t first = (std::max<uint64_t>(r.start, start) - start) / page_size;
    const size_t last = (std::min<uint64_t>(r.end, end) - 1 - start) / page_size;
    for (size_t p = first; p <= last && p < pages; ++p) {
      states[p] = combine(states[p], state_of(r.categories));
    }
  }
  return true;
}

}  // namespace ferry::ram
