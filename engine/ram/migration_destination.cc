// MigrationDestination: setup and completion handshakes on channel 0 (on the thread that calls
// run()), PageReceiver threads in between. The first error aborts every channel, so no thread
// waits for a peer that is gone or a receiver that gave up.
#include <mutex>

#include "engine/device/device_state.h"
#include "ferry/migration.h"
#include "engine/ram/block_check.h"
#include "engine/ram/control.h"
#include "engine/ram/page_receiver.h"
#include "engine/ram/placement.h"
#include "engine/ram/wire_format.h"

namespace ferry {
namespace {
using Clock = std::chrono::steady_clock;

std::string describe(uint64_t size, uint64_t page_size) {
  return std::to_string(size) + " bytes in " + std::to_string(page_size) + "-byte pages";
}
}  // namespace

struct MigrationDestination::Impl {
  std::vector<RamBlock> blocks;
  std::vector<Device> devices;  // set_devices (engine/device)
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::string error;
  std::vector<transport::Channel*> live;
  ram::SyncBarrier* barrier = nullptr;

  void fail(const std::string& msg) noexcept {
    std::lock_guard lock(mu);
    if (error.empty()) error = msg;
    stop.store(true);
    for (auto* ch : live) ch->abort();
    if (barrier) barrier->wake();
  }
};

MigrationDestination::MigrationDestination(std::vector<RamBlock> blocks)
    : impl_(std::make_unique<Impl>()) {
  ram::check_blocks(blocks, "destination");
  impl_->blocks = std::move(blocks);
}

MigrationDestination::~MigrationDestination() = default;

void MigrationDestination::set_devices(std::vector<Device> devices) {
  device::check_devices(devices, "destination");
  impl_->devices = std::move(devices);
}

void MigrationDestination::cancel() noexcept { impl_->fail("cancelled"); }

DestinationStats MigrationDestination::run(std::vector<transport::ChannelPtr> channels) {
  Impl& m = *impl_;
  const auto t0 = Clock::now();
  DestinationStats st;
  ram::ControlLink link;
  std::vector<std::unique_ptr<ram::PageReceiver>> receivers;
  std::unique_ptr<ram::SyncBarrier> barrier;
  std::vector<DirtyBitmap> written;  // outlives the receivers, also on the error path
  bool control_phase = true;  // channel 0 is ours to tell the source why we give up

  try {
    if (channels.empty() || channels.size() > wire::kMaxChannels) {
      throw MigrationError("destination: " + std::to_string(channels.size()) + " channels");
    }
    for (auto& c : channels) {
      if (!c) throw MigrationError("destination: null channel");
    }
    {
      std::lock_guard lock(m.mu);
      if (m.stop.load()) throw MigrationError(m.error);
      for (auto& c : channels) m.live.push_back(c.get());
    }
    const uint32_t n = static_cast<uint32_t>(channels.size());
    link.ch = channels[0].get();
    // Reading a stream file: the source wrote every message without waiting for us, and
    // there is nobody to answer (wire_format.h, "One-way streams").
    const bool one_way = ram::all_one_way(channels);
    if (one_way) control_phase = false;

    // Setup: the source's block list must match ours exactly.
    auto hello_msg = link.recv({wire::PacketType::kHello}, "source");
    const wire::Hello hello =
        wire::decode_hello(hello_msg.body.data(), hello_msg.body.size(), 0, hello_msg.header.packet);
    if (hello.channels != n) {
      throw MigrationError("channel count mismatch: source opened " +
                           std::to_string(hello.channels) + ", destination has " +
                           std::to_string(n));
    }
    if (hello.blocks.size() != m.blocks.size()) {
      throw MigrationError("block list mismatch: source has " +
                           std::to_string(hello.blocks.size()) + " blocks, destination " +
                           std::to_string(m.blocks.size()));
    }
    for (size_t i = 0; i < m.blocks.size(); ++i) {
      const auto& s = hello.blocks[i];
      const RamBlock& d = m.blocks[i];
      if (s.name != d.name) {
        throw MigrationError("block list mismatch: block " + std::to_string(i) + " is '" +
                             s.name + "' on the source, '" + d.name + "' on the destination");
      }
      if (s.size != d.size || s.page_size != d.page_size) {
        throw MigrationError("block list mismatch: block '" + d.name + "': source " +
                             describe(s.size, s.page_size) + ", destination " +
                             describe(d.size, d.page_size));
      }
    }
    // --- RDMA placement: register and advertise our blocks when the source offers it ---
    bool placement = false;
    if (!one_way) {
      link.send(wire::PacketType::kHelloAck,
                (hello.flags & wire::kHelloFlagRdmaPlacement)
                    ? ram::answer_placement(m.blocks, channels, &placement)
                    : std::vector<uint8_t>{});
    }
    // --- end RDMA placement ---

    // Data: one receiver per channel until the final SYNC.
    wire::DataLimits lim;
    lim.blocks = &m.blocks;
    lim.max_records = hello.batch_pages;
    lim.owned_payload_cap = hello.owned_payload_cap;
    lim.placement = placement;
    for (const auto& b : m.blocks) written.emplace_back(b.known_zero ? b.size / b.page_size : 0);
    barrier = std::make_unique<ram::SyncBarrier>(n, &m.stop);
    {
      std::lock_guard lock(m.mu);
      m.barrier = barrier.get();
    }
    for (uint32_t i = 0; i < n; ++i) {
      receivers.push_back(std::make_unique<ram::PageReceiver>(
          i, *channels[i], lim, *barrier, i == 0 ? link.recv_packet : 1,
          [&m](const std::string& e) { m.fail(e); }, &written, i == 0 ? link.send_packet : 1));
    }
    control_phase = false;
    for (auto& r : receivers) r->start();
    for (auto& r : receivers) r->join();
    if (m.stop.load()) {
      std::lock_guard lock(m.mu);
      throw MigrationError(m.error);
    }
    control_phase = !one_way;
    link.recv_packet = receivers[0]->next_packet();
    link.send_packet = receivers[0]->next_send_packet();  // after SYNC_ACKs (placement)
    PageCounts got;
    for (auto& r : receivers) {
      const auto& c = r->counters();
      got.normal += c.pages.normal;
      got.zero += c.pages.zero;
      got.xbzrle += c.pages.xbzrle;
      got.lz4 += c.pages.lz4;
      st.wire_bytes += c.wire_bytes;
      st.zero_pages_skipped += c.zero_pages_skipped;
      st.placed_pages += c.placed_pages;
    }
    st.pages = got;
    st.iterations = receivers[0]->counters().iterations;

    // --- device state (engine/device): DEVICE..., VMDESC, then COMPLETE ---
    auto dmsg = link.recv(
        {wire::PacketType::kDevice, wire::PacketType::kVmdesc, wire::PacketType::kComplete},
        "source");
    {
      device::DeviceLoader loader(m.devices);
      // A refusal is sent in place of CONFIRM, once the source's messages are all read.
      std::string device_error;
      for (; dmsg.header.type != wire::PacketType::kComplete;
           dmsg = link.recv({wire::PacketType::kDevice, wire::PacketType::kVmdesc,
                            wire::PacketType::kComplete},
                           "source")) {
        if (!device_error.empty()) continue;
        try {
          if (dmsg.header.type == wire::PacketType::kDevice) {
            loader.load_section(dmsg.body, dmsg.header.packet);
          } else {
            loader.load_vmdesc(dmsg.body, dmsg.header.packet);
          }
        } catch (const MigrationError& e) {
          device_error = e.what();
        }
      }
      if (!device_error.empty()) throw MigrationError(device_error);
      loader.finish();
      st.devices = loader.loaded();
      st.vmdesc = loader.vmdesc();
    }
    // --- end device state ---

    // Completion: every page the source sent arrived.
    {
      auto& msg = dmsg;  // COMPLETE (read above, after the device messages)
      wire::BodyReader r(msg.body.data(), msg.body.size(), 0, msg.header.packet);
      const PageCounts sent = wire::decode_counts(r);
      r.end();
      if (sent.normal != got.normal || sent.zero != got.zero || sent.xbzrle != got.xbzrle ||
          sent.lz4 != got.lz4) {
        throw MigrationError("page count mismatch: source sent " + std::to_string(sent.total()) +
                             " pages (" + std::to_string(sent.normal) + " normal), destination got " +
                             std::to_string(got.total()) + " (" + std::to_string(got.normal) +
                             " normal)");
      }
      if (!one_way) {
        wire::BodyWriter w;
        wire::encode_counts(w, got);
        link.send(wire::PacketType::kConfirm, w.bytes());
      }
    }
    auto msg = one_way ? link.recv({wire::PacketType::kHashes, wire::PacketType::kDone}, "source")
                       : link.recv({wire::PacketType::kVerify, wire::PacketType::kDone}, "source");
    if (msg.header.type == wire::PacketType::kHashes) {
      // The source's hashes, written into the stream: check what we loaded against them.
      const std::vector<uint64_t> recorded = wire::decode_hashes(
          msg.body.data(), msg.body.size(), 0, msg.header.packet, m.blocks.size());
      const std::vector<uint64_t> mine = ram::block_hashes(m.blocks);
      for (size_t i = 0; i < mine.size(); ++i) {
        if (mine[i] != recorded[i]) {
          throw MigrationError("verification failed: block '" + m.blocks[i].name +
                               "' differs from the source's hash recorded in the stream");
        }
      }
      st.verified = true;
      msg = link.recv({wire::PacketType::kDone}, "source");
    } else if (msg.header.type == wire::PacketType::kVerify) {
      link.send(wire::PacketType::kHashes, wire::encode_hashes(ram::block_hashes(m.blocks)));
      msg = link.recv({wire::PacketType::kDone}, "source");
    }
    wire::BodyReader r(msg.body.data(), msg.body.size(), 0, msg.header.packet);
    const uint8_t result = r.u8("result");
    const std::string why = r.str("message");
    r.end();
    if (result > 2) {
      wire::fail(0, msg.header.packet, wire::kHeaderSize, "DONE result " + std::to_string(result));
    }
    if (result == 2) {
      control_phase = false;  // the source knows already
      throw MigrationError(why.empty() ? "source reported a failed verification" : why);
    }
    if (!one_way) st.verified = result == 1;
    for (auto& c : channels) c->close();
    {
      std::lock_guard lock(m.mu);
      m.live.clear();
      m.barrier = nullptr;
    }
    st.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    return st;
  } catch (const std::exception& e) {
    // Tell the source why, when channel 0 is between exchanges and still works.
    if (control_phase && link.ch && !m.stop.load()) link.send_error(e.what());
    m.fail(e.what());
    for (auto& r : receivers) r->join();
    std::string err;
    {
      std::lock_guard lock(m.mu);
      err = m.error;
      m.live.clear();
      m.barrier = nullptr;
    }
    for (auto& c : channels) {
      if (!c) continue;
      try {
        c->close();
      } catch (...) {
      }
    }
    throw MigrationError(err);
  }
}

}  // namespace ferry
