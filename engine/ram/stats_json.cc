// to_json(MigrationStats): shaped like QEMU's query-migrate reply, so tools that read that
// (and people who know it) find the same names; ferry's per-iteration detail is extra.
#include <nlohmann/json.hpp>

#include "ferry/migration.h"

namespace ferry {
namespace {
int64_t ms(double seconds) { return static_cast<int64_t>(seconds * 1000.0 + 0.5); }

nlohmann::json counts_json(const PageCounts& c) {
  return {{"normal", c.normal}, {"zero", c.zero}, {"xbzrle", c.xbzrle}, {"lz4", c.lz4}};
}
}  // namespace

std::string to_json(const MigrationStats& s) {
  nlohmann::json j;
  j["status"] = s.status;
  if (!s.error.empty()) j["error-desc"] = s.error;
  j["total-time"] = ms(s.total_seconds);
  // blackout: stop_guest .. the destination may run the guest, everything included;
  // downtime: the same minus the verification at the end (MigrationStats).
  j["blackout"] = ms(s.blackout_seconds);
  j["blackout-us"] = static_cast<int64_t>(s.blackout_seconds * 1e6 + 0.5);
  j["downtime"] = ms(s.downtime_seconds);
  j["setup-time"] = ms(s.setup_seconds);
  j["verify-time"] = ms(s.verify_seconds);
  j["verified"] = s.verified;
  j["channels"] = s.channels;
  j["dirty-tracking"] = s.dirty_tracking;
  j["converged-by"] = s.converged_by;
  j["placement"] = s.placement;
  j["one-way"] = s.one_way;
  j["placed-pages"] = s.placed_pages;
  j["device-state"] = {{"sections", s.devices}, {"bytes", s.device_bytes}};

  const double secs = s.total_seconds > 0 ? s.total_seconds : 0;
  uint64_t dirty_sync_count = 0;
  uint64_t remaining = 0;
  for (const auto& it : s.iterations) {
    ++dirty_sync_count;
    remaining = it.remaining_dirty_pages;
  }
  const IterationStats* last = s.iterations.empty() ? nullptr : &s.iterations.back();
  nlohmann::json ram;
  ram["total"] = s.ram_bytes;
  ram["transferred"] = s.wire_bytes;
  ram["remaining"] = last && last->final_pass ? 0 : remaining;
  ram["normal"] = s.pages.normal;
  ram["duplicate"] = s.pages.zero;  // QEMU's name for zero pages
  ram["duplicate-unread"] = s.zero_pages_unread;  // of those, known from the page tables
  ram["xbzrle-pages"] = s.pages.xbzrle;
  ram["lz4-pages"] = s.pages.lz4;
  ram["dirty-sync-count"] = dirty_sync_count;
  ram["pages-per-second"] = secs > 0 ? static_cast<double>(s.pages.total()) / secs : 0.0;
  ram["mbps"] = secs > 0 ? static_cast<double>(s.wire_bytes) * 8 / 1e6 / secs : 0.0;
  ram["dirty-pages-rate"] = last ? last->dirty_rate_pages_per_s : 0.0;
  j["ram"] = ram;

  nlohmann::json x;
  x["cache-hit"] = s.xbzrle_cache_hits;
  x["cache-miss"] = s.xbzrle_cache_misses;
  x["overflow"] = s.xbzrle_overflows;
  x["bytes"] = s.xbzrle_bytes;
  x["pages"] = s.pages.xbzrle;
  const uint64_t lookups = s.xbzrle_cache_hits + s.xbzrle_cache_misses;
  x["cache-miss-rate"] =
      lookups ? static_cast<double>(s.xbzrle_cache_misses) / static_cast<double>(lookups) : 0.0;
  j["xbzrle-cache"] = x;

  nlohmann::json iters = nlohmann::json::array();
  uint32_t throttle = 0;
  for (const auto& it : s.iterations) {
    if (it.throttle_percent) throttle = it.throttle_percent;
    iters.push_back({{"iteration", it.iteration},
                     {"final-pass", it.final_pass},
                     {"dirty-pages", it.dirty_pages},
                     {"pages", counts_json(it.pages)},
                     {"transferred", it.wire_bytes},
                     {"time", it.seconds},
                     {"throughput-bytes-per-second", it.throughput_bytes_per_s},
                     {"dirty-pages-rate", it.dirty_rate_pages_per_s},
                     {"remaining-dirty-pages", it.remaining_dirty_pages},
                     {"expected-downtime", ms(it.expected_downtime_s)},
                     {"throttle-percentage", it.throttle_percent}});
  }
  j["cpu-throttle-percentage"] = throttle;
  j["iterations"] = iters;
  return j.dump(2);
}

}  // namespace ferry
