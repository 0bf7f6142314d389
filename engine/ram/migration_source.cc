// MigrationSource: the precopy state machine on the thread that calls run(). It owns the
// scanner (dirty sync + take_batch, handing batches to the senders) and both handshakes on
// channel 0; PageSender threads own the data path.
#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <set>

#include "engine/device/device_state.h"
#include "ferry/migration.h"
#include "engine/ram/block_check.h"
#include "engine/ram/control.h"
#include "engine/ram/page_sender.h"
#include "engine/ram/placement.h"
#include "engine/ram/wire_format.h"

namespace ferry {
namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

PageCounts operator-(const PageCounts& a, const PageCounts& b) {
  return PageCounts{a.normal - b.normal, a.zero - b.zero, a.xbzrle - b.xbzrle, a.lz4 - b.lz4};
}
void add(PageCounts& a, const PageCounts& b) {
  a.normal += b.normal;
  a.zero += b.zero;
  a.xbzrle += b.xbzrle;
  a.lz4 += b.lz4;
}
bool operator==(const PageCounts& a, const PageCounts& b) {
  return a.normal == b.normal && a.zero == b.zero && a.xbzrle == b.xbzrle && a.lz4 == b.lz4;
}
}  // namespace

struct MigrationSource::Impl {
  std::vector<RamBlock> blocks;
  std::vector<std::unique_ptr<DirtySource>> dirty;
  MigrationConfig cfg;
  MigrationHooks hooks;
  std::vector<DirtyBitmap> bitmaps;
  std::vector<Device> devices;  // set_devices (engine/device)

  // Stop machinery: the first error (or "cancelled") wins; every blocked thread is woken.
  std::atomic<bool> stop{false};
  std::atomic<bool> cancelled{false};
  mutable std::mutex mu;
  std::string error;
  std::vector<transport::Channel*> live;  // channels of the running run(), for abort()
  std::vector<std::unique_ptr<ram::PageSender>> senders;
  std::mutex stop_mu;
  std::condition_variable stop_cv;

  // Progress, written by run() and the senders.
  std::atomic<uint32_t> p_iteration{0};
  std::atomic<bool> p_final{false};
  std::atomic<uint64_t> p_pages_sent{0};
  std::atomic<uint64_t> p_pages_dirty{0};
  std::atomic<uint64_t> p_wire{0};
  std::atomic<int64_t> p_start_ns{0};
  std::atomic<int64_t> p_iter_start_ns{0};
  std::atomic<uint64_t> p_iter_start_wire{0};

  MigrationStats last;

  void fail(const std::string& msg) noexcept {
    {
      std::lock_guard lock(mu);
      if (error.empty()) error = msg;
      stop.store(true);
      for (auto* ch : live) ch->abort();
      for (auto& s : senders) s->wake();
    }
    std::lock_guard lock(stop_mu);
    stop_cv.notify_all();
  }
  [[noreturn]] void throw_stopped() {
    std::lock_guard lock(mu);
    throw MigrationError(error.empty() ? "stopped" : error);
  }
  void check_stop() {
    if (stop.load()) throw_stopped();
  }

  void sync_dirty() {
    for (size_t i = 0; i < blocks.size(); ++i) dirty[i]->sync(bitmaps[i]);
  }
  uint64_t dirty_pages() const {
    uint64_t n = 0;
    for (const auto& b : bitmaps) n += b.count();
    return n;
  }
  uint64_t dirty_bytes() const {
    uint64_t n = 0;
    for (size_t i = 0; i < blocks.size(); ++i) n += bitmaps[i].count() * blocks[i].page_size;
    return n;
  }
  ram::SenderCounters sum_counters() const {
    ram::SenderCounters c;
    for (const auto& s : senders) {
      const auto x = s->counters();
      add(c.pages, x.pages);
      c.wire_bytes += x.wire_bytes;
      c.xbzrle_hits += x.xbzrle_hits;
      c.xbzrle_misses += x.xbzrle_misses;
      c.xbzrle_overflows += x.xbzrle_overflows;
      c.xbzrle_bytes += x.xbzrle_bytes;
      c.placed_pages += x.placed_pages;
    }
    return c;
  }

  void run_pass(uint32_t iteration, bool final_pass, IterationStats& is);
};

// One pass over the dirty bitmaps: every set bit goes, as a page index, to the sender that
// owns it; then SYNC(iteration) on every channel and wait until each has sent it.
void MigrationSource::Impl::run_pass(uint32_t iteration, bool final_pass, IterationStats& is) {
  const auto t0 = Clock::now();
  const ram::SenderCounters before = sum_counters();
  const uint32_t n = static_cast<uint32_t>(senders.size());
  const size_t batch = cfg.batch_pages;
  const uint32_t rotate = cfg.rotate_partition_for_testing ? iteration : 0;
  p_iteration.store(iteration);
  p_final.store(final_pass);
  p_pages_sent.store(0);
  p_pages_dirty.store(is.dirty_pages);
  p_iter_start_ns.store(t0.time_since_epoch().count());
  p_iter_start_wire.store(p_wire.load());

  std::vector<uint32_t> taken(batch);
  std::vector<ram::WorkItem*> staging(n, nullptr);
  auto publish = [&](uint32_t s) {
    senders[s]->publish();
    staging[s] = nullptr;
  };
  for (uint32_t b = 0; b < blocks.size(); ++b) {
    size_t cursor = 0;
    for (;;) {
      const size_t got = bitmaps[b].take_batch(cursor, taken.data(), batch);
      for (size_t i = 0; i < got; ++i) {
        const uint32_t page = taken[i];
        // Fixed owner per page (and per iteration when rotating for tests).
        const uint32_t s = static_cast<uint32_t>((page / batch + rotate) % n);
        ram::WorkItem* item = staging[s];
        if (!item) {
          item = senders[s]->acquire();
          if (!item) throw_stopped();
          item->kind = ram::WorkItem::Kind::kBatch;
          item->block = b;
          item->count = 0;
          item->iteration = iteration;
          item->final_pass = final_pass;
          staging[s] = item;
        }
        item->pages[item->count++] = page;
        if (item->count == batch) publish(s);
      }
      if (got < batch) break;
    }
    for (uint32_t s = 0; s < n; ++s) {
      if (staging[s]) publish(s);
    }
    check_stop();
  }
  for (uint32_t s = 0; s < n; ++s) {
    ram::WorkItem* item = senders[s]->acquire();
    if (!item) throw_stopped();
    item->kind = ram::WorkItem::Kind::kSync;
    item->iteration = iteration;
    item->final_pass = final_pass;
    item->count = 0;
    senders[s]->publish();
  }
  for (auto& s : senders) {
    if (!s->wait_synced(iteration)) throw_stopped();
  }
  const ram::SenderCounters after = sum_counters();
  is.iteration = iteration;
  is.final_pass = final_pass;
  is.pages = after.pages - before.pages;
  is.wire_bytes = after.wire_bytes - before.wire_bytes;
  is.seconds = since(t0);
  is.throughput_bytes_per_s = is.seconds > 0 ? static_cast<double>(is.wire_bytes) / is.seconds : 0;
}

MigrationSource::MigrationSource(std::vector<RamBlock> blocks,
                                 std::vector<std::unique_ptr<DirtySource>> dirty,
                                 MigrationConfig config, MigrationHooks hooks)
    : impl_(std::make_unique<Impl>()) {
  ram::check_blocks(blocks, "source");
  if (dirty.size() != blocks.size()) {
    throw MigrationError("source: " + std::to_string(blocks.size()) + " blocks but " +
                         std::to_string(dirty.size()) + " dirty sources");
  }
  for (size_t i = 0; i < blocks.size(); ++i) {
    const size_t pages = blocks[i].size / blocks[i].page_size;
    if (!dirty[i] || dirty[i]->pages() != pages) {
      throw MigrationError("source: dirty source " + std::to_string(i) + " does not track the " +
                           std::to_string(pages) + " pages of block '" + blocks[i].name + "'");
    }
    impl_->bitmaps.emplace_back(pages);
  }
  if (config.batch_pages == 0 || config.batch_pages > wire::kMaxBatchPages) {
    throw MigrationError("source: batch_pages " + std::to_string(config.batch_pages) +
                         " not in 1.." + std::to_string(wire::kMaxBatchPages));
  }
  if (!(config.xbzrle_max_ratio > 0)) throw MigrationError("source: xbzrle_max_ratio must be > 0");
  if (config.rotate_partition_for_testing && config.xbzrle) {
    throw MigrationError("source: rotate_partition_for_testing cannot be combined with xbzrle");
  }
  impl_->blocks = std::move(blocks);
  impl_->dirty = std::move(dirty);
  impl_->cfg = config;
  impl_->hooks = std::move(hooks);
}

MigrationSource::~MigrationSource() = default;

void MigrationSource::set_devices(std::vector<Device> devices) {
  device::check_devices(devices, "source");
  impl_->devices = std::move(devices);
}

void MigrationSource::cancel() noexcept {
  impl_->cancelled.store(true);
  impl_->fail("cancelled");
}

Progress MigrationSource::progress() const {
  const Impl& m = *impl_;
  Progress p;
  p.iteration = m.p_iteration.load(std::memory_order_relaxed);
  p.final_pass = m.p_final.load(std::memory_order_relaxed);
  p.pages_sent_this_iteration = m.p_pages_sent.load(std::memory_order_relaxed);
  p.pages_dirty_this_iteration = m.p_pages_dirty.load(std::memory_order_relaxed);
  p.wire_bytes = m.p_wire.load(std::memory_order_relaxed);
  const int64_t now = Clock::now().time_since_epoch().count();
  const int64_t start = m.p_start_ns.load(std::memory_order_relaxed);
  if (start != 0) p.elapsed_seconds = static_cast<double>(now - start) / 1e9;
  const int64_t it = m.p_iter_start_ns.load(std::memory_order_relaxed);
  const double dt = static_cast<double>(now - it) / 1e9;
  if (it != 0 && dt > 0) {
    p.throughput_bytes_per_s =
        static_cast<double>(p.wire_bytes - m.p_iter_start_wire.load(std::memory_order_relaxed)) /
        dt;
  }
  return p;
}

MigrationStats MigrationSource::last_stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->last;
}

MigrationStats MigrationSource::run(std::vector<transport::ChannelPtr> channels) {
  Impl& m = *impl_;
  const auto t0 = Clock::now();
  m.p_start_ns.store(t0.time_since_epoch().count());
  MigrationStats st;
  st.channels = static_cast<uint32_t>(channels.size());
  std::set<std::string> names;
  for (const auto& d : m.dirty) names.insert(d->name());
  for (const auto& n : names) st.dirty_tracking += (st.dirty_tracking.empty() ? "" : ",") + n;
  for (const auto& b : m.blocks) st.ram_bytes += b.size;

  bool stopped = false;
  uint32_t throttle = 0;
  Clock::time_point t_stop;
  ram::ControlLink link;

  try {
    if (channels.empty() || channels.size() > wire::kMaxChannels) {
      throw MigrationError("source: " + std::to_string(channels.size()) + " channels (1.." +
                           std::to_string(wire::kMaxChannels) + " supported)");
    }
    for (auto& c : channels) {
      if (!c) throw MigrationError("source: null channel");
    }
    {
      std::lock_guard lock(m.mu);
      if (m.stop.load()) throw MigrationError(m.error);
      for (auto& c : channels) m.live.push_back(c.get());
    }
    const uint32_t n = static_cast<uint32_t>(channels.size());
    const size_t owned_cap = wire::owned_payload_cap(m.blocks, m.cfg.batch_pages);
    // A stream file (transport::kOneWay): nobody answers, so the source sends every message of
    // the protocol and waits for none (wire_format.h, "One-way streams").
    const bool one_way = ram::all_one_way(channels);

    // Setup: the block list on channel 0; the destination acknowledges or says why not.
    link.ch = channels[0].get();
    wire::Hello hello;
    hello.channels = n;
    hello.batch_pages = static_cast<uint32_t>(m.cfg.batch_pages);
    hello.owned_payload_cap = static_cast<uint32_t>(owned_cap);
    hello.flags = m.cfg.verify ? wire::kHelloFlagVerify : 0;
    // --- RDMA placement offer (engine/ram/placement.h) ---
    const bool offer = m.cfg.rdma_placement && ram::channels_can_place(channels);
    if (offer) hello.flags |= wire::kHelloFlagRdmaPlacement;
    for (const auto& b : m.blocks) hello.blocks.push_back({b.name, b.size, b.page_size});
    link.send(wire::PacketType::kHello, wire::encode_hello(hello));
    ram::SourcePlacement placement;
    placement.description = "stream";
    if (!one_way) {
      auto ack = link.recv({wire::PacketType::kHelloAck}, "destination");
      if (offer) {
        placement = ram::accept_placement(ack.body, ack.header.packet, m.blocks, channels);
      }
    }
    st.placement = placement.description;
    st.one_way = one_way;
    // --- end RDMA placement offer ---
    st.setup_seconds = since(t0);

    ram::SenderShared shared;
    shared.blocks = &m.blocks;
    shared.config = &m.cfg;
    shared.channels = n;
    shared.owned_payload_cap = owned_cap;
    shared.stop = &m.stop;
    shared.on_error = [&m](const std::string& e) { m.fail(e); };
    shared.wire_bytes = &m.p_wire;
    shared.pages_sent = &m.p_pages_sent;
    shared.stop_mu = &m.stop_mu;
    shared.stop_cv = &m.stop_cv;
    if (!placement.remote.empty()) shared.placement = &placement.remote;
    {
      std::lock_guard lock(m.mu);
      for (uint32_t i = 0; i < n; ++i) {
        m.senders.push_back(std::make_unique<ram::PageSender>(
            i, *channels[i], shared, i == 0 ? link.send_packet : 1,
            i == 0 ? link.recv_packet : 1));
      }
    }
    for (auto& s : m.senders) s->start();

    // Bulk pass: whatever was marked so far is covered by sending everything.
    m.sync_dirty();
    for (auto& b : m.bitmaps) b.set_all();
    uint32_t it = 0;
    for (;;) {
      IterationStats is;
      is.dirty_pages = m.dirty_pages();
      m.run_pass(it, false, is);
      m.check_stop();
      m.sync_dirty();
      is.remaining_dirty_pages = m.dirty_pages();
      is.dirty_rate_pages_per_s =
          is.seconds > 0 ? static_cast<double>(is.remaining_dirty_pages) / is.seconds : 0;
      double bw = is.throughput_bytes_per_s;
      if (m.cfg.bandwidth_limit_bytes_per_s > 0 && bw > 0) {
        bw = std::min(bw, static_cast<double>(m.cfg.bandwidth_limit_bytes_per_s));
      }
      const double remaining = static_cast<double>(m.dirty_bytes());
      is.expected_downtime_s = remaining == 0 ? 0 : bw > 0 ? remaining / bw : INFINITY;
      const double limit_s = std::chrono::duration<double>(m.cfg.downtime_limit).count();
      if (is.remaining_dirty_pages == 0) {
        st.converged_by = "nothing-dirty";
      } else if (is.expected_downtime_s <= limit_s) {
        st.converged_by = "downtime-limit";
      } else if (it >= m.cfg.max_iterations) {
        st.converged_by = "max-iterations";
      } else if (m.cfg.auto_converge && m.hooks.throttle && it >= 1 &&
                 is.remaining_dirty_pages * 2 > is.pages.total()) {
        // The guest dirtied more than half of what we managed to send: slow it down more.
        throttle = throttle == 0 ? 20 : std::min<uint32_t>(99, throttle + 10);
        is.throttle_percent = throttle;
        m.hooks.throttle(throttle);
      }
      st.iterations.push_back(is);
      if (m.hooks.on_iteration) m.hooks.on_iteration(is);
      if (!st.converged_by.empty()) break;
      ++it;
      m.check_stop();
    }

    // Stop and copy: from here every millisecond is downtime.
    m.check_stop();
    if (m.hooks.stop_guest) m.hooks.stop_guest();
    stopped = true;
    t_stop = Clock::now();
    if (throttle > 0) {
      throttle = 0;
      if (m.hooks.throttle) m.hooks.throttle(0);
    }
    m.sync_dirty();
    {
      IterationStats is;
      is.dirty_pages = m.dirty_pages();
      m.run_pass(it + 1, true, is);
      st.iterations.push_back(is);
      if (m.hooks.on_iteration) m.hooks.on_iteration(st.iterations.back());
    }
    for (auto& s : m.senders) s->join();
    m.check_stop();
    for (auto& c : channels) c->set_send_callback(nullptr);
    link.send_packet = m.senders[0]->next_packet();
    link.recv_packet = m.senders[0]->next_recv_packet();  // after SYNC_ACKs (placement)
    const ram::SenderCounters sc = m.sum_counters();
    st.placed_pages = sc.placed_pages;

    // --- device state (engine/device): guest stopped, RAM done; counts in the downtime ---
    if (!m.devices.empty()) {
      uint32_t vmdesc_page = 0;  // the smallest page size, as QEMU's TARGET_PAGE_SIZE
      for (const auto& b : m.blocks) {
        if (b.page_size <= 65536 && (vmdesc_page == 0 || b.page_size < vmdesc_page)) {
          vmdesc_page = static_cast<uint32_t>(b.page_size);
        }
      }
      device::SavedDevices saved;
      try {
        saved = device::save_devices(m.devices, vmdesc_page ? vmdesc_page : 4096);
      } catch (const MigrationError& e) {
        link.send_error(e.what());  // channel 0 is idle: the destination stops waiting
        throw;
      }
      for (const auto& body : saved.sections) link.send(wire::PacketType::kDevice, body);
      link.send(wire::PacketType::kVmdesc, saved.vmdesc);
      st.devices = static_cast<uint32_t>(saved.sections.size());
      st.device_bytes = saved.bytes();
    }
    // --- end device state ---

    // Completion: the destination confirms it got every page we sent.
    {
      wire::BodyWriter w;
      wire::encode_counts(w, sc.pages);
      link.send(wire::PacketType::kComplete, w.bytes());
    }
    if (!one_way) {
      auto msg = link.recv({wire::PacketType::kConfirm}, "destination");
      wire::BodyReader r(msg.body.data(), msg.body.size(), 0, msg.header.packet);
      const PageCounts got = wire::decode_counts(r);
      r.end();
      if (!(got == sc.pages)) {
        throw MigrationError("destination confirmed " + std::to_string(got.total()) +
                             " pages, source sent " + std::to_string(sc.pages.total()));
      }
    }
    st.downtime_seconds = since(t_stop);

    // Verification, after the downtime clock: both sides hash at once.
    uint8_t result = 0;
    std::string verify_error;
    if (m.cfg.verify && one_way) {
      // The reader of the stream checks what it loaded against these (it may be years later).
      const auto tv = Clock::now();
      link.send(wire::PacketType::kHashes, wire::encode_hashes(ram::block_hashes(m.blocks)));
      st.verify_seconds = since(tv);
    } else if (m.cfg.verify) {
      const auto tv = Clock::now();
      link.send(wire::PacketType::kVerify, {});
      const std::vector<uint64_t> mine = ram::block_hashes(m.blocks);
      auto msg = link.recv({wire::PacketType::kHashes}, "destination");
      const std::vector<uint64_t> theirs = wire::decode_hashes(
          msg.body.data(), msg.body.size(), 0, msg.header.packet, m.blocks.size());
      for (size_t i = 0; i < theirs.size() && verify_error.empty(); ++i) {
        if (theirs[i] != mine[i]) {
          verify_error = "verification failed: block '" + m.blocks[i].name +
                         "' differs between source and destination";
        }
      }
      st.verify_seconds = since(tv);
      result = verify_error.empty() ? 1 : 2;
      st.verified = result == 1;
    }
    wire::BodyWriter w;
    w.u8(result);
    w.str(verify_error);
    link.send(wire::PacketType::kDone, w.bytes());
    if (!verify_error.empty()) throw MigrationError(verify_error);

    for (auto& c : channels) c->close();
    {
      std::lock_guard lock(m.mu);
      m.live.clear();
    }
    add(st.pages, sc.pages);
    st.wire_bytes = m.p_wire.load();
    st.xbzrle_cache_hits = sc.xbzrle_hits;
    st.xbzrle_cache_misses = sc.xbzrle_misses;
    st.xbzrle_overflows = sc.xbzrle_overflows;
    st.xbzrle_bytes = sc.xbzrle_bytes;
    st.status = "completed";
    st.total_seconds = since(t0);
    std::lock_guard lock(m.mu);  // cancel() may look at the senders meanwhile
    m.senders.clear();
    m.last = st;
    return st;
  } catch (const std::exception& e) {
    m.fail(e.what());  // records it unless an earlier error (or cancel) came first
    for (auto& s : m.senders) s->join();
    std::string msg;
    {
      std::lock_guard lock(m.mu);
      msg = m.error;
      m.live.clear();
    }
    // The channels are aborted; close() waits until the kernel no longer reads our buffers.
    for (auto& c : channels) {
      if (!c) continue;
      c->set_send_callback(nullptr);
      try {
        c->close();
      } catch (...) {
      }
    }
    if (!m.senders.empty()) {
      const auto sc = m.sum_counters();
      add(st.pages, sc.pages);
      st.xbzrle_cache_hits = sc.xbzrle_hits;
      st.xbzrle_cache_misses = sc.xbzrle_misses;
      st.xbzrle_overflows = sc.xbzrle_overflows;
      st.xbzrle_bytes = sc.xbzrle_bytes;
    }
    {
      std::lock_guard lock(m.mu);
      m.senders.clear();
    }
    // The caller's hooks must not turn a clear MigrationError into something else.
    try {
      if (throttle > 0 && m.hooks.throttle) m.hooks.throttle(0);
      if (stopped && m.hooks.resume_guest) m.hooks.resume_guest();
    } catch (const std::exception& he) {
      msg += std::string(" (and resuming the guest failed: ") + he.what() + ")";
    }
    st.status = m.cancelled.load() ? "cancelled" : "failed";
    st.error = msg;
    st.wire_bytes = m.p_wire.load();
    st.total_seconds = since(t0);
    {
      std::lock_guard lock(m.mu);
      m.last = st;
    }
    throw MigrationError(msg);
  }
}

}  // namespace ferry
