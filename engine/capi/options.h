// ferry_options (C, versioned by struct_size) -> the C++ settings: transport::Options for
// connect/listen and MigrationConfig for the source.
#pragma once

#include "ferry/ferry.h"
#include "ferry/migration.h"
#include "ferry/transport.h"

namespace ferry::capi {

enum class Side { kSource, kDestination };

struct Settings {
  transport::Options transport;
  MigrationConfig migration;
};

// Reads the caller's options (NULL = defaults), only the bytes its struct_size covers, and
// checks every value; throws InvalidCall naming `function` and the field.
Settings read_options(const ferry_options* options, Side side, const char* function);

}  // namespace ferry::capi
