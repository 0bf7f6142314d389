#include "engine/ram/page_sender.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "codecs/lz4_page.h"
#include "codecs/xbzrle.h"
#include "codecs/zero_page.h"
#include "engine/ram/control.h"

namespace ferry::ram {
namespace {
// Work items queued per sender: enough for the scanner to run ahead of a busy sender.
constexpr size_t kQueueDepth = 8;
// Packets a sender may have in flight; their buffers are recycled on send completion.
constexpr size_t kBuffersPlain = 32;   // header + records only: small
constexpr size_t kBuffersCodecs = 8;   // plus an owned payload area each
// Bytes of guest payload per packet: keeps the u32 payload field and one readv sane.
constexpr uint64_t kMaxPacketPayload = 64u << 20;
// Completion cookie of RDMA WRITEs: not a packet buffer (the header sent after them is).
constexpr uint64_t kWriteCookie = UINT64_MAX - 1;
// The destination's ERROR is queued ahead of the reset that ended our sends; an aborted channel
// answers at once, so this only bounds a transport that would wait.
constexpr std::chrono::milliseconds kPeerErrorWait{100};
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14; Debian 12's headers may lack it
#endif

// The bulk pass reads every page once, and pages the guest never touched are not mapped yet:
// each would cost a page fault just to read zeros. One MADV_POPULATE_READ maps the batch's
// range in a single call (measured ~1.8x cheaper per page than faulting here). Advisory: any
// error (old kernel, odd mapping) only turns it off.
void populate_for_reading(const uint8_t* first, size_t len) {
  static std::atomic<bool> works{true};
  if (!works.load(std::memory_order_relaxed)) return;
  const auto page = static_cast<uintptr_t>(4096);
  const uintptr_t begin = reinterpret_cast<uintptr_t>(first) & ~(page - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(first) + len + page - 1) & ~(page - 1);
  if (::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_READ) != 0 &&
      errno != EINTR) {
    works.store(false, std::memory_order_relaxed);
  }
}
}  // namespace

PageSender::PageSender(uint32_t index, transport::Channel& channel, const SenderShared& shared,
                       uint64_t first_packet, uint64_t first_recv_packet)
    : index_(index),
      ch_(channel),
      shared_(shared),
      packet_(first_packet),
      recv_packet_(first_recv_packet),
      max_records_(shared.config->batch_pages),
      ring_(kQueueDepth) {
  const MigrationConfig& cfg = *shared_.config;
  for (auto& item : ring_) item.pages = std::make_unique<uint32_t[]>(max_records_);
  const bool codecs = cfg.xbzrle || cfg.lz4;
  bufs_.resize(codecs ? kBuffersCodecs : kBuffersPlain);
  for (auto& b : bufs_) {
    b.head = std::make_unique<uint8_t[]>(wire::kHeaderSize + wire::kRecordSize * max_records_);
    if (codecs) b.owned = std::make_unique<uint8_t[]>(shared_.owned_payload_cap);
    b.iov.reserve(max_records_ + 1);
  }
  size_t max_page = 0;
  uint64_t total = 0;
  for (const auto& b : *shared_.blocks) {
    max_page = std::max(max_page, b.page_size);
    total += b.size;
  }
  if (codecs) scratch_ = std::make_unique<uint8_t[]>(max_page);
  if (cfg.xbzrle) {
    // The budget is split across senders, then across blocks by size.
    caches_.resize(shared_.blocks->size());
    const double per_sender = static_cast<double>(cfg.xbzrle_cache_bytes) / shared_.channels;
    for (size_t i = 0; i < caches_.size(); ++i) {
      const RamBlock& b = (*shared_.blocks)[i];
      // Never more than the block itself: a small guest must not allocate the default 256 MiB.
      const auto budget = std::min<size_t>(
          b.size, static_cast<size_t>(per_sender * static_cast<double>(b.size) /
                                      static_cast<double>(std::max<uint64_t>(total, 1))));
      if (budget >= b.page_size) caches_[i].emplace(budget, b.page_size);
    }
  }
  if (shared_.digests) sums_.assign(shared_.blocks->size(), 0);
  if (cfg.bandwidth_limit_bytes_per_s > 0) {
    rate_ = static_cast<double>(cfg.bandwidth_limit_bytes_per_s) / shared_.channels;
  }
  if (shared_.placement) {
    remote_ = &(*shared_.placement)[index];
    // XBZRLE sends NORMAL pages from the packet's own copy: register those buffers too, so the
    // writes leave from them in place (best effort: unregistered memory is bounced).
    if (codecs) {
      try {
        for (auto& b : bufs_) {
          owned_regions_.push_back(ch_.register_memory(b.owned.get(), shared_.owned_payload_cap));
        }
      } catch (const std::exception&) {
      }
    }
  }
}

PageSender::~PageSender() {
  join();
  for (const auto& r : owned_regions_) {
    try {
      ch_.deregister_memory(r);
    } catch (...) {
    }
  }
}

void PageSender::start() {
  // Completions arrive on this sender's thread (inside send/poll/wait_all), in send order.
  ch_.set_send_callback([this](uint64_t cookie) {
    if (cookie < bufs_.size()) bufs_[cookie].busy = false;
  });
  pace_start_ = std::chrono::steady_clock::now();
  thread_ = std::thread([this] { thread_main(); });
}

void PageSender::join() {
  if (thread_.joinable()) thread_.join();
}

WorkItem* PageSender::acquire() {
  std::unique_lock lock(mu_);
  cv_space_.wait(lock, [&] {
    return tail_ - head_ < ring_.size() || exited_ || shared_.stop->load();
  });
  if (exited_ || shared_.stop->load()) return nullptr;
  return &ring_[tail_ % ring_.size()];
}

void PageSender::publish() {
  {
    std::lock_guard lock(mu_);
    ++tail_;
  }
  cv_items_.notify_one();
}

WorkItem* PageSender::next_item() {
  std::unique_lock lock(mu_);
  cv_items_.wait(lock, [&] { return head_ < tail_ || shared_.stop->load(); });
  if (shared_.stop->load()) return nullptr;
  return &ring_[head_ % ring_.size()];
}

void PageSender::release_item() {
  {
    std::lock_guard lock(mu_);
    ++head_;
  }
  cv_space_.notify_one();
}

bool PageSender::wait_synced(uint32_t iteration) {
  std::unique_lock lock(mu_);
  cv_synced_.wait(lock, [&] { return synced_ > iteration || exited_ || shared_.stop->load(); });
  return synced_ > iteration;
}

void PageSender::wake() {
  std::lock_guard lock(mu_);
  cv_items_.notify_all();
  cv_space_.notify_all();
  cv_synced_.notify_all();
}

SenderCounters PageSender::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

void PageSender::thread_main() {
  try {
    for (;;) {
      WorkItem* item = next_item();
      if (!item) break;
      if (item->kind == WorkItem::Kind::kBatch) {
        generation_ = item->iteration;
        final_pass_ = item->final_pass;
        process_batch(*item);
        release_item();
      } else {
        const bool fin = item->final_pass;
        send_sync(item->iteration, fin);
        release_item();
        if (fin) break;
      }
    }
  } catch (const transport::TransportError& e) {
    shared_.on_error(e.what(), true);
  } catch (const std::exception& e) {
    shared_.on_error("sender " + std::to_string(index_) + ": " + e.what(), false);
  }
  if (shared_.stop->load()) quiesce_channel();
  std::lock_guard lock(mu_);
  exited_ = true;
  cv_synced_.notify_all();
  cv_space_.notify_all();
}

// A migration that stops leaves sends in flight on this channel. Only the thread that drove them
// can wait for them to end (an io_uring with DEFER_TASKRUN completes work for its own thread
// only), so that is done here, before the thread goes: the channel is already aborted, and
// closing it cancels what is left and waits until the kernel no longer reads our buffers.
// Before closing, the channel is read for an ERROR the destination may have sent before it
// went away (engine/ram/control.h, read_peer_error): also by this thread, the channel's driver.
void PageSender::quiesce_channel() noexcept {
  try {
    ch_.set_send_callback(nullptr);
    ch_.abort();
    peer_error_ = read_peer_error(ch_, index_, recv_packet_, kPeerErrorWait);
    ch_.close();
  } catch (...) {
  }
}

void PageSender::begin_packet(uint32_t block) {
  PacketBuf& b = bufs_[next_buf_];
  if (b.busy) {
    ch_.poll_completions();
    // Completions come in send order, so once this (the oldest) is free the ring moves on.
    if (b.busy) ch_.wait_all();
  }
  next_buf_ = (next_buf_ + 1) % bufs_.size();
  cur_ = &b;
  cur_block_ = block;
  nrec_ = 0;
  cur_pages_ = 0;
  cur_payload_ = 0;
  owned_used_ = 0;
  cur_placed_ = 0;
  b.iov.resize(1);
}

void PageSender::add_placed(const uint8_t* p, uint64_t offset, size_t len) {
  cur_placed_ += len;
  if (wr_len_ > 0 && wr_local_ + wr_len_ == p && wr_offset_ + wr_len_ == offset) {
    wr_len_ += len;
    return;
  }
  flush_placed();
  wr_local_ = p;
  wr_offset_ = offset;
  wr_len_ = len;
}

void PageSender::flush_placed() {
  if (wr_len_ == 0) return;
  const iovec v{const_cast<uint8_t*>(wr_local_), wr_len_};
  wr_len_ = 0;
  ch_.write_remote(std::span<const iovec>(&v, 1), (*remote_)[cur_block_], wr_offset_,
                   kWriteCookie);
}

void PageSender::add_record(uint32_t page, uint32_t length, PageKind kind) {
  last_ = wire::Record{page, length, kind};
  wire::encode_record(last_, cur_->head.get() + wire::kHeaderSize + nrec_ * wire::kRecordSize);
  ++nrec_;
  ++cur_pages_;
}

void PageSender::add_payload(const uint8_t* p, size_t len) {
  cur_payload_ += len;
  if (len == 0) return;
  auto& iov = cur_->iov;
  if (iov.size() > 1) {
    iovec& last = iov.back();
    if (static_cast<const uint8_t*>(last.iov_base) + last.iov_len == p) {
      last.iov_len += len;
      return;
    }
  }
  iov.push_back(iovec{const_cast<uint8_t*>(p), len});
}

void PageSender::flush_packet() {
  if (!cur_ || nrec_ == 0) return;
  // RC ordering: the header SEND below is delivered after these WRITEs are placed.
  flush_placed();
  wire::Header h;
  h.type = wire::PacketType::kData;
  h.packet = packet_++;
  h.block = cur_block_;
  h.records = nrec_;
  h.pages = cur_pages_;
  h.payload = static_cast<uint32_t>(cur_payload_);
  const size_t rec_bytes = nrec_ * wire::kRecordSize;
  h.body_checksum = wire::checksum32(cur_->head.get() + wire::kHeaderSize, rec_bytes);
  wire::encode_header(h, cur_->head.get());
  cur_->iov[0] = iovec{cur_->head.get(), wire::kHeaderSize + rec_bytes};
  cur_->busy = true;
  const uint64_t cookie = static_cast<uint64_t>(cur_ - bufs_.data());
  const uint64_t bytes = wire::kHeaderSize + rec_bytes + cur_payload_ + cur_placed_;
  const uint32_t pages = cur_pages_;
  cur_ = nullptr;
  nrec_ = 0;
  ch_.send(bufs_[cookie].iov, cookie);
  local_.wire_bytes += bytes;
  shared_.wire_bytes->fetch_add(bytes, std::memory_order_relaxed);
  shared_.pages_sent->fetch_add(pages, std::memory_order_relaxed);
  pace(bytes);
}

void PageSender::pace(size_t bytes) {
  // The final pass runs unthrottled: the guest is stopped, every millisecond is downtime.
  if (rate_ <= 0 || final_pass_) return;
  pace_bytes_ += bytes;
  const auto due = pace_start_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                     std::chrono::duration<double>(pace_bytes_ / rate_));
  if (std::chrono::steady_clock::now() >= due) return;
  std::unique_lock lock(*shared_.stop_mu);
  shared_.stop_cv->wait_until(lock, due, [&] { return shared_.stop->load(); });
}

void PageSender::note_page(uint32_t page, const uint8_t* bytes) {
  if (shared_.digests) sums_[cur_block_] += shared_.digests->block(cur_block_).update(page, bytes);
}

void PageSender::note_zero_page(uint32_t page) {
  if (shared_.digests) sums_[cur_block_] += shared_.digests->block(cur_block_).clear(page, 1);
}

uint32_t PageSender::prepare_batch(const WorkItem& item, const uint8_t* base, size_t ps) {
  states_.clear();
  if (item.count == 0) return 0;
  // take_batch gives increasing indices: the batch's span, contiguous in the bulk pass.
  const uint32_t first = item.pages[0];
  const size_t span = size_t{item.pages[item.count - 1]} - first + 1;
  if (span > 4 * size_t{item.count}) return first;  // sparse: neither probe nor fault-in
  const bool probe = shared_.population && shared_.config->zero_pages &&
                     (*shared_.population_blocks)[item.block] != 0;
  if (probe && shared_.population->classify(base + size_t{first} * ps, span, ps, states_,
                                            scan_space_)) {
    if (item.iteration > 0) return first;
    // Only swapped pages (and uffd-wp markers) still fault on the read below: bring those
    // in together, leave the unpopulated ones alone.
    for (size_t i = 0; i < span;) {
      size_t j = i;
      while (j < span && states_[j] == PageState::kSwapped) ++j;
      if (j > i) populate_for_reading(base + (first + i) * ps, (j - i) * ps);
      i = j + 1;
    }
    return first;
  }
  states_.clear();
  if (item.iteration == 0) populate_for_reading(base + size_t{first} * ps, span * ps);
  return first;
}

bool PageSender::known_zero(uint32_t page, uint32_t first) const {
  const size_t at = size_t{page} - first;
  return at < states_.size() && states_[at] == PageState::kZero;
}

void PageSender::process_batch(const WorkItem& item) {
  const MigrationConfig& cfg = *shared_.config;
  const RamBlock& blk = (*shared_.blocks)[item.block];
  const size_t ps = blk.page_size;
  const auto* base = static_cast<const uint8_t*>(blk.host);
  // As QEMU does, the bulk pass (iteration 0) leaves the cache alone: every page goes once
  // anyway, and copying each into the cache only slows the pass down. A page that comes back
  // dirty is cached when it is sent again, and deltas start from its third sending.
  xbzrle::PageCache* cache = cfg.xbzrle && caches_[item.block] && item.iteration > 0
                                 ? &*caches_[item.block]
                                 : nullptr;
  const bool codec = cache || cfg.lz4;
  const size_t xbzrle_cap =
      std::min(ps, static_cast<size_t>(cfg.xbzrle_max_ratio * static_cast<double>(ps)));

  const uint32_t first = prepare_batch(item, base, ps);
  begin_packet(item.block);
  for (uint32_t i = 0; i < item.count; ++i) {
    if (shared_.stop->load(std::memory_order_relaxed)) return;
    const uint32_t page = item.pages[i];
    const uint8_t* p = base + static_cast<size_t>(page) * ps;
    const uint64_t addr = static_cast<uint64_t>(page) * ps;

    const bool unread = cfg.zero_pages && known_zero(page, first);
    if (unread || (cfg.zero_pages && is_zero_page(p, ps))) {
      local_.zero_unread += unread ? 1 : 0;
      // The destination page becomes zero: so must our idea of it, or the next delta would
      // be computed against stale bytes.
      if (cache) {
        if (uint8_t* slot = cache->slot_data(addr)) std::memset(slot, 0, ps);
      }
      ++local_.pages.zero;
      note_zero_page(page);
      if (nrec_ > 0 && last_.kind == PageKind::kZero && last_.page + last_.length == page) {
        // Extend the run: a 1 GiB hole is a handful of records, not 262144.
        ++last_.length;
        ++cur_pages_;
        wire::encode_record(last_,
                            cur_->head.get() + wire::kHeaderSize + (nrec_ - 1) * wire::kRecordSize);
        continue;
      }
      if (nrec_ == max_records_) {
        flush_packet();
        begin_packet(item.block);
      }
      add_record(page, 1, PageKind::kZero);
      continue;
    }

    if (nrec_ == max_records_ || cur_payload_ + ps > kMaxPacketPayload ||
        (codec && shared_.owned_payload_cap - owned_used_ < ps)) {
      flush_packet();
      begin_packet(item.block);
    }
    if (!codec) {
      // Zero copy: the iovec points into guest RAM. A write racing with the send sends newer
      // bytes, and that write marked the page dirty, so it is sent again anyway (and its term
      // replaced then).
      add_record(page, static_cast<uint32_t>(ps), PageKind::kNormal);
      note_page(page, p);
      if (remote_) {
        last_.placed = true;  // RDMA WRITE straight into the destination page
        wire::encode_record(last_, cur_->head.get() + wire::kHeaderSize +
                                       (nrec_ - 1) * wire::kRecordSize);
        add_placed(p, addr, ps);
        ++local_.placed_pages;
      } else {
        add_payload(p, ps);
      }
      ++local_.pages.normal;
      continue;
    }

    // A stable copy: the delta, the cache update and what we send must all be the same bytes.
    uint8_t* scratch = scratch_.get();
    std::memcpy(scratch, p, ps);
    note_page(page, scratch);
    uint8_t* out = cur_->owned.get() + owned_used_;
    if (cache) {
      if (const uint8_t* old = cache->lookup(addr, generation_)) {
        ++local_.xbzrle_hits;
        const long n = xbzrle::encode(old, scratch, ps, out, xbzrle_cap);
        std::memcpy(cache->slot_data(addr), scratch, ps);
        if (n >= 0) {
          add_record(page, static_cast<uint32_t>(n), PageKind::kXbzrle);
          add_payload(out, static_cast<size_t>(n));
          owned_used_ += static_cast<size_t>(n);
          ++local_.pages.xbzrle;
          local_.xbzrle_bytes += static_cast<uint64_t>(n);
          continue;
        }
        ++local_.xbzrle_overflows;
      } else {
        ++local_.xbzrle_misses;
        cache->insert(addr, scratch, generation_);
      }
    }
    if (cfg.lz4) {
      const size_t n = lz4::compress(scratch, ps, out, ps, cfg.lz4_acceleration);
      if (n > 0) {
        add_record(page, static_cast<uint32_t>(n), PageKind::kLz4);
        add_payload(out, n);
        owned_used_ += n;
        ++local_.pages.lz4;
        continue;
      }
    }
    add_record(page, static_cast<uint32_t>(ps), PageKind::kNormal);
    ++local_.pages.normal;
    if (remote_) {
      last_.placed = true;
      wire::encode_record(last_, cur_->head.get() + wire::kHeaderSize +
                                     (nrec_ - 1) * wire::kRecordSize);
      ++local_.placed_pages;
      if (cache) {
        // The cache's exact bytes, from the packet's buffer (free once the header completes,
        // which is after these writes).
        std::memcpy(out, scratch, ps);
        owned_used_ += ps;
        add_placed(out, addr, ps);
      } else {
        add_placed(p, addr, ps);
      }
      continue;
    }
    if (cache) {
      // The cache now holds these exact bytes; guest RAM may already differ (QEMU sends its
      // cache copy for the same reason), and the cache slot may be reused before the send
      // completes, so they go out from the packet's own buffer.
      std::memcpy(out, scratch, ps);
      add_payload(out, ps);
      owned_used_ += ps;
    } else {
      add_payload(p, ps);
    }
  }
  flush_packet();
}

void PageSender::send_sync(uint32_t iteration, bool final_pass) {
  wire::Header h;
  h.type = wire::PacketType::kSync;
  h.flags = final_pass ? wire::kFlagFinal : 0;
  h.packet = packet_++;
  h.pages = iteration;
  uint8_t head[wire::kHeaderSize];
  wire::encode_header(h, head);
  const iovec v{head, sizeof head};
  ch_.send(std::span<const iovec>(&v, 1), UINT64_MAX);
  // Everything of this iteration has left: the scanner's bandwidth figure is real, and the
  // stack buffer above is free again.
  ch_.wait_all();
  local_.wire_bytes += wire::kHeaderSize;
  shared_.wire_bytes->fetch_add(wire::kHeaderSize, std::memory_order_relaxed);
  if (remote_ && !final_pass) {
    // No RDMA WRITE of the next iteration before every channel's records of this one were
    // applied at the destination (a queued ZERO/XBZRLE record must not land on a newer page).
    uint8_t ack[wire::kHeaderSize];
    ch_.recv(ack, sizeof ack);
    const wire::Header a = wire::decode_header(ack, index_, recv_packet_);
    ++recv_packet_;
    if (a.type == wire::PacketType::kError) {
      std::vector<uint8_t> body(a.payload);
      if (!body.empty()) ch_.recv(body.data(), body.size());
      wire::BodyReader r(body.data(), body.size(), index_, a.packet);
      throw MigrationError("the destination failed: " + r.str("error message"));
    }
    if (a.type != wire::PacketType::kSyncAck || a.pages != iteration) {
      wire::fail(index_, a.packet, 5,
                 std::string("got ") + wire::type_name(a.type) + " " + std::to_string(a.pages) +
                     ", expected SYNC_ACK " + std::to_string(iteration));
    }
  }
  pace_start_ = std::chrono::steady_clock::now();
  pace_bytes_ = 0;
  std::lock_guard lock(mu_);
  counters_ = local_;
  ++synced_;
  cv_synced_.notify_all();
}

}  // namespace ferry::ram
