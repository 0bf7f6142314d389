// What both sides require of a RAM block list before anything touches the blocks.
#pragma once

#include <string>
#include <vector>

#include "ferry/migration.h"

namespace ferry::ram {

// Throws MigrationError("<side>: block 'x': why") for an unusable list: no blocks, a null host,
// an empty or duplicate name or one over 255 bytes, a page size that is not a power of two in
// 512 B..64 MiB, a size that is not a non-zero multiple of the page size or has 2^32+ pages.
void check_blocks(const std::vector<RamBlock>& blocks, const char* side);

}  // namespace ferry::ram
