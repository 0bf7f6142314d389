// Options shared by `ferry demo`, `ferry send` and `ferry recv`, and their registration on a
// CLI11 subcommand. Values are checked by CLI11 validators, so a bad one is a usage error
// (exit 2) with a message naming the option.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "ferry/migration.h"
#include "ferry/transport.h"
#include "tools/ferry/image.h"

namespace ferry::cli {

struct MigrateOptions {
  // The image (both sides must agree).
  std::string size_text = "2G";
  std::string page_size_text = "4K";
  uint64_t seed = 1;
  std::string content_text = "mix";  // mix | zero | random
  // The workload and the engine (source side).
  double dirty_rate_mib = 64;
  std::string hot_set_text;  // empty: automatic
  uint32_t channels = 2;
  bool xbzrle = true;
  bool zero = true;
  bool page_table_zero = true;  // MigrationConfig::zero_from_page_tables
  bool lz4 = false;
  // Lower than the library's (and QEMU's) 300 ms: at the demo's 64 MiB/s one more short pass
  // brings the blackout from ~90 ms to a few ms, for a few tens of ms more total time.
  uint32_t downtime_ms = 30;
  uint32_t max_iterations = 30;
  std::string bandwidth_text = "0";
  bool auto_converge = true;
  std::string dirty_tracking = "auto";  // auto | uffd-wp | explicit
  // digest | full | off (MigrationConfig::verify*). Off by default: the digests cost ~20 % of
  // the page path (BM_MigrateLoopbackVerified/random vs BM_MigrateLoopback/random), over the 2 %
  // the CLI allows its checks; demo and recv still compare whole-image hashes afterwards.
  std::string verify = "off";
  double connect_timeout_s = 10;
  double accept_timeout_s = 60;
  // recv --thp: the destination's guest RAM on transparent huge pages.
  bool destination_thp = false;
  // recv --prealloc: the destination's guest RAM faulted in before it listens.
  bool destination_prealloc = false;
  // Output.
  std::string json_file;
  std::string report_file;
  bool quiet = false;
  // Authentication: --psk-file (read by resolve() into psk) and --insecure.
  std::string psk_file;
  bool insecure = false;
  // TLS 1.3 on every channel: --tls-cert, --tls-key, --tls-ca (PEM files, all three or none).
  transport::Options::Tls tls;
  // Where: demo and recv listen on it, send connects to it.
  std::string uri = "tcp:127.0.0.1:0";

  // Resolved by resolve().
  uint64_t size = 0;
  size_t page_size = 4096;
  uint64_t hot_set = 0;
  uint64_t bandwidth = 0;
  ImageContent content = ImageContent::kMix;
  SecureBytes psk;  // wiped when freed

  // Parses the size texts (already validated), checks how they combine and reads --psk-file;
  // returns an error message for a usage error, "" when fine.
  std::string resolve();

  MigrationConfig engine_config() const;
  // Transport options for a session of `channels` channels (0 on a listener: take the count
  // from the sender).
  transport::Options transport_options(uint32_t channels) const;
  // The RAM block list both sides register (memory at host). fresh_destination: host is new
  // anonymous memory nothing has written (RamBlock::known_zero).
  std::vector<RamBlock> blocks(void* host, bool fresh_destination = false) const;
};

// Which options a subcommand gets.
enum OptionSet : unsigned {
  kImageOptions = 1,    // --size --page-size --seed --content
  kSourceOptions = 2,   // --dirty-rate --hot-set --channels --xbzrle --zero --lz4 --downtime-ms ...
  kOutputOptions = 4,   // --json --report --quiet
  kAuthOptions = 8,     // --psk-file --insecure --tls-cert --tls-key --tls-ca
};
void add_migrate_options(CLI::App* sub, MigrateOptions& o, unsigned sets);

// CLI11 validators: a size ("2G") and a page size (4K or 2M).
CLI::Validator size_validator();
CLI::Validator page_size_validator();

}  // namespace ferry::cli
