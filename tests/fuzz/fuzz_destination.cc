// libFuzzer target for the live receiver: each input is what a source sends on the only channel
// of a session, fed to a real MigrationDestination (the 8-page block and the test device of the
// seed stream, tests/fuzz/make_seeds.cc) through an in-memory channel. The first input byte picks
// the kind of channel: bit 0 set, a one-way stream (as a stream file is read: no answers); clear,
// a two-way link whose answers (HELLO_ACK, CONFIRM, HASHES, SYNC_ACK) are dropped. The rest is the
// byte stream. run() must end with completion or a MigrationError, never crash, hang, leak, or
// write outside the block (canaries on both sides are checked after every input).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "ferry/migration.h"
#include "ferry/transport.h"
#include "ferry/transport_error.h"
#include "tests/vmstate/fixtures.h"

namespace {

using namespace ferry;

constexpr size_t kPage = 4096;
constexpr size_t kPages = 8;
constexpr size_t kGuard = kPage;
constexpr uint8_t kCanary = 0xA5;

// Delivers the input's bytes and then end of stream; swallows everything sent.
class InputChannel final : public transport::Channel {
 public:
  InputChannel(std::span<const uint8_t> input, bool one_way)
      : Channel(Identity{0, 1, 1, "fuzz-input", 0}), input_(input), one_way_(one_way) {}
  transport::Capabilities capabilities() const override {
    return one_way_ ? transport::kOneWay : 0;
  }
  transport::ChannelStats stats() const override { return {}; }
  std::string send_path() const override { return "fuzz input (sends dropped)"; }
  void send(std::span<const iovec>, uint64_t cookie) override {
    check_usable();
    if (on_send_) on_send_(cookie);
  }
  size_t poll_completions() override { return 0; }
  void wait_all() override { check_usable(); }
  void recv(std::span<const iovec> iov) override {
    check_usable();
    size_t want = 0;
    for (const iovec& v : iov) want += v.iov_len;
    if (input_.size() - at_ < want) {
      failed_ = true;
      throw transport::TransportError(0, "fuzz-input", 0,
                                      "end of input after " + std::to_string(input_.size() - at_) +
                                          " of " + std::to_string(want) + " bytes");
    }
    for (const iovec& v : iov) {
      std::memcpy(v.iov_base, input_.data() + at_, v.iov_len);
      at_ += v.iov_len;
    }
  }
  void close() override {}
  void abort() noexcept override { failed_ = true; }
  transport::MemoryRegion register_memory(void* addr, size_t len) override {
    return {0, addr, len, 0};
  }
  void deregister_memory(const transport::MemoryRegion&) override {}

 private:
  void check_usable() const {
    if (failed_) throw transport::TransportError(0, "fuzz-input", 0, "channel failed earlier");
  }
  std::span<const uint8_t> input_;
  size_t at_ = 0;
  bool one_way_;
  bool failed_ = false;
};

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "fuzz_destination: property violated: %s\n", what.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool one_way = data[0] & 1;
  std::vector<uint8_t> mem(kPages * kPage + 2 * kGuard + kPage, kCanary);
  auto base = reinterpret_cast<uintptr_t>(mem.data()) + kGuard;
  auto* block = reinterpret_cast<uint8_t*>((base + kPage - 1) / kPage * kPage);
  std::memset(block, 0, kPages * kPage);
  vmstate::test::Dev dev{};
  {
    MigrationDestination dst({RamBlock{"pc.ram", block, kPages * kPage, kPage}});
    dst.set_devices({Device{"dev", 0, &vmstate::test::kDevVmsd, &dev}});
    std::vector<transport::ChannelPtr> channels;
    channels.push_back(std::make_unique<InputChannel>(std::span(data + 1, size - 1), one_way));
    try {
      dst.run(std::move(channels));
    } catch (const MigrationError&) {
    }
  }
  ferry_vms_release(&vmstate::test::kDevVmsd, &dev);
  for (uint8_t* p = mem.data(); p < block; ++p) {
    if (*p != kCanary) fail("a byte before the block was written");
  }
  for (uint8_t* p = block + kPages * kPage; p < mem.data() + mem.size(); ++p) {
    if (*p != kCanary) fail("a byte after the block was written");
  }
  return 0;
}
