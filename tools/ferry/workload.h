// The guest of `ferry demo/send`: one thread that keeps writing into the image at a set rate,
// the way a running VM dirties its RAM while precopy moves it, and that the migration hooks can
// throttle (auto-converge) and stop (switchover).
//
// Rate: `rate_bytes_per_s` counts page bytes dirtied per second (what migration must resend),
// not bytes stored: 64 MiB/s with 4 KiB pages is 16384 page writes per second. Each write picks
// a page of the hot working set (spread evenly over the image) and changes part of it: mostly a
// 64-byte cache line or an 8-byte counter (small XBZRLE deltas), sometimes the whole page.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>

namespace ferry {
class ExplicitMarkSource;
}

namespace ferry::cli {

class DirtyWriter {
 public:
  struct Config {
    uint8_t* mem = nullptr;
    size_t size = 0;
    size_t page_size = 4096;       // the RAM block's page size: what one write dirties
    double rate_bytes_per_s = 64.0 * (1 << 20);
    size_t hot_bytes = 0;          // 0: a quarter of the image, at most 512 MiB
    uint64_t seed = 1;
    ExplicitMarkSource* marks = nullptr;  // marked after each write when not null
  };

  explicit DirtyWriter(const Config& config);
  ~DirtyWriter();  // stop()
  DirtyWriter(const DirtyWriter&) = delete;
  DirtyWriter& operator=(const DirtyWriter&) = delete;

  void start();
  // Blocks until the writer is parked between two writes; it writes nothing until resume().
  void pause();
  void resume();
  // Percent (0..99) of its time the writer sleeps instead of writing.
  void set_throttle(uint32_t percent);
  // Ends and joins the thread (also when paused).
  void stop();

  uint64_t writes() const { return writes_.load(std::memory_order_relaxed); }
  uint32_t throttle() const { return throttle_.load(std::memory_order_relaxed); }
  size_t hot_pages() const { return hot_pages_; }

 private:
  void loop();
  void write_one(uint64_t r);

  Config c_;
  size_t pages_ = 0;
  size_t hot_pages_ = 0;
  size_t stride_ = 1;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool pause_requested_ = false;
  bool parked_ = false;
  bool stop_ = false;
  std::atomic<bool> pause_flag_{false};
  std::atomic<bool> stop_flag_{false};
  std::atomic<uint32_t> throttle_{0};
  std::atomic<uint64_t> writes_{0};
};

}  // namespace ferry::cli
