// Verification at completion (engine/ram/page_digest.h): the digests kept as pages are sent and
// land catch a page damaged on the way; only the full re-hash catches a page the dirty tracking
// never reported; the blackout covers the verification.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "ferry/bitmap_dirty_source.h"
#include "ferry/migration.h"
#include "tests/engine/migration_test_util.h"

namespace ferry {
namespace {

constexpr size_t kSize = 4 << 20;
constexpr size_t kPage = 4096;

// Flips one bit of the first page-sized payload it receives, after the real receive: the bytes
// a damaged link (or a buggy transport) would deliver. Headers and records are left alone, so
// the wire checks pass and only verification can notice.
class DamagingRecvChannel final : public testing::ForwardingChannel {
 public:
  using ForwardingChannel::ForwardingChannel;
  void recv(std::span<const iovec> iov) override {
    inner_->recv(iov);
    if (damaged_ || iov.empty() || iov[0].iov_len < kPage) return;
    static_cast<uint8_t*>(iov[0].iov_base)[100] ^= 0x10;
    damaged_ = true;
  }

 private:
  bool damaged_ = false;
};

struct Outcome {
  MigrationStats src;
  std::string src_err, dst_err;
  bool dst_verified = false;
};

// An idle guest (random pages) over tcp loopback; `damage` wraps the destination's channel 0,
// `on_iteration` runs on the source after each pass.
struct Pair {
  testing::GuardedMem src{kSize}, dst{kSize};
  ExplicitMarkSource marks{kSize / kPage};

  Pair() {
    testing::fill_guest(src.data(), kSize, kPage, 3);
    std::memset(dst.data(), 0, kSize);
  }

  Outcome migrate(MigrationConfig cfg, bool damage, MigrationHooks hooks = {}) {
    testing::ChannelPair p = testing::make_channels("tcp:127.0.0.1:0", 1);
    if (damage) p.dst[0] = std::make_unique<DamagingRecvChannel>(std::move(p.dst[0]));
    std::vector<std::unique_ptr<DirtySource>> sources;
    sources.push_back(std::make_unique<testing::DirtySourceProxy>(&marks));
    MigrationDestination d({RamBlock{"ram0", dst.data(), kSize, kPage}});
    MigrationSource s({RamBlock{"ram0", src.data(), kSize, kPage}}, std::move(sources), cfg,
                      std::move(hooks));
    Outcome r;
    std::thread dt([&] {
      try {
        r.dst_verified = d.run(std::move(p.dst)).verified;
      } catch (const MigrationError& e) {
        r.dst_err = e.what();
      }
    });
    try {
      r.src = s.run(std::move(p.src));
    } catch (const MigrationError& e) {
      r.src_err = e.what();
    }
    dt.join();
    return r;
  }
};

MigrationConfig verifying(bool full) {
  MigrationConfig cfg;
  cfg.verify = true;
  cfg.verify_full = full;
  return cfg;
}

TEST(Verify, DigestsMatchOnAnIntactMigration) {
  Pair p;
  const Outcome r = p.migrate(verifying(false), /*damage=*/false);
  ASSERT_EQ(r.src_err, "");
  ASSERT_EQ(r.dst_err, "");
  EXPECT_TRUE(r.src.verified);
  EXPECT_TRUE(r.dst_verified);
  EXPECT_EQ(testing::first_diff_page(p.src.data(), p.dst.data(), kSize, kPage), -1);
}

TEST(Verify, DigestsCatchAPageDamagedOnTheWay) {
  {
    // Without verification the damage goes unnoticed: what the check below must catch.
    Pair p;
    const Outcome r = p.migrate(MigrationConfig{}, /*damage=*/true);
    ASSERT_EQ(r.src_err, "");
    EXPECT_NE(testing::first_diff_page(p.src.data(), p.dst.data(), kSize, kPage), -1);
  }
  Pair p;
  const Outcome r = p.migrate(verifying(false), /*damage=*/true);
  EXPECT_EQ(r.src_err, "verification failed: block 'ram0' differs between source and destination");
  EXPECT_EQ(r.dst_err, r.src_err);  // DONE told the destination why
  EXPECT_FALSE(r.dst_verified);
}

// The guest writes a page after the bulk pass without the dirty tracking seeing it: the
// digests describe what was sent and agree; the full re-hash compares memory and does not.
TEST(Verify, OnlyTheFullRehashCatchesAPageTheTrackingMissed) {
  auto unseen_write = [](Pair& p) {
    MigrationHooks h;
    h.on_iteration = [&p](const IterationStats& is) {
      if (is.iteration == 0 && !is.final_pass) p.src.data()[7 * kPage + 9] ^= 0xFF;
    };
    return h;
  };
  {
    Pair p;
    const Outcome r = p.migrate(verifying(false), false, unseen_write(p));
    ASSERT_EQ(r.src_err, "");
    EXPECT_TRUE(r.src.verified);  // the documented limit of digests
    EXPECT_EQ(testing::first_diff_page(p.src.data(), p.dst.data(), kSize, kPage), 7);
  }
  Pair p;
  const Outcome r = p.migrate(verifying(true), false, unseen_write(p));
  EXPECT_EQ(r.src_err, "verification failed: block 'ram0' differs between source and destination");
  EXPECT_EQ(r.dst_err, r.src_err);
}

TEST(Verify, FullRehashPassesOnAnIntactMigration) {
  Pair p;
  const Outcome r = p.migrate(verifying(true), false);
  ASSERT_EQ(r.src_err, "");
  EXPECT_TRUE(r.src.verified);
  EXPECT_TRUE(r.dst_verified);
}

// The blackout runs from stop_guest to DONE: it contains the downtime (to CONFIRM) and the
// verification after it, and the JSON reports it.
TEST(Verify, BlackoutCoversDowntimeAndVerification) {
  Pair p;
  const Outcome r = p.migrate(verifying(true), false);
  ASSERT_EQ(r.src_err, "");
  EXPECT_GT(r.src.downtime_seconds, 0.0);
  EXPECT_GT(r.src.verify_seconds, 0.0);
  EXPECT_GE(r.src.blackout_seconds, r.src.downtime_seconds + r.src.verify_seconds);
  EXPECT_LE(r.src.blackout_seconds, r.src.total_seconds);
  const auto j = nlohmann::json::parse(to_json(r.src));
  EXPECT_EQ(j["blackout-us"].get<int64_t>(),
            static_cast<int64_t>(r.src.blackout_seconds * 1e6 + 0.5));
  EXPECT_GE(j["blackout"].get<int64_t>(), j["downtime"].get<int64_t>());
}

}  // namespace
}  // namespace ferry
