#include "tools/ferry/workload.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "ferry/bitmap_dirty_source.h"
#include "tools/ferry/image.h"

namespace ferry::cli {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kTick = std::chrono::milliseconds(5);

}  // namespace

DirtyWriter::DirtyWriter(const Config& config) : c_(config) {
  pages_ = c_.page_size ? c_.size / c_.page_size : 0;
  size_t hot = c_.hot_bytes ? c_.hot_bytes : std::min<size_t>(c_.size / 4, size_t{512} << 20);
  hot_pages_ = std::clamp<size_t>(hot / c_.page_size, pages_ ? 1 : 0, pages_);
  stride_ = hot_pages_ ? std::max<size_t>(1, pages_ / hot_pages_) : 1;
}

DirtyWriter::~DirtyWriter() { stop(); }

void DirtyWriter::start() {
  if (thread_.joinable() || pages_ == 0 || c_.rate_bytes_per_s <= 0) return;
  thread_ = std::thread([this] { loop(); });
}

void DirtyWriter::pause() {
  std::unique_lock<std::mutex> lock(mu_);
  pause_requested_ = true;
  pause_flag_.store(true, std::memory_order_relaxed);
  if (!thread_.joinable()) return;
  cv_.wait(lock, [&] { return parked_ || stop_; });
}

void DirtyWriter::resume() {
  std::lock_guard<std::mutex> lock(mu_);
  pause_requested_ = false;
  pause_flag_.store(false, std::memory_order_relaxed);
  cv_.notify_all();
}

void DirtyWriter::set_throttle(uint32_t percent) {
  throttle_.store(std::min<uint32_t>(percent, 99), std::memory_order_relaxed);
}

void DirtyWriter::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    stop_flag_.store(true, std::memory_order_relaxed);
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void DirtyWriter::write_one(uint64_t r) {
  const size_t k = static_cast<size_t>(r % hot_pages_);
  const size_t page = std::min(pages_ - 1, k * stride_ + (stride_ > 1 ? (r >> 40) % 2 : 0));
  uint8_t* p = c_.mem + page * c_.page_size;
  const uint64_t kind = (r >> 20) % 100;
  const uint64_t r2 = mix64(r);
  if (kind < 70) {
    // One cache line of new bytes.
    const size_t line = (r2 % (c_.page_size / 64)) * 64;
    fill_random(p + line, 64, r2);
  } else if (kind < 95) {
    // A counter.
    const size_t off = (r2 % (c_.page_size / 8)) * 8;
    uint64_t v;
    std::memcpy(&v, p + off, 8);
    v += 1 + (r2 >> 56);
    std::memcpy(p + off, &v, 8);
  } else {
    // The whole first 4 KiB rewritten (a freed and reused buffer).
    fill_random(p, std::min<size_t>(c_.page_size, 4096), r2);
  }
  if (c_.marks != nullptr) c_.marks->mark(page);
}

void DirtyWriter::loop() {
  uint64_t rng = mix64(c_.seed ^ 0x77726974657221ull);
  const double per_tick =
      c_.rate_bytes_per_s / static_cast<double>(c_.page_size) *
      std::chrono::duration<double>(kTick).count();
  double carry = 0;
  auto next = Clock::now();
  while (!stop_flag_.load(std::memory_order_relaxed)) {
    if (pause_flag_.load(std::memory_order_relaxed)) {
      std::unique_lock<std::mutex> lock(mu_);
      if (pause_requested_ && !stop_) {
        parked_ = true;
        cv_.notify_all();
        cv_.wait(lock, [&] { return !pause_requested_ || stop_; });
        parked_ = false;
        next = Clock::now();
      }
      continue;
    }
    const uint32_t throttle = throttle_.load(std::memory_order_relaxed);
    // Writing takes (100 - throttle)% of each tick at the full rate; the rest is sleep.
    carry += per_tick * static_cast<double>(100 - throttle) / 100.0;
    const auto n = static_cast<uint64_t>(carry);
    carry -= static_cast<double>(n);
    uint64_t done = 0;
    while (done < n) {
      rng = mix64(rng);
      write_one(rng);
      // A pause must not wait for a whole tick's writes.
      if ((++done & 63) == 0 && pause_flag_.load(std::memory_order_relaxed)) break;
    }
    writes_.fetch_add(done, std::memory_order_relaxed);
    next += kTick;
    const auto now = Clock::now();
    if (next < now - 10 * kTick) next = now;  // do not burst after a long stall
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_until(lock, next, [&] { return stop_ || pause_requested_; });
  }
  std::lock_guard<std::mutex> lock(mu_);
  parked_ = true;
  cv_.notify_all();
}

}  // namespace ferry::cli
