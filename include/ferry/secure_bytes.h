// Bytes that are wiped (OPENSSL_cleanse, which the compiler may not elide) before their memory
// goes back to the allocator: for secrets such as the pre-shared key (transport::Options::psk),
// which is copied into every channel's options. Reallocation wipes the old buffer too.
//
// A std::vector<uint8_t> with a wiping allocator, so it reads and converts like one: assign a
// std::vector<uint8_t> (a moved-from one is wiped and emptied as well), pass it as a
// std::span<const uint8_t>, call assign(), size(), empty() and data() as before.
#pragma once

#include "ferry/export.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace ferry {

// Overwrites n bytes at p with zeros in a way the compiler keeps (OPENSSL_cleanse).
FERRY_API void secure_wipe(void* p, size_t n) noexcept;

template <typename T>
struct WipingAllocator {
  using value_type = T;
  WipingAllocator() = default;
  template <typename U>
  WipingAllocator(const WipingAllocator<U>&) noexcept {}  // NOLINT: rebinding is implicit
  T* allocate(size_t n) { return std::allocator<T>{}.allocate(n); }
  void deallocate(T* p, size_t n) noexcept {
    secure_wipe(p, n * sizeof(T));
    std::allocator<T>{}.deallocate(p, n);
  }
  template <typename U>
  bool operator==(const WipingAllocator<U>&) const noexcept { return true; }
};

class SecureBytes : public std::vector<uint8_t, WipingAllocator<uint8_t>> {
  using Base = std::vector<uint8_t, WipingAllocator<uint8_t>>;

 public:
  using Base::Base;
  SecureBytes() = default;
  SecureBytes(const std::vector<uint8_t>& v) : Base(v.begin(), v.end()) {}  // NOLINT: implicit
  SecureBytes(std::vector<uint8_t>&& v) : Base(v.begin(), v.end()) { wipe(v); }  // NOLINT
  SecureBytes& operator=(const std::vector<uint8_t>& v) {
    assign(v.begin(), v.end());
    return *this;
  }
  SecureBytes& operator=(std::vector<uint8_t>&& v) {
    assign(v.begin(), v.end());
    wipe(v);
    return *this;
  }

 private:
  // The moved-from vector held the secret too, and std::vector's allocator will not wipe it.
  static void wipe(std::vector<uint8_t>& v) noexcept {
    secure_wipe(v.data(), v.size());
    v.clear();
  }
};

}  // namespace ferry
