#include "codecs/xbzrle_cache.h"

#include <bit>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

namespace ferry::xbzrle {

PageCache::PageCache(size_t budget_bytes, size_t page_size) : page_size_(page_size) {
  if (page_size == 0 || !std::has_single_bit(page_size)) {
    throw std::invalid_argument("xbzrle page cache: page size " + std::to_string(page_size) +
                                " is not a power of two");
  }
  // A power of two keeps the slot index a mask, as in QEMU.
  entries_ = std::bit_floor(budget_bytes / page_size);
  if (entries_ < 1) {
    throw std::invalid_argument("xbzrle page cache: budget of " + std::to_string(budget_bytes) +
                                " bytes holds no " + std::to_string(page_size) + "-byte page");
  }
  // One slab for every page; no per-insert allocation. new[] without () leaves it untouched,
  // so the kernel only backs the pages the migration actually caches.
  pages_.reset(new uint8_t[entries_ * page_size_]);
  slots_ = std::make_unique<Slot[]>(entries_);
}

PageCache::PageCache(PageCache&& other) noexcept
    : page_size_(std::exchange(other.page_size_, 0)),
      entries_(std::exchange(other.entries_, 0)),
      pages_(std::move(other.pages_)),
      slots_(std::move(other.slots_)),
      counters_(std::exchange(other.counters_, {})) {}

PageCache& PageCache::operator=(PageCache&& other) noexcept {
  if (this != &other) {
    page_size_ = std::exchange(other.page_size_, 0);
    entries_ = std::exchange(other.entries_, 0);
    pages_ = std::move(other.pages_);
    slots_ = std::move(other.slots_);
    counters_ = std::exchange(other.counters_, {});
  }
  return *this;
}

PageCache::~PageCache() = default;

const uint8_t* PageCache::lookup(uint64_t addr, uint64_t generation) {
  size_t i = index(addr);
  Slot& s = slots_[i];
  if (!s.valid || s.addr != addr) {
    ++counters_.misses;
    return nullptr;
  }
  ++counters_.hits;
  s.age = generation;
  return data(i);
}

uint8_t* PageCache::slot_data(uint64_t addr) {
  size_t i = index(addr);
  const Slot& s = slots_[i];
  return s.valid && s.addr == addr ? data(i) : nullptr;
}

bool PageCache::insert(uint64_t addr, const uint8_t* page, uint64_t generation) {
  size_t i = index(addr);
  Slot& s = slots_[i];
  bool other_page = s.valid && s.addr != addr;
  if (other_page && s.age + kCachedPageLifetime > generation) {
    ++counters_.insert_refused;
    return false;
  }
  if (other_page) ++counters_.evictions;
  uint8_t* dst = data(i);
  if (dst != page) std::memcpy(dst, page, page_size_);
  s.addr = addr;
  s.age = generation;
  s.valid = true;
  return true;
}

size_t PageCache::memory_bytes() const { return entries_ * (page_size_ + sizeof(Slot)); }

}  // namespace ferry::xbzrle
