// ferry_ram_block (C) -> RamBlock, checked together with the blocks already added so a bad
// block is refused by the call that adds it, not later by run().
#pragma once

#include <vector>

#include "ferry/ferry.h"
#include "ferry/migration.h"

namespace ferry::capi {

// Throws InvalidCall naming `function` for a NULL block or name, unknown flags, or a block the
// engine would refuse next to `existing` (duplicate name, size, page size, alignment).
RamBlock to_ram_block(const ferry_ram_block* block, const std::vector<RamBlock>& existing,
                      const char* function);

}  // namespace ferry::capi
