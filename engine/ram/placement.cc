#include "engine/ram/placement.h"

#include <sys/resource.h>
#include <unistd.h>

namespace ferry::ram {

bool channels_can_place(const std::vector<transport::ChannelPtr>& channels) {
  if (channels.empty()) return false;
  for (const auto& c : channels) {
    if (!c || !(c->capabilities() & transport::kRemoteWrite) ||
        !(c->peer_capabilities() & transport::kRemoteWrite)) {
      return false;
    }
  }
  return true;
}

std::string pinned_need(const std::vector<RamBlock>& blocks, size_t channels) {
  uint64_t ram = 0;
  for (const auto& b : blocks) ram += b.size;
  const uint64_t need = ram * channels;
  std::string s = std::to_string((need + (1u << 20) - 1) >> 20) + " MiB (" +
                  std::to_string(channels) + " channel(s) x " +
                  std::to_string((ram + (1u << 20) - 1) >> 20) + " MiB of RAM blocks)";
  rlimit rl{};
  if (geteuid() != 0 && getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    s += ", RLIMIT_MEMLOCK " + std::to_string(rl.rlim_cur >> 10) + " KiB (hard " +
         (rl.rlim_max == RLIM_INFINITY ? std::string("unlimited")
                                       : std::to_string(rl.rlim_max >> 10) + " KiB") +
         ")";
  }
  return s;
}

namespace {
// Up front, before pinning anything: "" when RLIMIT_MEMLOCK (raised to its hard limit if need
// be) leaves room for `need` more bytes; otherwise what is needed. Root is not limited.
std::string memlock_shortfall(const std::vector<RamBlock>& blocks, size_t channels) {
  if (geteuid() == 0) return "";
  rlimit rl{};
  if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return "";
  uint64_t need = 0;
  for (const auto& b : blocks) need += b.size;
  need *= channels;
  if (need <= rl.rlim_cur) return "";
  if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_MEMLOCK, &raised) == 0) return "";
  }
  return "RDMA placement pins " + pinned_need(blocks, channels) +
         ": raise the limit (`ulimit -l unlimited`, LimitMEMLOCK=infinity, memlock in "
         "/etc/security/limits.conf) or run with CAP_IPC_LOCK";
}
}  // namespace

std::vector<uint8_t> answer_placement(const std::vector<RamBlock>& blocks,
                                      std::vector<transport::ChannelPtr>& channels, bool* on) {
  *on = false;
  wire::HelloAck a;
  if (!channels_can_place(channels)) {
    a.reason = "the destination's channels cannot take RDMA WRITEs";
    return wire::encode_hello_ack(a);
  }
  if (std::string why = memlock_shortfall(blocks, channels.size()); !why.empty()) {
    a.reason = "destination: " + why;
    return wire::encode_hello_ack(a);
  }
  std::vector<std::pair<transport::Channel*, transport::MemoryRegion>> done;
  try {
    a.channels = static_cast<uint32_t>(channels.size());
    for (uint32_t i = 0; i < blocks.size(); ++i) {
      wire::HelloAck::Block b;
      b.id = i;
      b.addr = reinterpret_cast<uint64_t>(blocks[i].host);
      b.length = blocks[i].size;
      for (auto& c : channels) {
        const transport::MemoryRegion r = c->register_memory(blocks[i].host, blocks[i].size);
        done.emplace_back(c.get(), r);
        b.keys.push_back(r.key);
      }
      a.blocks.push_back(std::move(b));
    }
  } catch (const std::exception& e) {
    for (auto& [c, r] : done) {
      try {
        c->deregister_memory(r);
      } catch (...) {
      }
    }
    wire::HelloAck refused;
    refused.reason = "destination could not register its RAM for RDMA placement (needs " +
                     pinned_need(blocks, channels.size()) + " pinned): " + e.what();
    return wire::encode_hello_ack(refused);
  }
  a.mode = 1;
  *on = true;
  return wire::encode_hello_ack(a);
}

SourcePlacement accept_placement(const std::vector<uint8_t>& ack_body, uint64_t packet,
                                 const std::vector<RamBlock>& blocks,
                                 std::vector<transport::ChannelPtr>& channels) {
  SourcePlacement p;
  if (ack_body.empty()) {
    p.description = "stream (the destination ignored the RDMA placement offer)";
    return p;
  }
  const wire::HelloAck a = wire::decode_hello_ack(ack_body.data(), ack_body.size(), 0, packet);
  if (a.mode == 0) {
    p.description = "stream (" + (a.reason.empty() ? std::string("destination declined") : a.reason) + ")";
    return p;
  }
  p.remote = wire::validate_placement(a, blocks, static_cast<uint32_t>(channels.size()));
  p.description = "rdma-write";
  if (std::string why = memlock_shortfall(blocks, channels.size()); !why.empty()) {
    p.description = "rdma-write (source RAM not registered, pages bounce-copied: " + why + ")";
    return p;
  }
  // Our side of the writes: guest RAM registered so the WRITEs read it in place.
  try {
    for (auto& c : channels) {
      for (const auto& b : blocks) c->register_memory(b.host, b.size);
    }
  } catch (const std::exception& e) {
    p.description = "rdma-write (source RAM not registered, pages bounce-copied; needs " +
                    pinned_need(blocks, channels.size()) + " pinned: " + e.what() + ")";
  }
  return p;
}

}  // namespace ferry::ram
