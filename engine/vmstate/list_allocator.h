// Part 4 of a list (and STRUCT_POINTER targets): allocators. C: ferry_vms_malloc_allocator
// (calloc/free, in vmstate.h). C++: new T() / delete. Caller callbacks: fill a FerryVmsAllocator
// (alloc, free, opaque) yourself.
#pragma once

#include <cstddef>
#include <new>

#include "ferry/vmstate.h"

namespace ferry::vmstate {
namespace detail {
template <typename T>
struct NewDelete {
  static void* alloc(const FerryVmsAllocator*, size_t size) {
    if (size != sizeof(T)) return nullptr;  // the description and the type disagree
    return new (std::nothrow) T();
  }
  static void free(const FerryVmsAllocator*, void* p) { delete static_cast<T*>(p); }
  static constexpr FerryVmsAllocator kAllocator = {&alloc, &free, nullptr};
};
}  // namespace detail

template <typename T>
constexpr const FerryVmsAllocator* new_delete_allocator() {
  return &detail::NewDelete<T>::kAllocator;
}

}  // namespace ferry::vmstate
