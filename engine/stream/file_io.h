// Whole-file input and RAM block output for the dump tool and the tests.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <vector>

#include "engine/stream/ram_image.h"
#include "engine/stream/stream_format.h"

namespace ferry::stream {

// Throws std::system_error (with the path in the message) when the file cannot be read.
std::vector<uint8_t> read_file(const std::filesystem::path& path);

// ReadOptions::channel_file for the ferry stream file at `path` (channel 0): channel i is read
// from the file transport's name for it, "path.i" (transports/file/file_transport.h). A file
// that cannot be read comes back with ChannelFile::error set (the reader names it).
std::function<ChannelFile(uint32_t index)> channel_files(const std::filesystem::path& path);

// Writes each block to dir/<block_file_name(name)>.bin (creating dir), returns the paths in
// block order. Throws std::system_error on I/O failure.
std::vector<std::filesystem::path> extract_ram(const RamImage& ram,
                                               const std::filesystem::path& dir);

}  // namespace ferry::stream
