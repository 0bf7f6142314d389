// The human-readable report of `ferry dump`: stream header facts, every record with its offset
// and size, RAM blocks with page record counts, device sections, and where the walk stopped.
#pragma once

#include <ostream>
#include <string>

#include "engine/stream/stream_info.h"

namespace ferry::stream {

void print_summary(std::ostream& out, const std::string& file_name, const StreamInfo& info);

}  // namespace ferry::stream
