// Dirty sources whose pages arrive as bits someone else recorded: the hypervisor's dirty log
// (KVM_GET_DIRTY_LOG shaped) and explicit marks from code that knows what it wrote.
#pragma once

#include "ferry/export.h"
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "ferry/dirty_bitmap.h"
#include "ferry/dirty_source.h"

namespace ferry {

// One RAM block (one KVM memory slot) whose hypervisor keeps the dirty log.
class FERRY_API HypervisorBitmapSource final : public DirtySource {
 public:
  // Called by sync() with DirtyBitmap::words_for(pages) zeroed words. It sets bit i of word w
  // for each page 64 * w + i written since its previous call and re-arms logging before it
  // returns: the KVM_GET_DIRTY_LOG (or GET + KVM_CLEAR_DIRTY_LOG) contract for one slot. It may
  // throw; sync() then merges nothing and rethrows.
  using FetchFn = std::function<void(uint64_t* words, size_t nwords)>;

  // Allocates the scratch log once; sync() does not allocate.
  HypervisorBitmapSource(size_t pages, FetchFn fetch, const char* name = "hypervisor-bitmap");

  void sync(DirtyBitmap& into) override;
  size_t pages() const override { return pages_; }
  const char* name() const override { return name_; }

 private:
  size_t pages_;
  size_t nwords_;
  FetchFn fetch_;
  const char* name_;
  std::unique_ptr<uint64_t[]> scratch_;
};

// Pages marked by hand, from any thread, lock-free: tests, and writers that know exactly what
// they touched (e.g. a device model writing guest RAM on the hypervisor's behalf).
class FERRY_API ExplicitMarkSource final : public DirtySource {
 public:
  explicit ExplicitMarkSource(size_t pages) : pending_(pages) {}

  void mark(size_t page) { pending_.set(page); }
  void mark_range(size_t first, size_t count) { pending_.set_range(first, count); }

  // Moves the marks into `into` word by word (atomic exchange): a mark racing with sync() lands
  // in this round or the next.
  void sync(DirtyBitmap& into) override { pending_.move_into(into); }
  size_t pages() const override { return pending_.size(); }
  const char* name() const override { return "explicit-marks"; }

 private:
  DirtyBitmap pending_;
};

}  // namespace ferry
