// Entry point of the stream readers: detects the format from the first bytes and dispatches.
// QEMU's format is the only one today; ferry's own stream format plugs in here with its magic.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "engine/stream/stream_info.h"

namespace ferry::stream {

struct ReadOptions {
  // A vmdesc JSON to use instead of the stream's own trailer (e.g. analyze-migration.py -d desc
  // output of a stream from the same QEMU and command line), for streams sent without one.
  std::optional<std::string> vmdesc_json;
  std::string vmdesc_source = "--vmdesc";
  // MEM_SIZE comes from the file; refuse to allocate more than this.
  uint64_t max_ram_bytes = uint64_t{1} << 40;
};

struct StreamFormat {
  const char* name;
  bool (*probe)(std::span<const uint8_t> file);
  StreamInfo (*read)(std::span<const uint8_t> file, const ReadOptions& options);
};

// Never throws for bad input: problems end up in StreamInfo::error, with everything gathered
// before them still filled in. Unknown magic: "not a QEMU stream (magic 0x...)".
StreamInfo read_stream(std::span<const uint8_t> file, const ReadOptions& options = {});

}  // namespace ferry::stream
