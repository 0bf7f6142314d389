// Every entry point's refusals: NULL arguments, calls in the wrong state, bad options, bad
// addresses; each is FERRY_ERR_INVALID with a message naming the function and the argument.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <thread>
#include <vector>

#include "engine/capi/opaque_device.h"
#include "ferry/uffd_wp_dirty_source.h"
#include "tests/capi/c_guest.h"
#include "tests/capi/capi_test_util.h"

namespace ferry::capi_test {
namespace {

using ::testing::HasSubstr;

int no_dirt(void*, uint64_t*, size_t) { return 0; }

// status == want and the message names each of `words`.
void expect_error(ferry_status got, ferry_status want, std::vector<const char*> words) {
  const std::string msg = ferry_last_error();
  EXPECT_EQ(got, want) << ferry_status_name(got) << ": " << msg;
  for (const char* w : words) EXPECT_THAT(msg, HasSubstr(w));
}

TEST(CapiBasics, VersionStatusNamesAndDefaults) {
  EXPECT_STREQ(ferry_version(), FERRY_VERSION_STRING);
  EXPECT_STREQ(ferry_status_name(FERRY_OK), "FERRY_OK");
  EXPECT_STREQ(ferry_status_name(FERRY_ERR_CANCELLED), "FERRY_ERR_CANCELLED");
  EXPECT_STREQ(ferry_status_name(static_cast<ferry_status>(99)), "FERRY_ERR_UNKNOWN");
  ferry_options o;
  std::memset(&o, 0xff, sizeof o);
  ferry_options_init(&o);
  EXPECT_EQ(o.struct_size, sizeof(ferry_options));
  EXPECT_EQ(o.channels, 1u);
  EXPECT_EQ(o.accept_timeout_ms, 60000u);
  EXPECT_EQ(o.io_timeout_ms, 60000u);  // a silent peer cannot block run() for good
  EXPECT_EQ(o.page_table_zero, 1u);
  EXPECT_EQ(o.zero_pages, 1u);
  EXPECT_EQ(o.xbzrle_cache_bytes, 256u << 20);
  ferry_options_init(nullptr);  // harmless
  ferry_free(nullptr);
  ferry_source_free(nullptr);
  ferry_destination_free(nullptr);
  ferry_source_cancel(nullptr);
  ferry_destination_cancel(nullptr);
}

TEST(CapiOptions, StructSizeAndRanges) {
  ferry_source* s = nullptr;
  ferry_destination* d = nullptr;
  ferry_options o;
  ferry_options_init(&o);
  o.struct_size = 16;
  expect_error(ferry_source_new(&o, &s), FERRY_ERR_INVALID,
               {"ferry_source_new", "options->struct_size 16 is smaller than 72"});
  EXPECT_EQ(s, nullptr);

  // A newer caller's larger struct: fine while the fields we do not know are zero.
  struct Newer {
    ferry_options known;
    uint64_t future_field;
  } newer{};
  ferry_options_init(&newer.known);
  newer.known.struct_size = sizeof newer;
  ASSERT_EQ(ferry_source_new(&newer.known, &s), FERRY_OK) << ferry_last_error();
  ferry_source_free(s);
  newer.future_field = 1;
  expect_error(ferry_source_new(&newer.known, &s), FERRY_ERR_INVALID,
               {"ferry_source_new", ("non-zero fields past the " +
                                     std::to_string(sizeof(ferry_options)) + " bytes").c_str()});

  ferry_options_init(&o);
  o.channels = 0;
  expect_error(ferry_source_new(&o, &s), FERRY_ERR_INVALID,
               {"options->channels 0 is not in 1..64 for a source"});
  ASSERT_EQ(ferry_destination_new(&o, &d), FERRY_OK) << ferry_last_error();  // 0 = as the source says
  ferry_destination_free(d);
  o.channels = 65;
  expect_error(ferry_source_new(&o, &s), FERRY_ERR_INVALID, {"options->channels 65"});
  expect_error(ferry_destination_new(&o, &d), FERRY_ERR_INVALID,
               {"ferry_destination_new", "options->channels 65 is not in 0..64"});
  ferry_options_init(&o);
  o.xbzrle = 2;
  expect_error(ferry_source_new(&o, &s), FERRY_ERR_INVALID, {"options->xbzrle is 2, not 0 or 1"});
  ferry_options_init(&o);
  o.page_table_zero = 2;
  expect_error(ferry_source_new(&o, &s), FERRY_ERR_INVALID,
               {"options->page_table_zero is 2, not 0 or 1"});
  ferry_options_init(&o);
  o.verify = 3;
  expect_error(ferry_source_new(&o, &s), FERRY_ERR_INVALID,
               {"options->verify must be FERRY_VERIFY_OFF, FERRY_VERIFY_DIGEST or "
                "FERRY_VERIFY_FULL"});
  ferry_options_init(&o);
  o.accept_timeout_ms = 0;
  expect_error(ferry_destination_new(&o, &d), FERRY_ERR_INVALID, {"accept_timeout_ms"});
  EXPECT_EQ(ferry_source_new(nullptr, &s), FERRY_OK);  // NULL options = defaults
  ferry_source_free(s);
}

TEST(CapiErrors, NullArgumentsAreNamed) {
  Memory mem(1 << 20);
  const ferry_ram_block block = {"ram", mem.data(), mem.size(), 4096, 0};
  ferry_source* s = nullptr;
  ferry_destination* d = nullptr;
  ASSERT_EQ(ferry_source_new(nullptr, &s), FERRY_OK);
  ASSERT_EQ(ferry_destination_new(nullptr, &d), FERRY_OK);
  ferry_device_ops ops = c_blob_ops(16, 1);
  ferry_hooks hooks{};
  ferry_progress progress;
  char* text = nullptr;
  const FerryVmsDescription* vmsd = nullptr;

  expect_error(ferry_source_new(nullptr, nullptr), FERRY_ERR_INVALID, {"ferry_source_new", "out is NULL"});
  expect_error(ferry_destination_new(nullptr, nullptr), FERRY_ERR_INVALID, {"ferry_destination_new", "out"});
  expect_error(ferry_source_add_ram(nullptr, &block, no_dirt, nullptr), FERRY_ERR_INVALID,
               {"ferry_source_add_ram", "source is NULL"});
  expect_error(ferry_source_add_ram(s, nullptr, no_dirt, nullptr), FERRY_ERR_INVALID,
               {"ferry_source_add_ram", "block is NULL"});
  expect_error(ferry_source_add_ram(s, &block, nullptr, nullptr), FERRY_ERR_INVALID,
               {"ferry_source_add_ram", "fetch is NULL"});
  ferry_ram_block unnamed = block;
  unnamed.name = nullptr;
  expect_error(ferry_source_add_ram(s, &unnamed, no_dirt, nullptr), FERRY_ERR_INVALID,
               {"block->name is NULL"});
  expect_error(ferry_source_add_ram_kvm(nullptr, &block, 3, 0, 0), FERRY_ERR_INVALID,
               {"ferry_source_add_ram_kvm", "source"});
  expect_error(ferry_source_add_ram_kvm(s, nullptr, 3, 0, 0), FERRY_ERR_INVALID,
               {"ferry_source_add_ram_kvm", "block is NULL"});
  expect_error(ferry_source_add_ram_kvm(s, &block, -1, 0, 0), FERRY_ERR_INVALID, {"vm_fd -1"});
  expect_error(ferry_source_add_ram_kvm(s, &block, 3, 0, 6), FERRY_ERR_INVALID, {"flags 6"});
  expect_error(ferry_source_add_ram_tracked(nullptr, &block), FERRY_ERR_INVALID,
               {"ferry_source_add_ram_tracked", "source"});
  expect_error(ferry_source_add_ram_tracked(s, nullptr), FERRY_ERR_INVALID,
               {"ferry_source_add_ram_tracked", "block is NULL"});
  expect_error(ferry_source_add_device(nullptr, "x", 0, vmsd, nullptr), FERRY_ERR_INVALID,
               {"ferry_source_add_device", "source"});
  expect_error(ferry_source_add_device(s, nullptr, 0, vmsd, nullptr), FERRY_ERR_INVALID,
               {"ferry_source_add_device", "idstr is NULL"});
  expect_error(ferry_source_add_device(s, "x", 0, nullptr, nullptr), FERRY_ERR_INVALID,
               {"ferry_source_add_device", "vmsd is NULL"});
  expect_error(ferry_destination_add_device(nullptr, "x", 0, vmsd, nullptr), FERRY_ERR_INVALID,
               {"ferry_destination_add_device", "destination"});
  expect_error(ferry_destination_add_device(d, "x", 0, nullptr, nullptr), FERRY_ERR_INVALID,
               {"ferry_destination_add_device", "vmsd is NULL"});
  expect_error(ferry_source_add_device_opaque(nullptr, "x", 0, &ops, nullptr), FERRY_ERR_INVALID,
               {"ferry_source_add_device_opaque", "source"});
  expect_error(ferry_source_add_device_opaque(s, "x", 0, nullptr, nullptr), FERRY_ERR_INVALID,
               {"ferry_source_add_device_opaque", "ops is NULL"});
  expect_error(ferry_source_add_device_opaque(s, nullptr, 0, &ops, nullptr), FERRY_ERR_INVALID,
               {"idstr is NULL"});
  expect_error(ferry_destination_add_device_opaque(d, "x", 0, nullptr, nullptr),
               FERRY_ERR_INVALID, {"ferry_destination_add_device_opaque", "ops is NULL"});
  expect_error(ferry_source_set_hooks(nullptr, &hooks), FERRY_ERR_INVALID,
               {"ferry_source_set_hooks", "source"});
  expect_error(ferry_source_set_hooks(s, nullptr), FERRY_ERR_INVALID,
               {"ferry_source_set_hooks", "hooks is NULL"});
  expect_error(ferry_source_connect(nullptr, "unix:/x"), FERRY_ERR_INVALID,
               {"ferry_source_connect", "source"});
  expect_error(ferry_source_connect(s, nullptr), FERRY_ERR_INVALID,
               {"ferry_source_connect", "uri is NULL"});
  expect_error(ferry_source_run(nullptr), FERRY_ERR_INVALID, {"ferry_source_run", "source"});
  expect_error(ferry_source_progress(nullptr, &progress), FERRY_ERR_INVALID,
               {"ferry_source_progress", "source"});
  expect_error(ferry_source_progress(s, nullptr), FERRY_ERR_INVALID,
               {"ferry_source_progress", "out is NULL"});
  expect_error(ferry_source_stats_json(nullptr, &text), FERRY_ERR_INVALID,
               {"ferry_source_stats_json", "source"});
  expect_error(ferry_source_stats_json(s, nullptr), FERRY_ERR_INVALID,
               {"ferry_source_stats_json", "json is NULL"});
  expect_error(ferry_destination_add_ram(nullptr, &block), FERRY_ERR_INVALID,
               {"ferry_destination_add_ram", "destination"});
  expect_error(ferry_destination_add_ram(d, nullptr), FERRY_ERR_INVALID,
               {"ferry_destination_add_ram", "block is NULL"});
  expect_error(ferry_destination_listen(nullptr, "unix:/x"), FERRY_ERR_INVALID,
               {"ferry_destination_listen", "destination"});
  expect_error(ferry_destination_listen(d, nullptr), FERRY_ERR_INVALID,
               {"ferry_destination_listen", "uri is NULL"});
  expect_error(ferry_destination_address(nullptr, &text), FERRY_ERR_INVALID,
               {"ferry_destination_address", "destination"});
  expect_error(ferry_destination_address(d, nullptr), FERRY_ERR_INVALID,
               {"ferry_destination_address", "uri is NULL"});
  expect_error(ferry_destination_run(nullptr), FERRY_ERR_INVALID,
               {"ferry_destination_run", "destination"});
  expect_error(ferry_destination_stats_json(nullptr, &text), FERRY_ERR_INVALID,
               {"ferry_destination_stats_json", "destination"});
  expect_error(ferry_destination_stats_json(d, nullptr), FERRY_ERR_INVALID,
               {"ferry_destination_stats_json", "json is NULL"});
  ferry_source_free(s);
  ferry_destination_free(d);
}

TEST(CapiErrors, BadBlocksAndDevicesAreRefusedWhenAdded) {
  Memory mem(1 << 20);
  ferry_source* s = nullptr;
  ASSERT_EQ(ferry_source_new(nullptr, &s), FERRY_OK);
  ferry_ram_block b = {"ram", mem.data(), mem.size(), 4096, 0};
  ASSERT_EQ(ferry_source_add_ram(s, &b, no_dirt, nullptr), FERRY_OK) << ferry_last_error();
  expect_error(ferry_source_add_ram(s, &b, no_dirt, nullptr), FERRY_ERR_INVALID,
               {"ferry_source_add_ram", "block 'ram': duplicate name"});
  ferry_ram_block odd = {"odd", mem.data(), 5000, 4096, 0};
  expect_error(ferry_source_add_ram(s, &odd, no_dirt, nullptr), FERRY_ERR_INVALID,
               {"block 'odd'", "size 5000 is not a non-zero multiple of the page size 4096"});
  ferry_ram_block misaligned = {"mis", static_cast<char*>(mem.data()) + 8, 4096, 4096, 0};
  expect_error(ferry_source_add_ram(s, &misaligned, no_dirt, nullptr), FERRY_ERR_INVALID,
               {"block 'mis': host is not aligned"});
  ferry_ram_block flagged = {"flagged", mem.data(), 4096, 4096, 0x10};
  expect_error(ferry_source_add_ram(s, &flagged, no_dirt, nullptr), FERRY_ERR_INVALID,
               {"block->flags 16 has unknown bits"});
  Memory big(4 << 20);
  void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(big.data()) + (2 << 20) - 1) &
                                          ~uintptr_t{(2 << 20) - 1});
  ferry_ram_block huge = {"huge", aligned, 2 << 20, 2 << 20, 0};
  expect_error(ferry_source_add_ram_kvm(s, &huge, 3, 0, 0), FERRY_ERR_INVALID,
               {"page_size 2097152 must be the host page size 4096"});

  ferry_device_ops ops = c_blob_ops(0, 1);
  expect_error(ferry_source_add_device_opaque(s, "dev", 0, &ops, nullptr), FERRY_ERR_INVALID,
               {"ferry_source_add_device_opaque", "ops->max_bytes 0 is not in 1.."});
  ops = c_blob_ops(capi::kMaxOpaqueDeviceBytes + 1, 1);
  expect_error(ferry_source_add_device_opaque(s, "dev", 0, &ops, nullptr), FERRY_ERR_INVALID,
               {"at most 4 MiB"});
  ops = c_blob_ops(16, 0);
  expect_error(ferry_source_add_device_opaque(s, "dev", 0, &ops, nullptr), FERRY_ERR_INVALID,
               {"ops->version 0"});
  ops = c_blob_ops(16, 1);
  ops.load = nullptr;
  expect_error(ferry_source_add_device_opaque(s, "dev", 0, &ops, nullptr), FERRY_ERR_INVALID,
               {"ops->load is NULL"});
  ops = c_blob_ops(16, 1);
  ASSERT_EQ(ferry_source_add_device_opaque(s, "dev", 0, &ops, nullptr), FERRY_OK);
  expect_error(ferry_source_add_device_opaque(s, "dev", 0, &ops, nullptr), FERRY_ERR_INVALID,
               {"ferry_source_add_device_opaque", "device 'dev' instance 0 registered twice"});
  const std::string long_id(256, 'x');
  expect_error(ferry_source_add_device_opaque(s, long_id.c_str(), 0, &ops, nullptr),
               FERRY_ERR_INVALID, {"must be 1..255 bytes"});
  ferry_source_free(s);
}

TEST(CapiErrors, CallsInTheWrongStateAreRefused) {
  Memory mem(1 << 20);
  const ferry_ram_block b = {"ram", mem.data(), mem.size(), 4096, 0};
  ferry_source* s = nullptr;
  ASSERT_EQ(ferry_source_new(nullptr, &s), FERRY_OK);
  expect_error(ferry_source_run(s), FERRY_ERR_INVALID,
               {"ferry_source_run", "not connected (call ferry_source_connect first)"});
  char* text = nullptr;
  ASSERT_EQ(ferry_source_stats_json(s, &text), FERRY_OK);
  EXPECT_EQ(take_json(text)["status"], "none");

  ferry_destination* d = nullptr;
  ASSERT_EQ(ferry_destination_new(nullptr, &d), FERRY_OK);
  expect_error(ferry_destination_address(d, &text), FERRY_ERR_INVALID,
               {"ferry_destination_address", "not listening"});
  expect_error(ferry_destination_run(d), FERRY_ERR_INVALID,
               {"ferry_destination_run", "not listening"});
  TempDir dir;
  const std::string uri = "unix:" + dir.path() + "/sock";
  ASSERT_EQ(ferry_destination_listen(d, uri.c_str()), FERRY_OK) << ferry_last_error();
  expect_error(ferry_destination_listen(d, uri.c_str()), FERRY_ERR_INVALID,
               {"ferry_destination_listen", "already listening"});
  expect_error(ferry_destination_run(d), FERRY_ERR_INVALID,
               {"ferry_destination_run", "no RAM blocks"});
  Memory dst_mem(mem.size());
  const ferry_ram_block db = {"ram", dst_mem.data(), dst_mem.size(), 4096, FERRY_RAM_KNOWN_ZERO};
  ASSERT_EQ(ferry_destination_add_ram(d, &db), FERRY_OK);
  ASSERT_EQ(ferry_destination_stats_json(d, &text), FERRY_OK);
  EXPECT_EQ(take_json(text)["status"], "none");

  Outcome dst_outcome;
  std::thread dst_thread([&] {  // accepting, so connect's handshake gets an answer
    dst_outcome.status = ferry_destination_run(d);
    dst_outcome.error = ferry_last_error();
  });
  ASSERT_EQ(ferry_source_connect(s, uri.c_str()), FERRY_OK) << ferry_last_error();
  expect_error(ferry_source_connect(s, uri.c_str()), FERRY_ERR_INVALID,
               {"ferry_source_connect", "already connected"});
  expect_error(ferry_source_run(s), FERRY_ERR_INVALID, {"ferry_source_run", "no RAM blocks"});
  ASSERT_EQ(ferry_source_add_ram(s, &b, no_dirt, nullptr), FERRY_OK);
  EXPECT_EQ(ferry_source_run(s), FERRY_OK) << ferry_last_error();
  dst_thread.join();
  EXPECT_EQ(dst_outcome.status, FERRY_OK) << dst_outcome.error;

  // After run: everything that configures or runs is refused, stats and progress still work.
  const ferry_device_ops ops = c_blob_ops(16, 1);
  const ferry_hooks hooks{};
  ferry_ram_block other = b;
  other.name = "other";
  expect_error(ferry_source_run(s), FERRY_ERR_INVALID, {"ferry_source_run", "already ran"});
  expect_error(ferry_source_add_ram(s, &other, no_dirt, nullptr), FERRY_ERR_INVALID,
               {"ferry_source_add_ram", "not allowed after ferry_source_run"});
  expect_error(ferry_source_add_ram_tracked(s, &other), FERRY_ERR_INVALID,
               {"ferry_source_add_ram_tracked", "after ferry_source_run"});
  expect_error(ferry_source_add_device_opaque(s, "x", 0, &ops, nullptr), FERRY_ERR_INVALID,
               {"after ferry_source_run"});
  expect_error(ferry_source_set_hooks(s, &hooks), FERRY_ERR_INVALID,
               {"ferry_source_set_hooks", "after ferry_source_run"});
  expect_error(ferry_source_connect(s, uri.c_str()), FERRY_ERR_INVALID,
               {"ferry_source_connect", "after ferry_source_run"});
  expect_error(ferry_destination_run(d), FERRY_ERR_INVALID,
               {"ferry_destination_run", "already ran"});
  expect_error(ferry_destination_add_ram(d, &other), FERRY_ERR_INVALID,
               {"ferry_destination_add_ram", "after ferry_destination_run"});
  expect_error(ferry_destination_add_device_opaque(d, "x", 0, &ops, nullptr), FERRY_ERR_INVALID,
               {"after ferry_destination_run"});
  ferry_progress p{};
  EXPECT_EQ(ferry_source_progress(s, &p), FERRY_OK);
  EXPECT_GT(p.wire_bytes, 0u);
  EXPECT_EQ(source_stats(s)["status"], "completed");
  ferry_source_free(s);
  ferry_destination_free(d);
}

TEST(CapiErrors, BadAddressesSayWhatIsWrong) {
  ferry_source* s = nullptr;
  ferry_destination* d = nullptr;
  ASSERT_EQ(ferry_source_new(nullptr, &s), FERRY_OK);
  ASSERT_EQ(ferry_destination_new(nullptr, &d), FERRY_OK);
  expect_error(ferry_source_connect(s, "tcp:nohost"), FERRY_ERR_INVALID,
               {"ferry_source_connect", "invalid address 'tcp:nohost'", "missing ':PORT'"});
  expect_error(ferry_destination_listen(d, "bogus:1"), FERRY_ERR_INVALID,
               {"ferry_destination_listen", "unknown scheme 'bogus'"});
  // Well-formed but nobody there: a transport error naming the address.
  ferry_options o;
  ferry_options_init(&o);
  o.connect_timeout_ms = 200;
  ferry_source* quick = nullptr;
  ASSERT_EQ(ferry_source_new(&o, &quick), FERRY_OK);
  TempDir dir;
  const std::string nobody = "unix:" + dir.path() + "/nobody";
  expect_error(ferry_source_connect(quick, nobody.c_str()), FERRY_ERR_TRANSPORT,
               {"ferry_source_connect", "nobody"});
  ferry_source_free(quick);
  ferry_source_free(s);
  ferry_destination_free(d);
}

TEST(CapiErrors, TrackedMemoryWorksOrSaysWhyNot) {
  Memory mem(1 << 20);
  const ferry_ram_block b = {"ram", mem.data(), mem.size(), 4096, 0};
  ferry_source* s = nullptr;
  ASSERT_EQ(ferry_source_new(nullptr, &s), FERRY_OK);
  const ferry_status st = ferry_source_add_ram_tracked(s, &b);
  if (UffdWpDirtySource::probe().empty()) {
    EXPECT_EQ(st, FERRY_OK) << ferry_last_error();
  } else {
    expect_error(st, FERRY_ERR_SYSTEM, {"ferry_source_add_ram_tracked", "block 'ram'"});
  }
  ferry_source_free(s);
}

}  // namespace
}  // namespace ferry::capi_test
