// Entry point of the stream readers: detects the format from the first bytes and dispatches.
// Formats: QEMU's ("QEVM", qemu_stream.h) and ferry's own stream files ("FRYC", the session
// handshake every ferry channel file starts with; ferry_stream.h).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/stream/stream_info.h"

namespace ferry::stream {

// One more file of a multi-channel ferry stream: channel i > 0 lives in its own file ("PATH.i",
// transports/file/file_transport.h), which the reader asks for when channel 0's handshake says
// how many there are.
struct ChannelFile {
  std::string name;  // for messages and the summary ("/tmp/x.fry.1")
  std::vector<uint8_t> bytes;
  std::string error;  // non-empty: it could not be read (e.g. "No such file or directory")
};

struct ReadOptions {
  // A vmdesc JSON to use instead of the stream's own trailer (e.g. analyze-migration.py -d desc
  // output of a stream from the same QEMU and command line), for streams sent without one.
  std::optional<std::string> vmdesc_json;
  std::string vmdesc_source = "--vmdesc";
  // MEM_SIZE comes from the file; refuse to allocate more than this.
  uint64_t max_ram_bytes = uint64_t{1} << 40;
  // ferry streams of n > 1 channels: returns channel `index`'s file (1..n-1; file_io.h
  // channel_files() reads PATH.i). Unset: such a stream stops with an error naming the channel.
  std::function<ChannelFile(uint32_t index)> channel_file;
};

struct StreamFormat {
  const char* name;
  bool (*probe)(std::span<const uint8_t> file);
  StreamInfo (*read)(std::span<const uint8_t> file, const ReadOptions& options);
};

// Never throws for bad input: problems end up in StreamInfo::error, with everything gathered
// before them still filled in. Unknown magic: "not a QEMU or ferry stream (magic 0x...)".
StreamInfo read_stream(std::span<const uint8_t> file, const ReadOptions& options = {});

}  // namespace ferry::stream
