#include "engine/stream/ram_image.h"

#include <limits>

namespace ferry::stream {

RamBlock* RamImage::add(std::string name, uint64_t size) {
  if (size > std::numeric_limits<size_t>::max()) return nullptr;
  uint8_t* data = nullptr;
  if (size > 0) {
    data = static_cast<uint8_t*>(std::calloc(static_cast<size_t>(size), 1));
    if (data == nullptr) return nullptr;
  }
  blocks_.push_back(std::unique_ptr<RamBlock>(new RamBlock(std::move(name), size, data)));
  by_name_[blocks_.back()->name()] = blocks_.back().get();
  total_bytes_ += size;
  return blocks_.back().get();
}

RamBlock* RamImage::find(std::string_view name) {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : it->second;
}

const RamBlock* RamImage::find(std::string_view name) const {
  return const_cast<RamImage*>(this)->find(name);
}

PageCounts RamImage::total_counts() const {
  PageCounts t;
  for (const auto& b : blocks_) {
    t.zero += b->counts.zero;
    t.normal += b->counts.normal;
    t.xbzrle += b->counts.xbzrle;
    t.lz4 += b->counts.lz4;
  }
  return t;
}

}  // namespace ferry::stream
