// Control messages on channel 0: a header plus a small body, sent and received whole. Used by
// the setup and completion handshakes, when no sender or receiver thread drives the channel.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/ram/wire_format.h"
#include "ferry/transport.h"

namespace ferry::ram {

// One direction of one channel: its packet numbers.
struct ControlLink {
  transport::Channel* ch = nullptr;
  uint32_t channel = 0;
  uint64_t send_packet = 1;  // next packet number we send
  uint64_t recv_packet = 1;  // next packet number we expect

  void send(wire::PacketType type, const std::vector<uint8_t>& body);
  struct Message {
    wire::Header header;
    std::vector<uint8_t> body;
  };
  // Receives the next packet; checks the header and the body checksum. An ERROR from the peer
  // becomes MigrationError("<peer> reported: ..."); any type outside `expected` is an error.
  Message recv(std::initializer_list<wire::PacketType> expected, const char* peer);
  // Best effort: tells the peer why we give up; never throws.
  void send_error(const std::string& message) noexcept;
};

// After the link broke: the reason the peer gave in an ERROR it sent before it went away (what
// the channel still holds, transport::Channel::recv_leftover), or "" when there is none. SYNC_ACKs
// queued before it are skipped; next_packet is the packet number expected next from the peer.
// Anything that is not a well-formed ERROR yields "". Never throws.
std::string read_peer_error(transport::Channel& ch, uint32_t channel, uint64_t next_packet,
                            std::chrono::milliseconds wait) noexcept;

// True when the channels carry bytes one way only (a stream file, transport::kOneWay): the
// peer never answers, so neither side waits for, nor sends, a reply. Mixed sets are refused.
bool all_one_way(const std::vector<transport::ChannelPtr>& channels);

}  // namespace ferry::ram
