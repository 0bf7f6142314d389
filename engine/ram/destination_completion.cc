// After the final SYNC, on channel 0: the device state (DEVICE..., VMDESC), COMPLETE and our
// CONFIRM (with our digests right behind it when the source verifies), then the source's DONE:
// from then on the guest may run here.
#include "engine/device/device_state.h"
#include "engine/ram/destination_session.h"
#include "engine/ram/page_counts.h"

namespace ferry::ram {

// Every message up to COMPLETE is read even after a device refused to load, so that the
// refusal goes to the source in place of CONFIRM while it is listening for one; but no more than
// one DEVICE per registered device and the VMDESC, whatever the source sends.
ControlLink::Message DestinationSession::load_devices() {
  constexpr auto kDevice = wire::PacketType::kDevice;
  constexpr auto kVmdesc = wire::PacketType::kVmdesc;
  constexpr auto kComplete = wire::PacketType::kComplete;
  device::DeviceLoader loader(m_.devices);
  std::string device_error;
  const size_t most = m_.devices.size() + 1;
  size_t seen = 0;
  auto msg = link_.recv({kDevice, kVmdesc, kComplete}, "source");
  for (; msg.header.type != kComplete; msg = link_.recv({kDevice, kVmdesc, kComplete}, "source")) {
    if (++seen > most) {
      throw MigrationError(device_error.empty()
                               ? "source sent more than " + std::to_string(most) +
                                     " device messages; this destination has " +
                                     std::to_string(m_.devices.size()) + " device(s)"
                               : device_error);
    }
    if (!device_error.empty()) continue;
    try {
      if (msg.header.type == kDevice) {
        loader.load_section(msg.body, msg.header.packet);
      } else {
        loader.load_vmdesc(msg.body, msg.header.packet);
      }
    } catch (const MigrationError& e) {
      device_error = e.what();
    }
  }
  if (!device_error.empty()) throw MigrationError(device_error);
  loader.finish();
  st_.devices = loader.loaded();
  st_.vmdesc = loader.vmdesc();
  return msg;
}

// COMPLETE: every page the source sent arrived; CONFIRM says so.
void DestinationSession::confirm_completion(const ControlLink::Message& complete) {
  wire::BodyReader r(complete.body.data(), complete.body.size(), 0, complete.header.packet);
  const PageCounts sent = wire::decode_counts(r);
  r.end();
  const PageCounts& got = st_.pages;
  if (!same_counts(sent, got)) {
    throw MigrationError("page count mismatch: source sent " + std::to_string(sent.total()) +
                         " pages (" + std::to_string(sent.normal) + " normal), destination got " +
                         std::to_string(got.total()) + " (" + std::to_string(got.normal) +
                         " normal)");
  }
  if (!one_way_) {
    wire::BodyWriter w;
    wire::encode_counts(w, got);
    link_.send(wire::PacketType::kConfirm, w.bytes());
    // No round trip for the digests: they are ready, and the source is waiting for them.
    if (digests_) link_.send(wire::PacketType::kHashes, wire::encode_hashes(landed_digests_));
  }
}

// Two-way: our digests went with CONFIRM, or (verify_full) VERIFY asks for a re-hash now.
// One-way: the stream may hold the source's digests, which we check ourselves. DONE ends it.
void DestinationSession::verify_and_hear_done() {
  const bool full = (hello_.flags & wire::kHelloFlagVerify) != 0 &&
                    (hello_.flags & wire::kHelloFlagVerifyFull) != 0;
  using wire::PacketType;
  auto msg = one_way_ ? link_.recv({PacketType::kHashes, PacketType::kDone}, "source")
             : full   ? link_.recv({PacketType::kVerify, PacketType::kDone}, "source")
                      : link_.recv({PacketType::kDone}, "source");
  if (msg.header.type == wire::PacketType::kHashes) {
    check_recorded_digests(msg);
    msg = link_.recv({wire::PacketType::kDone}, "source");
  } else if (msg.header.type == wire::PacketType::kVerify) {
    link_.send(wire::PacketType::kHashes, wire::encode_hashes(destination_digests()));
    msg = link_.recv({wire::PacketType::kDone}, "source");
  }
  check_done(msg);
}

// What the receivers kept, or a full re-hash when the source asked for one (or recorded one).
std::vector<uint64_t> DestinationSession::destination_digests() {
  return digests_ ? landed_digests_ : full_block_digests(m_.blocks);
}

void DestinationSession::check_recorded_digests(const ControlLink::Message& hashes) {
  const std::vector<uint64_t> recorded = wire::decode_hashes(
      hashes.body.data(), hashes.body.size(), 0, hashes.header.packet, m_.blocks.size());
  const std::vector<uint64_t> mine = destination_digests();
  for (size_t i = 0; i < mine.size(); ++i) {
    if (mine[i] != recorded[i]) {
      throw MigrationError("verification failed: block '" + m_.blocks[i].name +
                           "' differs from the source's digest recorded in the stream");
    }
  }
  st_.verified = true;
}

void DestinationSession::check_done(const ControlLink::Message& done) {
  wire::BodyReader r(done.body.data(), done.body.size(), 0, done.header.packet);
  const uint8_t result = r.u8("result");
  const std::string why = r.str("message");
  r.end();
  if (result > 2) {
    wire::fail(0, done.header.packet, wire::kHeaderSize, "DONE result " + std::to_string(result));
  }
  if (result == 2) {
    may_tell_source_ = false;  // the source knows already
    throw MigrationError(why.empty() ? "source reported a failed verification" : why);
  }
  if (!one_way_) st_.verified = result == 1;
}

}  // namespace ferry::ram
