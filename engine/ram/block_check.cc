#include "engine/ram/block_check.h"

#include <bit>
#include <set>

#include "ferry/dirty_bitmap.h"
#include "engine/ram/wire_format.h"

namespace ferry::ram {

void check_blocks(const std::vector<RamBlock>& blocks, const char* side) {
  if (blocks.empty()) throw MigrationError(std::string(side) + ": no RAM blocks");
  if (blocks.size() > wire::kMaxBlocks) {
    throw MigrationError(std::string(side) + ": " + std::to_string(blocks.size()) +
                         " blocks, at most " + std::to_string(wire::kMaxBlocks));
  }
  std::set<std::string> seen;
  for (const auto& b : blocks) {
    auto bad = [&](const std::string& why) {
      throw MigrationError(std::string(side) + ": block '" + b.name + "': " + why);
    };
    if (b.name.empty() || b.name.size() > 255) bad("name must be 1..255 bytes");
    if (!seen.insert(b.name).second) bad("duplicate name");
    if (!b.host) bad("no host memory");
    if (!std::has_single_bit(b.page_size) || b.page_size < 512 ||
        b.page_size > wire::kMaxOwnedPayload) {
      bad("page size " + std::to_string(b.page_size) + " is not a power of two in 512..64 MiB");
    }
    if (b.size == 0 || b.size % b.page_size != 0) {
      bad("size " + std::to_string(b.size) + " is not a non-zero multiple of the page size " +
          std::to_string(b.page_size));
    }
    if (b.size / b.page_size >= DirtyBitmap::kMaxPages) bad("too many pages");
  }
}


}  // namespace ferry::ram
