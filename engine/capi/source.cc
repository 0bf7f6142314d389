// ferry_source: collects blocks, dirty sources, devices, hooks and channels on the caller's
// thread, then hands them to one MigrationSource in ferry_source_run(). cancel() and
// progress() come from other threads: they see the engine only through `mu`.
#include <unistd.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/capi/device_list.h"
#include "engine/capi/dirty_fetch.h"
#include "engine/capi/errors.h"
#include "engine/capi/hooks.h"
#include "engine/capi/options.h"
#include "engine/capi/ram_blocks.h"
#include "engine/capi/strings.h"
#include "ferry/ferry.h"
#include "ferry/migration.h"
#include "ferry/uffd_wp_dirty_source.h"

using ferry::capi::guarded;
using ferry::capi::require;
using ferry::capi::require_arg;

struct ferry_source {
  enum class Phase { kSetup, kRan };

  ferry::capi::Settings settings;
  std::vector<ferry::RamBlock> blocks;
  std::vector<std::unique_ptr<ferry::DirtySource>> dirty;  // dirty[i] tracks blocks[i]
  ferry::capi::DeviceList devices;
  ferry_hooks hooks{};
  std::vector<ferry::transport::ChannelPtr> channels;
  bool connected = false;
  Phase phase = Phase::kSetup;

  // Shared with ferry_source_cancel / ferry_source_progress on other threads.
  std::mutex mu;
  bool cancelled = false;
  std::unique_ptr<ferry::MigrationSource> engine;  // created by run(), kept until free
  ferry::MigrationStats stats_without_run;         // when run() never reached the engine

  void require_setup(const char* function) const {
    require(phase == Phase::kSetup, function, "not allowed after ferry_source_run");
  }
  void add_block(const ferry_ram_block* block, const char* function,
                 const std::function<std::unique_ptr<ferry::DirtySource>(const ferry::RamBlock&)>&
                     make_dirty) {
    require_setup(function);
    ferry::RamBlock b = ferry::capi::to_ram_block(block, blocks, function);
    auto source = make_dirty(b);  // tracking starts here
    dirty.reserve(dirty.size() + 1);
    blocks.push_back(std::move(b));
    dirty.push_back(std::move(source));
  }
};

namespace {

constexpr const char* kRun = "ferry_source_run";

// The engine, under the lock, unless cancel() came first (then nothing is created).
ferry::MigrationSource* start_engine(ferry_source& s) {
  std::lock_guard lock(s.mu);
  if (s.cancelled) return nullptr;
  auto engine = std::make_unique<ferry::MigrationSource>(
      std::move(s.blocks), std::move(s.dirty), s.settings.migration,
      ferry::capi::to_migration_hooks(s.hooks));
  engine->set_devices(s.devices.devices());
  s.engine = std::move(engine);
  return s.engine.get();
}

ferry_status run_engine(ferry_source& s) {
  ferry::MigrationSource* engine = nullptr;
  try {
    engine = start_engine(s);
    if (!engine) {
      std::lock_guard lock(s.mu);
      s.stats_without_run.status = "cancelled";
      s.stats_without_run.error = "cancelled";
      return ferry::capi::fail(FERRY_ERR_CANCELLED, "cancelled");
    }
    engine->run(std::move(s.channels));
    return FERRY_OK;
  } catch (const ferry::MigrationError& e) {
    // The engine's stats say whether cancel() or an error ended it (whichever came first).
    const bool cancelled = engine && engine->last_stats().status == "cancelled";
    if (!engine) {
      std::lock_guard lock(s.mu);
      s.stats_without_run.status = "failed";
      s.stats_without_run.error = e.what();
    }
    return ferry::capi::fail(cancelled ? FERRY_ERR_CANCELLED : FERRY_ERR_MIGRATION, e.what());
  } catch (...) {
    return ferry::capi::translate_current_exception(kRun);
  }
}

}  // namespace

extern "C" {

ferry_status ferry_source_new(const ferry_options* options, ferry_source** out) {
  return guarded("ferry_source_new", [&] {
    require_arg(out, "ferry_source_new", "out");
    *out = nullptr;
    auto s = std::make_unique<ferry_source>();
    s->settings = ferry::capi::read_options(options, ferry::capi::Side::kSource, "ferry_source_new");
    *out = s.release();
  });
}

void ferry_source_free(ferry_source* source) { delete source; }

ferry_status ferry_source_add_ram(ferry_source* source, const ferry_ram_block* block,
                                  ferry_dirty_fetch_fn fetch, void* opaque) {
  constexpr const char* fn = "ferry_source_add_ram";
  return guarded(fn, [&] {
    require_arg(source, fn, "source");
    require(fetch != nullptr, fn, "fetch is NULL");
    source->add_block(block, fn, [&](const ferry::RamBlock& b) {
      return ferry::capi::callback_dirty_source(b, fetch, opaque);
    });
  });
}

ferry_status ferry_source_add_ram_kvm(ferry_source* source, const ferry_ram_block* block,
                                      int vm_fd, uint32_t slot, uint32_t flags) {
  constexpr const char* fn = "ferry_source_add_ram_kvm";
  return guarded(fn, [&] {
    require_arg(source, fn, "source");
    require(vm_fd >= 0, fn, "vm_fd " + std::to_string(vm_fd) + " is not a file descriptor");
    require((flags & ~FERRY_KVM_MANUAL_PROTECT) == 0, fn,
            "flags " + std::to_string(flags) + " has unknown bits");
    source->add_block(block, fn, [&](const ferry::RamBlock& b) {
      // KVM logs one bit per base page of the host.
      const auto host_page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
      require(b.page_size == host_page, fn,
              "block '" + b.name + "': page_size " + std::to_string(b.page_size) +
                  " must be the host page size " + std::to_string(host_page) +
                  " (KVM's dirty log has one bit per base page)");
      require(b.size / b.page_size <= UINT32_MAX, fn,
              "block '" + b.name + "': more pages than one KVM slot can hold");
      return ferry::capi::kvm_dirty_source(b, vm_fd, slot, flags);
    });
  });
}

ferry_status ferry_source_add_ram_tracked(ferry_source* source, const ferry_ram_block* block) {
  constexpr const char* fn = "ferry_source_add_ram_tracked";
  return guarded(fn, [&] {
    require_arg(source, fn, "source");
    source->add_block(block, fn, [&](const ferry::RamBlock& b) -> std::unique_ptr<ferry::DirtySource> {
      try {
        return std::make_unique<ferry::UffdWpDirtySource>(b.host, b.size);
      } catch (const std::system_error&) {
        throw;
      } catch (const std::invalid_argument& e) {
        throw ferry::capi::InvalidCall(std::string(fn) + ": block '" + b.name + "': " + e.what());
      } catch (const std::bad_alloc&) {
        throw;
      } catch (const std::exception& e) {
        // The kernel cannot track this memory (missing feature, refused registration).
        throw std::system_error(std::make_error_code(std::errc::not_supported),
                                "block '" + b.name + "': " + e.what());
      }
    });
  });
}

ferry_status ferry_source_add_device(ferry_source* source, const char* idstr,
                                     uint32_t instance_id, const FerryVmsDescription* vmsd,
                                     void* opaque) {
  constexpr const char* fn = "ferry_source_add_device";
  return guarded(fn, [&] {
    require_arg(source, fn, "source");
    source->require_setup(fn);
    source->devices.add_vmstate(idstr, instance_id, vmsd, opaque, fn);
  });
}

ferry_status ferry_source_add_device_opaque(ferry_source* source, const char* idstr,
                                            uint32_t instance_id, const ferry_device_ops* ops,
                                            void* opaque) {
  constexpr const char* fn = "ferry_source_add_device_opaque";
  return guarded(fn, [&] {
    require_arg(source, fn, "source");
    source->require_setup(fn);
    source->devices.add_opaque(idstr, instance_id, ops, opaque, fn);
  });
}

ferry_status ferry_source_set_hooks(ferry_source* source, const ferry_hooks* hooks) {
  constexpr const char* fn = "ferry_source_set_hooks";
  return guarded(fn, [&] {
    require_arg(source, fn, "source");
    require_arg(hooks, fn, "hooks");
    source->require_setup(fn);
    source->hooks = *hooks;
  });
}

ferry_status ferry_source_connect(ferry_source* source, const char* uri) {
  constexpr const char* fn = "ferry_source_connect";
  ferry_status st = guarded(fn, [&] {
    require_arg(source, fn, "source");
    source->require_setup(fn);
    require(!source->connected, fn, "already connected (once per object)");
  });
  if (st != FERRY_OK) return st;
  {
    std::lock_guard lock(source->mu);
    if (source->cancelled) return ferry::capi::fail(FERRY_ERR_CANCELLED, std::string(fn) + ": cancelled");
  }
  return guarded(fn, [&] {
    const ferry::transport::Uri u = ferry::capi::parse_uri_arg(uri, fn);
    source->channels = ferry::transport::connect(u, source->settings.transport);
    source->connected = true;
  });
}

ferry_status ferry_source_run(ferry_source* source) {
  ferry_status st = guarded(kRun, [&] {
    require_arg(source, kRun, "source");
    require(source->phase == ferry_source::Phase::kSetup, kRun, "already ran (once per object)");
  });
  if (st != FERRY_OK) return st;
  {
    std::lock_guard lock(source->mu);
    if (source->cancelled) {
      source->phase = ferry_source::Phase::kRan;
      source->stats_without_run.status = "cancelled";
      source->stats_without_run.error = "cancelled";
      return ferry::capi::fail(FERRY_ERR_CANCELLED, "cancelled");
    }
  }
  st = guarded(kRun, [&] {
    require(source->connected, kRun, "not connected (call ferry_source_connect first)");
    require(!source->blocks.empty(), kRun, "no RAM blocks (call ferry_source_add_ram first)");
  });
  if (st != FERRY_OK) return st;
  source->phase = ferry_source::Phase::kRan;
  return run_engine(*source);
}

void ferry_source_cancel(ferry_source* source) {
  if (!source) return;
  std::lock_guard lock(source->mu);
  source->cancelled = true;
  if (source->engine) source->engine->cancel();
}

ferry_status ferry_source_progress(ferry_source* source, ferry_progress* out) {
  constexpr const char* fn = "ferry_source_progress";
  return guarded(fn, [&] {
    require_arg(source, fn, "source");
    require_arg(out, fn, "out");
    std::lock_guard lock(source->mu);
    *out = source->engine ? ferry::capi::to_c(source->engine->progress()) : ferry_progress{};
  });
}

ferry_status ferry_source_stats_json(ferry_source* source, char** json) {
  constexpr const char* fn = "ferry_source_stats_json";
  return guarded(fn, [&] {
    require_arg(source, fn, "source");
    require_arg(json, fn, "json");
    *json = nullptr;
    ferry::MigrationStats stats;
    {
      std::lock_guard lock(source->mu);
      if (source->engine) {
        stats = source->engine->last_stats();
      } else {
        stats = source->stats_without_run;
        if (stats.status.empty()) stats.status = "none";
      }
    }
    *json = ferry::capi::copy_out(ferry::to_json(stats));
  });
}

}  // extern "C"
