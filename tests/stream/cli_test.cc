// `ferry dump` as a user runs it: exit statuses, the summary, --json, --extract-ram and the
// error line format.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "engine/stream/file_io.h"
#include "tests/stream/test_support.h"
#include "tools/ferry/image.h"

namespace ferry::stream {
namespace {

namespace fs = std::filesystem;
using test::run_command;
using test::shell_quote;
using ::testing::HasSubstr;
using ::testing::StartsWith;

const std::string kFerry = FERRY_CLI;

fs::path corpus(const char* rel) { return test::corpus_dir() / rel; }

#define NEED_CORPUS(p)                                                       \
  if (!fs::exists(p)) GTEST_SKIP() << "corpus not found at " << test::corpus_dir()

TEST(FerryDumpCli, SummaryOfACorpusStream) {
  const fs::path mig = corpus("qemu-7.2.22/pc-nodefaults.mig");
  NEED_CORPUS(mig);
  auto r = run_command(kFerry + " dump " + shell_quote(mig.string()));
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_THAT(r.out, HasSubstr("format:    QEMU migration stream, version 3\n"));
  EXPECT_THAT(r.out, HasSubstr("machine:   pc-i440fx-7.2\n"));
  EXPECT_THAT(r.out, HasSubstr("vmdesc:    present at 0x847b8 (98771 bytes of JSON)"));
  EXPECT_THAT(r.out, HasSubstr(
                         "page records: zero=8211 normal=111 xbzrle=0 (named=6 continue=8316) in 3 "
                         "RAM sections\n"));
  EXPECT_THAT(r.out, HasSubstr("device sections: 30 (30 decoded)\n"));
  EXPECT_THAT(r.out, HasSubstr("result:    complete\n"));
}

TEST(FerryDumpCli, XbzrleStreamSummary) {
  const fs::path mig = corpus("qemu-10.0.2/pc-xbzrle.mig");
  NEED_CORPUS(mig);
  auto r = run_command(kFerry + " dump " + shell_quote(mig.string()));
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("page records: zero=7692 normal=1147 xbzrle=9082"));
  EXPECT_THAT(r.out, HasSubstr("in 49 RAM sections"));
  EXPECT_THAT(r.out, HasSubstr("COMMAND"));
}

TEST(FerryDumpCli, TruncatedFileExitsOneWithTheOffset) {
  const fs::path mig = corpus("qemu-7.2.22/pc-nodefaults.mig");
  NEED_CORPUS(mig);
  test::TempDir dir;
  const fs::path cut = dir.path() / "cut.mig";
  auto bytes = read_file(mig);
  std::ofstream(cut, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), 100000);
  auto r = run_command(kFerry + " dump " + shell_quote(cut.string()));
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, StartsWith("ferry dump: " + cut.string() + ": offset 0x"));
  EXPECT_THAT(r.err, HasSubstr("truncated"));
  // What was read before the cut is still reported.
  EXPECT_THAT(r.out, HasSubstr("SECTION_PART"));
  EXPECT_THAT(r.out, HasSubstr("result:    stopped at offset 0x"));
}

TEST(FerryDumpCli, JsonIsAnalyzeMigrationOutput) {
  const fs::path mig = corpus("qemu-10.0.2/pc-defaults.mig");
  NEED_CORPUS(mig);
  auto r = run_command(kFerry + " dump --json " + shell_quote(mig.string()));
  EXPECT_EQ(r.status, 0) << r.err;
  auto want = read_file(fs::path(mig).replace_extension(".state.json"));
  EXPECT_EQ(r.out, std::string(want.begin(), want.end()));
}

TEST(FerryDumpCli, ExtractRamWritesOneFilePerBlock) {
  const fs::path mig = corpus("qemu-10.0.2/pc-defaults.mig");
  NEED_CORPUS(mig);
  test::TempDir dir;
  const fs::path out = dir.path() / "ram";
  auto r = run_command(kFerry + " dump --extract-ram " + shell_quote(out.string()) + " " +
                       shell_quote(mig.string()));
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(fs::file_size(out / "pc.ram.bin"), 32u << 20);
  EXPECT_EQ(fs::file_size(out / "0000:00:02.0_vga.vram.bin"), 16u << 20);
  EXPECT_EQ(fs::file_size(out / "_rom@etc_acpi_tables.bin"), 128u << 10);
  EXPECT_EQ(fs::file_size(out / "_rom@etc_acpi_rsdp.bin"), 4096u);
  EXPECT_THAT(r.out, HasSubstr("/rom@etc/acpi/tables -> "));
  const auto pcram = test::gunzip(fs::path(mig).replace_extension(".pcram.gz"));
  EXPECT_TRUE(read_file(out / "pc.ram.bin") == pcram);
}

TEST(FerryDumpCli, StreamWithoutVmdesc) {
  const fs::path mig = corpus("qemu-7.2.22/pc-novmdesc.mig");
  NEED_CORPUS(mig);
  test::TempDir dir;
  auto r = run_command(kFerry + " dump --extract-ram " + shell_quote(dir.path().string()) + " " +
                       shell_quote(mig.string()));
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, HasSubstr(": offset 0x81572: device section 'timer' (id 0, instance 0)"));
  EXPECT_THAT(r.out, HasSubstr("vmdesc:    absent"));
  EXPECT_THAT(r.out, HasSubstr("RAM blocks: 6, 34086912 bytes"));
  // RAM is still extracted: it is complete before the first device section.
  const auto pmem = test::gunzip(fs::path(mig).replace_extension(".ram.gz"));
  EXPECT_TRUE(read_file(dir.path() / "pc.ram.bin") == pmem);
  // A vmdesc from the same QEMU and device set decodes the rest.
  auto desc = corpus("qemu-7.2.22/pc-nodefaults.desc.json");
  auto r2 = run_command(kFerry + " dump --vmdesc " + shell_quote(desc.string()) + " " +
                        shell_quote(mig.string()));
  EXPECT_EQ(r2.status, 0) << r2.err;
  EXPECT_THAT(r2.out, HasSubstr("device sections: 30 (30 decoded)"));
}

TEST(FerryDumpCli, NotAStream) {
  test::TempDir dir;
  const fs::path f = dir.path() / "x.mig";
  std::ofstream(f) << "hello world";
  auto r = run_command(kFerry + " dump " + shell_quote(f.string()));
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "ferry dump: " + f.string() +
                       ": offset 0x0: not a QEMU or ferry stream (magic 0x68656c6c, expected "
                       "0x5145564d 'QEVM' or 0x46525943 'FRYC')\n");
}

TEST(FerryDumpCli, MissingFile) {
  auto r = run_command(kFerry + " dump /nonexistent/ferry.mig");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "ferry dump: /nonexistent/ferry.mig: No such file or directory\n");
}

// --- ferry's own stream files (`ferry send --connect file:PATH`) ---

// A 2-channel stream of an 8 MiB image written by `ferry send` (a writer dirties it, so pages
// are resent as XBZRLE deltas; send always records the verify hashes), and the image hash at
// switchover that send printed.
struct FerryStream {
  test::TempDir dir;
  fs::path path = dir.path() / "s.fry";
  std::string source_hash;
  FerryStream() {
    auto r = run_command(kFerry + " send --connect " + shell_quote("file:" + path.string()) +
                         " --size 8M --channels 2 --dirty-rate 16 --verify digest -q");
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    const std::string key = "source image hash ";
    if (auto at = r.out.find(key); at != std::string::npos) {
      source_hash = r.out.substr(at + key.size(), 16);
    }
    EXPECT_NE(source_hash, "") << r.out;
  }
};

// N from the summary's "devices:   N (M decoded)" line.
size_t device_count(const std::string& summary) {
  const std::string key = "\ndevices:   ";
  const auto at = summary.find(key);
  EXPECT_NE(at, std::string::npos) << summary;
  return at == std::string::npos ? 0 : std::stoul(summary.substr(at + key.size()));
}

TEST(FerryDumpCli, FerryStreamSummary) {
  FerryStream s;
  auto r = run_command(kFerry + " dump " + shell_quote(s.path.string()));
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_THAT(r.out, StartsWith("file:      " + s.path.string() + " ("));
  EXPECT_THAT(r.out, HasSubstr("format:    ferry stream file, wire version 2, handshake version 1\n"));
  EXPECT_THAT(r.out, HasSubstr(", 2 channels, batches of up to 128 pages, flags: verify\n"));
  EXPECT_THAT(r.out, HasSubstr(s.path.string() + ".1 "));
  EXPECT_THAT(r.out, HasSubstr("RAM blocks: 1, 8388608 bytes\n"));
  EXPECT_THAT(r.out, HasSubstr("  pc.ram "));
  EXPECT_THAT(r.out, HasSubstr("(the last one with the guest stopped)"));
  EXPECT_THAT(r.out, HasSubstr("  total  "));
  // However many devices `ferry send` registers, each is decoded.
  const size_t n = device_count(r.out);
  EXPECT_THAT(r.out, HasSubstr("devices:   " + std::to_string(n) + " (" + std::to_string(n) +
                               " decoded)"));
  EXPECT_THAT(r.out, HasSubstr("completion: COMPLETE: "));
  EXPECT_THAT(r.out, HasSubstr("verify:    HASHES for 1 block: the reconstructed RAM matches them\n"));
  EXPECT_THAT(r.out, HasSubstr("result:    complete\n"));
}

TEST(FerryDumpCli, FerryStreamJsonAndExtractRam) {
  FerryStream s;
  // The device state: one "idstr (section id)" entry per device the summary lists.
  auto r = run_command(kFerry + " dump " + shell_quote(s.path.string()));
  const size_t devices = device_count(r.out);
  r = run_command(kFerry + " dump --json " + shell_quote(s.path.string()));
  EXPECT_EQ(r.status, 0) << r.err;
  const auto state = nlohmann::json::parse(r.out);
  ASSERT_TRUE(state.is_object());
  EXPECT_EQ(state.size(), devices);
  for (const auto& [key, value] : state.items()) {
    EXPECT_THAT(key, ::testing::MatchesRegex(".+ \\([0-9]+\\)"));
    EXPECT_TRUE(value.is_object()) << key;
  }

  const fs::path out = s.dir.path() / "ram";
  r = run_command(kFerry + " dump --extract-ram " + shell_quote(out.string()) + " " +
                  shell_quote(s.path.string()));
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("extracted RAM blocks:\n  pc.ram -> " + (out / "pc.ram.bin").string()));
  const auto ram = read_file(out / "pc.ram.bin");
  ASSERT_EQ(ram.size(), 8u << 20);
  // The image `ferry send` had at switchover, XBZRLE deltas applied to the right pages.
  EXPECT_EQ(cli::hash_hex(cli::image_hash(ram.data(), ram.size())), s.source_hash);
}

TEST(FerryDumpCli, FerryStreamTruncatedExitsOneWithTheOffset) {
  FerryStream s;
  const fs::path cut = s.dir.path() / "cut.fry";
  const auto ch0 = read_file(s.path), ch1 = read_file(s.path.string() + ".1");
  std::ofstream(cut, std::ios::binary).write(reinterpret_cast<const char*>(ch0.data()),
                                             static_cast<std::streamsize>(ch0.size()));
  // Channel 1 cut in the middle: the error names that file.
  std::ofstream(cut.string() + ".1", std::ios::binary)
      .write(reinterpret_cast<const char*>(ch1.data()), static_cast<std::streamsize>(ch1.size() / 2));
  auto r = run_command(kFerry + " dump " + shell_quote(cut.string()));
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, StartsWith("ferry dump: " + cut.string() + ".1: offset 0x"));
  EXPECT_THAT(r.err, HasSubstr(": truncated: channel 1"));
  EXPECT_THAT(r.out, HasSubstr("result:    stopped at " + cut.string() + ".1 offset 0x"));

  // Channel 0 cut: the error names it; what came before is still reported.
  std::ofstream(cut, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(ch0.data()), static_cast<std::streamsize>(ch0.size() - 30));
  std::ofstream(cut.string() + ".1", std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(ch1.data()), static_cast<std::streamsize>(ch1.size()));
  r = run_command(kFerry + " dump " + shell_quote(cut.string()));
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, StartsWith("ferry dump: " + cut.string() + ": offset 0x"));
  EXPECT_THAT(r.err, HasSubstr("truncated"));
  EXPECT_THAT(r.out, HasSubstr("completion: COMPLETE: "));

  // A missing companion file is named.
  fs::remove(cut.string() + ".1");
  r = run_command(kFerry + " dump " + shell_quote(cut.string()));
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "ferry dump: " + cut.string() + ": offset 0x14: channel 1 of 2 is missing: "
                   "cannot read " + cut.string() + ".1: No such file or directory\n");
}

TEST(FerryDumpCli, UsageErrorsExitTwo) {
  EXPECT_EQ(run_command(kFerry).status, 2);
  EXPECT_EQ(run_command(kFerry + " dump").status, 2);
  EXPECT_EQ(run_command(kFerry + " dump --bogus x").status, 2);
  EXPECT_EQ(run_command(kFerry + " frobnicate").status, 2);
  EXPECT_EQ(run_command(kFerry + " dump --help").status, 0);
}

}  // namespace
}  // namespace ferry::stream
