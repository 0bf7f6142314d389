// Mutated inputs (deterministic: fixed seeds) through both input visitors: every load must end
// with a Status, never a crash or an out-of-bounds access (run under ASan), and releasing what
// was loaded must free everything. Not a fuzzer (issue 5 item 7), a cheap always-on net.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "engine/vmstate/input.h"
#include "engine/vmstate/walker.h"
#include "tests/vmstate/fixtures.h"

namespace ferry::vmstate::test {
namespace {

using Bytes = std::vector<uint8_t>;

struct DevHolder {
  Dev d{};
  ~DevHolder() { ferry_vms_release(&kDevVmsd, &d); }
};

Bytes mutate(const Bytes& in, std::mt19937& rng) {
  Bytes b = in;
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits && !b.empty(); ++e) {
    const size_t at = rng() % b.size();
    switch (rng() % 5) {
      case 0: b[at] = static_cast<uint8_t>(rng()); break;                  // random byte
      case 1: b[at] ^= static_cast<uint8_t>(1u << (rng() % 8)); break;     // bit flip
      case 2: b.erase(b.begin() + static_cast<long>(at)); break;           // delete
      case 3: b.insert(b.begin() + static_cast<long>(at), static_cast<uint8_t>(rng())); break;
      case 4: b.resize(at); break;                                         // truncate
    }
  }
  // Keep the detection prefix most of the time so the decoders, not detection, get exercised.
  if (rng() % 8 != 0 && b.size() >= 4 && in.size() >= 4) std::copy_n(in.begin(), 4, b.begin());
  return b;
}

class Mutations : public ::testing::TestWithParam<Encoding> {};

TEST_P(Mutations, NeverCrashAndAlwaysRelease) {
  DevHolder src;
  fill_dev(src.d, 3);
  src.d.sub2_value = 9;
  Bytes good;
  ASSERT_TRUE(save_to(GetParam(), kDevVmsd, &src.d, good).ok());
  std::mt19937 rng(GetParam() == Encoding::kBinary ? 1234 : 5678);
  int accepted = 0;
  for (int i = 0; i < 3000; ++i) {
    const Bytes b = mutate(good, rng);
    DevHolder got;
    Status st = load_any(kDevVmsd, &got.d, b);
    if (st.ok()) {
      ++accepted;
    } else {
      EXPECT_FALSE(st.message().empty());
    }
  }
  // Some mutations only touch values; most must be refused.
  EXPECT_LT(accepted, 3000);
}

INSTANTIATE_TEST_SUITE_P(Vmstate, Mutations, ::testing::Values(Encoding::kBinary, Encoding::kBer),
                         [](const auto& i) { return std::string(encoding_name(i.param)); });

}  // namespace
}  // namespace ferry::vmstate::test
