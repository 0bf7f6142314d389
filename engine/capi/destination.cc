// ferry_destination: blocks and devices on the caller's thread, then listen, then run() =
// accept one session + MigrationDestination::run. cancel() from another thread reaches the
// listener (an accept in progress) and the engine through `mu`.
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/capi/destination_stats.h"
#include "engine/capi/device_list.h"
#include "engine/capi/errors.h"
#include "engine/capi/options.h"
#include "engine/capi/ram_blocks.h"
#include "engine/capi/strings.h"
#include "ferry/ferry.h"
#include "ferry/migration.h"
#include "ferry/transport.h"

using ferry::capi::guarded;
using ferry::capi::require;
using ferry::capi::require_arg;

struct ferry_destination {
  enum class Phase { kSetup, kRan };

  ferry::capi::Settings settings;
  std::vector<ferry::RamBlock> blocks;
  ferry::capi::DeviceList devices;
  Phase phase = Phase::kSetup;

  // Shared with ferry_destination_cancel on other threads.
  std::mutex mu;
  bool cancelled = false;
  std::unique_ptr<ferry::transport::Listener> listener;
  std::unique_ptr<ferry::MigrationDestination> engine;
  ferry::capi::DestinationOutcome outcome;

  void require_setup(const char* function) const {
    require(phase == Phase::kSetup, function, "not allowed after ferry_destination_run");
  }
};

namespace {

constexpr const char* kRun = "ferry_destination_run";
using Clock = std::chrono::steady_clock;

// The engine, under the lock so cancel() can reach it, unless cancel() came first.
ferry::MigrationDestination* create_engine(ferry_destination& d) {
  std::lock_guard lock(d.mu);
  if (d.cancelled) return nullptr;
  auto engine = std::make_unique<ferry::MigrationDestination>(std::move(d.blocks));
  engine->set_devices(d.devices.devices());
  d.engine = std::move(engine);
  return d.engine.get();
}

void record(ferry_destination& d, const char* status, const std::string& error,
            Clock::time_point t0) {
  std::lock_guard lock(d.mu);
  d.outcome.status = status;
  d.outcome.error = error;
  d.outcome.total_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
}

bool was_cancelled(ferry_destination& d) {
  std::lock_guard lock(d.mu);
  return d.cancelled;
}

// Accept, then receive. A failure after cancel() counts as the cancel (it caused it).
ferry_status accept_and_receive(ferry_destination& d) {
  const auto t0 = Clock::now();
  try {
    ferry::MigrationDestination* engine = create_engine(d);
    if (!engine) {
      record(d, "cancelled", "cancelled", t0);
      return ferry::capi::fail(FERRY_ERR_CANCELLED, "cancelled");
    }
    std::vector<ferry::transport::ChannelPtr> channels = d.listener->accept();
    ferry::DestinationStats stats = engine->run(std::move(channels));
    {
      std::lock_guard lock(d.mu);
      d.outcome.stats = std::move(stats);
    }
    record(d, "completed", "", t0);
    return FERRY_OK;
  } catch (const std::exception& e) {
    const bool cancelled = was_cancelled(d);
    record(d, cancelled ? "cancelled" : "failed", e.what(), t0);
    if (cancelled) return ferry::capi::fail(FERRY_ERR_CANCELLED, e.what());
    return ferry::capi::translate_current_exception("");
  } catch (...) {
    record(d, "failed", "unknown exception", t0);
    return ferry::capi::translate_current_exception(kRun);
  }
}

}  // namespace

extern "C" {

ferry_status ferry_destination_new(const ferry_options* options, ferry_destination** out) {
  constexpr const char* fn = "ferry_destination_new";
  return guarded(fn, [&] {
    require_arg(out, fn, "out");
    *out = nullptr;
    auto d = std::make_unique<ferry_destination>();
    d->settings = ferry::capi::read_options(options, ferry::capi::Side::kDestination, fn);
    *out = d.release();
  });
}

void ferry_destination_free(ferry_destination* destination) { delete destination; }

ferry_status ferry_destination_add_ram(ferry_destination* destination,
                                       const ferry_ram_block* block) {
  constexpr const char* fn = "ferry_destination_add_ram";
  return guarded(fn, [&] {
    require_arg(destination, fn, "destination");
    destination->require_setup(fn);
    destination->blocks.push_back(ferry::capi::to_ram_block(block, destination->blocks, fn));
  });
}

ferry_status ferry_destination_add_device(ferry_destination* destination, const char* idstr,
                                          uint32_t instance_id, const FerryVmsDescription* vmsd,
                                          void* opaque) {
  constexpr const char* fn = "ferry_destination_add_device";
  return guarded(fn, [&] {
    require_arg(destination, fn, "destination");
    destination->require_setup(fn);
    destination->devices.add_vmstate(idstr, instance_id, vmsd, opaque, fn);
  });
}

ferry_status ferry_destination_add_device_opaque(ferry_destination* destination,
                                                 const char* idstr, uint32_t instance_id,
                                                 const ferry_device_ops* ops, void* opaque) {
  constexpr const char* fn = "ferry_destination_add_device_opaque";
  return guarded(fn, [&] {
    require_arg(destination, fn, "destination");
    destination->require_setup(fn);
    destination->devices.add_opaque(idstr, instance_id, ops, opaque, fn);
  });
}

ferry_status ferry_destination_listen(ferry_destination* destination, const char* uri) {
  constexpr const char* fn = "ferry_destination_listen";
  return guarded(fn, [&] {
    require_arg(destination, fn, "destination");
    destination->require_setup(fn);
    {
      std::lock_guard lock(destination->mu);
      require(!destination->listener, fn, "already listening (once per object)");
    }
    const ferry::transport::Uri u = ferry::capi::parse_uri_arg(uri, fn);
    auto listener = ferry::transport::listen(u, destination->settings.transport);
    std::lock_guard lock(destination->mu);
    destination->listener = std::move(listener);
    if (destination->cancelled) destination->listener->cancel();
  });
}

ferry_status ferry_destination_address(ferry_destination* destination, char** uri) {
  constexpr const char* fn = "ferry_destination_address";
  return guarded(fn, [&] {
    require_arg(destination, fn, "destination");
    require_arg(uri, fn, "uri");
    *uri = nullptr;
    std::string address;
    {
      std::lock_guard lock(destination->mu);
      require(destination->listener != nullptr, fn,
              "not listening (call ferry_destination_listen first)");
      address = destination->listener->address();
    }
    *uri = ferry::capi::copy_out(address);
  });
}

ferry_status ferry_destination_run(ferry_destination* destination) {
  ferry_status st = guarded(kRun, [&] {
    require_arg(destination, kRun, "destination");
    require(destination->phase == ferry_destination::Phase::kSetup, kRun,
            "already ran (once per object)");
    if (was_cancelled(*destination)) return;  // reported as CANCELLED below
    std::lock_guard lock(destination->mu);
    require(destination->listener != nullptr, kRun,
            "not listening (call ferry_destination_listen first)");
    require(!destination->blocks.empty(), kRun,
            "no RAM blocks (call ferry_destination_add_ram first)");
  });
  if (st != FERRY_OK) return st;
  destination->phase = ferry_destination::Phase::kRan;
  return accept_and_receive(*destination);
}

void ferry_destination_cancel(ferry_destination* destination) {
  if (!destination) return;
  std::lock_guard lock(destination->mu);
  destination->cancelled = true;
  if (destination->listener) destination->listener->cancel();
  if (destination->engine) destination->engine->cancel();
}

ferry_status ferry_destination_stats_json(ferry_destination* destination, char** json) {
  constexpr const char* fn = "ferry_destination_stats_json";
  return guarded(fn, [&] {
    require_arg(destination, fn, "destination");
    require_arg(json, fn, "json");
    *json = nullptr;
    ferry::capi::DestinationOutcome outcome;
    {
      std::lock_guard lock(destination->mu);
      outcome = destination->outcome;
    }
    *json = ferry::capi::copy_out(ferry::capi::destination_json(outcome));
  });
}

}  // extern "C"
