// A destination that fails in the middle of the bulk pass tells the source why. Its receivers
// own the channels then and the source is busy sending, so the destination sends ERROR on the
// failing channel, lingers there, and aborts; the source's sends fail, and it reports the
// reason it finds queued on the channel ("the destination failed: ...") with the broken link
// as context, not only "Broken pipe". Real loopback migrations over tcp and unix; the damage is
// one bit of a DATA packet's records, flipped as the destination receives them.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "engine/ram/wire_format.h"
#include "ferry/bitmap_dirty_source.h"
#include "ferry/migration.h"
#include "tests/engine/migration_test_util.h"

namespace ferry {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kSize = 16 << 20;  // 32 packets of 128 pages: the bulk pass is under way

// Flips a bit of the records that follow the nth DATA header received on this channel: the
// receiver finds "records checksum mismatch" in the middle of the bulk pass.
class DamageRecords final : public testing::ForwardingChannel {
 public:
  DamageRecords(transport::ChannelPtr inner, int nth, std::atomic<bool>* fired)
      : ForwardingChannel(std::move(inner)), nth_(nth), fired_(fired) {}

  void recv(std::span<const iovec> iov) override {
    inner_->recv(iov);
    auto* p = static_cast<uint8_t*>(iov[0].iov_base);
    if (damage_next_) {
      damage_next_ = false;
      p[0] ^= 0x01;
      fired_->store(true);
      return;
    }
    if (iov.size() == 1 && iov[0].iov_len == wire::kHeaderSize && is_data_header(p)) {
      damage_next_ = ++seen_ == nth_;
    }
  }

 private:
  static bool is_data_header(const uint8_t* p) {
    uint32_t magic = 0;
    std::memcpy(&magic, p, 4);
    return magic == wire::kMagic && p[5] == static_cast<uint8_t>(wire::PacketType::kData);
  }

  const int nth_;
  std::atomic<bool>* fired_;
  int seen_ = 0;
  bool damage_next_ = false;
};

struct Outcome {
  bool fired = false;
  bool src_ok = false, dst_ok = false;
  std::string src_err, dst_err;
  bool guest_stopped = false;
  double seconds = 0;
};

// paced: a bandwidth limit that keeps the source in its bulk pass past the destination's linger.
Outcome migrate_with_damage(const std::string& uri, uint32_t channels, uint32_t damaged,
                            bool paced = false) {
  testing::GuardedMem src(kSize), dst(kSize);
  testing::fill_guest(src.data(), kSize, kPage, 5);
  testing::ChannelPair p = testing::make_channels(uri, channels);
  std::atomic<bool> fired{false};
  p.dst[damaged] = std::make_unique<DamageRecords>(std::move(p.dst[damaged]), 3, &fired);

  Outcome out;
  MigrationHooks hooks;
  hooks.stop_guest = [&] { out.guest_stopped = true; };
  std::vector<std::unique_ptr<DirtySource>> dirty;
  dirty.push_back(std::make_unique<ExplicitMarkSource>(kSize / kPage));
  MigrationConfig cfg;
  if (paced) cfg.bandwidth_limit_bytes_per_s = kSize / 2;  // a 2 s bulk pass
  MigrationSource s({RamBlock{"ram0", src.data(), kSize, kPage}}, std::move(dirty), cfg,
                    std::move(hooks));
  MigrationDestination d({RamBlock{"ram0", dst.data(), kSize, kPage}});

  const auto t0 = std::chrono::steady_clock::now();
  std::thread dt([&] {
    try {
      d.run(std::move(p.dst));
      out.dst_ok = true;
    } catch (const MigrationError& e) {
      out.dst_err = e.what();
    }
  });
  try {
    s.run(std::move(p.src));
    out.src_ok = true;
  } catch (const MigrationError& e) {
    out.src_err = e.what();
  }
  dt.join();
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out.fired = fired.load();
  return out;
}

void expect_reason_reached_source(const Outcome& r) {
  ASSERT_TRUE(r.fired) << "the damage never happened";
  ASSERT_FALSE(r.dst_ok);
  ASSERT_FALSE(r.src_ok);
  EXPECT_NE(r.dst_err.find("records checksum mismatch"), std::string::npos) << r.dst_err;
  // The destination's own reason, whole, and the link error the source saw as context.
  EXPECT_EQ(r.src_err.rfind("the destination failed: " + r.dst_err + " (the source saw: ", 0), 0u)
      << "source: " << r.src_err << "\ndestination: " << r.dst_err;
  EXPECT_FALSE(r.guest_stopped) << "the failure came in the bulk pass";
  // Bounded by the destination's linger (1 s), not by io_timeout (60 s here).
  EXPECT_LT(r.seconds, 20.0);
}

// Two channels, the second damaged: the source's sends on the other channel fail first, and the
// reason is still found on the channel that carried it.
TEST(DestinationError, ReasonReachesSourceMidBulkPassTcp) {
  expect_reason_reached_source(migrate_with_damage("tcp:127.0.0.1:0", 2, 1));
}

// One channel: the source keeps sending until the destination's linger ends (the bandwidth
// limit keeps it in the bulk pass that long; unpaced it would reach COMPLETE first and read
// the ERROR there, "destination reported: ...").
TEST(DestinationError, ReasonReachesSourceMidBulkPassUnixOneChannel) {
  expect_reason_reached_source(migrate_with_damage(testing::unix_uri(), 1, 0, true));
}

}  // namespace
}  // namespace ferry
