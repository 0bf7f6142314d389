#include "engine/capi/ram_blocks.h"

#include <cstdint>
#include <string>

#include "engine/capi/errors.h"
#include "engine/ram/block_check.h"

namespace ferry::capi {

RamBlock to_ram_block(const ferry_ram_block* block, const std::vector<RamBlock>& existing,
                      const char* function) {
  require_arg(block, function, "block");
  require_arg(block->name, function, "block->name");
  require((block->flags & ~FERRY_RAM_KNOWN_ZERO) == 0, function,
          "block->flags " + std::to_string(block->flags) + " has unknown bits");
  require(block->size <= SIZE_MAX && block->page_size <= SIZE_MAX, function,
          "block->size does not fit this process");
  RamBlock b;
  b.name = block->name;
  b.host = block->host;
  b.size = static_cast<size_t>(block->size);
  b.page_size = static_cast<size_t>(block->page_size);
  b.known_zero = (block->flags & FERRY_RAM_KNOWN_ZERO) != 0;
  require(reinterpret_cast<uintptr_t>(b.host) % (b.page_size ? b.page_size : 1) == 0, function,
          "block '" + b.name + "': host is not aligned to its page size " +
              std::to_string(b.page_size));
  std::vector<RamBlock> all = existing;
  all.push_back(b);
  try {
    ram::check_blocks(all, function);  // "<function>: block 'x': why"
  } catch (const MigrationError& e) {
    throw InvalidCall(e.what());
  }
  return b;
}

}  // namespace ferry::capi
