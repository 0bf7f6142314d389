// Every real QEMU stream of ../shared/corpus: parses, matches the .walk.txt record by record,
// rebuilds RAM equal to the destination's dumps, and prints analyze-migration.py's JSON.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>

#include "engine/stream/file_io.h"
#include "engine/stream/stream_format.h"
#include "tests/stream/test_support.h"

namespace ferry::stream {
namespace {

namespace fs = std::filesystem;
using test::corpus_streams;
using ::testing::HasSubstr;

// Parsing a stream takes milliseconds; the tests of one stream share the result.
struct Loaded {
  fs::path mig;
  test::Walk walk;
  std::vector<uint8_t> bytes;
  StreamInfo info;
  bool vmdesc_from_sibling = false;
  double seconds = 0;
};

const Loaded& load(const fs::path& mig) {
  static std::map<fs::path, std::unique_ptr<Loaded>> cache;
  auto& slot = cache[mig];
  if (!slot) {
    slot = std::make_unique<Loaded>();
    slot->mig = mig;
    slot->walk = test::parse_walk(fs::path(mig).replace_extension(".walk.txt"));
    slot->bytes = read_file(mig);
    ReadOptions o;
    // A stream sent without vmdesc is decoded with the one its walk used (same QEMU and
    // devices), which is what --vmdesc is for.
    if (!slot->walk.vmdesc_present && slot->walk.vmdesc_used != "stream") {
      auto desc = mig.parent_path() / fs::path(slot->walk.vmdesc_used).replace_extension(".desc.json");
      auto text = read_file(desc);
      o.vmdesc_json = std::string(text.begin(), text.end());
      o.vmdesc_source = desc.string();
      slot->vmdesc_from_sibling = true;
    }
    auto t0 = std::chrono::steady_clock::now();
    slot->info = read_stream(slot->bytes, o);
    slot->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return *slot;
}

class Corpus : public ::testing::TestWithParam<fs::path> {
 protected:
  void SetUp() override {
    if (GetParam().empty()) {
      GTEST_SKIP() << "QEMU stream corpus not found at " << test::corpus_dir()
                   << " (expected ../shared/corpus next to the repository)";
    }
  }
};

std::vector<fs::path> params() {
  auto v = corpus_streams();
  if (v.empty()) v.push_back({});  // one test that skips with the reason
  return v;
}

std::string name(const ::testing::TestParamInfo<fs::path>& p) {
  return p.param.empty() ? std::string("corpus_absent") : test::stream_test_name(p.param);
}

TEST_P(Corpus, ParsesWithoutError) {
  const Loaded& l = load(GetParam());
  ASSERT_FALSE(l.info.error) << "offset 0x" << std::hex << l.info.error->offset << ": "
                             << l.info.error->message;
  EXPECT_EQ(l.info.version, 3u);
  EXPECT_EQ(l.info.machine, l.walk.machine);
  EXPECT_EQ(l.info.file_size, l.walk.file_size);
  EXPECT_EQ(l.info.vmdesc_in_stream, l.walk.vmdesc_present);
  RecordProperty("parse_seconds", std::to_string(l.seconds));
}

TEST_P(Corpus, WithoutVmdescStopsAtTheFirstDeviceButKeepsRam) {
  const Loaded& l = load(GetParam());
  // The stream as QEMU sends it with suppress-vmdesc: everything up to and including EOF.
  const size_t cut = l.info.vmdesc_in_stream ? l.info.vmdesc_offset : l.bytes.size();
  const std::vector<uint8_t> bare(l.bytes.begin(), l.bytes.begin() + static_cast<long>(cut));
  auto info = read_stream(bare);
  ASSERT_TRUE(info.error);
  EXPECT_THAT(info.error->message, HasSubstr("cannot decode or skip"));
  EXPECT_THAT(info.error->message, HasSubstr("no VMDESCRIPTION trailer"));
  // It names the first device section and points at its payload.
  const auto& dev = info.records.back();
  EXPECT_EQ(dev.type, RecordType::kSectionFull);
  EXPECT_EQ(info.error->offset, dev.payload_offset);
  EXPECT_THAT(info.error->message, HasSubstr("device section '" + dev.idstr + "'"));
  // RAM is complete by then (devices follow the last RAM section) and identical.
  EXPECT_EQ(info.ram.total_counts().total(), l.info.ram.total_counts().total());
  for (const auto& b : l.info.ram.blocks()) {
    const RamBlock* other = info.ram.find(b->name());
    ASSERT_NE(other, nullptr);
    EXPECT_TRUE(std::equal(b->bytes().begin(), b->bytes().end(), other->bytes().begin()))
        << b->name();
  }
}

TEST_P(Corpus, RecordsMatchTheWalk) {
  const Loaded& l = load(GetParam());
  const auto& recs = l.info.records;
  ASSERT_EQ(recs.size(), l.walk.records.size());
  for (size_t i = 0; i < recs.size(); ++i) {
    const Record& r = recs[i];
    const test::WalkRecord& w = l.walk.records[i];
    SCOPED_TRACE("record " + std::to_string(i) + " " + w.type + " at " + std::to_string(w.offset));
    EXPECT_EQ(r.offset, w.offset);
    if (w.type == "header") {
      EXPECT_EQ(r.type, RecordType::kHeader);
      continue;
    }
    EXPECT_EQ(record_type_name(r.type), w.type);
    if (w.id && r.type != RecordType::kCommand) {
      EXPECT_EQ(r.section_id, *w.id);
    }
    if (r.type == RecordType::kCommand) {
      ASSERT_TRUE(w.id && w.len);
      EXPECT_EQ(r.command, *w.id);
      EXPECT_EQ(r.command_len, *w.len);
    }
    if (!w.name.empty()) {
      EXPECT_EQ(r.idstr, w.name);
    }
    if (w.instance) {
      EXPECT_EQ(r.instance_id, *w.instance);
    }
    if (w.version) {
      EXPECT_EQ(r.version_id, *w.version);
    }
    // The walk's len: a section from its type byte to its footer; the whole configuration
    // record; the vmdesc's JSON.
    if (w.len && r.type != RecordType::kCommand) {
      if (r.type == RecordType::kConfiguration) {
        EXPECT_EQ(r.end - r.offset, *w.len);
      } else if (r.type == RecordType::kVmdesc) {
        EXPECT_EQ(r.payload_end - r.payload_offset, *w.len);
      } else {
        EXPECT_EQ(r.payload_end - r.offset, *w.len);
        EXPECT_EQ(r.end, r.payload_end + 5);
      }
    }
    if (r.is_ram) {
      auto c = [&](const char* k) { return w.counts.count(k) ? w.counts.at(k) : 0; };
      EXPECT_EQ(r.ram.normal, c("normal"));
      EXPECT_EQ(r.ram.zero, c("zero"));
      EXPECT_EQ(r.ram.xbzrle, c("xbzrle"));
      EXPECT_EQ(r.ram.named, c("named"));
      EXPECT_EQ(r.ram.continued, c("continue"));
      EXPECT_EQ(r.ram.mem_size, c("mem_size"));
      EXPECT_EQ(r.ram.first_record_continue, c("first_record_continue") != 0);
    } else if (r.type == RecordType::kSectionFull) {
      EXPECT_TRUE(r.decoded);
    }
  }
}

TEST_P(Corpus, CountsMatchTheWalk) {
  const Loaded& l = load(GetParam());
  std::map<std::string, uint64_t> types;
  uint64_t ram_sections = 0, eos = 0;
  for (const Record& r : l.info.records) {
    if (r.type == RecordType::kHeader || r.type == RecordType::kVmdesc) continue;
    ++types[record_type_name(r.type)];
    if (r.type >= RecordType::kSectionStart && r.type <= RecordType::kSectionFull) {
      ++types["SECTION_FOOTER"];
      if (r.is_ram) {
        ++ram_sections;
        eos += r.ram.eos;
      }
    }
  }
  EXPECT_EQ(types, l.walk.type_counts);

  const PageCounts total = l.info.ram.total_counts();
  EXPECT_EQ(total.normal, l.walk.totals.at("normal"));
  EXPECT_EQ(total.zero, l.walk.totals.at("zero"));
  EXPECT_EQ(total.xbzrle, l.walk.totals.at("xbzrle"));
  EXPECT_EQ(eos, l.walk.totals.at("eos"));
  EXPECT_EQ(ram_sections, l.walk.totals.at("ram sections"));

  ASSERT_EQ(l.info.ram.blocks().size(), l.walk.blocks.size());
  for (size_t i = 0; i < l.walk.blocks.size(); ++i) {
    const RamBlock& b = *l.info.ram.blocks()[i];
    EXPECT_EQ(b.name(), l.walk.blocks[i].first);
    EXPECT_EQ(b.size(), l.walk.blocks[i].second);
    const auto& wc = l.walk.block_counts.at(b.name());
    auto c = [&](const char* k) { return wc.count(k) ? wc.at(k) : 0; };
    EXPECT_EQ(b.counts.normal, c("normal")) << b.name();
    EXPECT_EQ(b.counts.zero, c("zero")) << b.name();
    EXPECT_EQ(b.counts.xbzrle, c("xbzrle")) << b.name();
  }
}

TEST_P(Corpus, EveryBlockHashMatchesTheWalk) {
  const Loaded& l = load(GetParam());
  ASSERT_EQ(l.walk.block_sha256.size(), l.info.ram.blocks().size());
  for (const auto& b : l.info.ram.blocks()) {
    const std::string got = test::sha256_hex(b->bytes().data(), b->bytes().size());
    const std::string& want = l.walk.block_sha256.at(b->name());
    if (got != want && b->name() == "pc.ram") {
      // The destination's memory dump is the ground truth the walk's own hash is checked
      // against. Known case: qemu-10.0.2/pc-xbzrle.walk.txt lists a pc.ram hash that matches
      // neither the .ram.gz (which we equal byte for byte) nor any plausible decode.
      const auto pmem = test::gunzip(fs::path(GetParam()).replace_extension(".ram.gz"));
      if (pmem.size() == b->size() && std::equal(pmem.begin(), pmem.end(), b->bytes().begin())) {
        RecordProperty("walk_pc_ram_hash_contradicts_ram_gz", want);
        std::cout << "note: " << GetParam().filename().string() << ": the walk's pc.ram sha256 "
                  << want << " disagrees with the destination's dump, which we match exactly ("
                  << got << ")\n";
        continue;
      }
    }
    EXPECT_EQ(got, want) << b->name();
  }
}

TEST_P(Corpus, PcRamEqualsTheDestinationsMemoryDump) {
  const Loaded& l = load(GetParam());
  const RamBlock* ram = l.info.ram.find("pc.ram");
  ASSERT_NE(ram, nullptr);
  const auto pmem = test::gunzip(fs::path(GetParam()).replace_extension(".ram.gz"));
  ASSERT_EQ(pmem.size(), ram->size());
  // Guest-physical 0xa0000-0xbffff shows the VGA window, not pc.ram, when a VGA device exists.
  const auto got = ram->bytes();
  size_t diff_outside = 0, diff_vga = 0;
  for (size_t page = 0; page < pmem.size(); page += 4096) {
    if (std::memcmp(got.data() + page, pmem.data() + page, 4096) == 0) continue;
    (page >= 0xa0000 && page < 0xc0000 ? diff_vga : diff_outside)++;
  }
  EXPECT_EQ(diff_outside, 0u) << "pages differing outside the VGA window";
  RecordProperty("vga_window_pages_differing", static_cast<int>(diff_vga));

  auto pcram = fs::path(GetParam()).replace_extension(".pcram.gz");
  if (fs::exists(pcram)) {
    const auto exact = test::gunzip(pcram);
    ASSERT_EQ(exact.size(), ram->size());
    EXPECT_TRUE(std::equal(exact.begin(), exact.end(), got.begin())) << "pc.ram differs from .pcram";
  }
}

TEST_P(Corpus, JsonEqualsAnalyzeMigrationOutput) {
  const Loaded& l = load(GetParam());
  const auto state = fs::path(GetParam()).replace_extension(".state.json");
  if (!fs::exists(state)) GTEST_SKIP() << "no .state.json (analyze-migration.py failed on it)";
  const auto text = read_file(state);
  const std::string want(text.begin(), text.end());
  // Semantic (object key order ignored), then ordered, then the exact text Python printed.
  EXPECT_EQ(nlohmann::json(l.info.state), nlohmann::json::parse(want));
  EXPECT_EQ(l.info.state, nlohmann::ordered_json::parse(want));
  EXPECT_EQ(l.info.state.dump(4, ' ', true) + "\n", want);
}

INSTANTIATE_TEST_SUITE_P(Qemu, Corpus, ::testing::ValuesIn(params()), name);

}  // namespace
}  // namespace ferry::stream
