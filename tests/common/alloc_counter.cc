#include "tests/common/alloc_counter.h"

#include <cstdlib>
#include <new>

namespace {
thread_local bool t_counting = false;
thread_local size_t t_allocations = 0;
void note() {
  if (t_counting) ++t_allocations;
}
}  // namespace

namespace ferry::test {
CountAllocations::CountAllocations() {
  t_allocations = 0;
  t_counting = true;
}
CountAllocations::~CountAllocations() { t_counting = false; }
size_t CountAllocations::count() const { return t_allocations; }
}  // namespace ferry::test

void* operator new(size_t n) {
  note();
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }

#ifndef FERRY_SANITIZE
// Libraries (liblz4, liburing, libc) reach for malloc, not operator new.
extern "C" void* __libc_malloc(size_t);
extern "C" void* __libc_calloc(size_t, size_t);
extern "C" void* __libc_realloc(void*, size_t);
extern "C" void* malloc(size_t n) {
  note();
  return __libc_malloc(n);
}
extern "C" void* calloc(size_t n, size_t m) {
  note();
  return __libc_calloc(n, m);
}
extern "C" void* realloc(void* p, size_t n) {
  note();
  return __libc_realloc(p, n);
}
#endif
