#include "tools/ferry/demo_devices.h"

#include <cstring>
#include <random>

#include "ferry/vmstate.h"

namespace ferry::cli {
namespace {

struct Cpu {
  uint64_t regs[16];
  uint64_t rip;
  uint64_t rflags;
  uint32_t apic_id;
  bool halted;
  uint8_t nmsrs;
  uint64_t msrs[32];
  uint64_t tsc_deadline;  // subsection "cpu/tsc-deadline", only when armed (non-zero)
};

struct NetRequest {
  uint16_t head;  // descriptor index
  uint32_t len;
  FerryVmsTailqEntry link;
};

struct Net {
  uint32_t status;
  uint64_t rx_packets;
  uint64_t tx_packets;
  uint8_t mac[6];
  FerryVmsTailqHead inflight;
};

bool tsc_deadline_armed(void* o) { return static_cast<Cpu*>(o)->tsc_deadline != 0; }

const FerryVmsField kTscFields[] = {FERRY_VMS_UINT64(Cpu, tsc_deadline),
                                    FERRY_VMS_END_OF_FIELDS()};
const FerryVmsDescription kTscVmsd = {"cpu/tsc-deadline", 1, 1, &tsc_deadline_armed,
                                      nullptr, nullptr, kTscFields, nullptr};
const FerryVmsDescription* const kCpuSubsections[] = {&kTscVmsd, nullptr};
const FerryVmsField kCpuFields[] = {
    FERRY_VMS_ARRAY(Cpu, regs),        FERRY_VMS_UINT64(Cpu, rip),
    FERRY_VMS_UINT64(Cpu, rflags),     FERRY_VMS_UINT32(Cpu, apic_id),
    FERRY_VMS_BOOL(Cpu, halted),       FERRY_VMS_UINT8(Cpu, nmsrs),
    FERRY_VMS_VARRAY(Cpu, msrs, nmsrs), FERRY_VMS_END_OF_FIELDS()};
const FerryVmsDescription kCpuVmsd = {"cpu", 2, 1, nullptr, nullptr, nullptr, kCpuFields,
                                      kCpuSubsections};

const FerryVmsField kRequestFields[] = {FERRY_VMS_UINT16(NetRequest, head),
                                        FERRY_VMS_UINT32(NetRequest, len),
                                        FERRY_VMS_END_OF_FIELDS()};
const FerryVmsDescription kRequestVmsd = {"virtio-net/request", 1, 1, nullptr, nullptr, nullptr,
                                          kRequestFields, nullptr};
constexpr FerryVmsContainer kInflightQueue = FERRY_VMS_TAILQ_CONTAINER(NetRequest, link);
const FerryVmsList kInflightList = {FERRY_VMS_LOOP_MARKER, 0, &kInflightQueue, &kRequestVmsd,
                                    sizeof(NetRequest), &ferry_vms_malloc_allocator, 1024, 0};
const FerryVmsField kNetFields[] = {
    FERRY_VMS_UINT32(Net, status),     FERRY_VMS_UINT64(Net, rx_packets),
    FERRY_VMS_UINT64(Net, tx_packets), FERRY_VMS_BUFFER(Net, mac),
    FERRY_VMS_LIST(Net, inflight, kInflightList), FERRY_VMS_END_OF_FIELDS()};
const FerryVmsDescription kNetVmsd = {"virtio-net", 1, 1, nullptr, nullptr, nullptr, kNetFields,
                                      nullptr};

// The state --seed gives, into cpu/net (whose list must be empty).
void fill_from_seed(uint64_t seed, Cpu& cpu, Net& net) {
  std::mt19937_64 rng(seed ^ 0xde71ce5ull);
  for (auto& r : cpu.regs) r = rng();
  cpu.rip = 0xffffffff81000000ull + (rng() & 0xffff);
  cpu.rflags = 0x202;
  cpu.apic_id = static_cast<uint32_t>(seed & 0xff);
  cpu.halted = (seed & 1) != 0;
  cpu.nmsrs = static_cast<uint8_t>(8 + rng() % 16);
  for (uint8_t i = 0; i < cpu.nmsrs; ++i) cpu.msrs[i] = rng();
  cpu.tsc_deadline = (seed % 3 == 0) ? 0 : rng();
  net.status = 1;
  net.rx_packets = rng() % 1000000;
  net.tx_packets = rng() % 1000000;
  for (size_t i = 0; i < sizeof net.mac; ++i) net.mac[i] = static_cast<uint8_t>(rng());
  net.mac[0] = 0x52;  // locally administered, like QEMU's default 52:54:00:...
  const size_t inflight = 1 + rng() % 8;
  for (size_t i = 0; i < inflight; ++i) {
    auto* r = static_cast<NetRequest*>(
        ferry_vms_malloc_allocator.alloc(&ferry_vms_malloc_allocator, sizeof(NetRequest)));
    if (!r) throw std::bad_alloc();
    r->head = static_cast<uint16_t>(rng() % 256);
    r->len = static_cast<uint32_t>(64 + rng() % 1454);
    kInflightQueue.ops->append(&kInflightQueue, &net.inflight, r);
  }
}

std::vector<std::pair<uint16_t, uint32_t>> requests(Net& net) {
  std::vector<std::pair<uint16_t, uint32_t>> v;
  FerryVmsCursor cur{};
  for (void* e = kInflightQueue.ops->first(&kInflightQueue, &net.inflight, &cur); e;
       e = kInflightQueue.ops->next(&kInflightQueue, &net.inflight, &cur)) {
    v.emplace_back(static_cast<NetRequest*>(e)->head, static_cast<NetRequest*>(e)->len);
  }
  return v;
}

}  // namespace

struct DemoDevices::State {
  Cpu cpu{};
  Net net{};
};

DemoDevices::DemoDevices(uint64_t seed, bool source) : seed_(seed), state_(new State) {
  if (source) fill_from_seed(seed, state_->cpu, state_->net);
}

DemoDevices::~DemoDevices() { ferry_vms_release(&kNetVmsd, &state_->net); }

std::vector<Device> DemoDevices::devices() {
  return {Device{"cpu", 0, &kCpuVmsd, &state_->cpu},
          Device{"virtio-net", 0, &kNetVmsd, &state_->net}};
}

std::string DemoDevices::compare_with_seed() const {
  State want;
  fill_from_seed(seed_, want.cpu, want.net);
  std::string why;
  const Cpu& a = state_->cpu;
  const Cpu& b = want.cpu;
  if (std::memcmp(a.regs, b.regs, sizeof a.regs) != 0) why = "cpu: registers";
  else if (a.rip != b.rip || a.rflags != b.rflags) why = "cpu: rip/rflags";
  else if (a.apic_id != b.apic_id || a.halted != b.halted) why = "cpu: apic_id/halted";
  else if (a.nmsrs != b.nmsrs || std::memcmp(a.msrs, b.msrs, a.nmsrs * sizeof a.msrs[0]) != 0)
    why = "cpu: MSRs";
  else if (a.tsc_deadline != b.tsc_deadline) why = "cpu: tsc_deadline (subsection)";
  else if (state_->net.status != want.net.status || state_->net.rx_packets != want.net.rx_packets ||
           state_->net.tx_packets != want.net.tx_packets)
    why = "virtio-net: counters";
  else if (std::memcmp(state_->net.mac, want.net.mac, sizeof want.net.mac) != 0)
    why = "virtio-net: mac";
  else if (requests(state_->net) != requests(want.net))
    why = "virtio-net: in-flight request list";
  ferry_vms_release(&kNetVmsd, &want.net);
  return why.empty() ? "" : "device state differs from the seed's: " + why;
}

}  // namespace ferry::cli
