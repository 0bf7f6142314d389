#include "tests/stream/test_support.h"

// GCC 12 with -fsanitize=address -O1 reports a false -Wmaybe-uninitialized inside <regex>'s
// std::function members; the file-wide scope is needed because it fires at instantiation.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>
#include <stdexcept>

namespace ferry::stream::test {
namespace fs = std::filesystem;

fs::path corpus_dir() { return fs::path(FERRY_SOURCE_DIR) / ".." / "shared" / "corpus"; }

std::vector<fs::path> corpus_streams() {
  std::vector<fs::path> out;
  std::error_code ec;
  if (!fs::is_directory(corpus_dir(), ec)) return out;
  for (const auto& e : fs::recursive_directory_iterator(corpus_dir(), ec)) {
    if (e.is_regular_file() && e.path().extension() == ".mig") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string stream_test_name(const fs::path& mig) {
  std::string s = mig.parent_path().filename().string() + "_" + mig.stem().string();
  for (char& c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return s;
}

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + p.string());
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

namespace {

std::string slurp(FILE* f) {
  std::string s;
  char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  return s;
}

}  // namespace

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') {
      q += "'\\''";
    } else {
      q += c;
    }
  }
  return q + "'";
}

std::vector<uint8_t> gunzip(const fs::path& gz) {
  FILE* f = popen(("gzip -dc " + shell_quote(gz.string())).c_str(), "r");
  if (f == nullptr) throw std::runtime_error("popen gzip failed");
  std::string s = slurp(f);
  if (pclose(f) != 0) throw std::runtime_error("gzip -dc " + gz.string() + " failed");
  return std::vector<uint8_t>(s.begin(), s.end());
}

std::string sha256_hex(const uint8_t* data, size_t len) {
  TempDir dir;
  const fs::path p = dir.path() / "block";
  {
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(len));
  }
  auto r = run_command("sha256sum " + shell_quote(p.string()));
  if (r.status != 0 || r.out.size() < 64) throw std::runtime_error("sha256sum failed");
  return r.out.substr(0, 64);
}

CommandResult run_command(const std::string& command_line) {
  TempDir dir;
  const fs::path out = dir.path() / "stdout", err = dir.path() / "stderr";
  const std::string cmd = command_line + " >" + shell_quote(out.string()) + " 2>" +
                          shell_quote(err.string());
  CommandResult r;
  const int st = std::system(cmd.c_str());
  r.status = (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
  auto text = [](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  r.out = text(out);
  r.err = text(err);
  return r;
}

TempDir::TempDir() {
  static std::mt19937_64 rng(std::random_device{}());
  for (int i = 0; i < 100; ++i) {
    fs::path p = fs::temp_directory_path() /
                 ("ferry-stream-test-" + std::to_string(getpid()) + "-" + std::to_string(rng()));
    if (fs::create_directory(p)) {
      path_ = p;
      return;
    }
  }
  throw std::runtime_error("cannot create a temporary directory");
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

namespace {

std::map<std::string, uint64_t> parse_dict(const std::string& s) {
  static const std::regex kv(R"('([^']+)':\s*(\d+))");
  std::map<std::string, uint64_t> m;
  for (std::sregex_iterator it(s.begin(), s.end(), kv), end; it != end; ++it) {
    m[(*it)[1]] = std::stoull((*it)[2]);
  }
  return m;
}

}  // namespace

Walk parse_walk(const fs::path& walk_txt) {
  std::ifstream in(walk_txt);
  if (!in) throw std::runtime_error("cannot open " + walk_txt.string());
  Walk w;
  static const std::regex file_re(R"(^file \S+: (\d+) bytes)");
  static const std::regex vmdesc_re(R"(^vmdesc: (present|absent).*\(used: ([^)]+)\))");
  static const std::regex rec_re(R"(^0x([0-9a-f]+) (\S+)(.*)$)");
  static const std::regex section_re(
      R"(^ id=(\d+) '([^']*)'(?: instance=(\d+) version=(\d+))? len=(\d+)(.*)$)");
  static const std::regex config_re(R"(machine='([^']*)')");
  static const std::regex len_re(R"(len=(\d+))");
  static const std::regex blocks_re(R"(^ram blocks \(MEM_SIZE total \d+\): (.*)$)");
  static const std::regex block_entry_re(R"(\('([^']*)', (\d+)\))");
  static const std::regex totals_re(R"(^ram records: (.*)$)");
  static const std::regex total_kv_re(R"((\w+(?: \w+)?)=(\d+))");
  static const std::regex block_counts_re(R"(^  block (\S+)\s+(\{.*\})$)");
  static const std::regex decoded_re(R"(^  decoded (\S+)\s+\d+ bytes sha256 ([0-9a-f]{64}))");
  std::string line;
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_search(line, m, file_re)) {
      w.file_size = std::stoull(m[1]);
    } else if (std::regex_search(line, m, vmdesc_re)) {
      w.vmdesc_present = m[1] == "present";
      w.vmdesc_used = m[2];
    } else if (std::regex_match(line, m, rec_re) && m[2].str()[0] != '(') {
      WalkRecord r;
      r.offset = std::stoull(m[1], nullptr, 16);
      r.type = m[2];
      const std::string rest = m[3];
      std::smatch s;
      if (r.type.rfind("SECTION_", 0) == 0 && std::regex_match(rest, s, section_re)) {
        r.id = static_cast<uint32_t>(std::stoul(s[1]));
        r.name = s[2];
        if (s[3].matched) {
          r.instance = static_cast<uint32_t>(std::stoul(s[3]));
          r.version = static_cast<uint32_t>(std::stoul(s[4]));
        }
        r.len = std::stoull(s[5]);
        r.counts = parse_dict(s[6]);
      } else if (r.type == "CONFIGURATION") {
        if (std::regex_search(rest, s, config_re)) w.machine = s[1];
        if (std::regex_search(rest, s, len_re)) r.len = std::stoull(s[1]);
      } else if (r.type == "COMMAND") {
        static const std::regex cmd_re(R"(cmd=(\d+))");
        if (std::regex_search(rest, s, cmd_re)) r.id = static_cast<uint32_t>(std::stoul(s[1]));
        if (std::regex_search(rest, s, len_re)) r.len = std::stoull(s[1]);
      } else if (r.type == "VMDESCRIPTION") {
        if (std::regex_search(rest, s, len_re)) r.len = std::stoull(s[1]);
      }
      w.records.push_back(std::move(r));
    } else if (line.rfind("section type counts:", 0) == 0) {
      w.type_counts = parse_dict(line);
    } else if (std::regex_match(line, m, blocks_re)) {
      const std::string list = m[1];
      for (std::sregex_iterator it(list.begin(), list.end(), block_entry_re), end; it != end; ++it) {
        w.blocks.emplace_back((*it)[1], std::stoull((*it)[2]));
      }
    } else if (std::regex_match(line, m, totals_re)) {
      const std::string list = m[1];
      for (std::sregex_iterator it(list.begin(), list.end(), total_kv_re), end; it != end; ++it) {
        w.totals[(*it)[1]] = std::stoull((*it)[2]);
      }
    } else if (std::regex_match(line, m, block_counts_re)) {
      w.block_counts[m[1]] = parse_dict(m[2]);
    } else if (std::regex_search(line, m, decoded_re)) {
      w.block_sha256[m[1]] = m[2];
    }
  }
  return w;
}

}  // namespace ferry::stream::test
