#include "engine/capi/destination_stats.h"

#include <nlohmann/json.hpp>

namespace ferry::capi {
namespace {
int64_t ms(double seconds) { return static_cast<int64_t>(seconds * 1000.0 + 0.5); }
}  // namespace

std::string destination_json(const DestinationOutcome& o) {
  const DestinationStats& s = o.stats;
  nlohmann::json j;
  j["status"] = o.status;
  if (!o.error.empty()) j["error-desc"] = o.error;
  j["total-time"] = ms(o.total_seconds);
  j["receive-time"] = ms(s.seconds);
  j["verified"] = s.verified;
  j["iteration-count"] = s.iterations;  // SYNCs received (the source's "iterations" is a list)
  // The source's names (engine/ram/stats_json.cc) for the same counts.
  j["ram"] = {
      {"transferred", s.wire_bytes},
      {"normal", s.pages.normal},
      {"duplicate", s.pages.zero},
      {"xbzrle-pages", s.pages.xbzrle},
      {"lz4-pages", s.pages.lz4},
      {"zero-pages-skipped", s.zero_pages_skipped},
      {"placed-pages", s.placed_pages},
  };
  j["device-state"] = {{"sections", s.devices}};
  // The source's vmdesc is JSON already (the loader checked it): nest it, not a string of it.
  if (!s.vmdesc.empty()) {
    j["vmdesc"] = nlohmann::json::parse(s.vmdesc, nullptr, /*allow_exceptions=*/false);
  }
  return j.dump(2);
}

}  // namespace ferry::capi
