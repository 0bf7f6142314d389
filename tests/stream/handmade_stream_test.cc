// Hand-built streams: every record type once, and every error with its exact offset.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

#include "codecs/xbzrle.h"
#include "engine/stream/stream_format.h"
#include "tests/stream/stream_builder.h"
#include "tests/stream/handmade_device.h"

namespace ferry::stream {
namespace {

using test::StreamBuilder;
using ::testing::HasSubstr;

const char* const kVmdesc = test::kHandmadeDeviceVmdesc;

StreamBuilder& dev_payload(StreamBuilder& b) {
  b.be16(0x1234).be32(0xfffffffe).u8(1).raw("abc").u8(7).u8(8).be32(5);
  return b.u8(0x05).sstr("dev/sub").be32(1).u8(0xff);
}

// Offsets of interesting places in the good stream, filled by good_stream().
struct Marks {
  size_t ram_start, ram_part, part_first_record, ram_end, command, dev, dev_payload, eof, vmdesc;
};

StreamBuilder good_stream(Marks* m = nullptr, bool with_vmdesc = true) {
  Marks k{};
  StreamBuilder b;
  b.header().config("pc-test-1.0");
  k.ram_start = b.size();
  b.start(2, "ram", 0, 4).mem_size({{"pc.ram", 4 * 4096}, {"/rom@etc/x", 4096}}).ram_eos().footer(2);
  k.ram_part = b.size();
  b.part(2);
  k.part_first_record = b.size();
  b.ram_page(0x0000, "pc.ram", 1)
      .ram_page(0x1000, "", 2)
      .ram_zero(0x0000, "")               // the last record wins: page 0 ends up zero
      .ram_page(0x0000, "/rom@etc/x", 3)  // named: switches block
      .ram_eos()
      .footer(2);
  k.command = b.size();
  b.command(11);
  k.ram_end = b.size();
  b.end(2)
      .ram_xbzrle(0x0000, "pc.ram", {0x0a, 0x03, 0xaa, 0xbb, 0xcc})  // bytes 10..12 of page 0
      .ram_xbzrle(0x1000, "", {0x00, 0x01, 0x77})                    // byte 0 of page 1
      .ram_eos()
      .footer(2);
  k.dev = b.size();
  b.full(7, "dev", 0, 1);
  k.dev_payload = b.size();
  dev_payload(b).footer(7);
  k.eof = b.size();
  b.eof();
  k.vmdesc = b.size();
  if (with_vmdesc) b.vmdesc(kVmdesc);
  if (m) *m = k;
  return b;
}

StreamInfo read(const StreamBuilder& b, ReadOptions o = {}) { return read_stream(b.bytes, o); }

void expect_error(const StreamInfo& info, uint64_t offset, const std::string& text) {
  ASSERT_TRUE(info.error.has_value()) << "expected an error containing: " << text;
  EXPECT_EQ(info.error->offset, offset) << info.error->message;
  EXPECT_THAT(info.error->message, HasSubstr(text));
}

TEST(HandmadeStream, EveryRecordTypeParses) {
  Marks m;
  auto b = good_stream(&m);
  auto info = read(b);
  ASSERT_FALSE(info.error) << info.error->message;
  EXPECT_EQ(info.format, "QEMU");
  EXPECT_EQ(info.version, 3u);
  EXPECT_EQ(info.machine, "pc-test-1.0");
  EXPECT_TRUE(info.vmdesc_in_stream);
  EXPECT_EQ(info.vmdesc_offset, m.vmdesc);

  std::vector<RecordType> types;
  for (const auto& r : info.records) types.push_back(r.type);
  const std::vector<RecordType> want = {
      RecordType::kHeader,      RecordType::kConfiguration, RecordType::kSectionStart,
      RecordType::kSectionPart, RecordType::kCommand,       RecordType::kSectionEnd,
      RecordType::kSectionFull, RecordType::kEof,           RecordType::kVmdesc};
  EXPECT_EQ(types, want);
  const Record& part = info.records[3];
  EXPECT_EQ(part.offset, m.ram_part);
  EXPECT_EQ(part.end, m.command);
  EXPECT_EQ(part.payload_end + 5, part.end);
  EXPECT_EQ(part.ram.normal, 3u);
  EXPECT_EQ(part.ram.zero, 1u);
  EXPECT_EQ(part.ram.named, 2u);
  EXPECT_EQ(part.ram.continued, 2u);
  EXPECT_FALSE(part.ram.first_record_continue);
  EXPECT_EQ(info.records[2].ram.mem_size, 1u);
  EXPECT_EQ(info.records[4].command, 11);
  EXPECT_EQ(info.records[4].command_name, "SWITCHOVER_START");
  EXPECT_EQ(info.records[5].ram.xbzrle, 2u);
  EXPECT_TRUE(info.records[6].decoded);
  EXPECT_EQ(info.records[6].idstr, "dev");
  EXPECT_EQ(info.records[6].version_id, 1u);

  ASSERT_EQ(info.ram.blocks().size(), 2u);
  const RamBlock* ram = info.ram.find("pc.ram");
  const RamBlock* rom = info.ram.find("/rom@etc/x");
  ASSERT_TRUE(ram && rom);
  EXPECT_EQ(ram->size(), 4u * 4096);
  EXPECT_EQ(ram->counts.normal, 2u);
  EXPECT_EQ(ram->counts.zero, 1u);
  EXPECT_EQ(ram->counts.xbzrle, 2u);
  auto p = ram->bytes();
  // page 0: zeroed, then XBZRLE wrote bytes 10..12
  for (size_t i = 0; i < 4096; ++i) {
    const uint8_t want_byte = i == 10 ? 0xaa : i == 11 ? 0xbb : i == 12 ? 0xcc : 0;
    ASSERT_EQ(p[i], want_byte) << "page 0 byte " << i;
  }
  // page 1: pattern 2, then byte 0 replaced by XBZRLE
  EXPECT_EQ(p[4096], 0x77);
  for (size_t i = 1; i < 4096; ++i) ASSERT_EQ(p[4096 + i], static_cast<uint8_t>(2 + i));
  for (size_t i = 2 * 4096; i < p.size(); ++i) ASSERT_EQ(p[i], 0);
  EXPECT_EQ(rom->bytes()[5], 8);

  const auto want_state = nlohmann::ordered_json::parse(R"j({
    "ram (2)": {"section sizes": {"pc.ram": "0x0000000000004000", "/rom@etc/x": "0x0000000000001000"}},
    "dev (7)": {"a": "0x1234", "b": "0xfffffffe (-2)", "flag": true, "buf": "61 62 63",
                "arr": ["0x07", "0x08"], "s": {"x": "0x00000005"}, "dev/sub": {"y": "0xff (-1)"}}})j");
  EXPECT_EQ(info.state, want_state) << info.state.dump(2);
}

TEST(HandmadeStream, ContinueAcrossSections) {
  StreamBuilder b;
  b.header().start(1, "ram", 0, 4).mem_size({{"a", 8192}, {"b", 8192}}).ram_page(0, "b", 9).ram_eos().footer(1);
  b.part(1).ram_page(0x1000, "", 4).ram_eos().footer(1).eof();
  auto info = read(b);
  ASSERT_FALSE(info.error) << info.error->message;
  EXPECT_TRUE(info.records.back().type == RecordType::kEof);
  EXPECT_TRUE(info.records[2].ram.first_record_continue);
  EXPECT_EQ(info.ram.find("b")->bytes()[0x1000], 4);
  EXPECT_EQ(info.ram.find("a")->counts.total(), 0u);
  EXPECT_FALSE(info.vmdesc_in_stream);
}

TEST(HandmadeStream, MultifdFlushIsANoOp) {
  StreamBuilder b;
  b.header().start(1, "ram", 0, 4).mem_size({{"a", 4096}}).be64(0x200).ram_eos().footer(1).eof();
  auto info = read(b);
  ASSERT_FALSE(info.error) << info.error->message;
  EXPECT_EQ(info.records[1].ram.multifd_flush, 1u);
}

TEST(HandmadeStream, BadMagic) {
  StreamBuilder b;
  b.raw("QEVX").be32(3);
  expect_error(read(b), 0, "not a QEMU or ferry stream (magic 0x51455658");
  StreamBuilder tiny;
  tiny.raw("QE");
  expect_error(read(tiny), 0, "not a QEMU or ferry stream");
}

TEST(HandmadeStream, BadVersion) {
  StreamBuilder b;
  b.header(2).eof();
  expect_error(read(b), 4, "unsupported QEMU stream version 2");
}

TEST(HandmadeStream, TruncatedHeader) {
  StreamBuilder b;
  b.raw("QEVM").u8(0);
  expect_error(read(b), 0, "truncated");
}

TEST(HandmadeStream, MissingEof) {
  StreamBuilder b;
  b.header().config("m");
  expect_error(read(b), b.size(), "ends without an EOF record");
}

TEST(HandmadeStream, BadFooterByte) {
  StreamBuilder b;
  b.header().start(1, "ram", 0, 4).mem_size({{"a", 4096}}).ram_eos();
  const size_t at = b.size();
  b.u8(0x7f).be32(1).eof();
  expect_error(read(b), at, "bad section footer");
}

TEST(HandmadeStream, BadFooterId) {
  StreamBuilder b;
  b.header().start(1, "ram", 0, 4).mem_size({{"a", 4096}}).ram_eos();
  const size_t at = b.size();
  b.footer(2).eof();
  expect_error(read(b), at, "names section id 2");
}

TEST(HandmadeStream, UnknownSectionType) {
  StreamBuilder b;
  b.header();
  const size_t at = b.size();
  b.u8(0x09).eof();
  expect_error(read(b), at, "unknown section type 0x9");
}

TEST(HandmadeStream, FooterOutsideSection) {
  StreamBuilder b;
  b.header();
  const size_t at = b.size();
  b.footer(1).eof();
  expect_error(read(b), at, "outside a section");
}

TEST(HandmadeStream, ConfigurationNotFirst) {
  StreamBuilder b;
  b.header().command(11);
  const size_t at = b.size();
  b.config("m").eof();
  expect_error(read(b), at, "configuration record (0x07) after the first record");
}

TEST(HandmadeStream, PartWithoutStart) {
  StreamBuilder b;
  b.header();
  const size_t at = b.size();
  b.part(5).ram_eos().footer(5).eof();
  expect_error(read(b), at, "which no START or FULL opened");
}

TEST(HandmadeStream, RamVersionMustBe4) {
  StreamBuilder b;
  b.header();
  const size_t at = b.size();
  b.start(1, "ram", 0, 3).ram_eos().footer(1).eof();
  expect_error(read(b), at, "RAM section version 3 (expected 4)");
}

TEST(HandmadeStream, ContinueWithoutPreviousBlock) {
  StreamBuilder b;
  b.header().start(1, "ram", 0, 4).mem_size({{"a", 4096}});
  const size_t at = b.size();
  b.ram_zero(0, "").ram_eos().footer(1).eof();
  auto info = read(b);
  expect_error(info, at, "CONTINUE but no previous page record named a block");
  // What came before is kept.
  ASSERT_EQ(info.ram.blocks().size(), 1u);
  EXPECT_EQ(info.records.size(), 2u);
}

TEST(HandmadeStream, PageOffsetBeyondBlock) {
  StreamBuilder b;
  b.header().start(1, "ram", 0, 4).mem_size({{"a", 8192}}).ram_page(0, "a", 1);
  const size_t at = b.size();
  b.ram_page(0x2000, "", 1).ram_eos().footer(1).eof();
  expect_error(read(b), at, "page offset 0x2000 is beyond RAM block 'a' (size 0x2000)");
}

TEST(HandmadeStream, PageOffsetBeyondOddSizedBlock) {
  // A block whose size is not a page multiple: the last partial page cannot be written. (The
  // MEM_SIZE total shares its be64 with the flags, so it has to stay page aligned.)
  StreamBuilder b;
  b.header().start(1, "ram", 0, 4).mem_size({{"a", 6000}, {"b", 8192 - 6000}});
  const size_t at = b.size();
  b.ram_zero(0x1000, "a").ram_eos().footer(1).eof();
  expect_error(read(b), at, "beyond RAM block 'a'");
}

TEST(HandmadeStream, UnknownBlockName) {
  StreamBuilder b;
  b.header().start(1, "ram", 0, 4).mem_size({{"a", 4096}});
  const size_t at = b.size();
  b.ram_zero(0, "nope").ram_eos().footer(1).eof();
  expect_error(read(b), at + 8, "unknown RAM block 'nope'");
}

TEST(HandmadeStream, ZeroPageWithNonZeroFill) {
  StreamBuilder b;
  b.header().start(1, "ram", 0, 4).mem_size({{"a", 4096}});
  const size_t at = b.size();
  b.ram_zero(0, "a", 5).ram_eos().footer(1).eof();
  expect_error(read(b), at + 8 + 2, "fill byte 0x5");
}

TEST(HandmadeStream, XbzrleLengthZero) {
  StreamBuilder b;
  b.header().start(1, "ram", 0, 4).mem_size({{"a", 4096}});
  const size_t at = b.size();
  b.ram_xbzrle(0, "a", {}).ram_eos().footer(1).eof();
  expect_error(read(b), at + 8 + 2 + 1, "XBZRLE delta length 0 is outside 1..4096");
}

TEST(HandmadeStream, XbzrleLengthTooLong) {
  StreamBuilder b;
  b.header().start(1, "ram", 0, 4).mem_size({{"a", 4096}});
  const size_t at = b.size();
  b.ram_xbzrle(0, "a", std::vector<uint8_t>(4097, 1)).ram_eos().footer(1).eof();
  expect_error(read(b), at + 8 + 2 + 1, "XBZRLE delta length 4097 is outside 1..4096");
}

TEST(HandmadeStream, XbzrleWrongEncodingFlag) {
  StreamBuilder b;
  b.header().start(1, "ram", 0, 4).mem_size({{"a", 4096}});
  const size_t at = b.size();
  b.be64(0x40).sstr("a").u8(0x02).be16(2).u8(0).u8(0).ram_eos().footer(1).eof();
  expect_error(read(b), at + 8 + 2, "encoding flag 0x2");
}

TEST(HandmadeStream, XbzrleBadDeltaNamesTheCodecError) {
  StreamBuilder b;
  b.header().start(1, "ram", 0, 4).mem_size({{"a", 4096}}).ram_page(0, "a", 1);
  const size_t at = b.size();
  // unchanged run of 4096 (ULEB 0x80 0x20), then a changed run: past the end of the page.
  const std::vector<uint8_t> delta = {0x80, 0x20, 0x01, 0xff};
  b.ram_xbzrle(0, "", delta).ram_eos().footer(1).eof();
  auto info = read(b);
  ASSERT_TRUE(info.error);
  const size_t delta_at = at + 8 + 1 + 2;
  EXPECT_GE(info.error->offset, delta_at);
  EXPECT_LT(info.error->offset, delta_at + delta.size());
  EXPECT_THAT(info.error->message, HasSubstr("XBZRLE delta for block 'a' page 0x0 rejected: "));
  EXPECT_THAT(info.error->message,
              HasSubstr(xbzrle::decode_error_string(xbzrle::DecodeError::kRunPastEnd)));
  // The refused delta left the page as it was.
  EXPECT_EQ(info.ram.find("a")->bytes()[4095], static_cast<uint8_t>(1 + 4095));
}

TEST(HandmadeStream, UnsupportedRamFlags) {
  for (uint64_t flag : {0x80u, 0x100u, 0x400u, 0x0au}) {
    StreamBuilder b;
    b.header().start(1, "ram", 0, 4).mem_size({{"a", 4096}});
    const size_t at = b.size();
    b.be64(flag).ram_eos().footer(1).eof();
    auto info = read(b);
    ASSERT_TRUE(info.error) << flag;
    EXPECT_EQ(info.error->offset, at);
    EXPECT_THAT(info.error->message, HasSubstr("RAM record"));
  }
}

TEST(HandmadeStream, MemSizeEntryLargerThanTotal) {
  StreamBuilder b;
  b.header().start(1, "ram", 0, 4);
  b.be64(0x1000 | 0x04);
  const size_t at = b.size();
  b.sstr("a").be64(0x2000).ram_eos().footer(1).eof();
  expect_error(read(b), at, "more than the 0x1000 bytes left");
}

TEST(HandmadeStream, MemSizeDuplicateBlock) {
  StreamBuilder b;
  b.header().start(1, "ram", 0, 4);
  b.be64(0x2000 | 0x04).sstr("a").be64(0x1000);
  const size_t at = b.size();
  b.sstr("a").be64(0x1000).ram_eos().footer(1).eof();
  expect_error(read(b), at, "lists block 'a' twice");
}

TEST(HandmadeStream, MemSizeAboveLimit) {
  StreamBuilder b;
  b.header().start(1, "ram", 0, 4).mem_size({{"a", uint64_t{1} << 30}}).ram_eos().footer(1).eof();
  ReadOptions o;
  o.max_ram_bytes = 1 << 20;
  auto info = read(b, o);
  ASSERT_TRUE(info.error);
  EXPECT_THAT(info.error->message, HasSubstr("more than the limit"));
}

TEST(HandmadeStream, UnknownCommand) {
  StreamBuilder b;
  b.header();
  const size_t at = b.size();
  b.command(99).eof();
  expect_error(read(b), at, "unknown command 99");
}

TEST(HandmadeStream, CommandWithWrongLength) {
  StreamBuilder b;
  b.header();
  const size_t at = b.size();
  b.command(11, {1, 2}).eof();
  expect_error(read(b), at, "SWITCHOVER_START with length 2 (expected 0)");
}

TEST(HandmadeStream, DeviceWithoutVmdescStopsButKeepsRam) {
  Marks m;
  auto b = good_stream(&m, /*with_vmdesc=*/false);
  auto info = read(b);
  expect_error(info, m.dev_payload, "device section 'dev' (id 7, instance 0): cannot decode or skip");
  EXPECT_THAT(info.error->message, HasSubstr("no VMDESCRIPTION"));
  EXPECT_EQ(info.ram.find("pc.ram")->counts.xbzrle, 2u);
  EXPECT_EQ(info.records.back().type, RecordType::kSectionFull);
  EXPECT_FALSE(info.records.back().decoded);
  EXPECT_TRUE(info.state.contains("ram (2)"));
}

TEST(HandmadeStream, ExternalVmdescDecodesDevices) {
  auto b = good_stream(nullptr, /*with_vmdesc=*/false);
  ReadOptions o;
  o.vmdesc_json = kVmdesc;
  auto info = read(b, o);
  ASSERT_FALSE(info.error) << info.error->message;
  EXPECT_FALSE(info.vmdesc_in_stream);
  EXPECT_EQ(info.state["dev (7)"]["b"], "0xfffffffe (-2)");
}

TEST(HandmadeStream, DeviceNotInVmdesc) {
  StreamBuilder b;
  b.header();
  b.full(3, "other", 0, 1);
  const size_t at = b.size();
  b.u8(0).footer(3).eof().vmdesc(kVmdesc);
  expect_error(read(b), at, "no entry for it in the vmdesc");
}

TEST(HandmadeStream, DevicePayloadShorterThanDescription) {
  Marks m;
  auto b = good_stream(&m);
  // Cut one byte out of the device payload: the footer is then read one byte early.
  b.bytes.erase(b.bytes.begin() + static_cast<long>(m.dev_payload));
  auto info = read(b);
  ASSERT_TRUE(info.error);
  // The trailer moved by one byte as well, but still runs to the end: only the device fails.
  EXPECT_THAT(info.error->message, HasSubstr("section 'dev'"));
}

TEST(HandmadeStream, BrokenVmdescJsonIsReportedAtTheDevice) {
  Marks m;
  auto b = good_stream(&m, false);
  b.vmdesc("{\"devices\": [");
  auto info = read(b);
  ASSERT_TRUE(info.error);
  EXPECT_EQ(info.error->offset, m.dev_payload);
  EXPECT_THAT(info.error->message, HasSubstr("is not valid JSON"));
  EXPECT_EQ(info.ram.find("pc.ram")->counts.xbzrle, 2u);
}

TEST(HandmadeStream, GarbageAfterEof) {
  StreamBuilder b;
  b.header().eof();
  const size_t at = b.size();
  b.u8(0x42);
  expect_error(read(b), at, "unexpected byte 0x42 after EOF");
}

TEST(HandmadeStream, VmdescLengthMismatch) {
  StreamBuilder b;
  b.header().eof();
  const size_t at = b.size();
  b.u8(0x06).be32(100).raw("{}");
  expect_error(read(b), at + 1, "vmdesc length 100");
  StreamBuilder c;
  c.header().eof().u8(0x06).be32(2).raw("{}");
  const size_t tail = c.size();
  c.raw("xyz");
  expect_error(read(c), tail, "3 unexpected bytes after the vmdesc JSON");
}

TEST(HandmadeStream, ManySectionsAndBlocksStayLinear) {
  // Lookups by section key and block name must not be linear scans: a hostile stream can hold
  // hundreds of thousands of each within a few MB.
  constexpr int kCount = 50000;
  std::vector<std::pair<std::string, uint64_t>> blocks;
  for (int i = 0; i < kCount; ++i) blocks.emplace_back("b" + std::to_string(i), 0);
  blocks.emplace_back("last", 4096);
  StreamBuilder b;
  b.header().start(1, "ram", 0, 4).mem_size(blocks);
  b.ram_zero(0, "last").ram_eos().footer(1);
  for (int i = 0; i < kCount; ++i) b.full(static_cast<uint32_t>(100 + i), "e", 0, 1).footer(100 + i);
  b.eof().vmdesc(R"({"devices": [{"name": "e", "instance_id": 0, "fields": []}]})");
  auto info = read(b);
  ASSERT_FALSE(info.error) << info.error->message;
  EXPECT_EQ(info.ram.blocks().size(), static_cast<size_t>(kCount + 1));
  EXPECT_EQ(info.state.size(), static_cast<size_t>(kCount + 1));
  EXPECT_EQ(info.state["ram (1)"]["section sizes"].size(), static_cast<size_t>(kCount + 1));
}

TEST(HandmadeStream, TruncatedEverywhereNeverSucceeds) {
  auto b = good_stream();
  for (size_t n = 0; n < b.size(); ++n) {
    std::vector<uint8_t> cut(b.bytes.begin(), b.bytes.begin() + static_cast<long>(n));
    auto info = read_stream(cut);
    ASSERT_TRUE(info.error) << "truncated at " << n;
    EXPECT_LE(info.error->offset, n);
  }
}

}  // namespace
}  // namespace ferry::stream
