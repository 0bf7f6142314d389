// After the final pass, on channel 0 with the guest stopped: the device state, COMPLETE and
// the destination's CONFIRM (the downtime ends there), then the optional verification and DONE.
#include "engine/device/device_state.h"
#include "engine/ram/block_check.h"
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

// After the downtime clock, both sides hash at once; DONE carries the result (wire_format.h).
void SourceSession::verify_and_say_done() {
  uint8_t result = 0;
  std::string verify_error;
  if (m_.cfg.verify && one_way_) {
    record_hashes_in_stream();
  } else if (m_.cfg.verify) {
    verify_error = compare_hashes_with_destination();
    result = verify_error.empty() ? 1 : 2;
    st_.verified = result == 1;
  }
  wire::BodyWriter w;
  w.u8(result);
  w.str(verify_error);
  link_.send(wire::PacketType::kDone, w.bytes());
  if (!verify_error.empty()) throw MigrationError(verify_error);
}

// The reader of the stream checks what it loaded against these (it may be years later).
void SourceSession::record_hashes_in_stream() {
  const auto start = Clock::now();
  link_.send(wire::PacketType::kHashes, wire::encode_hashes(block_hashes(m_.blocks)));
  st_.verify_seconds = std::chrono::duration<double>(Clock::now() - start).count();
}

// VERIFY, then our hashes while the destination computes its own; "" when they are equal.
std::string SourceSession::compare_hashes_with_destination() {
  const auto start = Clock::now();
  link_.send(wire::PacketType::kVerify, {});
  const std::vector<uint64_t> mine = block_hashes(m_.blocks);
  auto msg = link_.recv({wire::PacketType::kHashes}, "destination");
  const std::vector<uint64_t> theirs = wire::decode_hashes(
      msg.body.data(), msg.body.size(), 0, msg.header.packet, m_.blocks.size());
  std::string verify_error;
  for (size_t i = 0; i < theirs.size() && verify_error.empty(); ++i) {
    if (theirs[i] != mine[i]) {
      verify_error = "verification failed: block '" + m_.blocks[i].name +
                     "' differs between source and destination";
    }
  }
  st_.verify_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return verify_error;
}

}  // namespace ferry::ram
