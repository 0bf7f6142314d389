// Where dirty pages come from. The precopy loop calls sync() once per iteration on each RAM
// block's source and then scans the bitmap; a source can be the hypervisor's dirty log, kernel
// write tracking of our own memory, or a test marking pages by hand.
#pragma once

#include "ferry/export.h"
#include <cstddef>

#include "ferry/dirty_bitmap.h"

namespace ferry {

class FERRY_API DirtySource {
 public:
  virtual ~DirtySource() = default;

  // ORs into `into` every page written since the previous sync() (since construction for the
  // first) and restarts tracking in the same step, so a write racing with sync() shows up in
  // this round or the next, never in neither. into.size() must equal pages(). One caller at a
  // time; writers may keep writing meanwhile.
  virtual void sync(DirtyBitmap& into) = 0;

  virtual size_t pages() const = 0;
  // Short, stable, for logs and stats ("uffd-wp", "hypervisor-bitmap", ...).
  virtual const char* name() const = 0;
};

}  // namespace ferry
