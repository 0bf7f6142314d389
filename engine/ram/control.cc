#include "engine/ram/control.h"

#include <algorithm>

namespace ferry::ram {

void ControlLink::send(wire::PacketType type, const std::vector<uint8_t>& body) {
  wire::Header h;
  h.type = type;
  h.packet = send_packet++;
  h.payload = static_cast<uint32_t>(body.size());
  h.body_checksum = body.empty() ? 0 : wire::checksum32(body.data(), body.size());
  uint8_t head[wire::kHeaderSize];
  wire::encode_header(h, head);
  iovec v[2] = {{head, sizeof head}, {const_cast<uint8_t*>(body.data()), body.size()}};
  ch->send_all(std::span<const iovec>(v, body.empty() ? 1 : 2));
}

ControlLink::Message ControlLink::recv(std::initializer_list<wire::PacketType> expected,
                                       const char* peer) {
  uint8_t head[wire::kHeaderSize];
  ch->recv(head, sizeof head);
  Message m;
  m.header = wire::decode_header(head, channel, recv_packet);
  ++recv_packet;
  if (m.header.type == wire::PacketType::kData || m.header.type == wire::PacketType::kSync) {
    wire::fail(channel, m.header.packet, 5,
               std::string("unexpected ") + wire::type_name(m.header.type) +
                   " during a control exchange");
  }
  m.body.resize(m.header.payload);
  if (!m.body.empty()) ch->recv(m.body.data(), m.body.size());
  const uint32_t sum = m.body.empty() ? 0 : wire::checksum32(m.body.data(), m.body.size());
  if (wire::kChecksumsEnforced && sum != m.header.body_checksum) {
    wire::fail(channel, m.header.packet, wire::kHeaderSize, "body checksum mismatch");
  }
  if (m.header.type == wire::PacketType::kError) {
    wire::BodyReader r(m.body.data(), m.body.size(), channel, m.header.packet);
    throw MigrationError(std::string(peer) + " reported: " + r.str("error message"));
  }
  if (std::find(expected.begin(), expected.end(), m.header.type) == expected.end()) {
    std::string want;
    for (auto t : expected) want += std::string(want.empty() ? "" : " or ") + wire::type_name(t);
    wire::fail(channel, m.header.packet, 5,
               std::string("got ") + wire::type_name(m.header.type) + ", expected " + want);
  }
  return m;
}

void ControlLink::send_error(const std::string& message) noexcept {
  try {
    wire::BodyWriter w;
    w.str(message);
    send(wire::PacketType::kError, w.bytes());
  } catch (...) {
  }
}

std::string read_peer_error(transport::Channel& ch, uint32_t channel, uint64_t next_packet,
                            std::chrono::milliseconds wait) noexcept {
  // A reason is a line of text; more than this is not one.
  constexpr uint32_t kMaxReason = 64 << 10;
  constexpr int kMaxSkipped = 64;  // SYNC_ACKs (placement) the peer sent before it
  try {
    for (int i = 0; i < kMaxSkipped; ++i) {
      uint8_t head[wire::kHeaderSize];
      if (ch.recv_leftover(head, sizeof head, wait) != sizeof head) return "";
      const wire::Header h = wire::decode_header(head, channel, next_packet++);
      if (h.type == wire::PacketType::kSyncAck) continue;
      if (h.type != wire::PacketType::kError || h.payload > kMaxReason) return "";
      std::vector<uint8_t> body(h.payload);
      if (!body.empty() && ch.recv_leftover(body.data(), body.size(), wait) != body.size()) {
        return "";
      }
      const uint32_t sum = body.empty() ? 0 : wire::checksum32(body.data(), body.size());
      if (wire::kChecksumsEnforced && sum != h.body_checksum) return "";
      wire::BodyReader r(body.data(), body.size(), channel, h.packet);
      return r.str("error message");
    }
  } catch (const std::exception&) {
  }
  return "";
}

bool all_one_way(const std::vector<transport::ChannelPtr>& channels) {
  size_t one_way = 0;
  for (const auto& c : channels) {
    if (c && (c->capabilities() & transport::kOneWay)) ++one_way;
  }
  if (one_way != 0 && one_way != channels.size()) {
    throw MigrationError(std::to_string(one_way) + " of " + std::to_string(channels.size()) +
                         " channels are one-way (stream files): use one kind for all");
  }
  return one_way != 0 && one_way == channels.size();
}

}  // namespace ferry::ram
