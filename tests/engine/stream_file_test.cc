// Migration into a stream file (file: transport, one way) and back out of it: the live precopy
// with a concurrent writer is written without any answer from a destination, and loading the
// file later gives the source's memory at switchover, checked against the hashes in the file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "ferry/migration.h"
#include "tests/engine/migration_test_util.h"
#include "transports/file/file_transport.h"

namespace ferry {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kSize = 8 << 20;

struct TempStream {
  std::string path = "/tmp/ferry-stream-file-test-" + std::to_string(getpid()) + "-" +
                     std::to_string(counter()++) + ".fry";
  uint32_t channels = 0;
  ~TempStream() {
    for (uint32_t i = 0; i < std::max(channels, 1u); ++i) {
      std::remove(transport::file::channel_path(path, i).c_str());
    }
  }
  std::string uri() const { return "file:" + path; }
  static int& counter() {
    static int n = 0;
    return n;
  }
};

// Writes a live migration of `src` (a writer dirtying it until the guest stops, unless
// `idle`) to `out`.
MigrationStats write_stream(TempStream& out, testing::GuardedMem& src, uint32_t channels,
                            bool verify, std::vector<uint8_t>* at_switchover, bool idle = false) {
  out.channels = channels;
  ExplicitMarkSource marks(kSize / kPage);
  std::vector<std::unique_ptr<DirtySource>> sources;
  sources.push_back(std::make_unique<testing::DirtySourceProxy>(&marks));
  testing::GuestWriter writer(src.data(), kSize, kPage, &marks, 17);
  MigrationConfig cfg;
  cfg.xbzrle = true;  // resent pages go as deltas: the loader must apply them to what it loaded
  cfg.max_iterations = 4;
  cfg.downtime_limit = std::chrono::milliseconds(0);
  cfg.verify = verify;
  MigrationHooks h;
  h.stop_guest = [&] {
    // Resent pages are what XBZRLE encodes: on a busy machine a starved writer may not have
    // written anything yet when a fast bulk pass converges, so let it write some first.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!idle && writer.writes() < 2000 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    writer.stop();
    at_switchover->assign(src.data(), src.data() + kSize);
  };
  // XBZRLE caches a page when it is sent again and sends a delta from its third sending on
  // (none in the bulk pass): make sure every live pass has fresh writes behind it, or a
  // starved writer on a busy machine leaves no page dirty twice.
  uint64_t seen = 0;
  h.on_iteration = [&](const IterationStats& is) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!idle && !is.final_pass && writer.writes() < seen + 500 &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    seen = writer.writes();
  };
  transport::Options o;
  o.channels = channels;
  auto ch = transport::connect(out.uri(), o);
  MigrationSource source({RamBlock{"ram0", src.data(), kSize, kPage}}, std::move(sources), cfg,
                         std::move(h));
  if (!idle) writer.start();
  return source.run(std::move(ch));
}

DestinationStats load_stream(const TempStream& in, testing::GuardedMem& dst) {
  transport::Options o;
  o.channels = 0;  // as many as the file says
  auto listener = transport::listen(in.uri(), o);
  MigrationDestination d({RamBlock{"ram0", dst.data(), kSize, kPage}});
  return d.run(listener->accept());
}

class StreamFile : public ::testing::TestWithParam<uint32_t> {};

TEST_P(StreamFile, LiveWriteThenLoadGivesTheSwitchoverImageVerified) {
  TempStream file;
  testing::GuardedMem src(kSize), dst(kSize);
  testing::fill_guest(src.data(), kSize, kPage, 41);
  testing::fill_guest(dst.data(), kSize, kPage, 42);  // the loader starts from garbage
  std::vector<uint8_t> image;
  const MigrationStats s = write_stream(file, src, GetParam(), true, &image);
  EXPECT_EQ(s.status, "completed");
  EXPECT_FALSE(s.verified);  // nobody answered; the reader verifies
  EXPECT_EQ(s.placement, "stream");
  EXPECT_TRUE(s.one_way);
  ASSERT_EQ(image.size(), kSize);

  const DestinationStats d = load_stream(file, dst);
  EXPECT_TRUE(d.verified);
  EXPECT_EQ(d.pages.total(), s.pages.total());
  EXPECT_EQ(d.iterations, s.iterations.size());
  EXPECT_EQ(testing::first_diff_page(image.data(), dst.data(), kSize, kPage), -1);
  EXPECT_TRUE(dst.canaries_intact());
  EXPECT_GT(s.pages.xbzrle, 0u) << "no delta was exercised";
}

INSTANTIATE_TEST_SUITE_P(Channels, StreamFile, ::testing::Values(1u, 2u),
                         [](const auto& info) { return std::to_string(info.param) + "ch"; });

TEST(StreamFileDamage, ChangedPageBytesFailTheRecordedHashes) {
  TempStream file;
  testing::GuardedMem src(kSize), dst(kSize);
  testing::fill_guest(src.data(), kSize, kPage, 43);
  std::vector<uint8_t> image;
  // An idle guest: every page is sent once, so a changed page byte cannot be overwritten by a
  // later copy of the page (with a writer it could, and the image would rightly still match).
  write_stream(file, src, 1, true, &image, /*idle=*/true);
  // Page payloads carry no checksum of their own (they go straight into guest memory): flip
  // one non-zero byte in the middle of the file; in a header or records it fails their
  // checksums, in a page it fails the recorded hashes.
  const auto size = std::filesystem::file_size(file.path);
  {
    std::fstream f(file.path, std::ios::in | std::ios::out | std::ios::binary);
    for (auto off = static_cast<std::streamoff>(size / 2);; off += 1) {
      f.seekg(off);
      char c = 0;
      f.read(&c, 1);
      if (c == 0) continue;  // a zero byte may be a header's padding; find page bytes
      c = static_cast<char>(c ^ 0x40);
      f.seekp(off);
      f.write(&c, 1);
      break;
    }
  }
  std::string err;
  try {
    load_stream(file, dst);
  } catch (const MigrationError& e) {
    err = e.what();
  }
  EXPECT_NE(err, "") << "a damaged stream loaded as if nothing happened";
  std::printf("[ damage   ] %s\n", err.c_str());
}

TEST(StreamFileDamage, WithoutVerifyTheReaderDoesNotClaimIt) {
  TempStream file;
  testing::GuardedMem src(kSize), dst(kSize);
  testing::fill_guest(src.data(), kSize, kPage, 44);
  std::vector<uint8_t> image;
  write_stream(file, src, 1, false, &image);
  const DestinationStats d = load_stream(file, dst);
  EXPECT_FALSE(d.verified);
  EXPECT_EQ(testing::first_diff_page(image.data(), dst.data(), kSize, kPage), -1);
}

TEST(StreamFileDamage, TruncatedStreamIsAnErrorNamingTheFile) {
  TempStream file;
  testing::GuardedMem src(kSize), dst(kSize);
  testing::fill_guest(src.data(), kSize, kPage, 45);
  std::vector<uint8_t> image;
  write_stream(file, src, 1, true, &image);
  std::filesystem::resize_file(file.path, std::filesystem::file_size(file.path) * 2 / 3);
  std::string err;
  try {
    load_stream(file, dst);
  } catch (const MigrationError& e) {
    err = e.what();
  }
  EXPECT_NE(err.find(file.path), std::string::npos) << err;
  EXPECT_NE(err.find("end of file"), std::string::npos) << err;
}

}  // namespace
}  // namespace ferry
