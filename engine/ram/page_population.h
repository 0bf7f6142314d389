// Which guest pages hold nothing yet, asked of the kernel's page tables instead of the pages.
//
// A page of a private anonymous mapping that was never populated (no page table entry), or
// that only maps the shared zero page (it was read, never written), reads as zeros: a read
// would fault it in just to find that out. On this project's test host that fault cost
// 0.25-0.45 s per GiB, more than the scan for zeros itself; a guest that touched a few GiB
// of a large RAM leaves the rest in exactly this state. PAGEMAP_SCAN (Linux 6.7+) reports
// per page range whether it is present, swapped, or the zero page, under the mm's lock, so
// the answer is what a read at that moment would have returned; a guest write racing it
// marks the page dirty for the next pass, as with any page read by the bulk pass.
//
// Only private anonymous mappings (inode 0, no file, not shared) qualify: for a shared or
// file mapping an empty page table entry says nothing about the page cache behind it.
// Swapped entries (real swap, a page being migrated, and the uffd-wp markers that async
// write-protect puts on empty entries) are "not known": the sender reads those pages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace ferry::ram {

enum class PageState : uint8_t {
  kUnknown = 0,  // read it (scan stopped early, or no answer for it)
  kZero,         // not populated, or the shared zero page: reads as zeros
  kSwapped,      // swap/migration entry or uffd-wp marker: fault it in, then read it
  kPresent,      // a page of its own: read it
};

class PagePopulation {
 public:
  // nullptr when this kernel or /proc cannot answer (no PAGEMAP_SCAN, no /proc mounted).
  static std::unique_ptr<PagePopulation> open();
  ~PagePopulation();
  PagePopulation(const PagePopulation&) = delete;
  PagePopulation& operator=(const PagePopulation&) = delete;

  // Whether [addr, addr + len) lies wholly in private anonymous mappings (/proc/self/maps).
  static bool private_anonymous(const void* addr, size_t len);

  // The state of `pages` pages of `page_size` bytes from `begin` (page-aligned) into
  // states[0..pages). `scratch` is reused between calls. Thread-safe (one ioctl per call).
  // Returns false (states all kUnknown) if the kernel refused the scan.
  bool classify(const uint8_t* begin, size_t pages, size_t page_size,
                std::vector<PageState>& states, std::vector<uint64_t>& scratch) const;

 private:
  explicit PagePopulation(int pagemap_fd) : fd_(pagemap_fd) {}
  int fd_;
};

}  // namespace ferry::ram
