// ferry's own stream files read by engine/stream (what `ferry dump` does with them): streams
// written by the real engine (MigrationSource into file: channels, a guest writer running so
// pages are resent as XBZRLE deltas) must give the engine's page counts and, byte for byte, the
// source image at switchover; device sections decode as they do from a QEMU stream. Damaged
// copies (truncated at many offsets, bit-flipped with fixed seeds, a missing or foreign
// companion file, wrong magic, a 'placed' record) end in an error naming the file and offset,
// never a crash (the FERRY_SANITIZE build runs them too, with fewer cuts and seeds) and never a
// wrong image reported as complete.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "engine/device/device_state.h"
#include "ferry/migration.h"
#include "engine/ram/wire_format.h"
#include "engine/stream/file_io.h"
#include "engine/stream/stream_format.h"
#include "engine/stream/summary.h"
#include "ferry/vmstate.h"
#include "tests/engine/migration_test_util.h"
#include "tests/stream/test_support.h"
#include "transports/file/file_transport.h"
#include "transports/handshake.h"

namespace ferry::stream {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr size_t kPage = 4096;

#ifdef FERRY_SANITIZE
constexpr int kFlipSeeds = 120;
constexpr int kEvenCuts = 120;
#else
constexpr int kFlipSeeds = 400;
constexpr int kEvenCuts = 400;
#endif

// --- a device, so the streams carry DEVICE and VMDESC packets ---

struct Clock {
  uint64_t ticks;
  int32_t offset;
  bool enabled;
  uint16_t regs[4];
  uint8_t mac[6];
  uint32_t extra;  // subsection "clock/extra" when non-zero
};
struct Uart {
  uint8_t lcr;
  uint32_t divisor;
};

bool clock_extra_needed(void* o) { return static_cast<Clock*>(o)->extra != 0; }
constexpr FerryVmsField kClockExtraFields[] = {FERRY_VMS_UINT32(Clock, extra),
                                               FERRY_VMS_END_OF_FIELDS()};
const FerryVmsDescription kClockExtraVmsd = {"clock/extra", 1, 1, &clock_extra_needed, nullptr,
                                             nullptr, kClockExtraFields, nullptr};
const FerryVmsDescription* const kClockSubs[] = {&kClockExtraVmsd, nullptr};
constexpr FerryVmsField kClockFields[] = {
    FERRY_VMS_UINT64(Clock, ticks), FERRY_VMS_INT32(Clock, offset), FERRY_VMS_BOOL(Clock, enabled),
    FERRY_VMS_ARRAY(Clock, regs),   FERRY_VMS_BUFFER(Clock, mac),   FERRY_VMS_END_OF_FIELDS()};
const FerryVmsDescription kClockVmsd = {"clock", 3, 1, nullptr, nullptr, nullptr, kClockFields,
                                        kClockSubs};
constexpr FerryVmsField kUartFields[] = {FERRY_VMS_UINT8(Uart, lcr), FERRY_VMS_UINT32(Uart, divisor),
                                         FERRY_VMS_END_OF_FIELDS()};
const FerryVmsDescription kUartVmsd = {"uart", 1, 1, nullptr, nullptr, nullptr, kUartFields,
                                       nullptr};

struct DeviceSet {
  Clock clock{0x123456789a, -7, true, {1, 2, 3, 0xffff}, {0x52, 0x54, 0, 0x12, 0x34, 0x56}, 0x99};
  Uart uart{0x03, 115200};
  std::vector<Device> list() {
    return {{"clock", 0, &kClockVmsd, &clock}, {"uart", 1, &kUartVmsd, &uart}};
  }
};

// --- writing streams with the engine ---

struct Spec {
  uint32_t channels = 1;
  bool verify = true;
  bool xbzrle = true;
  bool lz4 = false;
  size_t size = 8 << 20;
  bool second_block = false;  // "vga.vram", 1 MiB nobody writes
  bool devices = false;
  uint32_t seed = 41;
};

struct Written {
  fs::path path;
  MigrationStats stats;
  std::vector<uint8_t> image;   // block 0 at switchover (stop_guest)
  std::vector<uint8_t> image2;  // the second block, if any
};

Written write_stream(const fs::path& path, const Spec& spec) {
  Written w;
  w.path = path;
  testing::GuardedMem src(spec.size), vram(1 << 20);
  testing::fill_guest(src.data(), spec.size, kPage, spec.seed);
  testing::fill_guest(vram.data(), vram.size(), kPage, spec.seed + 1);
  ExplicitMarkSource marks(spec.size / kPage), vram_marks(vram.size() / kPage);
  std::vector<std::unique_ptr<DirtySource>> sources;
  sources.push_back(std::make_unique<testing::DirtySourceProxy>(&marks));
  std::vector<ferry::RamBlock> blocks{ferry::RamBlock{"ram0", src.data(), spec.size, kPage}};
  if (spec.second_block) {
    sources.push_back(std::make_unique<testing::DirtySourceProxy>(&vram_marks));
    blocks.push_back(ferry::RamBlock{"vga.vram", vram.data(), vram.size(), kPage});
  }
  testing::GuestWriter writer(src.data(), spec.size, kPage, &marks, spec.seed + 17);
  MigrationConfig cfg;
  cfg.xbzrle = spec.xbzrle;
  cfg.lz4 = spec.lz4;
  cfg.max_iterations = 4;
  cfg.downtime_limit = std::chrono::milliseconds(0);
  cfg.verify = spec.verify;
  MigrationHooks h;
  h.stop_guest = [&] {
    // Some writes during the migration whatever the scheduling (a starved writer thread made
    // streams without a single resent page): they are resent by the final pass, as deltas.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (writer.writes() < 2000 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    writer.stop();
    w.image.assign(src.data(), src.data() + spec.size);
    if (spec.second_block) w.image2.assign(vram.data(), vram.data() + vram.size());
  };
  // XBZRLE caches a page when it is sent again and sends deltas from its third sending on (none
  // in the bulk pass): every live pass gets fresh writes behind it, so pages are resent twice.
  uint64_t seen = 0;
  h.on_iteration = [&](const IterationStats& is) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!is.final_pass && writer.writes() < seen + 500 &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    seen = writer.writes();
  };
  transport::Options o;
  o.channels = spec.channels;
  auto ch = transport::connect("file:" + path.string(), o);
  MigrationSource source(std::move(blocks), std::move(sources), cfg, std::move(h));
  DeviceSet devs;
  if (spec.devices) source.set_devices(devs.list());
  writer.start();
  w.stats = source.run(std::move(ch));
  return w;
}

ReadOptions limited() {
  ReadOptions o;
  o.max_ram_bytes = 64ull << 20;  // a flipped HELLO size must not make a test allocate more
  return o;
}

// What `ferry dump PATH` reads.
StreamInfo read_path(const fs::path& p, ReadOptions o = limited()) {
  const auto bytes = read_file(p);
  o.channel_file = channel_files(p);
  return read_stream(bytes, o);
}

std::string summary(const fs::path& p, const StreamInfo& info) {
  std::ostringstream s;
  print_summary(s, p.string(), info);
  return s.str();
}

fs::path companion(const fs::path& p, uint32_t i) {
  return transport::file::channel_path(p.string(), i);
}

void write_bytes(const fs::path& p, const std::vector<uint8_t>& b) {
  std::ofstream(p, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// The packets of one channel file as the writer framed them (test-side, from the header
// fields only): for cut points and targeted damage.
struct PacketAt {
  uint64_t offset;
  wire::Header h;
  uint32_t iteration;  // SYNCs seen before it on this channel
};
std::vector<PacketAt> packets_of(const std::vector<uint8_t>& f, uint32_t channel) {
  std::vector<PacketAt> out;
  size_t at = transport::handshake::kSize;
  uint32_t iteration = 0;
  for (uint64_t n = 1; at + wire::kHeaderSize <= f.size(); ++n) {
    const wire::Header h = wire::decode_header(f.data() + at, channel, n);
    out.push_back({at, h, iteration});
    if (h.type == wire::PacketType::kSync) ++iteration;
    at += wire::kHeaderSize + (h.type == wire::PacketType::kData
                                   ? size_t{h.records} * wire::kRecordSize + h.payload
                                   : h.payload);
  }
  EXPECT_EQ(at, f.size()) << "channel " << channel << " framing";
  return out;
}

bool same_pages(const std::vector<uint8_t>& want, const RamBlock& got) {
  return want.size() == got.size() && std::memcmp(want.data(), got.bytes().data(), want.size()) == 0;
}

// --- engine-written streams, read back ---

struct Param {
  uint32_t channels;
  bool verify;
};

class FerryStreamRead : public ::testing::TestWithParam<Param> {};

TEST_P(FerryStreamRead, CountsAndImageMatchTheEngine) {
  test::TempDir dir;
  Spec spec;
  spec.channels = GetParam().channels;
  spec.verify = GetParam().verify;
  const Written w = write_stream(dir.path() / "s.fry", spec);
  ASSERT_EQ(w.stats.status, "completed");
  EXPECT_GT(w.stats.pages.xbzrle, 0u) << "no delta was exercised";

  const StreamInfo info = read_path(w.path);
  ASSERT_FALSE(info.error) << info.error->message;
  EXPECT_EQ(info.format, "ferry");
  ASSERT_TRUE(info.ferry);
  const FerryStreamInfo& f = *info.ferry;
  EXPECT_EQ(f.channels, spec.channels);
  ASSERT_EQ(f.files.size(), spec.channels);
  for (uint32_t i = 1; i < spec.channels; ++i) EXPECT_EQ(f.files[i].name, companion(w.path, i));
  EXPECT_NE(f.session_id, 0u);
  EXPECT_EQ(f.verify_announced, spec.verify);
  ASSERT_EQ(f.blocks.size(), 1u);
  EXPECT_EQ(f.blocks[0].name, "ram0");
  EXPECT_EQ(f.blocks[0].size, spec.size);
  EXPECT_EQ(f.blocks[0].page_size, kPage);

  // Per iteration, by kind, exactly what the engine says it sent.
  ASSERT_EQ(f.iterations.size(), w.stats.iterations.size());
  for (size_t i = 0; i < f.iterations.size(); ++i) {
    const auto& got = f.iterations[i];
    const auto& want = w.stats.iterations[i];
    SCOPED_TRACE("iteration " + std::to_string(i));
    EXPECT_TRUE(got.synced);
    EXPECT_EQ(got.iteration, want.iteration);
    EXPECT_EQ(got.final_pass, want.final_pass);
    EXPECT_EQ(got.pages.normal, want.pages.normal);
    EXPECT_EQ(got.pages.zero, want.pages.zero);
    EXPECT_EQ(got.pages.xbzrle, want.pages.xbzrle);
    EXPECT_EQ(got.pages.lz4, want.pages.lz4);
    EXPECT_EQ(got.bytes, want.wire_bytes);  // DATA and SYNC packets, headers included
  }
  EXPECT_TRUE(f.final_sync);
  const PageCounts total = info.ram.total_counts();
  EXPECT_EQ(total.normal, w.stats.pages.normal);
  EXPECT_EQ(total.zero, w.stats.pages.zero);
  EXPECT_EQ(total.xbzrle, w.stats.pages.xbzrle);
  EXPECT_EQ(total.lz4, w.stats.pages.lz4);
  EXPECT_TRUE(f.complete);
  EXPECT_EQ(f.complete_counts.total(), w.stats.pages.total());
  EXPECT_TRUE(f.done);
  EXPECT_EQ(f.devices, 0u);
  EXPECT_EQ(info.state, nlohmann::ordered_json::object());

  // The image at switchover, byte for byte: XBZRLE deltas met the right previous content.
  ASSERT_EQ(info.ram.blocks().size(), 1u);
  EXPECT_TRUE(same_pages(w.image, *info.ram.blocks()[0]));

  EXPECT_EQ(f.hashes, spec.verify);
  EXPECT_EQ(f.hashes_match, spec.verify);
  const std::string s = summary(w.path, info);
  EXPECT_THAT(s, HasSubstr("format:    ferry stream file, wire version 2"));
  EXPECT_THAT(s, HasSubstr(std::to_string(spec.channels) +
                           (spec.channels == 1 ? " channel," : " channels,")));
  char line[128];
  std::snprintf(line, sizeof line, "  total     %10llu %9llu %9llu %9llu %9llu",
                static_cast<unsigned long long>(total.total()),
                static_cast<unsigned long long>(total.normal),
                static_cast<unsigned long long>(total.zero),
                static_cast<unsigned long long>(total.xbzrle),
                static_cast<unsigned long long>(total.lz4));
  EXPECT_THAT(s, HasSubstr(line));
  EXPECT_THAT(s, HasSubstr(spec.verify ? "HASHES for 1 block: the reconstructed RAM matches them"
                                       : "no hashes in the stream (written without verify)"));
  EXPECT_THAT(s, HasSubstr("result:    complete\n"));
}

INSTANTIATE_TEST_SUITE_P(
    Streams, FerryStreamRead,
    ::testing::Values(Param{1, true}, Param{2, true}, Param{1, false}, Param{2, false}),
    [](const auto& info) {
      return std::to_string(info.param.channels) + "ch" + (info.param.verify ? "Verify" : "");
    });

TEST(FerryStream, Lz4AndTwoBlocks) {
  test::TempDir dir;
  Spec spec;
  spec.channels = 2;
  spec.lz4 = true;
  spec.second_block = true;
  const Written w = write_stream(dir.path() / "lz4.fry", spec);
  ASSERT_GT(w.stats.pages.lz4, 0u);
  const StreamInfo info = read_path(w.path);
  ASSERT_FALSE(info.error) << info.error->message;
  EXPECT_EQ(info.ram.total_counts().lz4, w.stats.pages.lz4);
  ASSERT_EQ(info.ram.blocks().size(), 2u);
  EXPECT_EQ(info.ram.blocks()[1]->name(), "vga.vram");
  EXPECT_TRUE(same_pages(w.image, *info.ram.blocks()[0]));
  EXPECT_TRUE(same_pages(w.image2, *info.ram.blocks()[1]));
  EXPECT_TRUE(info.ferry->hashes_match);
  EXPECT_EQ(info.ferry->recorded_hashes.size(), 2u);
}

TEST(FerryStream, DevicesDecodeAsFromAQemuStream) {
  test::TempDir dir;
  Spec spec;
  spec.channels = 2;
  spec.devices = true;
  const Written w = write_stream(dir.path() / "dev.fry", spec);
  ASSERT_EQ(w.stats.devices, 2u);
  const StreamInfo info = read_path(w.path);
  ASSERT_FALSE(info.error) << info.error->message;
  EXPECT_EQ(info.ferry->devices, 2u);
  EXPECT_TRUE(info.vmdesc_in_stream);
  EXPECT_EQ(info.vmdesc_source, "the stream");
  ASSERT_EQ(info.records.size(), 2u);
  EXPECT_EQ(info.records[0].type, RecordType::kSectionFull);
  EXPECT_EQ(info.records[0].idstr, "clock");
  EXPECT_EQ(info.records[0].version_id, 3u);
  EXPECT_EQ(info.records[1].idstr, "uart");
  EXPECT_EQ(info.records[1].instance_id, 1u);
  EXPECT_TRUE(info.records[0].decoded && info.records[1].decoded);

  // The same sections as a QEMU stream (engine/device's qemu_device_stream) decode to the same
  // JSON: `ferry dump --json` has one shape for both formats.
  DeviceSet devs;
  const auto saved = device::save_devices(devs.list(), kPage);
  const StreamInfo qemu = read_stream(device::qemu_device_stream(saved));
  ASSERT_FALSE(qemu.error) << qemu.error->message;
  EXPECT_EQ(info.state, qemu.state);
  ASSERT_TRUE(info.state.contains("clock (0)"));
  EXPECT_EQ(info.state["clock (0)"]["ticks"], "0x000000123456789a");
  EXPECT_EQ(info.state["clock (0)"]["offset"], "0xfffffff9 (-7)");
  EXPECT_EQ(info.state["clock (0)"]["clock/extra"]["extra"], "0x00000099");
  EXPECT_EQ(info.state["uart (1)"]["divisor"], "0x0001c200");
  EXPECT_THAT(summary(w.path, info), HasSubstr("devices:   2 (2 decoded)"));
  EXPECT_TRUE(same_pages(w.image, *info.ram.blocks()[0]));

  // A vmdesc given by the caller replaces the stream's (here: one that lacks "uart").
  ReadOptions o = limited();
  o.vmdesc_json = R"({"page_size": 4096, "devices": []})";
  const StreamInfo without = read_path(w.path, o);
  ASSERT_TRUE(without.error);
  EXPECT_THAT(without.error->message, HasSubstr("device section 'clock' (id 0, instance 0): no "
                                                "entry for it in the vmdesc (--vmdesc)"));
  EXPECT_TRUE(same_pages(w.image, *without.ram.blocks()[0])) << "RAM is complete before devices";
}

// --- damaged streams ---

// One small 2-channel stream with devices and verify, written once for all damage tests.
class FerryStreamDamage : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir;
    Spec spec;
    spec.channels = 2;
    spec.size = 1 << 20;
    spec.devices = true;
    written_ = new Written(write_stream(dir_->path() / "good.fry", spec));
    files_ = new std::vector<std::vector<uint8_t>>{read_file(written_->path),
                                                   read_file(companion(written_->path, 1))};
  }
  static void TearDownTestSuite() {
    delete files_;
    delete written_;
    delete dir_;
  }

  // Writes a copy with channel `ch` replaced by `bytes`, returns channel 0's path.
  fs::path variant(uint32_t ch, const std::vector<uint8_t>& bytes) {
    const fs::path p = dir_->path() / ("v" + std::to_string(n_++) + ".fry");
    write_bytes(p, ch == 0 ? bytes : (*files_)[0]);
    write_bytes(companion(p, 1), ch == 1 ? bytes : (*files_)[1]);
    return p;
  }

  // Either an error naming the right file with an offset inside it, or a complete read whose
  // RAM and devices are exactly the source's (a damaged stream is never passed off as good).
  void check(const fs::path& p, uint32_t ch, size_t len, const std::string& what) {
    const StreamInfo info = read_path(p);
    if (info.error) {
      // Damaged page bytes on channel 1 show up in channel 0's HASHES.
      if (ch == 0) {
        EXPECT_EQ(info.error->file, "") << what;
      }
      if (info.error->file.empty()) {
        EXPECT_LE(info.error->offset, (*files_)[0].size()) << what << ": " << info.error->message;
      } else {
        EXPECT_EQ(info.error->file, companion(p, 1).string()) << what;
        EXPECT_LE(info.error->offset, len) << what << ": " << info.error->message;
      }
      EXPECT_FALSE(info.error->message.empty()) << what;
      ++errors_;
      return;
    }
    ASSERT_EQ(info.ram.blocks().size(), 1u) << what;
    EXPECT_TRUE(same_pages(written_->image, *info.ram.blocks()[0])) << what << ": wrong RAM";
    EXPECT_TRUE(info.ferry->hashes_match) << what;
    EXPECT_EQ(info.state.size(), 2u) << what;
  }

  static test::TempDir* dir_;
  static Written* written_;
  static std::vector<std::vector<uint8_t>>* files_;
  int n_ = 0;
  int errors_ = 0;
};
test::TempDir* FerryStreamDamage::dir_ = nullptr;
Written* FerryStreamDamage::written_ = nullptr;
std::vector<std::vector<uint8_t>>* FerryStreamDamage::files_ = nullptr;

TEST_F(FerryStreamDamage, TheUndamagedCopyReads) {
  const StreamInfo info = read_path(written_->path);
  ASSERT_FALSE(info.error) << info.error->message;
  EXPECT_TRUE(info.ferry->hashes_match);
  EXPECT_EQ(info.ferry->devices, 2u);
}

TEST_F(FerryStreamDamage, TruncatedAtManyOffsetsFailsWithTheOffset) {
  int cuts_total = 0;
  for (uint32_t ch = 0; ch < 2; ++ch) {
    const auto& full = (*files_)[ch];
    std::set<size_t> cuts;
    for (size_t i = 0; i < 80; ++i) cuts.insert(i);
    for (const PacketAt& p : packets_of(full, ch)) {
      for (long d : {-1L, 0L, 1L, 5L, 39L, 40L, 41L, 45L, 52L}) {
        const long c = static_cast<long>(p.offset) + d;
        if (c >= 0 && static_cast<size_t>(c) < full.size()) cuts.insert(static_cast<size_t>(c));
      }
    }
    for (int i = 0; i < kEvenCuts; ++i) cuts.insert(full.size() * i / kEvenCuts);
    for (size_t i = 1; i < 16; ++i) cuts.insert(full.size() - i);
    const fs::path p = dir_->path() / "cut.fry";
    write_bytes(ch == 0 ? companion(p, 1) : p, (*files_)[1 - ch]);
    for (size_t n : cuts) {
      std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<long>(n));
      write_bytes(ch == 0 ? p : companion(p, 1), cut);
      const StreamInfo info = read_path(p);
      ASSERT_TRUE(info.error) << "channel " << ch << " cut at " << n << " read without error";
      EXPECT_EQ(info.error->file, ch == 0 ? "" : companion(p, 1).string());
      EXPECT_LE(info.error->offset, n) << info.error->message;
      if (n >= 64) {
        EXPECT_THAT(info.error->message, HasSubstr("truncated")) << "cut at " << n;
      }
    }
    cuts_total += static_cast<int>(cuts.size());
  }
  RecordProperty("truncations", cuts_total);
}

TEST_F(FerryStreamDamage, BitFlipsNeverCrashNorPassOffWrongRam) {
  for (int seed = 0; seed < kFlipSeeds; ++seed) {
    std::mt19937_64 rng(static_cast<uint64_t>(seed) * 7919 + 1);
    const uint32_t ch = static_cast<uint32_t>(rng() % 2);
    std::vector<uint8_t> bytes = (*files_)[ch];
    // Half the flips in the first 4 KiB (handshake, HELLO, first headers and records), half
    // anywhere (mostly page payloads).
    const size_t span = rng() % 2 ? std::min<size_t>(bytes.size(), 4096) : bytes.size();
    const size_t at = rng() % span;
    bytes[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
    check(variant(ch, bytes), ch, bytes.size(),
          "seed " + std::to_string(seed) + ": channel " + std::to_string(ch) + " byte " +
              std::to_string(at));
  }
  RecordProperty("detected", errors_);
  // Undetected flips are harmless ones: page bytes a later record replaced (the writer makes
  // most pages resent). About half the flips land in headers, records and control bodies.
  EXPECT_GT(errors_, kFlipSeeds / 4);
}

TEST_F(FerryStreamDamage, FlippedPageBytesFailTheRecordedHashes) {
  // A NORMAL page that no later record replaces: its bytes reach the image as they are.
  std::map<std::pair<uint32_t, uint32_t>, std::pair<uint32_t, uint64_t>> last;  // page -> ch, at
  std::map<std::pair<uint32_t, uint32_t>, uint32_t> last_iteration;
  for (uint32_t ch = 0; ch < 2; ++ch) {
    const auto& f = (*files_)[ch];
    for (const PacketAt& p : packets_of(f, ch)) {
      if (p.h.type != wire::PacketType::kData) continue;
      uint64_t payload = p.offset + wire::kHeaderSize + size_t{p.h.records} * wire::kRecordSize;
      for (uint32_t i = 0; i < p.h.records; ++i) {
        const uint8_t* r = f.data() + p.offset + wire::kHeaderSize + i * wire::kRecordSize;
        uint32_t page, len;
        std::memcpy(&page, r, 4);
        std::memcpy(&len, r + 4, 4);
        const auto kind = static_cast<PageKind>(r[8]);
        const uint32_t n = kind == PageKind::kZero ? len : 1;
        for (uint32_t k = 0; k < n; ++k) {
          const auto key = std::make_pair(p.h.block, page + k);
          if (last_iteration.count(key) && last_iteration[key] > p.iteration) continue;
          last_iteration[key] = p.iteration;
          last[key] = {kind == PageKind::kNormal ? ch : 9, payload};
        }
        if (kind != PageKind::kZero) payload += len;
      }
    }
  }
  auto it = std::find_if(last.begin(), last.end(), [](const auto& e) { return e.second.first < 2; });
  ASSERT_NE(it, last.end());
  const uint32_t ch = it->second.first;
  std::vector<uint8_t> bytes = (*files_)[ch];
  bytes[it->second.second + 100] ^= 0x10;
  const fs::path p = variant(ch, bytes);
  const StreamInfo info = read_path(p);
  ASSERT_TRUE(info.error);
  EXPECT_THAT(info.error->message, HasSubstr("(HASHES at 0x"));
  EXPECT_THAT(info.error->message, HasSubstr("verification failed: block 'ram0' of the "
                                             "reconstructed RAM has the digest"));
  EXPECT_EQ(info.error->file, "");  // HASHES is on channel 0
  EXPECT_FALSE(info.ferry->hashes_match);
  EXPECT_TRUE(info.ferry->done);  // the whole stream was read
  EXPECT_THAT(summary(p, info), HasSubstr("MISMATCH: 'ram0'"));
}

TEST_F(FerryStreamDamage, MissingCompanionFileIsNamed) {
  const fs::path p = variant(0, (*files_)[0]);
  fs::remove(companion(p, 1));
  const StreamInfo info = read_path(p);
  ASSERT_TRUE(info.error);
  EXPECT_EQ(info.error->file, "");
  EXPECT_EQ(info.error->offset, 20u);  // the handshake's channel count
  EXPECT_EQ(info.error->message, "channel 1 of 2 is missing: cannot read " +
                                     companion(p, 1).string() + ": No such file or directory");
  // Without a way to load companions (read_stream on bytes alone) it says so.
  const StreamInfo alone = read_stream((*files_)[0], limited());
  ASSERT_TRUE(alone.error);
  EXPECT_THAT(alone.error->message, HasSubstr("the stream has 2 channels, and no file was given "
                                              "for channel 1 of 2"));
}

TEST_F(FerryStreamDamage, WrongMagic) {
  std::vector<uint8_t> b = (*files_)[0];
  b[3] = 'X';
  StreamInfo info = read_path(variant(0, b));
  ASSERT_TRUE(info.error);
  EXPECT_EQ(info.error->offset, 0u);
  EXPECT_EQ(info.error->message,
            "not a QEMU or ferry stream (magic 0x46525958, expected 0x5145564d 'QEVM' or "
            "0x46525943 'FRYC')");
  // The companion's magic is checked too.
  b = (*files_)[1];
  b[0] = 'G';
  const fs::path p = variant(1, b);
  info = read_path(p);
  ASSERT_TRUE(info.error);
  EXPECT_EQ(info.error->file, companion(p, 1).string());
  EXPECT_EQ(info.error->offset, 0u);
  EXPECT_THAT(info.error->message, HasSubstr("bad magic 0x47525943"));
}

TEST_F(FerryStreamDamage, CompanionOfAnotherStream) {
  test::TempDir other_dir;
  Spec spec;
  spec.channels = 2;
  spec.size = 1 << 20;
  const Written other = write_stream(other_dir.path() / "o.fry", spec);
  const fs::path p = variant(1, read_file(companion(other.path, 1)));
  const StreamInfo info = read_path(p);
  ASSERT_TRUE(info.error);
  EXPECT_EQ(info.error->file, companion(p, 1).string());
  EXPECT_EQ(info.error->offset, 8u);
  EXPECT_THAT(info.error->message, HasSubstr("differs from channel 0's"));
  EXPECT_THAT(info.error->message, HasSubstr("a file of another stream"));
}

TEST_F(FerryStreamDamage, CompanionGivenAsTheStream) {
  const fs::path p = dir_->path() / "only1.fry";
  write_bytes(p, (*files_)[1]);
  const StreamInfo info = read_path(p);
  ASSERT_TRUE(info.error);
  EXPECT_EQ(info.error->offset, 16u);
  EXPECT_THAT(info.error->message, HasSubstr("this is the file of channel 1 of a 2-channel "
                                             "stream"));
  EXPECT_THAT(info.error->message, HasSubstr("dump channel 0's file"));
}

// Re-frames a packet after its records were edited: records checksum, header checksum.
void refresh_checksums(std::vector<uint8_t>& f, const PacketAt& p, uint32_t channel) {
  wire::Header h = p.h;
  h.body_checksum = wire::checksum32(f.data() + p.offset + wire::kHeaderSize,
                                     size_t{h.records} * wire::kRecordSize);
  wire::encode_header(h, f.data() + p.offset);
  (void)wire::decode_header(f.data() + p.offset, channel, h.packet);  // still well-formed
}

TEST_F(FerryStreamDamage, PlacedRecordIsRefused) {
  std::vector<uint8_t> b = (*files_)[1];
  const auto packets = packets_of(b, 1);
  auto data = std::find_if(packets.begin(), packets.end(),
                           [](const PacketAt& p) { return p.h.type == wire::PacketType::kData; });
  ASSERT_NE(data, packets.end());
  const uint64_t flag_at = data->offset + wire::kHeaderSize + 9;
  b[flag_at] = wire::kRecordPlaced;
  refresh_checksums(b, *data, 1);
  const fs::path p = variant(1, b);
  const StreamInfo info = read_path(p);
  ASSERT_TRUE(info.error);
  EXPECT_EQ(info.error->file, companion(p, 1).string());
  EXPECT_EQ(info.error->offset, flag_at);
  EXPECT_THAT(info.error->message, HasSubstr("channel 1, packet " +
                                             std::to_string(data->h.packet) + " (DATA at 0x"));
  EXPECT_THAT(info.error->message, HasSubstr("record 0: flag 'placed'"));
  EXPECT_THAT(info.error->message, HasSubstr("a stream file never has it"));
}

TEST_F(FerryStreamDamage, RecordErrorsFromTheEngineDecoderGetFileOffsets) {
  // A record's page index beyond the block: wire::decode_records' message, at the file offset.
  std::vector<uint8_t> b = (*files_)[0];
  const auto packets = packets_of(b, 0);
  auto data = std::find_if(packets.begin(), packets.end(),
                           [](const PacketAt& p) { return p.h.type == wire::PacketType::kData; });
  ASSERT_NE(data, packets.end());
  const uint64_t rec_at = data->offset + wire::kHeaderSize;
  const uint32_t huge = 1u << 30;
  std::memcpy(&b[rec_at], &huge, 4);
  refresh_checksums(b, *data, 0);
  const StreamInfo info = read_path(variant(0, b));
  ASSERT_TRUE(info.error);
  EXPECT_EQ(info.error->offset, rec_at);
  EXPECT_THAT(info.error->message, HasSubstr("channel 0, packet " + std::to_string(data->h.packet) +
                                             " (DATA at 0x"));
  EXPECT_THAT(info.error->message, HasSubstr("record 0: page index 1073741824 >= 256 pages in "
                                             "block 'ram0'"));
}

TEST_F(FerryStreamDamage, BadChecksumsAndTrailingBytes) {
  // A header byte: the header checksum (bytes 0..35) no longer matches.
  std::vector<uint8_t> b = (*files_)[1];
  const auto packets = packets_of(b, 1);
  b[packets[2].offset + 20] ^= 1;
  fs::path p = variant(1, b);
  StreamInfo info = read_path(p);
  ASSERT_TRUE(info.error);
  EXPECT_EQ(info.error->offset, packets[2].offset + 36);
  EXPECT_THAT(info.error->message, HasSubstr("channel 1, packet 3 (at 0x"));
  EXPECT_THAT(info.error->message, HasSubstr("header checksum"));

  // A record byte: the records checksum in the header no longer matches.
  b = (*files_)[1];
  auto data = std::find_if(packets.begin(), packets.end(),
                           [](const PacketAt& q) { return q.h.type == wire::PacketType::kData; });
  b[data->offset + wire::kHeaderSize + 1] ^= 0x80;
  info = read_path(variant(1, b));
  ASSERT_TRUE(info.error);
  EXPECT_EQ(info.error->offset, data->offset + wire::kHeaderSize);
  EXPECT_THAT(info.error->message, HasSubstr("records checksum"));

  // After DONE there is nothing.
  b = (*files_)[0];
  b.push_back(0);
  info = read_path(variant(0, b));
  ASSERT_TRUE(info.error);
  EXPECT_EQ(info.error->offset, (*files_)[0].size());
  EXPECT_THAT(info.error->message, HasSubstr("1 unexpected bytes after DONE"));
  // Nor on another channel after its final SYNC.
  b = (*files_)[1];
  b.insert(b.end(), 40, 0);
  p = variant(1, b);
  info = read_path(p);
  ASSERT_TRUE(info.error);
  EXPECT_EQ(info.error->file, companion(p, 1).string());
  EXPECT_THAT(info.error->message, HasSubstr("40 unexpected bytes after the final SYNC"));
}

TEST_F(FerryStreamDamage, HugeHelloBlockIsCappedNotAllocated) {
  // HELLO's block size set to 1 TiB (body checksum and header refreshed, so only the size is
  // wrong): refused by max_ram_bytes before any allocation.
  std::vector<uint8_t> b = (*files_)[0];
  const auto packets = packets_of(b, 0);
  ASSERT_EQ(packets[0].h.type, wire::PacketType::kHello);
  const uint64_t body = packets[0].offset + wire::kHeaderSize;
  const uint64_t size_at = body + 20 + 2 + 4;  // after "ram0"
  const uint64_t tib = 1ull << 40;
  std::memcpy(&b[size_at], &tib, 8);
  wire::Header h = packets[0].h;
  h.body_checksum = wire::checksum32(&b[body], h.payload);
  wire::encode_header(h, &b[packets[0].offset]);
  const StreamInfo info = read_path(variant(0, b));
  ASSERT_TRUE(info.error);
  EXPECT_EQ(info.error->offset, size_at);
  EXPECT_THAT(info.error->message, HasSubstr("HELLO block 0 'ram0': the blocks add up to more "
                                             "than the limit of 67108864 bytes of RAM"));
  EXPECT_EQ(info.ram.total_bytes(), 0u);
}

}  // namespace
}  // namespace ferry::stream
