// The destination's stats as JSON (ferry_destination_stats_json): DestinationStats plus the
// outcome, in the same key style as the source's to_json (engine/ram/stats_json.cc).
#pragma once

#include <string>

#include "ferry/migration.h"

namespace ferry::capi {

struct DestinationOutcome {
  std::string status = "none";  // "none" (not run), "completed", "failed", "cancelled"
  std::string error;            // when failed or cancelled
  double total_seconds = 0;     // the whole ferry_destination_run, accept included
  DestinationStats stats;       // zero unless completed
};

std::string destination_json(const DestinationOutcome& outcome);

}  // namespace ferry::capi
