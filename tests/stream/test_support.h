// Shared helpers for the stream tests: the corpus (../shared/corpus), gunzip and sha256 through
// the standard tools, running commands, and the corpus .walk.txt files as data.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ferry::stream::test {

std::filesystem::path corpus_dir();
// Every .mig under the corpus, sorted; empty when the corpus is absent.
std::vector<std::filesystem::path> corpus_streams();
// A stable gtest-friendly name: "qemu_7_2_22_pc_nodefaults".
std::string stream_test_name(const std::filesystem::path& mig);

std::vector<uint8_t> read_bytes(const std::filesystem::path& p);
std::vector<uint8_t> gunzip(const std::filesystem::path& gz);  // via `gzip -dc`
std::string sha256_hex(const uint8_t* data, size_t len);         // via `sha256sum`

struct CommandResult {
  int status = -1;  // exit status, or -1 if it did not exit normally
  std::string out;
  std::string err;
};
CommandResult run_command(const std::string& command_line);
std::string shell_quote(const std::string& s);

// A scratch directory under the build's temp dir, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// One line of a .walk.txt: "0x0000001a SECTION_START id=2 'ram' instance=0 version=4 len=165 {...}".
struct WalkRecord {
  uint64_t offset = 0;
  std::string type;
  std::optional<uint32_t> id, instance, version;
  std::string name;
  std::optional<uint64_t> len;
  std::map<std::string, uint64_t> counts;  // the {'named': 6, ...} dict
};

struct Walk {
  uint64_t file_size = 0;
  bool vmdesc_present = false;
  std::string vmdesc_used;  // "stream" or another .mig whose vmdesc the walk used
  std::string machine;
  std::vector<WalkRecord> records;
  std::map<std::string, uint64_t> type_counts;                   // "section type counts"
  std::vector<std::pair<std::string, uint64_t>> blocks;          // MEM_SIZE list
  std::map<std::string, uint64_t> totals;                        // "ram records:" line
  std::map<std::string, std::map<std::string, uint64_t>> block_counts;
  std::map<std::string, std::string> block_sha256;
};
Walk parse_walk(const std::filesystem::path& walk_txt);

}  // namespace ferry::stream::test
