#include "tools/ferry/session.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "ferry/bitmap_dirty_source.h"
#include "ferry/uffd_wp_dirty_source.h"
#include "tools/ferry/cli_util.h"
#include "tools/ferry/demo_devices.h"
#include "tools/ferry/report.h"
#include "tools/ferry/workload.h"

namespace ferry::cli {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Kernel write tracking reports 4 KiB pages; a block of 2 MiB pages needs one bit per 2 MiB.
class CoarseDirtySource final : public DirtySource {
 public:
  CoarseDirtySource(std::unique_ptr<DirtySource> fine, size_t factor)
      : fine_(std::move(fine)), factor_(factor), scratch_(fine_->pages()),
        batch_(kBatch) {}
  void sync(DirtyBitmap& into) override {
    fine_->sync(scratch_);
    size_t cursor = 0;
    size_t got;
    do {
      got = scratch_.take_batch(cursor, batch_.data(), kBatch);
      for (size_t i = 0; i < got; ++i) into.set(batch_[i] / factor_);
    } while (got == kBatch);
  }
  size_t pages() const override { return fine_->pages() / factor_; }
  const char* name() const override { return fine_->name(); }

 private:
  static constexpr size_t kBatch = 1024;
  std::unique_ptr<DirtySource> fine_;
  size_t factor_;
  DirtyBitmap scratch_;
  std::vector<uint32_t> batch_;
};

// Ctrl-C cancels the migration (the guest runs on) instead of killing the process.
std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) { g_interrupted.store(true); }

// Polls MigrationSource::progress() every 100 ms: a rewritten line on a terminal, a plain line
// per second (and per iteration) otherwise. Also turns Ctrl-C into cancel().
class ProgressPrinter {
 public:
  ProgressPrinter(MigrationSource& src, bool show) : src_(src), show_(show) {
    tty_ = ::isatty(STDERR_FILENO) == 1;
    thread_ = std::thread([this] { loop(); });
  }
  ~ProgressPrinter() { stop(); }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
      cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void loop() {
    auto last_print = Clock::now();
    uint32_t last_iter = ~0u;
    bool last_final = false;
    bool drawn = false;
    std::unique_lock<std::mutex> lock(mu_);
    while (!done_) {
      cv_.wait_for(lock, std::chrono::milliseconds(100));
      if (g_interrupted.exchange(false)) src_.cancel();
      if (done_ || !show_) continue;
      const Progress p = src_.progress();
      if (tty_) {
        std::string line = progress_line(p, true);
        winsize ws{};
        if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 &&
            line.size() >= ws.ws_col) {
          line.resize(ws.ws_col - 1u);  // a wrapped line cannot be rewritten with '\r'
        }
        std::cerr << "\r" << line << "\x1b[K" << std::flush;
        drawn = true;
      } else if (p.iteration != last_iter || p.final_pass != last_final ||
                 since(last_print) >= 1.0) {
        std::cerr << progress_line(p, false) << "\n" << std::flush;
        last_print = Clock::now();
        last_iter = p.iteration;
        last_final = p.final_pass;
      }
    }
    if (drawn) std::cerr << "\n" << std::flush;
  }

  MigrationSource& src_;
  bool show_;
  bool tty_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace

SendOutcome send_image(const MigrateOptions& o, const std::string& uri, std::ostream& log) {
  SendOutcome out;
  const bool talk = !o.quiet;
  std::vector<transport::ChannelPtr> channels;
  try {
    channels = transport::connect(uri, o.transport_options(o.channels));
  } catch (const std::exception& e) {
    out.error = "cannot connect to " + uri + ": " + e.what();
    return out;
  }
  if (talk) {
    log << "connected: " << channels.size() << " channel(s) to " << uri << " ("
        << channels[0]->send_path() << ")\n"
        << std::flush;
  }

  try {
    GuestMemory mem(o.size, o.page_size > 4096);
    auto t0 = Clock::now();
    out.mix = generate_image(mem.data(), mem.size(), o.page_size, o.seed, o.content);
    if (talk) {
      char buf[256];
      const double u = static_cast<double>(std::max<uint64_t>(out.mix.total(), 1)) / 100.0;
      std::snprintf(buf, sizeof buf,
                    "image: %s in %s pages, seed %llu: %.0f%% zero, %.0f%% text, %.0f%% random "
                    "(generated in %.2f s)\n",
                    format_size(o.size).c_str(), format_size(o.page_size).c_str(),
                    static_cast<unsigned long long>(o.seed), out.mix.zero / u, out.mix.text / u,
                    out.mix.random / u, since(t0));
      log << buf << std::flush;
    }

    // Dirty tracking: the kernel's (uffd-wp) when this process may use it, else the writer's
    // own marks.
    std::vector<std::unique_ptr<DirtySource>> dirty;
    ExplicitMarkSource* marks = nullptr;
    std::string why = o.dirty_tracking == "explicit" ? "not asked for (--dirty-tracking explicit)"
                                                     : UffdWpDirtySource::probe();
    if (why.empty()) {
      try {
        auto fine = std::make_unique<UffdWpDirtySource>(mem.data(), mem.size());
        const size_t base_page = fine->page_size();
        if (o.page_size != base_page) {
          dirty.push_back(std::make_unique<CoarseDirtySource>(std::move(fine),
                                                              o.page_size / base_page));
        } else {
          dirty.push_back(std::move(fine));
        }
        out.dirty_tracking = "uffd-wp (kernel write-protect tracking, PAGEMAP_SCAN)";
      } catch (const std::exception& e) {
        why = e.what();
      }
    }
    if (dirty.empty() && o.dirty_tracking == "uffd-wp") {
      out.error = "uffd-wp dirty tracking unavailable: " + why;
      return out;
    }
    if (dirty.empty()) {
      auto m = std::make_unique<ExplicitMarkSource>(o.size / o.page_size);
      marks = m.get();
      dirty.push_back(std::move(m));
      out.dirty_tracking = "explicit-marks (the writer marks what it writes; uffd-wp unavailable: " +
                           why + ")";
    }
    if (talk) log << "dirty tracking: " << out.dirty_tracking << "\n";

    DirtyWriter::Config wc;
    wc.mem = mem.data();
    wc.size = mem.size();
    wc.page_size = o.page_size;
    wc.rate_bytes_per_s = o.dirty_rate_mib * 1024 * 1024;
    wc.hot_bytes = o.hot_set;
    wc.seed = o.seed;
    wc.marks = marks;
    DirtyWriter writer(wc);
    if (talk) {
      log << "guest writer: " << o.dirty_rate_mib << " MiB/s of pages dirtied over a hot set of "
          << format_size(writer.hot_pages() * o.page_size) << "\n";
      log << "migrating: " << o.channels << " channel(s), xbzrle " << (o.xbzrle ? "on" : "off")
          << ", zero pages " << (o.zero ? "on" : "off") << ", lz4 " << (o.lz4 ? "on" : "off")
          << ", downtime limit " << o.downtime_ms << " ms\n"
          << std::flush;
    }

    std::atomic<bool> stopped{false};
    MigrationHooks hooks;
    hooks.stop_guest = [&] {
      writer.pause();
      stopped = true;
    };
    hooks.resume_guest = [&] {
      stopped = false;
      writer.resume();
    };
    hooks.throttle = [&](uint32_t percent) { writer.set_throttle(percent); };

    writer.start();
    MigrationSource src(o.blocks(mem.data()), std::move(dirty), o.engine_config(), hooks);
    DemoDevices devices(o.seed, /*source=*/true);
    src.set_devices(devices.devices());
    struct sigaction sa {}, old_sa{};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, &old_sa);
    ProgressPrinter progress(src, talk);
    try {
      out.stats = src.run(std::move(channels));
      out.ok = out.stats.status == "completed";
      if (!out.ok) out.error = "migration ended with status " + out.stats.status + ": " + out.stats.error;
    } catch (const std::exception& e) {
      out.error = e.what();
    }
    progress.stop();
    ::sigaction(SIGINT, &old_sa, nullptr);
    if (out.ok) {
      // The writer stays parked from stop_guest on: this is the image the destination has.
      if (!stopped) writer.pause();
      out.source_hash = image_hash(mem.data(), mem.size());
    }
    writer.stop();
    out.writer_writes = writer.writes();
  } catch (const std::exception& e) {
    out.ok = false;
    out.error = e.what();
  }
  return out;
}

std::unique_ptr<GuestMemory> destination_memory(const MigrateOptions& o) {
  // recv --thp: transparent huge pages, as QEMU gives guest RAM. Filling fresh memory 4 KiB at
  // a time costs a page fault per page, most of the receive time on a nested VM like ferry's
  // test host (bench/peer/vs-qemu: 2 GiB mix 0.79 s -> 0.55 s); but there a free huge block
  // the host took back costs 10-20x more to fault in, so it is not the default.
  auto mem = std::make_unique<GuestMemory>(o.size, o.destination_thp || o.page_size > 4096);
  if (o.destination_prealloc) mem->populate();
  return mem;
}

RecvOutcome receive_image(const MigrateOptions& o, GuestMemory& mem,
                          transport::Listener& listener) {
  RecvOutcome out;
  try {
    auto channels = listener.accept();
    MigrationDestination dst(o.blocks(mem.data(), /*fresh_destination=*/true));
    DemoDevices devices(o.seed, /*source=*/false);
    dst.set_devices(devices.devices());
    out.stats = dst.run(std::move(channels));
    if (std::string why = devices.compare_with_seed(); !why.empty()) throw std::runtime_error(why);
    out.hash = image_hash(mem.data(), mem.size());
    out.ok = true;
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  return out;
}

bool write_outputs(const MigrateOptions& o, const SendOutcome& s, std::ostream& out,
                   const std::string& prog) {
  if (!s.ok) {
    if (o.json_file.empty()) return true;
    MigrationStats failed = s.stats;
    if (failed.status.empty() || failed.status == "completed") {
      failed.status = s.error == "cancelled" ? "cancelled" : "failed";
    }
    if (failed.error.empty()) failed.error = s.error;
    std::ofstream f(o.json_file);
    f << to_json(failed) << "\n";
    f.close();
    if (!f) std::cerr << prog << ": cannot write " << o.json_file << "\n";
    return static_cast<bool>(f);
  }
  if (!o.quiet) {
    out << "\n";
    print_summary(out, s.stats);
    out << "guest writer:  " << s.writer_writes << " page writes during the migration\n";
  }
  bool ok = true;
  if (!o.json_file.empty()) {
    std::ofstream f(o.json_file);
    f << to_json(s.stats) << "\n";
    f.close();
    if (!f) {
      std::cerr << prog << ": cannot write " << o.json_file << "\n";
      ok = false;
    }
  }
  if (!o.report_file.empty()) {
    char title[200];
    std::snprintf(title, sizeof title, "ferry: %s, %u channel(s), %s, blackout %.1f ms",
                  format_size(s.stats.ram_bytes ? s.stats.ram_bytes : o.size).c_str(), o.channels,
                  s.stats.status.c_str(), s.stats.blackout_seconds * 1e3);
    std::ofstream f(o.report_file);
    f << render_svg(s.stats.iterations, title);
    f.close();
    if (!f) {
      std::cerr << prog << ": cannot write " << o.report_file << "\n";
      ok = false;
    }
  }
  return ok;
}

}  // namespace ferry::cli
