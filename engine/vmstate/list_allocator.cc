#include <cstdlib>

#include "ferry/vmstate.h"

namespace {
void* malloc_alloc(const FerryVmsAllocator*, size_t size) { return std::calloc(1, size ? size : 1); }
void malloc_free(const FerryVmsAllocator*, void* p) { std::free(p); }
}  // namespace

extern "C" const FerryVmsAllocator ferry_vms_malloc_allocator = {&malloc_alloc, &malloc_free,
                                                                 nullptr};
