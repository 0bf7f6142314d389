// `ferry dump FILE [--json] [--extract-ram DIR] [--vmdesc JSON]`: reads a migration stream (QEMU's
// format, or a ferry stream file from `ferry send --connect file:FILE`, whose channels i > 0 are
// read from FILE.i) and prints a summary, or the device state as analyze-migration.py's JSON,
// and/or writes each RAM block to DIR/<block name mapped by block_file_name()>.bin.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <system_error>

#include "engine/stream/file_io.h"
#include "engine/stream/stream_format.h"
#include "engine/stream/summary.h"
#include "tools/ferry/commands.h"

namespace ferry::cli {
namespace {

struct DumpOptions {
  std::string file;
  bool json = false;
  std::string extract_dir;
  std::string vmdesc_file;
};

int run_dump(const DumpOptions& o) {
  const std::string prefix = "ferry dump: " + o.file + ": ";
  stream::ReadOptions ro;
  // A ferry stream of several channels: the others are FILE.1, FILE.2, ...
  ro.channel_file = stream::channel_files(o.file);
  std::vector<uint8_t> bytes;
  try {
    bytes = stream::read_file(o.file);
  } catch (const std::system_error& e) {
    std::cerr << prefix << e.code().message() << "\n";
    return kExitFailure;
  }
  if (!o.vmdesc_file.empty()) {
    try {
      auto text = stream::read_file(o.vmdesc_file);
      ro.vmdesc_json = std::string(text.begin(), text.end());
      ro.vmdesc_source = o.vmdesc_file;
    } catch (const std::system_error& e) {
      std::cerr << "ferry dump: " << o.vmdesc_file << ": " << e.code().message() << "\n";
      return kExitFailure;
    }
  }

  const stream::StreamInfo info = stream::read_stream(bytes, ro);

  // Whatever was gathered is output even when the walk stopped early; the exit status and
  // stderr say it is incomplete.
  if (o.json) {
    std::cout << info.state.dump(4, ' ', true, nlohmann::ordered_json::error_handler_t::replace)
              << "\n";
  } else {
    stream::print_summary(std::cout, o.file, info);
  }
  int status = kExitOk;
  if (!o.extract_dir.empty() && !info.ram.blocks().empty()) {
    try {
      auto paths = stream::extract_ram(info.ram, o.extract_dir);
      if (!o.json) {
        std::cout << "\nextracted RAM blocks:\n";
        for (size_t i = 0; i < paths.size(); ++i) {
          std::cout << "  " << info.ram.blocks()[i]->name() << " -> " << paths[i].string() << "\n";
        }
      }
    } catch (const std::exception& e) {
      std::cerr << "ferry dump: " << e.what() << "\n";
      status = kExitFailure;
    }
  }
  std::cout.flush();
  if (info.error) {
    char off[32];
    std::snprintf(off, sizeof off, "offset 0x%llx: ",
                  static_cast<unsigned long long>(info.error->offset));
    // Errors in a ferry stream's channel file other than FILE name that file.
    const std::string where =
        info.error->file.empty() ? prefix : "ferry dump: " + info.error->file + ": ";
    std::cerr << where << off << info.error->message << "\n";
    status = kExitFailure;
  }
  return status;
}

}  // namespace

std::pair<CLI::App*, Runner> add_dump_command(CLI::App& app) {
  auto opts = std::make_shared<DumpOptions>();
  CLI::App* sub = app.add_subcommand(
      "dump",
      "Read a migration stream (QEMU or ferry format) and report on it: sections, sizes, page "
      "counts by kind, device state; errors name the file and byte offset");
  sub->add_option("FILE", opts->file,
                  "the stream file: a QEMU migration stream, or a ferry stream file (`ferry send "
                  "--connect file:FILE`; channels i > 0 are read from FILE.i)")
      ->required();
  sub->add_flag("--json", opts->json,
                "print the device state as JSON (like QEMU's analyze-migration.py -f) instead of "
                "the summary");
  sub->add_option("--extract-ram", opts->extract_dir,
                  "write each RAM block to DIR/<name>.bin ('/' -> '_', other unusual bytes -> %XX), "
                  "XBZRLE pages decoded against the page's previous content")
      ->type_name("DIR");
  sub->add_option("--vmdesc", opts->vmdesc_file,
                  "decode device sections with this vmdesc JSON (analyze-migration.py -d desc "
                  "output) instead of the stream's own")
      ->type_name("JSON");
  return {sub, [opts] { return run_dump(*opts); }};
}

}  // namespace ferry::cli
