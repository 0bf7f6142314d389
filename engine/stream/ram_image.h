// The destination's view of guest RAM while a stream is replayed: one zero-initialised byte array
// per RAM block, sized by the block's used_length from MEM_SIZE, plus per-block record counts.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ferry::stream {

struct PageCounts {
  uint64_t zero = 0;
  uint64_t normal = 0;
  uint64_t xbzrle = 0;
  uint64_t lz4 = 0;  // ferry streams only
  uint64_t total() const { return zero + normal + xbzrle + lz4; }
};

class RamBlock {
 public:
  const std::string& name() const { return name_; }
  uint64_t size() const { return size_; }
  uint8_t* data() { return data_.get(); }
  std::span<const uint8_t> bytes() const { return {data_.get(), static_cast<size_t>(size_)}; }

  PageCounts counts;

 private:
  friend class RamImage;
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  RamBlock(std::string name, uint64_t size, uint8_t* data)
      : name_(std::move(name)), size_(size), data_(data) {}

  std::string name_;
  uint64_t size_;
  // calloc, not std::vector: a large calloc is a fresh zero mapping, so the untouched (zero)
  // part of a multi-GiB block costs no memory and no time, and failure is a null, not an abort.
  std::unique_ptr<uint8_t, Free> data_;
};

class RamImage {
 public:
  // nullptr when the memory cannot be had. The caller checks names for duplicates.
  RamBlock* add(std::string name, uint64_t size);
  RamBlock* find(std::string_view name);
  const RamBlock* find(std::string_view name) const;
  // Stable pointers: blocks never move once added.
  const std::vector<std::unique_ptr<RamBlock>>& blocks() const { return blocks_; }
  uint64_t total_bytes() const { return total_bytes_; }
  PageCounts total_counts() const;

 private:
  std::vector<std::unique_ptr<RamBlock>> blocks_;
  // By name: a hostile MEM_SIZE can list very many blocks, and named page records look them up.
  std::unordered_map<std::string, RamBlock*> by_name_;
  uint64_t total_bytes_ = 0;
};

}  // namespace ferry::stream
