// Part 2 of a list: containers. C: the intrusive tail queue (ferry_vms_tailq_ops with
// FERRY_VMS_TAILQ_CONTAINER, in vmstate.h). C++: std::vector / std::list, holding elements by
// value (emplace, no allocator) or by pointer (append, elements from the list's allocator).
// Caller callbacks: fill a FerryVmsContainerOps yourself.
#pragma once

#include <cstring>
#include <iterator>
#include <list>
#include <type_traits>
#include <vector>

#include "ferry/vmstate.h"

namespace ferry::vmstate {
namespace detail {

template <typename C>
struct StdContainerOps {
  using Elem = typename C::value_type;
  static constexpr bool kByPointer = std::is_pointer_v<Elem>;
  using Iter = typename C::iterator;
  static_assert(sizeof(Iter) <= sizeof(void*) && std::is_trivially_copyable_v<Iter>,
                "iterator must fit the cursor");

  static C& self(void* head) { return *static_cast<C*>(head); }
  static void* element(Iter it) {
    if constexpr (kByPointer) {
      return *it;
    } else {
      return &*it;
    }
  }
  static void store(FerryVmsCursor* cur, Iter it) { std::memcpy(&cur->aux[0], &it, sizeof it); }
  static Iter load(const FerryVmsCursor* cur) {
    Iter it;
    std::memcpy(static_cast<void*>(&it), &cur->aux[0], sizeof it);
    return it;
  }
  static size_t count(const FerryVmsContainer*, const void* head) {
    return static_cast<const C*>(head)->size();
  }
  static void* first(const FerryVmsContainer*, void* head, FerryVmsCursor* cur) {
    C& c = self(head);
    Iter it = c.begin();
    store(cur, it);
    return it == c.end() ? nullptr : element(it);
  }
  static void* next(const FerryVmsContainer*, void* head, FerryVmsCursor* cur) {
    C& c = self(head);
    Iter it = load(cur);
    ++it;
    store(cur, it);
    return it == c.end() ? nullptr : element(it);
  }
  static int append(const FerryVmsContainer*, void* head, void* elem) {
    if constexpr (kByPointer) {
      self(head).push_back(static_cast<Elem>(elem));
    }
    return 0;
  }
  static void* emplace(const FerryVmsContainer*, void* head) {
    if constexpr (!kByPointer) {
      return &self(head).emplace_back();
    }
    return nullptr;
  }
  static void clear(const FerryVmsContainer*, void* head,
                    void (*free_elem)(const FerryVmsAllocator*, void*),
                    const FerryVmsAllocator* alloc) {
    C& c = self(head);
    if constexpr (kByPointer) {
      if (free_elem) {
        for (Elem e : c) free_elem(alloc, e);
      }
    }
    c.clear();
  }
  static constexpr FerryVmsContainerOps kOps = {
      &count, &first, &next, kByPointer ? &append : nullptr, kByPointer ? nullptr : &emplace,
      &clear};
  static constexpr FerryVmsContainer kContainer = {&kOps, 0, 0, 0, 0, nullptr};
};

}  // namespace detail

// std::vector<T> (by value) or std::vector<T*> (pointers).
template <typename T>
constexpr const FerryVmsContainer* vector_container() {
  return &detail::StdContainerOps<std::vector<T>>::kContainer;
}
// std::list<T> (by value) or std::list<T*> (pointers).
template <typename T>
constexpr const FerryVmsContainer* std_list_container() {
  return &detail::StdContainerOps<std::list<T>>::kContainer;
}

}  // namespace ferry::vmstate
