// The two halves of `ferry demo/send/recv`: the source (synthetic image + writer + dirty
// tracking + MigrationSource) and the destination (empty image + MigrationDestination).
// `ferry demo` is recv in a forked child plus send in the parent.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>

#include "ferry/migration.h"
#include "tools/ferry/image.h"
#include "tools/ferry/migrate_options.h"
#include "ferry/transport.h"

namespace ferry::cli {

struct SendOutcome {
  bool ok = false;
  std::string error;           // when !ok
  MigrationStats stats;        // filled as far as known
  uint64_t source_hash = 0;    // image at switchover (writer stopped), when ok
  ImageMix mix;
  std::string dirty_tracking;  // e.g. "uffd-wp" or "explicit-marks (uffd-wp unavailable: ...)"
  uint64_t writer_writes = 0;
};

// Connects to `uri`, builds the image, starts the writer and migrates. Progress goes to
// stderr unless o.quiet; informational lines to `log` unless o.quiet. Never throws.
SendOutcome send_image(const MigrateOptions& o, const std::string& uri, std::ostream& log);

struct RecvOutcome {
  bool ok = false;
  std::string error;
  DestinationStats stats;
  uint64_t hash = 0;  // destination image after completion
};

// The destination's guest RAM: fresh zero memory of o.size, on huge pages with --thp, faulted
// in already with --prealloc. Throws std::system_error when the memory cannot be had.
std::unique_ptr<GuestMemory> destination_memory(const MigrateOptions& o);

// Accepts one session on `listener`, receives into `mem` (zero, as destination_memory() gives
// it). Never throws.
RecvOutcome receive_image(const MigrateOptions& o, GuestMemory& mem,
                          transport::Listener& listener);

// Prints the summary (unless quiet) and writes --json / --report; returns false (after
// printing to stderr) when a file cannot be written. After a failure (!s.ok) only --json is
// written, with status "failed" (or "cancelled") and the error.
bool write_outputs(const MigrateOptions& o, const SendOutcome& s, std::ostream& out,
                   const std::string& prog);

}  // namespace ferry::cli
