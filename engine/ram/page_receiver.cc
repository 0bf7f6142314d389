#include "engine/ram/page_receiver.h"

#include <cstring>

#include "codecs/lz4_page.h"
#include "codecs/xbzrle.h"
#include "codecs/zero_page.h"
#include "engine/ram/control.h"

namespace ferry::ram {

SyncBarrier::Result SyncBarrier::arrive(uint32_t channel, uint64_t packet, uint32_t iteration,
                                        bool final_pass) {
  std::unique_lock lock(mu_);
  if (stop_->load()) return Result::kStopped;
  const uint64_t gen = generation_;
  if (final_pass) ++finals_;
  if (++arrived_ == parties_) {
    last_final_ = finals_ == parties_;
    last_mixed_ = finals_ != 0 && finals_ != parties_;
    arrived_ = 0;
    finals_ = 0;
    ++generation_;
    cv_.notify_all();
  } else {
    cv_.wait(lock, [&] { return generation_ != gen || stop_->load(); });
    if (generation_ == gen) return Result::kStopped;
  }
  if (last_mixed_) {
    wire::fail(channel, packet, 6,
               "SYNC " + std::to_string(iteration) +
                   ": channels disagree whether it is the final one");
  }
  return last_final_ ? Result::kFinal : Result::kContinue;
}

void SyncBarrier::wake() {
  std::lock_guard lock(mu_);
  cv_.notify_all();
}

PageReceiver::PageReceiver(uint32_t index, transport::Channel& channel,
                           const wire::DataLimits& limits, SyncBarrier& barrier,
                           uint64_t first_packet, ReceiverErrorFn on_error,
                           std::vector<DirtyBitmap>* written, uint64_t first_send_packet)
    : index_(index),
      ch_(channel),
      lim_(limits),
      barrier_(barrier),
      packet_(first_packet),
      send_packet_(first_send_packet),
      on_error_(std::move(on_error)),
      written_(written),
      records_(std::make_unique<uint8_t[]>(size_t{limits.max_records} * wire::kRecordSize)),
      recs_(std::make_unique<wire::Record[]>(limits.max_records)),
      scratch_(std::make_unique<uint8_t[]>(std::max<size_t>(limits.owned_payload_cap, 1))) {
  iov_.reserve(limits.max_records);
}

PageReceiver::~PageReceiver() { join(); }

void PageReceiver::keep_digests(DigestTable* table, size_t blocks) {
  digests_ = table;
  sums_.assign(blocks, 0);
}

void PageReceiver::note_landed(uint32_t block, uint32_t page, const uint8_t* bytes) {
  if (digests_) sums_[block] += digests_->block(block).update(page, bytes);
}

void PageReceiver::note_zeroed(uint32_t block, uint32_t first, uint32_t count) {
  if (digests_) sums_[block] += digests_->block(block).clear(first, count);
}

void PageReceiver::start() {
  thread_ = std::thread([this] { thread_main(); });
}

void PageReceiver::join() {
  if (thread_.joinable()) thread_.join();
}

void PageReceiver::thread_main() {
  try {
    for (;;) {
      uint8_t head[wire::kHeaderSize];
      ch_.recv(head, sizeof head);
      const wire::Header h = wire::decode_header(head, index_, packet_);
      ++packet_;
      counters_.wire_bytes += wire::kHeaderSize;
      switch (h.type) {
        case wire::PacketType::kData:
          handle_data(h);
          break;
        case wire::PacketType::kSync: {
          if (h.pages != iteration_) {
            wire::fail(index_, h.packet, 24,
                       "SYNC for iteration " + std::to_string(h.pages) + ", expected " +
                           std::to_string(iteration_));
          }
          ++iteration_;
          ++counters_.iterations;
          const auto r = barrier_.arrive(index_, h.packet, h.pages, h.flags & wire::kFlagFinal);
          if (r == SyncBarrier::Result::kStopped) return;
          if (r == SyncBarrier::Result::kFinal) {
            finished_ = true;
            return;
          }
          if (lim_.placement) {
            // Every channel applied its records up to this SYNC: the source may place the
            // next iteration's pages.
            wire::Header a;
            a.type = wire::PacketType::kSyncAck;
            a.packet = send_packet_++;
            a.pages = h.pages;
            uint8_t out[wire::kHeaderSize];
            wire::encode_header(a, out);
            ch_.send_all(out, sizeof out);
          }
          break;
        }
        case wire::PacketType::kError: {
          std::vector<uint8_t> body(h.payload);
          if (!body.empty()) ch_.recv(body.data(), body.size());
          wire::BodyReader r(body.data(), body.size(), index_, h.packet);
          source_reported_ = true;
          throw MigrationError("source reported: " + r.str("error message"));
        }
        default:
          wire::fail(index_, h.packet, 5,
                     std::string("unexpected ") + wire::type_name(h.type) +
                         " on a data channel during the migration");
      }
    }
  } catch (const transport::TransportError& e) {
    on_error_(e.what(), nullptr);  // the link broke (or was aborted): nobody to tell
  } catch (const std::exception& e) {
    fail_telling_source(e.what());
  }
}

// The source is busy sending and reads nothing during the passes: it finds this ERROR only when
// its sends fail, once the destination aborted the channels. Only the first failure tells (a
// later one is the consequence of the abort), and never in answer to the source's own ERROR.
void PageReceiver::fail_telling_source(const std::string& reason) {
  if (source_reported_ || barrier_.stopped() || (ch_.capabilities() & transport::kOneWay)) {
    on_error_(reason, nullptr);
    return;
  }
  ControlLink link{&ch_, index_, send_packet_};
  link.send_error(reason);  // a few hundred bytes into an idle send buffer: does not block
  send_packet_ = link.send_packet;
  on_error_(reason, &ch_);
  linger_for_source();
  ch_.abort();
}

void PageReceiver::linger_for_source() noexcept {
  using Clock = std::chrono::steady_clock;
  const auto until = Clock::now() + kErrorLinger;
  std::vector<uint8_t> sink(64 << 10);
  for (auto now = Clock::now(); now < until; now = Clock::now()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - now);
    if (ch_.recv_leftover(sink.data(), sink.size(), left) == 0) return;  // closed, aborted, quiet
  }
}

void PageReceiver::handle_data(const wire::Header& h) {
  wire::check_data_header(h, index_, lim_);
  const size_t rec_bytes = size_t{h.records} * wire::kRecordSize;
  ch_.recv(records_.get(), rec_bytes);
  if (wire::kChecksumsEnforced &&
      wire::checksum32(records_.get(), rec_bytes) != h.body_checksum) {
    wire::fail(index_, h.packet, wire::kHeaderSize, "records checksum mismatch");
  }
  wire::decode_records(h, records_.get(), index_, lim_, recs_.get());
  const RamBlock& b = (*lim_.blocks)[h.block];
  const size_t ps = b.page_size;
  auto* base = static_cast<uint8_t*>(b.host);
  DirtyBitmap* written =
      written_ && (*written_)[h.block].size() > 0 ? &(*written_)[h.block] : nullptr;

  // One scatter receive for every payload of the packet.
  iov_.clear();
  size_t off = 0;
  for (uint32_t i = 0; i < h.records; ++i) {
    const wire::Record& r = recs_[i];
    if (r.kind == PageKind::kZero || r.length == 0 || r.placed) continue;
    uint8_t* dst = r.kind == PageKind::kNormal ? base + size_t{r.page} * ps : scratch_.get() + off;
    if (r.kind != PageKind::kNormal) off += r.length;
    if (!iov_.empty() && static_cast<uint8_t*>(iov_.back().iov_base) + iov_.back().iov_len == dst) {
      iov_.back().iov_len += r.length;
    } else {
      iov_.push_back(iovec{dst, r.length});
    }
  }
  if (!iov_.empty()) ch_.recv(iov_);
  counters_.wire_bytes += rec_bytes + h.payload;

  size_t payload_at = wire::kHeaderSize + rec_bytes;  // offset in the packet, for errors
  off = 0;
  for (uint32_t i = 0; i < h.records; ++i) {
    const wire::Record& r = recs_[i];
    uint8_t* page = base + size_t{r.page} * ps;
    if (written && r.kind != PageKind::kZero) written->set(r.page);
    switch (r.kind) {
      case PageKind::kNormal:
        ++counters_.pages.normal;
        note_landed(h.block, r.page, page);
        if (r.placed) {
          ++counters_.placed_pages;  // already in place (RDMA WRITE before this packet)
          counters_.wire_bytes += r.length;
        } else {
          payload_at += r.length;
        }
        break;
      case PageKind::kZero:
        for (uint32_t k = 0; k < r.length; ++k) {
          uint8_t* z = page + size_t{k} * ps;
          // Never written on a block that started zero: still zero, do not even look. The SYNC
          // barrier orders this test after any earlier iteration's write on another channel.
          if (written && !written->test(r.page + k)) {
            ++counters_.zero_pages_skipped;
            continue;
          }
          // Reading keeps an untouched destination page unallocated; writing would fault it in.
          if (is_zero_page(z, ps)) {
            ++counters_.zero_pages_skipped;
          } else {
            std::memset(z, 0, ps);
          }
        }
        counters_.pages.zero += r.length;
        note_zeroed(h.block, r.page, r.length);
        break;
      case PageKind::kXbzrle: {
        const auto res = xbzrle::decode(scratch_.get() + off, r.length, page, ps);
        if (res.error != xbzrle::DecodeError::kOk) {
          wire::fail(index_, h.packet, payload_at + res.offset,
                     "record " + std::to_string(i) + ": bad XBZRLE delta for page " +
                         std::to_string(r.page) + " of block '" + b.name + "': " +
                         xbzrle::decode_error_string(res.error));
        }
        ++counters_.pages.xbzrle;
        note_landed(h.block, r.page, page);
        off += r.length;
        payload_at += r.length;
        break;
      }
      case PageKind::kLz4: {
        const auto err = lz4::decompress(scratch_.get() + off, r.length, page, ps);
        if (err != lz4::DecodeError::kOk) {
          wire::fail(index_, h.packet, payload_at,
                     "record " + std::to_string(i) + ": bad LZ4 page " + std::to_string(r.page) +
                         " of block '" + b.name + "': " + lz4::decode_error_string(err));
        }
        ++counters_.pages.lz4;
        note_landed(h.block, r.page, page);
        off += r.length;
        payload_at += r.length;
        break;
      }
    }
  }
}

}  // namespace ferry::ram
