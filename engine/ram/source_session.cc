// The source's protocol in order, its setup handshake and its two endings: finish() after the
// destination said DONE was heard, rollback() for every failure.
#include "engine/ram/source_session.h"

#include <set>

#include "engine/ram/page_counts.h"

namespace ferry::ram {

SourceSession::SourceSession(SourceState& state, std::vector<transport::ChannelPtr> channels)
    : m_(state), channels_(std::move(channels)), t0_(Clock::now()) {
  m_.p_start_ns.store(t0_.time_since_epoch().count());
  st_.channels = static_cast<uint32_t>(channels_.size());
  std::set<std::string> names;
  for (const auto& d : m_.dirty) names.insert(d->name());
  for (const auto& n : names) st_.dirty_tracking += (st_.dirty_tracking.empty() ? "" : ",") + n;
  for (const auto& b : m_.blocks) st_.ram_bytes += b.size;
}

MigrationStats SourceSession::run() {
  try {
    admit_channels();
    setup();
    start_senders();
    const uint32_t last_iteration = iterate();
    switchover(last_iteration);
    send_devices();
    complete();
    verify_and_say_done();
    return finish();
  } catch (const std::exception& e) {
    rollback(e);
  }
}

void SourceSession::admit_channels() {
  if (channels_.empty() || channels_.size() > wire::kMaxChannels) {
    throw MigrationError("source: " + std::to_string(channels_.size()) + " channels (1.." +
                         std::to_string(wire::kMaxChannels) + " supported)");
  }
  for (auto& c : channels_) {
    if (!c) throw MigrationError("source: null channel");
  }
  std::lock_guard lock(m_.mu);
  if (m_.stop.load()) throw MigrationError(m_.error);  // cancelled before run()
  for (auto& c : channels_) m_.live.push_back(c.get());
}

// HELLO (the block list, and the RDMA placement offer) on channel 0; the destination
// acknowledges, with its placement answer, or says why not.
void SourceSession::setup() {
  owned_payload_cap_ = wire::owned_payload_cap(m_.blocks, m_.cfg.batch_pages);
  one_way_ = all_one_way(channels_);
  link_.ch = channels_[0].get();
  wire::Hello hello = make_hello();
  const bool offered = offer_placement(hello);
  link_.send(wire::PacketType::kHello, wire::encode_hello(hello));
  placement_.description = "stream";
  if (!one_way_) {
    auto ack = link_.recv({wire::PacketType::kHelloAck}, "destination");
    if (offered) placement_ = accept_placement(ack.body, ack.header.packet, m_.blocks, channels_);
  }
  st_.placement = placement_.description;
  st_.one_way = one_way_;
  st_.setup_seconds = std::chrono::duration<double>(Clock::now() - t0_).count();
}

wire::Hello SourceSession::make_hello() const {
  wire::Hello hello;
  hello.channels = static_cast<uint32_t>(channels_.size());
  hello.batch_pages = static_cast<uint32_t>(m_.cfg.batch_pages);
  hello.owned_payload_cap = static_cast<uint32_t>(owned_payload_cap_);
  hello.flags = m_.cfg.verify ? wire::kHelloFlagVerify : 0;
  if (m_.cfg.verify && m_.cfg.verify_full) hello.flags |= wire::kHelloFlagVerifyFull;
  for (const auto& b : m_.blocks) hello.blocks.push_back({b.name, b.size, b.page_size});
  return hello;
}

// engine/ram/placement.h: offered only when every channel can RDMA-write.
bool SourceSession::offer_placement(wire::Hello& hello) const {
  const bool offer = m_.cfg.rdma_placement && channels_can_place(channels_);
  if (offer) hello.flags |= wire::kHelloFlagRdmaPlacement;
  return offer;
}

// engine/ram/page_population.h: asked once per session, which blocks qualify.
void SourceSession::open_page_population(SenderShared& shared) {
  population_ = PagePopulation::open();
  if (!population_) return;
  population_blocks_.clear();
  for (const auto& b : m_.blocks) {
    population_blocks_.push_back(PagePopulation::private_anonymous(b.host, b.size) ? 1 : 0);
  }
  shared.population = population_.get();
  shared.population_blocks = &population_blocks_;
}

// One PageSender thread per channel; channel 0's packet numbers continue after the handshake.
void SourceSession::start_senders() {
  const uint32_t n = static_cast<uint32_t>(channels_.size());
  SenderShared shared;
  shared.blocks = &m_.blocks;
  shared.config = &m_.cfg;
  shared.channels = n;
  shared.owned_payload_cap = owned_payload_cap_;
  shared.stop = &m_.stop;
  shared.on_error = [&m = m_](const std::string& e, bool link) { m.fail(e, link); };
  shared.wire_bytes = &m_.p_wire;
  shared.pages_sent = &m_.p_pages_sent;
  shared.stop_mu = &m_.stop_mu;
  shared.stop_cv = &m_.stop_cv;
  if (!placement_.remote.empty()) shared.placement = &placement_.remote;
  if (m_.cfg.zero_pages && m_.cfg.zero_from_page_tables) open_page_population(shared);
  if (m_.cfg.verify && !m_.cfg.verify_full) {
    digests_ = std::make_unique<DigestTable>(m_.blocks);
    shared.digests = digests_.get();
  }
  {
    std::lock_guard lock(m_.mu);
    for (uint32_t i = 0; i < n; ++i) {
      m_.senders.push_back(std::make_unique<PageSender>(
          i, *channels_[i], shared, i == 0 ? link_.send_packet : 1,
          i == 0 ? link_.recv_packet : 1));
    }
  }
  for (auto& s : m_.senders) s->start();
}

MigrationStats SourceSession::finish() {
  for (auto& c : channels_) c->close();
  {
    std::lock_guard lock(m_.mu);
    m_.live.clear();
  }
  record_sender_counters(sent_);
  st_.wire_bytes = m_.p_wire.load();
  st_.status = "completed";
  st_.total_seconds = std::chrono::duration<double>(Clock::now() - t0_).count();
  std::lock_guard lock(m_.mu);  // cancel() may be waking the senders
  m_.senders.clear();
  m_.last = st_;
  return st_;
}

// Every failure: stop the senders and channels, give the guest back, keep what was counted.
void SourceSession::rollback(const std::exception& e) {
  // Records it unless an earlier error (or cancel) came first.
  m_.fail(e.what(), dynamic_cast<const transport::TransportError*>(&e) != nullptr);
  for (auto& s : m_.senders) s->join();
  std::string msg;
  bool link_broke = false;
  {
    std::lock_guard lock(m_.mu);
    msg = m_.error;
    link_broke = m_.link_broke;
    m_.live.clear();
  }
  if (link_broke && !m_.cancelled.load()) msg = with_destination_reason(msg);
  close_channels_after_abort();
  if (!m_.senders.empty()) record_sender_counters(m_.sum_counters());
  {
    std::lock_guard lock(m_.mu);
    m_.senders.clear();
  }
  msg += release_guest();
  st_.status = m_.cancelled.load() ? "cancelled" : "failed";
  st_.error = msg;
  st_.wire_bytes = m_.p_wire.load();
  st_.total_seconds = std::chrono::duration<double>(Clock::now() - t0_).count();
  {
    std::lock_guard lock(m_.mu);
    m_.last = st_;
  }
  throw MigrationError(msg);
}

// The link broke: if the destination said why before it closed (an ERROR a sender found on its
// channel during the passes, or one waiting on the control link), that is the reason, and the
// broken link its context. The senders are joined: this thread drives channel 0 now (a sender
// that stopped has closed it, and then nothing is read).
std::string SourceSession::with_destination_reason(const std::string& link_error) {
  std::string reason;
  for (const auto& s : m_.senders) {
    if (reason.empty()) reason = s->peer_error();
  }
  if (reason.empty() && link_.ch) {
    reason = read_peer_error(*link_.ch, 0, link_.recv_packet, std::chrono::milliseconds(100));
  }
  if (reason.empty()) return link_error;
  return "the destination failed: " + reason + " (the source saw: " + link_error + ")";
}

void SourceSession::record_sender_counters(const SenderCounters& c) {
  st_.pages = c.pages;
  st_.xbzrle_cache_hits = c.xbzrle_hits;
  st_.xbzrle_cache_misses = c.xbzrle_misses;
  st_.xbzrle_overflows = c.xbzrle_overflows;
  st_.xbzrle_bytes = c.xbzrle_bytes;
  st_.zero_pages_unread = c.zero_unread;
}

// The channels are aborted; close() waits until the kernel no longer reads our buffers.
void SourceSession::close_channels_after_abort() noexcept {
  for (auto& c : channels_) {
    if (!c) continue;
    try {
      c->set_send_callback(nullptr);
      c->close();
    } catch (...) {
    }
  }
}

// Undoes the throttle and the stop; returns what to append to the error when a hook fails,
// because the caller's hooks must not turn a clear MigrationError into something else.
std::string SourceSession::release_guest() {
  try {
    if (throttle_ > 0 && m_.hooks.throttle) m_.hooks.throttle(0);
    if (guest_stopped_ && m_.hooks.resume_guest) m_.hooks.resume_guest();
  } catch (const std::exception& he) {
    return std::string(" (and resuming the guest failed: ") + he.what() + ")";
  }
  return {};
}

}  // namespace ferry::ram
