// The destination's protocol in order: setup, the receivers, then (destination_completion.cc)
// devices and completion; finish() or, for every failure, rollback().
#include "engine/ram/destination_session.h"

#include "engine/ram/page_counts.h"
#include "engine/ram/placement.h"

namespace ferry::ram {
namespace {

std::string describe(uint64_t size, uint64_t page_size) {
  return std::to_string(size) + " bytes in " + std::to_string(page_size) + "-byte pages";
}

}  // namespace

DestinationSession::DestinationSession(DestinationState& state,
                                       std::vector<transport::ChannelPtr> channels)
    : m_(state), channels_(std::move(channels)), t0_(Clock::now()) {}

DestinationStats DestinationSession::run() {
  try {
    admit_channels();
    setup();
    receive_pages();
    const ControlLink::Message complete = load_devices();
    confirm_completion(complete);
    verify_and_hear_done();
    return finish();
  } catch (const std::exception& e) {
    rollback(e);
  }
}

void DestinationSession::admit_channels() {
  if (channels_.empty() || channels_.size() > wire::kMaxChannels) {
    throw MigrationError("destination: " + std::to_string(channels_.size()) + " channels");
  }
  for (auto& c : channels_) {
    if (!c) throw MigrationError("destination: null channel");
  }
  std::lock_guard lock(m_.mu);
  if (m_.stop.load()) throw MigrationError(m_.error);  // cancelled before run()
  for (auto& c : channels_) m_.live.push_back(c.get());
}

// HELLO: the source's block list must match ours exactly. HELLO_ACK answers its RDMA
// placement offer, if any (engine/ram/placement.h).
void DestinationSession::setup() {
  link_.ch = channels_[0].get();
  one_way_ = all_one_way(channels_);
  if (one_way_) may_tell_source_ = false;
  auto msg = link_.recv({wire::PacketType::kHello}, "source");
  hello_ = wire::decode_hello(msg.body.data(), msg.body.size(), 0, msg.header.packet);
  check_block_list(hello_);
  check_payload_bound(hello_);
  st_.verify_requested = (hello_.flags & wire::kHelloFlagVerify) != 0;
  if (!one_way_) answer_hello(hello_);
}

void DestinationSession::check_block_list(const wire::Hello& hello) const {
  const size_t n = channels_.size();
  if (hello.channels != n) {
    throw MigrationError("channel count mismatch: source opened " +
                         std::to_string(hello.channels) + ", destination has " +
                         std::to_string(n));
  }
  if (hello.blocks.size() != m_.blocks.size()) {
    throw MigrationError("block list mismatch: source has " + std::to_string(hello.blocks.size()) +
                         " blocks, destination " + std::to_string(m_.blocks.size()));
  }
  for (size_t i = 0; i < m_.blocks.size(); ++i) {
    const auto& s = hello.blocks[i];
    const RamBlock& d = m_.blocks[i];
    if (s.name != d.name) {
      throw MigrationError("block list mismatch: block " + std::to_string(i) + " is '" + s.name +
                           "' on the source, '" + d.name + "' on the destination");
    }
    if (s.size != d.size || s.page_size != d.page_size) {
      throw MigrationError("block list mismatch: block '" + d.name + "': source " +
                           describe(s.size, s.page_size) + ", destination " +
                           describe(d.size, d.page_size));
    }
  }
}

// Each receiver allocates the owned-payload bound HELLO announces: it may be no larger than what
// a source with these blocks and this batch size can need (wire::owned_payload_cap).
void DestinationSession::check_payload_bound(const wire::Hello& hello) const {
  const size_t most = wire::owned_payload_cap(m_.blocks, hello.batch_pages);
  if (hello.owned_payload_cap > most) {
    throw MigrationError("HELLO announces " + std::to_string(hello.owned_payload_cap) +
                         " bytes of encoded payload per packet; with these blocks and " +
                         std::to_string(hello.batch_pages) + " pages per batch a source needs " +
                         "at most " + std::to_string(most));
  }
}

void DestinationSession::answer_hello(const wire::Hello& hello) {
  link_.send(wire::PacketType::kHelloAck, (hello.flags & wire::kHelloFlagRdmaPlacement)
                                              ? answer_placement(m_.blocks, channels_, &placement_)
                                              : std::vector<uint8_t>{});
}

// The data phase: the receivers own every channel until the final SYNC; channel 0's packet
// numbers then continue on the control link.
void DestinationSession::receive_pages() {
  start_receivers();
  may_tell_source_ = false;
  for (auto& r : receivers_) r->start();
  for (auto& r : receivers_) r->join();
  if (m_.stop.load()) {
    std::lock_guard lock(m_.mu);
    throw MigrationError(m_.error);
  }
  may_tell_source_ = !one_way_;
  link_.recv_packet = receivers_[0]->next_packet();
  link_.send_packet = receivers_[0]->next_send_packet();  // after SYNC_ACKs (placement)
  sum_receiver_counters();
}

void DestinationSession::start_receivers() {
  const uint32_t n = static_cast<uint32_t>(channels_.size());
  wire::DataLimits lim;
  lim.blocks = &m_.blocks;
  lim.max_records = hello_.batch_pages;
  lim.owned_payload_cap = hello_.owned_payload_cap;
  lim.placement = placement_;
  for (const auto& b : m_.blocks) written_.emplace_back(b.known_zero ? b.size / b.page_size : 0);
  barrier_ = std::make_unique<SyncBarrier>(n, &m_.stop);
  {
    std::lock_guard lock(m_.mu);
    m_.barrier = barrier_.get();
  }
  const bool keep_digests = (hello_.flags & wire::kHelloFlagVerify) != 0 &&
                            (hello_.flags & wire::kHelloFlagVerifyFull) == 0;
  if (keep_digests) digests_ = std::make_unique<DigestTable>(m_.blocks);
  for (uint32_t i = 0; i < n; ++i) {
    receivers_.push_back(std::make_unique<PageReceiver>(
        i, *channels_[i], lim, *barrier_, i == 0 ? link_.recv_packet : 1,
        [&m = m_](const std::string& e, transport::Channel* telling) { m.fail(e, telling); },
        &written_,
        i == 0 ? link_.send_packet : 1));
    if (digests_) receivers_.back()->keep_digests(digests_.get(), m_.blocks.size());
  }
}

void DestinationSession::sum_receiver_counters() {
  for (auto& r : receivers_) {
    const auto& c = r->counters();
    add_counts(st_.pages, c.pages);
    st_.wire_bytes += c.wire_bytes;
    st_.zero_pages_skipped += c.zero_pages_skipped;
    st_.placed_pages += c.placed_pages;
  }
  st_.iterations = receivers_[0]->counters().iterations;
  if (digests_) {
    landed_digests_.assign(m_.blocks.size(), 0);
    for (auto& r : receivers_) add_sums(landed_digests_, r->digest_sums());
  }
}

DestinationStats DestinationSession::finish() {
  for (auto& c : channels_) c->close();
  forget_channels();
  st_.seconds = std::chrono::duration<double>(Clock::now() - t0_).count();
  return st_;
}

// Every failure: tell the source why if channel 0 allows, stop everything, close the channels.
void DestinationSession::rollback(const std::exception& e) {
  if (may_tell_source_ && link_.ch && !m_.stop.load()) link_.send_error(e.what());
  m_.fail(e.what());
  for (auto& r : receivers_) r->join();
  std::string err;
  {
    std::lock_guard lock(m_.mu);
    err = m_.error;
  }
  forget_channels();
  for (auto& c : channels_) {
    if (!c) continue;
    try {
      c->close();
    } catch (...) {
    }
  }
  throw MigrationError(err);
}

void DestinationSession::forget_channels() {
  std::lock_guard lock(m_.mu);
  m_.live.clear();
  m_.barrier = nullptr;
}

}  // namespace ferry::ram
