// Counts heap allocations made by the current thread, for tests that prove a hot path never
// touches the heap. alloc_counter.cc replaces the global operator new/delete (and, outside the
// sanitizer build, malloc/calloc/realloc: the sanitizer runtimes own those), so compile it into
// the test executable itself, never into a library shared with other tests.
#pragma once

#include <cstddef>

namespace ferry::test {

// Counts this thread's allocations from construction to destruction (not nestable).
class CountAllocations {
 public:
  CountAllocations();
  ~CountAllocations();
  CountAllocations(const CountAllocations&) = delete;
  CountAllocations& operator=(const CountAllocations&) = delete;
  size_t count() const;
};

}  // namespace ferry::test
