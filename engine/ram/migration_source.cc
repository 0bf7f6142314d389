// MigrationSource: checks what it is given, and hands each run() to a SourceSession (the
// protocol's phases); the state shared with cancel() and progress() is ram::SourceState.
#include "engine/device/device_state.h"
#include "engine/ram/block_check.h"
#include "engine/ram/source_session.h"
#include "engine/ram/source_state.h"
#include "engine/ram/wire_format.h"
#include "ferry/migration.h"

namespace ferry {

struct MigrationSource::Impl : ram::SourceState {};

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
  const int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
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
  return ram::SourceSession(*impl_, std::move(channels)).run();
}

}  // namespace ferry
