// What a source may make a destination allocate or read is bounded by what the destination
// registered, not by what the source announces: the encoded-payload buffer HELLO asks for, and
// the number of device messages before COMPLETE.
#include <gtest/gtest.h>

#include <chrono>
#include <future>

#include "engine/ram/control.h"
#include "engine/ram/wire_format.h"
#include "ferry/migration.h"
#include "tests/engine/migration_test_util.h"

namespace ferry {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kSize = 64 * kPage;

// A destination with one block and no devices, whose source the test plays by hand.
struct HandFedDestination {
  testing::GuardedMem mem{kSize};
  testing::ChannelPair pair = testing::make_channels("tcp:127.0.0.1:0", 1);
  MigrationDestination dst{{RamBlock{"ram0", mem.data(), kSize, kPage}}};
  std::future<std::string> done;
  ram::ControlLink link;

  HandFedDestination() {
    done = std::async(std::launch::async, [this]() -> std::string {
      try {
        dst.run(std::move(pair.dst));
        return "";
      } catch (const MigrationError& e) {
        return e.what();
      }
    });
    link.ch = pair.src[0].get();
  }
  void hello(uint32_t batch_pages, uint32_t owned_payload_cap) {
    wire::Hello h;
    h.channels = 1;
    h.batch_pages = batch_pages;
    h.owned_payload_cap = owned_payload_cap;
    h.blocks.push_back({"ram0", kSize, kPage});
    link.send(wire::PacketType::kHello, wire::encode_hello(h));
  }
};

TEST(DestinationBounds, PayloadBoundLargerThanAnySourceNeedsIsRefused) {
  HandFedDestination d;
  // 16 pages of 4 KiB per batch need 64 KiB; 64 MiB per channel would be granted before.
  d.hello(16, 64u << 20);
  try {
    d.link.recv({wire::PacketType::kHelloAck}, "destination");
    ADD_FAILURE() << "the destination acknowledged the HELLO";
  } catch (const MigrationError& e) {
    EXPECT_NE(std::string(e.what()).find("destination reported: HELLO announces 67108864 bytes"),
              std::string::npos)
        << e.what();
  }
  const std::string err = d.done.get();
  EXPECT_NE(err.find("a source needs at most 65536"), std::string::npos) << err;
}

TEST(DestinationBounds, ExactlyWhatASourceNeedsIsAccepted) {
  HandFedDestination d;
  d.hello(16, static_cast<uint32_t>(wire::owned_payload_cap(
                  {RamBlock{"ram0", d.mem.data(), kSize, kPage}}, 16)));
  EXPECT_NO_THROW(d.link.recv({wire::PacketType::kHelloAck}, "destination"));
  d.link.ch->abort();
  EXPECT_NE(d.done.get(), "");
}

TEST(DestinationBounds, DeviceMessagesStopAtTheDevicesRegistered) {
  // No devices here: one VMDESC at most. A source that keeps sending device messages gets an
  // error after the second, not a destination reading until its timeout.
  HandFedDestination d;
  d.hello(16, 16 * kPage);
  d.link.recv({wire::PacketType::kHelloAck}, "destination");
  wire::Header sync;
  sync.type = wire::PacketType::kSync;
  sync.flags = wire::kFlagFinal;
  sync.packet = d.link.send_packet++;
  uint8_t head[wire::kHeaderSize];
  wire::encode_header(sync, head);
  d.pair.src[0]->send_all(head, sizeof head);
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<uint8_t> body(64, 0x5A);
  try {
    for (int i = 0; i < 2; ++i) d.link.send(wire::PacketType::kDevice, body);
  } catch (const std::exception&) {
    // The destination may already have closed.
  }
  const std::string err = d.done.get();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  EXPECT_FALSE(err.empty());
}

}  // namespace
}  // namespace ferry
