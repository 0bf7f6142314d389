// ferry_options.psk / psk_len / insecure through the C API: the same key migrates (and the
// library keeps its own copy of the bytes), another key fails both sides with the reason, bad
// key options are refused, and a destination will not listen off loopback without a key unless
// insecure.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cstring>

#include "tests/capi/c_guest.h"
#include "tests/capi/capi_test_util.h"

namespace ferry::capi_test {
namespace {

using ::testing::HasSubstr;

constexpr size_t kPages = 512;  // 2 MiB

struct GuestDeleter {
  void operator()(c_guest* g) const { c_guest_free(g); }
};
using Guest = std::unique_ptr<c_guest, GuestDeleter>;

ferry_options keyed(const uint8_t* key, uint32_t len) {
  ferry_options o;
  ferry_options_init(&o);
  o.psk = key;
  o.psk_len = len;
  o.accept_timeout_ms = 3000;
  o.handshake_timeout_ms = 2000;
  return o;
}

// Runs a source with `src_opts` against a destination with `dst_opts` over a unix socket.
struct Both {
  Outcome source;
  Outcome destination;
  bool same_memory = false;
};

Both migrate(const ferry_options& src_opts, const ferry_options& dst_opts,
            std::array<uint8_t, 32>* wipe_after_new = nullptr) {
  Guest g(c_guest_new(kPages, 3));
  TempDir dir;
  Destination dst(c_guest_bytes(g.get()), "pc.ram", &dst_opts);
  ferry_source* src = nullptr;
  EXPECT_EQ(ferry_source_new(&src_opts, &src), FERRY_OK) << ferry_last_error();
  // The contract: the caller may wipe its key once *_new returned.
  if (wipe_after_new) wipe_after_new->fill(0);
  const ferry_ram_block b = {"pc.ram", c_guest_memory(g.get()), c_guest_bytes(g.get()), 4096, 0};
  EXPECT_EQ(ferry_source_add_ram(src, &b, c_guest_fetch, g.get()), FERRY_OK);
  ferry_hooks hooks = c_guest_hooks(g.get());
  EXPECT_EQ(ferry_source_set_hooks(src, &hooks), FERRY_OK);
  const std::string address = dst.listen("unix:" + dir.path() + "/sock");
  dst.start();
  Both r;
  r.source.status = ferry_source_connect(src, address.c_str());
  if (r.source.status == FERRY_OK) r.source.status = ferry_source_run(src);
  r.source.error = ferry_last_error();
  r.destination = dst.wait();
  r.same_memory = std::memcmp(c_guest_memory(g.get()), dst.memory(), c_guest_bytes(g.get())) == 0;
  ferry_source_free(src);
  return r;
}

TEST(CapiAuth, SameKeyMigratesAndTheLibraryKeepsItsOwnCopy) {
  std::array<uint8_t, 32> src_key, dst_key;
  for (size_t i = 0; i < 32; ++i) src_key[i] = dst_key[i] = static_cast<uint8_t>(i * 7 + 1);
  const ferry_options so = keyed(src_key.data(), 32), dso = keyed(dst_key.data(), 32);
  const Both r = migrate(so, dso, &src_key);
  ASSERT_EQ(r.source.status, FERRY_OK) << r.source.error;
  ASSERT_EQ(r.destination.status, FERRY_OK) << r.destination.error;
  EXPECT_TRUE(r.same_memory);
}

TEST(CapiAuth, AnotherKeyFailsBothSidesWithTheReason) {
  std::array<uint8_t, 32> a{}, b{};
  a.fill(1);
  b.fill(2);
  const Both r = migrate(keyed(b.data(), 32), keyed(a.data(), 32));
  EXPECT_NE(r.source.status, FERRY_OK);
  EXPECT_THAT(r.source.error, HasSubstr("proof of the pre-shared key wrong"));
  EXPECT_NE(r.destination.status, FERRY_OK);
  EXPECT_THAT(r.destination.error, HasSubstr("did not prove the pre-shared key"));
}

TEST(CapiAuth, SourceWithoutKeyIsToldTheDestinationRequiresOne) {
  std::array<uint8_t, 32> a{};
  a.fill(1);
  const Both r = migrate(keyed(nullptr, 0), keyed(a.data(), 32));
  EXPECT_THAT(r.source.error, HasSubstr("the peer requires authentication and this end has no"));
  EXPECT_THAT(r.destination.error, HasSubstr("the peer offered none"));
}

TEST(CapiAuth, BadKeyOptionsAreRefused) {
  std::array<uint8_t, 32> k{};
  ferry_source* s = nullptr;
  ferry_options o = keyed(k.data(), 16);
  EXPECT_EQ(ferry_source_new(&o, &s), FERRY_ERR_INVALID);
  EXPECT_THAT(ferry_last_error(), HasSubstr("options->psk_len is 16; a pre-shared key needs at "
                                            "least 32 bytes"));
  o = keyed(nullptr, 32);
  EXPECT_EQ(ferry_source_new(&o, &s), FERRY_ERR_INVALID);
  EXPECT_THAT(ferry_last_error(), HasSubstr("options->psk and options->psk_len"));
  o = keyed(nullptr, 0);
  o.insecure = 2;
  EXPECT_EQ(ferry_source_new(&o, &s), FERRY_ERR_INVALID);
  EXPECT_THAT(ferry_last_error(), HasSubstr("options->insecure is 2"));
  EXPECT_EQ(s, nullptr);
}

TEST(CapiAuth, ListeningOffLoopbackNeedsAKeyOrInsecure) {
  ferry_options o = keyed(nullptr, 0);
  ferry_destination* d = nullptr;
  ASSERT_EQ(ferry_destination_new(&o, &d), FERRY_OK);
  EXPECT_NE(ferry_destination_listen(d, "tcp:0.0.0.0:0"), FERRY_OK);
  EXPECT_THAT(ferry_last_error(), HasSubstr("not loopback without authentication"));
  ferry_destination_free(d);
  o.insecure = 1;
  ASSERT_EQ(ferry_destination_new(&o, &d), FERRY_OK);
  EXPECT_EQ(ferry_destination_listen(d, "tcp:0.0.0.0:0"), FERRY_OK) << ferry_last_error();
  ferry_destination_free(d);
}

}  // namespace
}  // namespace ferry::capi_test
