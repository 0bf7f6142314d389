// RDMA placement setup (wire_format.h: HELLO flag kHelloFlagRdmaPlacement, HELLO_ACK answer,
// kRecordPlaced, SYNC_ACK). Used by the source and destination handshakes on channel 0.
//
// Destination: when the source offers it and every channel can RDMA-write, each RAM block is
// registered with every channel (ibv_reg_mr of the whole block: pinned, RLIMIT_MEMLOCK needs
// channels x RAM) and advertised with its address, length and one rkey per channel. Otherwise
// (or when registering fails) the answer is "stream" with the reason, and the migration goes on
// with payloads in the stream.
// Source: validates the advertisement (wire::validate_placement), then registers its own blocks
// with every channel so the writes leave guest RAM in place (if that is refused, the transport
// bounce-copies them and the description says so).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ferry/migration.h"
#include "engine/ram/wire_format.h"
#include "ferry/transport.h"

namespace ferry::ram {

// Every channel (ours and, by the handshake, the peer's) can do write_remote().
bool channels_can_place(const std::vector<transport::ChannelPtr>& channels);

// Destination: the HELLO_ACK body answering a placement offer; *on tells whether placed
// records may follow. Never throws for a refused registration (that becomes mode 0 + reason).
std::vector<uint8_t> answer_placement(const std::vector<RamBlock>& blocks,
                                      std::vector<transport::ChannelPtr>& channels, bool* on);

struct SourcePlacement {
  std::vector<std::vector<transport::RemoteRegion>> remote;  // [channel][block]; empty = stream
  std::string description;  // MigrationStats::placement
};
// Source: decodes and checks HELLO_ACK's body (throws MigrationError on a bad advertisement)
// and registers the source blocks when placement is on.
SourcePlacement accept_placement(const std::vector<uint8_t>& ack_body, uint64_t packet,
                                 const std::vector<RamBlock>& blocks,
                                 std::vector<transport::ChannelPtr>& channels);

// "N MiB" for messages.
std::string pinned_need(const std::vector<RamBlock>& blocks, size_t channels);

}  // namespace ferry::ram
