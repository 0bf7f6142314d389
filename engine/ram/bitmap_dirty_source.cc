#include "ferry/bitmap_dirty_source.h"

#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

namespace ferry {

HypervisorBitmapSource::HypervisorBitmapSource(size_t pages, FetchFn fetch, const char* name)
    : pages_(pages),
      nwords_(DirtyBitmap::words_for(pages)),
      fetch_(std::move(fetch)),
      name_(name),
      scratch_(new uint64_t[nwords_]()) {
  if (!fetch_) throw std::invalid_argument("hypervisor bitmap source: no fetch function");
}

void HypervisorBitmapSource::sync(DirtyBitmap& into) {
  if (into.size() != pages_) {
    throw std::invalid_argument(std::string(name_) + ": syncing " + std::to_string(pages_) +
                                " pages into a bitmap of " + std::to_string(into.size()));
  }
  if (nwords_ != 0) std::memset(scratch_.get(), 0, nwords_ * sizeof(uint64_t));
  fetch_(scratch_.get(), nwords_);
  into.merge_from(scratch_.get(), nwords_);
}

}  // namespace ferry
