// A destination fed hand-crafted packets: every lie on the wire is refused with an error that
// names the channel and the packet, and nothing is written outside the destination's blocks.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <future>

#include "ferry/migration.h"
#include "engine/ram/control.h"
#include "engine/ram/wire_format.h"
#include "tests/engine/migration_test_util.h"

namespace ferry {
namespace {
using testing::GuardedMem;

constexpr size_t kPage = 4096;
constexpr size_t kPages = 64;

struct Packet {
  wire::Header h;
  std::vector<wire::Record> recs;
  std::vector<uint8_t> payload;
  std::vector<uint8_t> bytes() const {
    std::vector<uint8_t> out(wire::kHeaderSize + recs.size() * wire::kRecordSize);
    for (size_t i = 0; i < recs.size(); ++i) {
      wire::encode_record(recs[i], out.data() + wire::kHeaderSize + i * wire::kRecordSize);
    }
    wire::Header hh = h;
    hh.type = wire::PacketType::kData;
    hh.records = static_cast<uint32_t>(recs.size());
    hh.body_checksum =
        wire::checksum32(out.data() + wire::kHeaderSize, recs.size() * wire::kRecordSize);
    wire::encode_header(hh, out.data());
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
  }
};

// A destination with one 64-page block (and canaries around it) behind channel(s) whose other
// end the test drives by hand.
class EngineHandFed : public ::testing::Test {
 protected:
  void SetUp() override {
    mem_ = std::make_unique<GuardedMem>(kPages * kPage);
    std::memset(mem_->data(), 0x11, kPages * kPage);
    pair_ = testing::make_channels("tcp:127.0.0.1:0", 1);
    dst_ = std::make_unique<MigrationDestination>(
        std::vector<RamBlock>{{"ram0", mem_->data(), kPages * kPage, kPage}});
    done_ = std::async(std::launch::async, [this]() -> std::string {
      try {
        dst_->run(std::move(pair_.dst));
        return "";
      } catch (const MigrationError& e) {
        return e.what();
      }
    });
    link_.ch = pair_.src[0].get();
    wire::Hello hello;
    hello.channels = 1;
    hello.batch_pages = 16;
    hello.owned_payload_cap = 16 * kPage;
    hello.blocks.push_back({"ram0", kPages * kPage, kPage});
    link_.send(wire::PacketType::kHello, wire::encode_hello(hello));
    link_.recv({wire::PacketType::kHelloAck}, "destination");
  }

  // Sends raw bytes and returns the destination's error.
  std::string feed(const std::vector<uint8_t>& bytes) {
    try {
      pair_.src[0]->send_all(bytes.data(), bytes.size());
    } catch (const std::exception&) {
      // The destination may drop the connection before reading everything.
    }
    std::string err = done_.get();
    EXPECT_TRUE(mem_->canaries_intact());
    return err;
  }
  bool block_untouched() const {
    for (size_t i = 0; i < kPages * kPage; ++i) {
      if (mem_->data()[i] != 0x11) return false;
    }
    return true;
  }
  Packet data(uint64_t packet = 2) {
    Packet p;
    p.h.packet = packet;
    return p;
  }
  static wire::Record rec(uint32_t page, uint32_t len, PageKind k) { return {page, len, k}; }
  void finish(Packet& p) {
    uint32_t pages = 0;
    uint32_t payload = 0;
    for (auto& r : p.recs) {
      pages += r.kind == PageKind::kZero ? r.length : 1;
      if (r.kind != PageKind::kZero) payload += r.length;
    }
    p.h.pages = pages;
    p.h.payload = payload;
  }

  std::unique_ptr<GuardedMem> mem_;
  testing::ChannelPair pair_;
  std::unique_ptr<MigrationDestination> dst_;
  std::future<std::string> done_;
  ram::ControlLink link_;
};

void expect_names(const std::string& err, const std::string& what) {
  EXPECT_NE(err.find("channel 0"), std::string::npos) << err;
  EXPECT_NE(err.find("packet 2"), std::string::npos) << err;
  EXPECT_NE(err.find(what), std::string::npos) << err;
}

TEST_F(EngineHandFed, PageIndexOutOfRange) {
  Packet p = data();
  p.recs = {rec(kPages, kPage, PageKind::kNormal)};
  finish(p);
  p.payload.assign(kPage, 0xEE);
  expect_names(feed(p.bytes()), "page index 64 >= 64");
  EXPECT_TRUE(block_untouched());
}

TEST_F(EngineHandFed, UnknownPageKind) {
  Packet p = data();
  p.recs = {rec(1, kPage, static_cast<PageKind>(9))};
  p.h.pages = 1;
  p.h.payload = kPage;
  p.payload.assign(kPage, 0xEE);
  expect_names(feed(p.bytes()), "unknown page kind 9");
  EXPECT_TRUE(block_untouched());
}

TEST_F(EngineHandFed, ZeroRunOverrunsBlock) {
  Packet p = data();
  p.recs = {rec(60, 5, PageKind::kZero)};
  finish(p);
  expect_names(feed(p.bytes()), "overruns block 'ram0'");
  EXPECT_TRUE(block_untouched());
}

TEST_F(EngineHandFed, NormalLengthNotAPage) {
  Packet p = data();
  p.recs = {rec(3, kPage + 8, PageKind::kNormal), rec(5, 1, PageKind::kZero)};
  finish(p);
  p.payload.assign(kPage + 8, 0xEE);
  expect_names(feed(p.bytes()), "NORMAL length 4104");
  EXPECT_TRUE(block_untouched());
}

TEST_F(EngineHandFed, EncodedLengthOverrunsPage) {
  Packet p = data();
  p.recs = {rec(3, kPage + 1, PageKind::kXbzrle), rec(5, 1, PageKind::kZero)};
  finish(p);
  p.payload.assign(kPage + 1, 0xEE);
  expect_names(feed(p.bytes()), "not within page size");
  EXPECT_TRUE(block_untouched());
}

TEST_F(EngineHandFed, PayloadLengthDisagreesWithHeader) {
  Packet p = data();
  p.recs = {rec(3, kPage, PageKind::kNormal)};
  finish(p);
  p.h.payload = 2 * kPage;
  p.payload.assign(kPage, 0xEE);
  expect_names(feed(p.bytes()), "payload");
  EXPECT_TRUE(block_untouched());
}

TEST_F(EngineHandFed, BadXbzrleDelta) {
  // Unchanged run of 4097 bytes in a 4096-byte page, then a changed run of 1.
  const std::vector<uint8_t> delta = {0x81, 0x20, 0x01, 0xAA};
  Packet p = data();
  p.recs = {rec(7, static_cast<uint32_t>(delta.size()), PageKind::kXbzrle)};
  finish(p);
  p.payload = delta;
  const std::string err = feed(p.bytes());
  expect_names(err, "bad XBZRLE delta for page 7");
  EXPECT_NE(err.find("offset 52"), std::string::npos) << err;  // 40 + 12: the delta's start
  EXPECT_TRUE(block_untouched());
}

TEST_F(EngineHandFed, BadLz4Page) {
  Packet p = data();
  p.recs = {rec(7, 16, PageKind::kLz4)};
  finish(p);
  p.payload.assign(16, 0xFF);
  expect_names(feed(p.bytes()), "bad LZ4 page 7");
  EXPECT_TRUE(mem_->canaries_intact());
}

TEST_F(EngineHandFed, BadMagic) {
  Packet p = data();
  p.recs = {rec(1, 1, PageKind::kZero)};
  finish(p);
  auto b = p.bytes();
  b[0] ^= 0xFF;
  expect_names(feed(b), "bad magic");
  EXPECT_TRUE(block_untouched());
}

TEST_F(EngineHandFed, PacketOutOfSequence) {
  Packet p = data(5);
  p.recs = {rec(1, 1, PageKind::kZero)};
  finish(p);
  const std::string err = feed(p.bytes());
  expect_names(err, "out of sequence");
  EXPECT_TRUE(block_untouched());
}

TEST_F(EngineHandFed, BlockIdOutOfRange) {
  Packet p = data();
  p.h.block = 3;
  p.recs = {rec(1, 1, PageKind::kZero)};
  finish(p);
  expect_names(feed(p.bytes()), "block id 3 >= 1");
  EXPECT_TRUE(block_untouched());
}

TEST_F(EngineHandFed, RecordsChecksumMismatch) {
  Packet p = data();
  p.recs = {rec(1, 1, PageKind::kZero)};
  finish(p);
  auto b = p.bytes();
  b[wire::kHeaderSize] ^= 1;  // page 1 -> 0 after the checksum was taken
  expect_names(feed(b), "checksum");
  EXPECT_TRUE(block_untouched());
}

TEST_F(EngineHandFed, PagesOutOfOrderInPacket) {
  Packet p = data();
  p.recs = {rec(5, 1, PageKind::kZero), rec(5, 1, PageKind::kZero)};
  finish(p);
  expect_names(feed(p.bytes()), "not after the previous");
  EXPECT_TRUE(block_untouched());
}

TEST_F(EngineHandFed, ValidPacketsThenCompletion) {
  // The happy path by hand: a NORMAL page, a ZERO run, a final SYNC, COMPLETE, DONE.
  Packet p = data();
  p.recs = {rec(2, kPage, PageKind::kNormal), rec(10, 3, PageKind::kZero)};
  finish(p);
  p.payload.assign(kPage, 0x42);
  auto b = p.bytes();
  pair_.src[0]->send_all(b.data(), b.size());
  link_.send_packet = 3;
  wire::Header s;
  s.type = wire::PacketType::kSync;
  s.flags = wire::kFlagFinal;
  s.packet = link_.send_packet++;
  uint8_t head[wire::kHeaderSize];
  wire::encode_header(s, head);
  pair_.src[0]->send_all(head, sizeof head);
  wire::BodyWriter w;
  wire::encode_counts(w, PageCounts{1, 3, 0, 0});
  link_.send(wire::PacketType::kComplete, w.bytes());
  link_.recv({wire::PacketType::kConfirm}, "destination");
  wire::BodyWriter d;
  d.u8(0);
  d.str("");
  link_.send(wire::PacketType::kDone, d.bytes());
  EXPECT_EQ(done_.get(), "");
  EXPECT_EQ(mem_->data()[2 * kPage], 0x42);
  EXPECT_EQ(mem_->data()[10 * kPage + 5], 0);
  EXPECT_EQ(mem_->data()[13 * kPage], 0x11);
  EXPECT_TRUE(mem_->canaries_intact());
}

TEST(EngineWire, HeaderRoundTrip) {
  wire::Header h;
  h.type = wire::PacketType::kSync;
  h.flags = wire::kFlagFinal;
  h.packet = 77;
  h.pages = 5;
  uint8_t b[wire::kHeaderSize];
  wire::encode_header(h, b);
  const wire::Header d = wire::decode_header(b, 3, 77);
  EXPECT_EQ(d.type, wire::PacketType::kSync);
  EXPECT_EQ(d.flags, wire::kFlagFinal);
  EXPECT_EQ(d.pages, 5u);
  b[24] ^= 1;
  try {
    wire::decode_header(b, 3, 77);
    FAIL();
  } catch (const MigrationError& e) {
    EXPECT_NE(std::string(e.what()).find("channel 3, packet 77, offset 36"), std::string::npos)
        << e.what();
  }
}

TEST(EngineWire, HelloTruncatedBodyNamesField) {
  wire::Hello h;
  h.channels = 1;
  h.batch_pages = 8;
  h.blocks.push_back({"ram0", 4096, 4096});
  const auto full = wire::encode_hello(h);
  const std::vector<uint8_t> body(full.begin(), full.end() - 3);  // cut inside the last field
  try {
    wire::decode_hello(body.data(), body.size(), 0, 1);
    FAIL();
  } catch (const MigrationError& e) {
    EXPECT_NE(std::string(e.what()).find("block page size"), std::string::npos) << e.what();
  }
}


// ---- RDMA placement: the destination's advertisement, checked by the source ----------------

std::vector<RamBlock> placement_blocks() {
  static uint8_t a[2 * kPage], b[4 * kPage];
  return {RamBlock{"ram0", a, sizeof a, kPage}, RamBlock{"vram", b, sizeof b, kPage}};
}

wire::HelloAck good_ack(uint32_t channels) {
  wire::HelloAck a;
  a.mode = 1;
  a.channels = channels;
  const auto blocks = placement_blocks();
  for (uint32_t i = 0; i < blocks.size(); ++i) {
    wire::HelloAck::Block b;
    b.id = i;
    b.addr = 0x7f0000000000ull + i * (1u << 20);
    b.length = blocks[i].size;
    for (uint32_t c = 0; c < channels; ++c) b.keys.push_back(100 * (c + 1) + i);
    a.blocks.push_back(b);
  }
  return a;
}

// Round trip through the bytes, then validation; returns the error ("" = accepted).
std::string placement_error(const wire::HelloAck& a, uint32_t channels) {
  try {
    const auto body = wire::encode_hello_ack(a);
    const auto d = wire::decode_hello_ack(body.data(), body.size(), 0, 2);
    wire::validate_placement(d, placement_blocks(), channels);
    return "";
  } catch (const MigrationError& e) {
    return e.what();
  }
}

TEST(EnginePlacement, GoodAdvertisementGivesRegionsPerChannelAndBlock) {
  const auto a = good_ack(2);
  const auto body = wire::encode_hello_ack(a);
  const auto d = wire::decode_hello_ack(body.data(), body.size(), 0, 2);
  const auto r = wire::validate_placement(d, placement_blocks(), 2);
  ASSERT_EQ(r.size(), 2u);
  ASSERT_EQ(r[1].size(), 2u);
  EXPECT_EQ(r[1][1].addr, a.blocks[1].addr);
  EXPECT_EQ(r[1][1].length, 4 * kPage);
  EXPECT_EQ(r[1][1].key, 201u);
  EXPECT_EQ(r[0][0].key, 100u);
}

TEST(EnginePlacement, BlocksInAnyOrderAccepted) {
  auto a = good_ack(1);
  std::swap(a.blocks[0], a.blocks[1]);
  EXPECT_EQ(placement_error(a, 1), "");
}

TEST(EnginePlacement, BadAdvertisementsRefusedNamingTheProblem) {
  struct Case {
    const char* name;
    std::function<void(wire::HelloAck&)> lie;
    const char* expect;
  };
  const Case cases[] = {
      {"missing block", [](wire::HelloAck& a) { a.blocks.pop_back(); }, "1 blocks advertised"},
      {"duplicate", [](wire::HelloAck& a) { a.blocks[1].id = 0; }, "'ram0' advertised twice"},
      {"unknown id", [](wire::HelloAck& a) { a.blocks[1].id = 7; }, "block id 7"},
      {"short", [](wire::HelloAck& a) { a.blocks[0].length -= 1; }, "advertised length 8191"},
      {"long", [](wire::HelloAck& a) { a.blocks[1].length += kPage; }, "!= block size 16384"},
      {"wraps", [](wire::HelloAck& a) { a.blocks[1].addr = ~0ull - kPage; }, "wraps"},
      {"null", [](wire::HelloAck& a) { a.blocks[0].addr = 0; }, "null address"},
      {"wide key", [](wire::HelloAck& a) { a.blocks[0].keys[1] = 1ull << 32; }, "32-bit rkey"},
      {"channels", [](wire::HelloAck& a) {
         a.channels = 1;
         for (auto& b : a.blocks) b.keys.resize(1);
       }, "covers 1 channels, the session has 2"},
  };
  for (const auto& c : cases) {
    auto a = good_ack(2);
    c.lie(a);
    const std::string err = placement_error(a, 2);
    EXPECT_NE(err.find("placement advertisement rejected"), std::string::npos) << c.name << ": " << err;
    EXPECT_NE(err.find(c.expect), std::string::npos) << c.name << ": " << err;
  }
}

TEST(EnginePlacement, StreamAnswerAndMalformedBodies) {
  wire::HelloAck s;
  s.reason = "no memlock";
  auto body = wire::encode_hello_ack(s);
  const auto d = wire::decode_hello_ack(body.data(), body.size(), 0, 2);
  EXPECT_EQ(d.mode, 0);
  EXPECT_EQ(d.reason, "no memlock");
  EXPECT_THROW(wire::validate_placement(d, placement_blocks(), 1), MigrationError);
  // Truncated inside the keys; a mode that does not exist; trailing bytes.
  body = wire::encode_hello_ack(good_ack(2));
  EXPECT_THROW(wire::decode_hello_ack(body.data(), body.size() - 4, 0, 2), MigrationError);
  auto extra = body;
  extra.push_back(0);
  EXPECT_THROW(wire::decode_hello_ack(extra.data(), extra.size(), 0, 2), MigrationError);
  body[0] = 9;
  EXPECT_THROW(wire::decode_hello_ack(body.data(), body.size(), 0, 2), MigrationError);
}

TEST(EnginePlacement, PlacedRecordsOnlyWhenAdvertisedAndOnlyNormal) {
  std::vector<uint8_t> mem(4 * kPage);
  std::vector<RamBlock> blocks{RamBlock{"ram0", mem.data(), mem.size(), kPage}};
  wire::DataLimits lim;
  lim.blocks = &blocks;
  lim.max_records = 4;
  lim.owned_payload_cap = 4 * kPage;
  auto decode = [&](std::vector<wire::Record> recs, uint32_t payload) {
    std::vector<uint8_t> bytes(recs.size() * wire::kRecordSize);
    uint32_t pages = 0;
    for (size_t i = 0; i < recs.size(); ++i) {
      wire::encode_record(recs[i], bytes.data() + i * wire::kRecordSize);
      pages += recs[i].kind == PageKind::kZero ? recs[i].length : 1;
    }
    wire::Header h;
    h.packet = 5;
    h.records = static_cast<uint32_t>(recs.size());
    h.pages = pages;
    h.payload = payload;
    std::vector<wire::Record> out(recs.size());
    wire::decode_records(h, bytes.data(), 1, lim, out.data());
    return out;
  };
  const wire::Record placed{0, kPage, PageKind::kNormal, true};
  const wire::Record normal{1, kPage, PageKind::kNormal, false};
  // Not advertised: refused.
  try {
    decode({placed}, 0);
    FAIL();
  } catch (const MigrationError& e) {
    EXPECT_NE(std::string(e.what()).find("no RDMA placement was advertised"), std::string::npos)
        << e.what();
  }
  lim.placement = true;
  // Advertised: no payload for the placed page, the stream one still carries its bytes.
  const auto out = decode({placed, normal}, kPage);
  EXPECT_TRUE(out[0].placed);
  EXPECT_FALSE(out[1].placed);
  EXPECT_THROW(decode({placed, normal}, 2 * kPage), MigrationError);  // payload lie
  // A placed ZERO run is nonsense.
  EXPECT_THROW(decode({wire::Record{0, 2, PageKind::kZero, true}}, 0), MigrationError);
}

}  // namespace
}  // namespace ferry
