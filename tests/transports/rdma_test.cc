// rdma-only behaviour: RDMA WRITE placement into the peer's registered memory, validation of the
// peer's advertisement before anything is posted, and the no-device error. The transport suite
// (transport_test.cc) covers the stream part with the rdma parameter. Inside tools/rxe/run-in-vm
// these run on soft-RoCE; elsewhere they skip with the reason (the no-device test runs there).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <future>

#include "tests/transports/test_util.h"
#include "transports/rdma/rdma_transport.h"

namespace ferry::transport {
namespace {

using namespace testing;
using ::testing::HasSubstr;

std::string skip_reason() {
  std::string why = rdma::unavailable_reason();
  if (!why.empty()) return why;
  if (!std::getenv("FERRY_RXE_SERVER_ADDR")) return "FERRY_RXE_SERVER_ADDR is not set";
  return "";
}

std::string listen_uri() { return std::string("rdma:") + std::getenv("FERRY_RXE_SERVER_ADDR") + ":0"; }

#if FERRY_HAVE_RDMA
TEST(Rdma, NoDeviceIsAClearErrorSayingHowToCreateOne) {
  if (rdma::unavailable_reason().empty()) GTEST_SKIP() << "an RDMA device exists here";
  try {
    rdma::connect(parse_uri("rdma:10.0.0.1:4791"), test_options());
    FAIL() << "connected without a device";
  } catch (const TransportError& e) {
    EXPECT_EQ(e.error_code(), ENODEV);
    EXPECT_THAT(e.what(), HasSubstr("no RDMA device"));
    EXPECT_THAT(e.what(), HasSubstr("rdma link add rxe0 type rxe netdev"));
  }
  // Called directly: another test replaces the registry entry for "rdma".
  EXPECT_THROW(rdma::listen(parse_uri("rdma:0.0.0.0:0"), test_options()), TransportError);
}

#else

TEST(Rdma, LeftOutOfTheBuildIsAClearError) {
  for (const char* uri : {"rdma:10.0.0.1:4791", "rdma:0.0.0.0:0"}) {
    SCOPED_TRACE(uri);
    try {
      // Called directly: another test replaces the registry entry for "rdma".
      rdma::connect(parse_uri(uri), test_options());
      FAIL() << "connected without RDMA support";
    } catch (const TransportError& e) {
      EXPECT_EQ(e.error_code(), ENOTSUP);
      EXPECT_THAT(e.what(), HasSubstr("ferry was built without RDMA support"));
    }
    EXPECT_THROW(rdma::listen(parse_uri(uri), test_options()), TransportError);
  }
  EXPECT_THAT(rdma::unavailable_reason(), HasSubstr("built without RDMA support"));
}

#endif

struct Advert {
  uint64_t addr, length, key;
};

TEST(Rdma, WriteRemotePlacesBytesAndASendAfterwardsSeesThemInPlace) {
  if (std::string why = skip_reason(); !why.empty()) GTEST_SKIP() << why;
  constexpr size_t kRegion = 8 << 20;
  std::vector<uint8_t> dst(kRegion, 0), src(kRegion);
  fill_pattern(src.data(), src.size(), 31, 0);
  Options o = test_options();
  std::string err = run_session(
      listen_uri(), 2, o, o,
      [&](Channel& ch) {
        ASSERT_TRUE(ch.capabilities() & kRemoteWrite);
        ASSERT_TRUE(ch.peer_capabilities() & kRemoteWrite);
        Advert a{};
        ch.recv(&a, sizeof a);
        // Channel i writes its half; the first quarter of each half from registered memory
        // (zero copy), the rest from plain memory (bounce copy), in pieces of 4 KiB pages.
        const size_t half = kRegion / 2, base = ch.index() * half;
        MemoryRegion mr = ch.register_memory(src.data() + base, half / 2);
        RemoteRegion remote{a.addr, a.length, a.key};
        std::vector<uint64_t> done;
        ch.set_send_callback([&](uint64_t c) { done.push_back(c); });
        uint64_t cookie = 0;
        for (size_t off = 0; off < half; off += 64 * 4096) {
          std::vector<iovec> pages;
          for (size_t p = 0; p < 64; ++p) pages.push_back(iovec{src.data() + base + off + p * 4096, 4096});
          ch.write_remote(pages, remote, base + off, cookie++);
        }
        uint64_t mark = 0xD0;
        ch.send_all(&mark, sizeof mark);
        ASSERT_EQ(done.size(), cookie + 1);
        for (uint64_t i = 0; i < cookie; ++i) EXPECT_EQ(done[i], i);
        ch.deregister_memory(mr);
      },
      [&](Channel& ch) {
        MemoryRegion mr = ch.register_memory(dst.data(), dst.size());
        Advert a{reinterpret_cast<uint64_t>(mr.addr), mr.length, mr.key};
        ch.send_all(&a, sizeof a);
        uint64_t mark = 0;
        ch.recv(&mark, sizeof mark);
        EXPECT_EQ(mark, 0xD0u);
        // Everything written before the SEND is in place once the SEND arrived.
        const size_t half = kRegion / 2, base = ch.index() * half;
        EXPECT_EQ(std::memcmp(dst.data() + base, src.data() + base, half), 0) << "channel " << ch.index();
      });
  ASSERT_EQ(err, "");
  EXPECT_EQ(find_mismatch(dst.data(), dst.size(), 31, 0), -1);
}

TEST(Rdma, OutOfRangeOrBadKeyRemoteWritesAreRefusedBeforePosting) {
  if (std::string why = skip_reason(); !why.empty()) GTEST_SKIP() << why;
  std::vector<uint8_t> dst(1 << 20, 0), src(8192, 0x5A);
  Options o = test_options();
  std::string err = run_session(
      listen_uri(), 1, o, o,
      [&](Channel& ch) {
        Advert a{};
        ch.recv(&a, sizeof a);
        RemoteRegion r{a.addr, a.length, a.key};
        iovec v{src.data(), src.size()};
        auto refused = [&](const RemoteRegion& rr, uint64_t off, const char* want) {
          try {
            ch.write_remote(std::span<const iovec>(&v, 1), rr, off, 1);
            ADD_FAILURE() << "posted: " << want;
          } catch (const TransportError& e) {
            EXPECT_EQ(e.error_code(), EINVAL);
            EXPECT_THAT(e.what(), HasSubstr(want));
          }
        };
        refused(r, a.length - 4096, "do not fit the peer's region");
        refused(r, a.length + 1, "do not fit");
        refused(r, ~uint64_t{0} - 100, "do not fit");
        refused(RemoteRegion{a.addr, a.length, uint64_t{1} << 40}, 0, "not an rkey");
        refused(RemoteRegion{~uint64_t{0} - 10, 4096 * 4, a.key}, 0, "wraps");
        // Nothing was posted and the channel still works: the last page fits exactly.
        ch.write_remote(std::span<const iovec>(&v, 1), r, a.length - src.size(), 2);
        uint64_t mark = 1;
        ch.send_all(&mark, sizeof mark);
      },
      [&](Channel& ch) {
        MemoryRegion mr = ch.register_memory(dst.data(), dst.size());
        Advert a{reinterpret_cast<uint64_t>(mr.addr), mr.length, mr.key};
        ch.send_all(&a, sizeof a);
        uint64_t mark = 0;
        ch.recv(&mark, sizeof mark);
        EXPECT_EQ(mark, 1u);
      });
  ASSERT_EQ(err, "");
  for (size_t i = 0; i < dst.size() - src.size(); ++i) ASSERT_EQ(dst[i], 0) << i;
  for (size_t i = dst.size() - src.size(); i < dst.size(); ++i) ASSERT_EQ(dst[i], 0x5A) << i;
}

}  // namespace
}  // namespace ferry::transport
