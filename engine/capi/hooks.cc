#include "engine/capi/hooks.h"

#include <string>

namespace ferry::capi {

MigrationHooks to_migration_hooks(const ferry_hooks& h) {
  MigrationHooks m;
  void* opaque = h.opaque;
  if (h.stop_guest) {
    m.stop_guest = [fn = h.stop_guest, opaque] {
      const int rc = fn(opaque);
      if (rc != 0) {
        throw MigrationError("stop_guest hook returned " + std::to_string(rc) +
                             " (the guest runs on at the source)");
      }
    };
  }
  if (h.resume_guest) m.resume_guest = [fn = h.resume_guest, opaque] { fn(opaque); };
  if (h.throttle) m.throttle = [fn = h.throttle, opaque](uint32_t pct) { fn(opaque, pct); };
  if (h.on_iteration) {
    m.on_iteration = [fn = h.on_iteration, opaque](const IterationStats& s) {
      const ferry_iteration_stats c = to_c(s);
      fn(opaque, &c);
    };
  }
  return m;
}

ferry_iteration_stats to_c(const IterationStats& s) {
  ferry_iteration_stats c{};
  c.iteration = s.iteration;
  c.final_pass = s.final_pass ? 1 : 0;
  c.dirty_pages = s.dirty_pages;
  c.normal_pages = s.pages.normal;
  c.zero_pages = s.pages.zero;
  c.xbzrle_pages = s.pages.xbzrle;
  c.lz4_pages = s.pages.lz4;
  c.wire_bytes = s.wire_bytes;
  c.seconds = s.seconds;
  c.throughput_bytes_per_s = s.throughput_bytes_per_s;
  c.dirty_rate_pages_per_s = s.dirty_rate_pages_per_s;
  c.remaining_dirty_pages = s.remaining_dirty_pages;
  c.expected_downtime_s = s.expected_downtime_s;
  c.throttle_percent = s.throttle_percent;
  return c;
}

ferry_progress to_c(const Progress& p) {
  ferry_progress c{};
  c.iteration = p.iteration;
  c.final_pass = p.final_pass ? 1 : 0;
  c.pages_sent_this_iteration = p.pages_sent_this_iteration;
  c.pages_dirty_this_iteration = p.pages_dirty_this_iteration;
  c.wire_bytes = p.wire_bytes;
  c.elapsed_seconds = p.elapsed_seconds;
  c.throughput_bytes_per_s = p.throughput_bytes_per_s;
  return c;
}

}  // namespace ferry::capi
