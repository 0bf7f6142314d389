// libFuzzer target for the parser behind `ferry dump` (engine/stream): each input is read as a
// migration stream (QEMU's format, or a ferry stream file of one channel: the input is one
// file, so companion files of more channels are never found) twice, once as it is (its own vmdesc trailer, if any) and once with a
// caller-given vmdesc (`ferry dump --vmdesc`), and each result goes through what the command
// does with it: the summary, the --json output, and --extract-ram, here into memory instead of
// files (block_file_name + every byte of every block read back).
// RAM is capped at kMaxRam (ReadOptions::max_ram_bytes): MEM_SIZE comes from the input, and
// tens of MiB per run (calloc + ASan shadow) cut the speed ~30x; larger MEM_SIZE is refused
// cleanly by the reader, which is also worth exercising. The real-stream seeds are shrunk to one
// page per block for the same reason (make_seeds.cc --strip-ram).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ostream>
#include <span>
#include <streambuf>
#include <string>

#include <sanitizer/asan_interface.h>

#include "engine/stream/block_name.h"
#include "engine/stream/stream_format.h"
#include "engine/stream/summary.h"
#include "tests/stream/handmade_device.h"

namespace {

using namespace ferry::stream;

constexpr uint64_t kMaxRam = uint64_t{8} << 20;

// The device of the hand-built seed streams (make_seeds.cc), so the --vmdesc pass decodes
// device sections of mutated seeds.
const char* const kVmdesc = ferry::stream::test::kHandmadeDeviceVmdesc;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "fuzz_qemu_stream: property violated: %s\n", what.c_str());
  std::abort();
}

// An ostream that discards everything (the summary is produced, not printed).
class NullBuf final : public std::streambuf {
 protected:
  int overflow(int c) override { return traits_type::not_eof(c); }
  std::streamsize xsputn(const char*, std::streamsize n) override { return n; }
};

// --extract-ram into memory: the file name of each block, and proof that all of the block's
// bytes() span is addressable (what writing it out would read). Asking ASan's shadow memory
// does that without touching up to 64 MiB of mostly untouched calloc pages per run, which made
// a checksum loop the dominant cost (~1 s per real-stream input).
size_t extract_in_memory(const RamImage& ram) {
  size_t names = 0;
  for (const auto& block : ram.blocks()) {
    const std::string file = block_file_name(block->name());
    if (file.empty() || file.find('/') != std::string::npos) fail("bad file name for a block");
    names += file.size();
    const auto bytes = block->bytes();
    if (bytes.size() != block->size()) fail("block bytes() and size() disagree");
    if (!bytes.empty() && __asan_region_is_poisoned(const_cast<uint8_t*>(bytes.data()),
                                                    bytes.size()) != nullptr) {
      fail("RAM block '" + block->name() + "' is not entirely addressable");
    }
  }
  return names;
}

void run(std::span<const uint8_t> file, const ReadOptions& ro) {
  const StreamInfo info = read_stream(file, ro);
  if (info.error && info.error->message.empty()) fail("an error without a message");
  if (info.error && info.error->offset > file.size()) fail("an error offset past the end");
  NullBuf nb;
  std::ostream null_out(&nb);
  print_summary(null_out, "fuzz", info);
  const std::string json =
      info.state.dump(4, ' ', true, nlohmann::ordered_json::error_handler_t::replace);
  null_out << json;
  volatile size_t sink = extract_in_memory(info.ram);
  (void)sink;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> file(data, size);
  ReadOptions own;
  own.max_ram_bytes = kMaxRam;
  run(file, own);
  ReadOptions given = own;
  given.vmdesc_json = kVmdesc;
  given.vmdesc_source = "fuzz vmdesc";
  run(file, given);
  return 0;
}
