// `ferry demo`, `ferry send` and `ferry recv` as a user runs them: exit statuses, the result
// line, --json and --report, and the errors for bad options and unreachable peers. Sizes are
// small so this runs in seconds, also under ASan.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/tools/cli_run.h"

namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

using ferry::cli_test::Result;
using ferry::cli_test::run;
using ferry::cli_test::slurp;
using ferry::cli_test::TempDir;
using ferry::cli_test::kFerry;

TEST(FerryDemoCli, SmallDemoVerifiesAndWritesJsonAndSvg) {
  TempDir dir;
  const fs::path json = dir.path() / "stats.json", svg = dir.path() / "report.svg";
  auto r = run("demo --size 64M --dirty-rate 16 --quiet --json '" + json.string() +
                   "' --report '" + svg.string() + "'",
               dir);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("verified: destination identical (hash "));
  ASSERT_TRUE(fs::exists(json));
  const auto j = nlohmann::json::parse(slurp(json));
  EXPECT_EQ(j.at("status"), "completed") << j.dump(1);
  ASSERT_TRUE(fs::exists(svg));
  const std::string s = slurp(svg);
  EXPECT_THAT(s, HasSubstr("<svg"));
  EXPECT_THAT(s, HasSubstr("<polyline id=\"remaining\""));
  EXPECT_THAT(s, HasSubstr("</svg>"));
}

TEST(FerryDemoCli, SummaryMentionsTheParts) {
  TempDir dir;
  auto r = run("demo --size 32M --channels 1 --no-xbzrle --lz4 --seed 9", dir);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("dirty tracking: "));
  EXPECT_THAT(r.out, HasSubstr("downtime:"));
  EXPECT_THAT(r.out, HasSubstr("pages:         normal "));
  EXPECT_THAT(r.out, HasSubstr("bulk"));
  // The demo's two devices (tools/ferry/demo_devices.h) travel and load equal on the other side.
  EXPECT_THAT(r.out, HasSubstr("devices:       2 device section(s), "));
  EXPECT_THAT(r.out, HasSubstr("devices:       2 loaded, equal to the seed's state"));
  EXPECT_THAT(r.out, HasSubstr("verified: destination identical"));
}

// Verification is off by default (it costs more than the 2 % the CLI allows its checks): the
// demo still compares the two images afterwards and says the engine's check was off; asked
// for, the engine's digests are compared and the summary shows the blackout they are part of.
TEST(FerryDemoCli, VerifyOffByDefaultAndDigestOnRequest) {
  TempDir dir;
  auto r = run("demo --size 32M --dirty-rate 16", dir);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr(", engine check off)"));
  EXPECT_THAT(r.out, HasSubstr("blackout:      "));
  r = run("demo --size 32M --dirty-rate 16 --verify digest", dir);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr(", engine per-block check passed)"));
  r = run("demo --size 32M --verify sometimes", dir);
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("--verify"));
}

TEST(FerryDemoCli, ExplicitMarksWhenAskedFor) {
  TempDir dir;
  auto r = run("demo --size 32M --dirty-rate 32 --dirty-tracking explicit", dir);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("dirty tracking: explicit-marks (the writer marks what it writes; "
                               "uffd-wp unavailable: not asked for"));
  EXPECT_THAT(r.out, HasSubstr("verified: destination identical"));
}

TEST(FerryDemoCli, HugePagesOverUnixSocket) {
  TempDir dir;
  const fs::path sock = dir.path() / "s";
  auto r = run("demo --size 32M --page-size 2M --quiet --uri unix:" + sock.string(), dir);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("verified: destination identical"));
}

TEST(FerrySendRecvCli, LoopbackPairVerifies) {
  TempDir dir;
  const fs::path rout = dir.path() / "recv.out", rerr = dir.path() / "recv.err";
  // --prealloc: the destination's memory faulted in before it listens (what vs-qemu's
  // `--destination prealloc` runs); the image must arrive the same.
  const std::string cmd = kFerry + " recv --listen tcp:127.0.0.1:0 --size 32M --seed 5 --prealloc 2>'" +
                          rerr.string() + "' | tee '" + rout.string() + "'";
  FILE* recv = ::popen(cmd.c_str(), "r");
  ASSERT_NE(recv, nullptr);
  std::array<char, 256> line{};
  ASSERT_NE(std::fgets(line.data(), line.size(), recv), nullptr) << slurp(rerr);
  std::string first(line.data());
  ASSERT_EQ(first.rfind("listening on tcp:127.0.0.1:", 0), 0u) << first;
  const std::string addr = first.substr(std::string("listening on ").size(),
                                        first.find('\n') - std::string("listening on ").size());
  auto s = run("send --connect " + addr + " --size 32M --seed 5 --channels 2 --verify digest --quiet",
               dir, "send");
  while (std::fgets(line.data(), line.size(), recv) != nullptr) {
  }
  const int st = ::pclose(recv);
  EXPECT_EQ(s.status, 0) << s.out << s.err;
  EXPECT_THAT(s.out, HasSubstr("verified: destination confirmed identical blocks"));
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << slurp(rout) << slurp(rerr);
  EXPECT_THAT(slurp(rout), HasSubstr("verified: destination identical to the source's blocks"));
}

TEST(FerrySendRecvCli, PreallocBeyondMemoryFailsClearly) {
  TempDir dir;
  auto r = run("recv --listen tcp:127.0.0.1:0 --size 4T --prealloc --quiet", dir, "recv");
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("preallocating"));
  EXPECT_THAT(r.err, HasSubstr("MemAvailable"));
  EXPECT_THAT(r.out, Not(HasSubstr("listening on")));
}

TEST(FerrySendRecvCli, SizeMismatchFailsBothSides) {
  TempDir dir;
  const fs::path rerr = dir.path() / "recv.err";
  const std::string cmd =
      kFerry + " recv --listen tcp:127.0.0.1:0 --size 16M --quiet 2>'" + rerr.string() + "'";
  FILE* recv = ::popen(cmd.c_str(), "r");
  ASSERT_NE(recv, nullptr);
  std::array<char, 256> line{};
  ASSERT_NE(std::fgets(line.data(), line.size(), recv), nullptr);
  std::string first(line.data());
  const std::string addr = first.substr(13, first.find('\n') - 13);
  auto s = run("send --connect " + addr + " --size 32M --quiet", dir, "send");
  while (std::fgets(line.data(), line.size(), recv) != nullptr) {
  }
  const int st = ::pclose(recv);
  EXPECT_EQ(s.status, 1) << s.out << s.err;
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1);
  EXPECT_THAT(slurp(rerr), HasSubstr("ferry recv: "));
}

// A stream file: `send` writes it with nobody answering, `recv` loads it later and checks the
// hashes the sender recorded; a missing file is a clear failure.
TEST(FerrySendRecvCli, StreamFileWrittenThenLoadedVerifies) {
  TempDir dir;
  const std::string uri = "file:" + (dir.path() / "snap.fry").string();
  auto s = run("send --connect " + uri + " --size 32M --channels 2 --dirty-rate 16 --verify full "
               "--quiet",
               dir, "send");
  EXPECT_EQ(s.status, 0) << s.out << s.err;
  EXPECT_THAT(s.out, HasSubstr("written: "));
  EXPECT_TRUE(fs::exists(dir.path() / "snap.fry.1"));
  auto r = run("recv --listen " + uri + " --size 32M --quiet", dir, "recv");
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("verified: destination identical to the source's blocks"));
  r = run("recv --listen " + uri + " --size 64M --quiet", dir, "recv");
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("block list mismatch"));
  // Another seed gives other device state: the loaded devices are checked, not just the image.
  r = run("recv --listen " + uri + " --size 32M --seed 2 --quiet", dir, "recv");
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("device state differs from the seed's"));
  r = run("recv --listen file:" + (dir.path() / "none.fry").string() + " --size 32M --quiet", dir,
          "recv");
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("none.fry"));
}

TEST(FerryMigrateCli, BadOptionsAreUsageErrors) {
  TempDir dir;
  for (const char* args : {"demo --size 2X", "demo --size", "demo --page-size 8K",
                           "demo --channels 0", "demo --size 3M --page-size 2M",
                           "demo --dirty-rate -5", "demo --no-such-option", "send --size 1G",
                           "demo --dirty-tracking kvm",
                           "recv --size 1G", "send --connect tcp:127.0.0.1:1 --bandwidth-limit x"}) {
    auto r = run(args, dir);
    EXPECT_EQ(r.status, 2) << args << "\n" << r.out << r.err;
    EXPECT_FALSE(r.err.empty()) << args;
  }
  auto r = run("demo --size 2X", dir);
  EXPECT_THAT(r.err, HasSubstr("unknown unit"));
  r = run("demo --size 3M --page-size 2M", dir);
  EXPECT_THAT(r.err, HasSubstr("not a multiple of the page size"));
}

TEST(FerryMigrateCli, SendToAClosedPortFailsClearly) {
  TempDir dir;
  const fs::path json = dir.path() / "failed.json";
  auto r = run("send --connect tcp:127.0.0.1:1 --size 16M --connect-timeout 0.5 --json '" +
                   json.string() + "'",
               dir);
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("ferry send: cannot connect to tcp:127.0.0.1:1: "));
  EXPECT_THAT(r.err, HasSubstr("refused"));
  ASSERT_TRUE(fs::exists(json));
  const auto j = nlohmann::json::parse(slurp(json));
  EXPECT_EQ(j.at("status"), "failed");
}

TEST(FerryMigrateCli, RecvOnABadAddressFails) {
  TempDir dir;
  auto r = run("recv --listen tcp:256.1.1.1:0 --size 16M", dir);
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("ferry recv: cannot listen on tcp:256.1.1.1:0"));
}

}  // namespace
