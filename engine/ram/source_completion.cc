// After the final pass, on channel 0 with the guest stopped: the device state, COMPLETE and
// the destination's CONFIRM (the downtime ends there), then the optional verification and DONE
// (the blackout ends there: the destination may run the guest once it has DONE).
#include "engine/device/device_state.h"
#include "engine/ram/page_digest.h"
#include "engine/ram/page_counts.h"
#include "engine/ram/source_session.h"

namespace ferry::ram {
namespace {

// QEMU's vmdesc is written for TARGET_PAGE_SIZE: the smallest page size of the RAM.
uint32_t vmdesc_page_size(const std::vector<RamBlock>& blocks) {
  uint32_t page = 0;
  for (const auto& b : blocks) {
    if (b.page_size <= 65536 && (page == 0 || b.page_size < page)) {
      page = static_cast<uint32_t>(b.page_size);
    }
  }
  return page ? page : 4096;
}

}  // namespace

// DEVICE per section, then VMDESC (engine/device). Saved now, so they count in the downtime.
void SourceSession::send_devices() {
  if (m_.devices.empty()) return;
  device::SavedDevices saved;
  try {
    saved = device::save_devices(m_.devices, vmdesc_page_size(m_.blocks));
  } catch (const MigrationError& e) {
    link_.send_error(e.what());  // channel 0 is idle: the destination stops waiting
    throw;
  }
  for (const auto& body : saved.sections) link_.send(wire::PacketType::kDevice, body);
  link_.send(wire::PacketType::kVmdesc, saved.vmdesc);
  st_.devices = static_cast<uint32_t>(saved.sections.size());
  st_.device_bytes = saved.bytes();
}

// COMPLETE with the page counts; the destination confirms it got every page we sent.
void SourceSession::complete() {
  wire::BodyWriter w;
  wire::encode_counts(w, sent_.pages);
  link_.send(wire::PacketType::kComplete, w.bytes());
  if (!one_way_) check_confirm(link_.recv({wire::PacketType::kConfirm}, "destination"));
  st_.downtime_seconds = std::chrono::duration<double>(Clock::now() - t_stop_).count();
}

void SourceSession::check_confirm(const ControlLink::Message& confirm) const {
  wire::BodyReader r(confirm.body.data(), confirm.body.size(), 0, confirm.header.packet);
  const PageCounts got = wire::decode_counts(r);
  r.end();
  if (!same_counts(got, sent_.pages)) {
    throw MigrationError("destination confirmed " + std::to_string(got.total()) +
                         " pages, source sent " + std::to_string(sent_.pages.total()));
  }
}

// Digests (page_digest.h): the destination sends its own right after CONFIRM, or, for
// verify_full, when VERIFY asks, re-hashing its memory while we re-hash ours. DONE carries the
// result (wire_format.h); a one-way stream records ours for its reader instead.
void SourceSession::verify_and_say_done() {
  uint8_t result = 0;
  std::string verify_error;
  if (m_.cfg.verify) {
    const auto start = Clock::now();
    if (one_way_) {
      link_.send(wire::PacketType::kHashes, wire::encode_hashes(source_digests()));
    } else {
      if (m_.cfg.verify_full) link_.send(wire::PacketType::kVerify, {});
      const std::vector<uint64_t> mine = source_digests();
      verify_error = compare_digests(mine, link_.recv({wire::PacketType::kHashes}, "destination"));
      result = verify_error.empty() ? 1 : 2;
      st_.verified = result == 1;
    }
    st_.verify_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  }
  wire::BodyWriter w;
  w.u8(result);
  w.str(verify_error);
  link_.send(wire::PacketType::kDone, w.bytes());
  st_.blackout_seconds = std::chrono::duration<double>(Clock::now() - t_stop_).count();
  if (!verify_error.empty()) throw MigrationError(verify_error);
}

std::vector<uint64_t> SourceSession::source_digests() {
  return m_.cfg.verify_full ? full_block_digests(m_.blocks) : sent_digests_;
}

// "" when the destination's digests equal ours.
std::string SourceSession::compare_digests(const std::vector<uint64_t>& mine,
                                           const ControlLink::Message& msg) const {
  const std::vector<uint64_t> theirs = wire::decode_hashes(
      msg.body.data(), msg.body.size(), 0, msg.header.packet, m_.blocks.size());
  for (size_t i = 0; i < theirs.size(); ++i) {
    if (theirs[i] != mine[i]) {
      return "verification failed: block '" + m_.blocks[i].name +
             "' differs between source and destination";
    }
  }
  return "";
}

}  // namespace ferry::ram
