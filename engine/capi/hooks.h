// ferry_hooks (C function pointers) -> MigrationHooks, and the C views of the engine's stats.
#pragma once

#include "ferry/ferry.h"
#include "ferry/migration.h"

namespace ferry::capi {

// A stop_guest returning non-zero throws MigrationError: the migration fails before the guest
// counts as stopped, so resume_guest is not called for it.
MigrationHooks to_migration_hooks(const ferry_hooks& hooks);

ferry_iteration_stats to_c(const IterationStats& s);
ferry_progress to_c(const Progress& p);

}  // namespace ferry::capi
