// A destination fed hand-crafted packets: every lie on the wire is refused with an error that
// names the channel and the packet, and nothing is written outside the destination's blocks.
#include <gtest/gtest.h>

#include <cstring>
#include <future>

#include "engine/migration.h"
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

}  // namespace
}  // namespace ferry
