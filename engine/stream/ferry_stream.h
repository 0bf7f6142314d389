// Reader for ferry's own stream files (`ferry send --connect file:PATH`): every channel's file
// starts with the 64-byte session handshake (transports/handshake.h, role "file writer"), then
// the channel's packets as engine/ram/wire_format.h describes them, one way (no dst->src
// packet). Channel 0 is the file given; channel i > 0 comes from ReadOptions::channel_file.
//
// Replay follows the destination's barrier rule: iteration n is applied channel by channel up
// to every channel's SYNC(n) before any packet of iteration n+1, so XBZRLE deltas meet the
// page content they were made against and an older copy of a page never lands after a newer
// one. After the final SYNC, channel 0 carries DEVICE sections (QEMU's SECTION_FULL bytes,
// decoded with the VMDESC packet's JSON into StreamInfo::state, as for a QEMU stream),
// COMPLETE (its page counts must match the records), HASHES when written with verify (checked
// against the reconstructed RAM with the engine's page digests, engine/ram/page_digest.h) and DONE, then the end of the file.
//
// The packet decoding (header, HELLO, DATA records, bodies, checksums) is the engine's own
// (wire_format.h), so the dump and the destination accept exactly the same bytes. Its errors
// ("channel C, packet P, offset O: ...", O within the packet) become ParseErrors at the absolute
// file offset. Nothing is allocated from a length in the file beyond the RAM blocks HELLO
// announces, which ReadOptions::max_ram_bytes caps.
#pragma once

#include <cstdint>
#include <span>

#include "engine/stream/stream_format.h"

namespace ferry::stream {

bool is_ferry_stream(std::span<const uint8_t> file);  // starts with the handshake magic "FRYC"
StreamInfo read_ferry_stream(std::span<const uint8_t> file, const ReadOptions& options);

}  // namespace ferry::stream
