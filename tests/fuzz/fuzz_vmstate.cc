// libFuzzer target for the vmstate input visitors, loading into the test device of
// tests/vmstate/fixtures (every field kind, version-gated and field_exists fields, two
// subsections, a struct pointer allocated on load, a QTAILQ list allocated per element).
// Built three times (tests/fuzz/CMakeLists.txt), FERRY_FUZZ_ENCODING selecting the entry point:
//   1 fuzz_vmstate_binary  BinaryInput + load_section, whatever the first bytes are;
//   2 fuzz_vmstate_ber     BerInput + load_section, whatever the first bytes are;
//   0 fuzz_vmstate_any     load_any (format detection from the first 4 bytes).
// Properties checked beyond "no crash, no sanitizer report, no leak":
//   - a failed load has a message;
//   - a successful load saves again in both encodings, and each of those loads back into a
//     device equal (diff_dev) to the first one.
// Everything is released with ferry_vms_release, so LeakSanitizer checks what loading allocated.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "engine/vmstate/ber_input.h"
#include "engine/vmstate/binary_input.h"
#include "engine/vmstate/input.h"
#include "engine/vmstate/walker.h"
#include "tests/vmstate/fixtures.h"

#ifndef FERRY_FUZZ_ENCODING
#error "FERRY_FUZZ_ENCODING must be 0 (any), 1 (binary) or 2 (BER)"
#endif

namespace {

using namespace ferry::vmstate;
using test::Dev;
using test::kDevVmsd;

struct DevHolder {
  Dev d{};
  ~DevHolder() { ferry_vms_release(&kDevVmsd, &d); }
};

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "fuzz_vmstate: property violated: %s\n", what.c_str());
  std::abort();
}

Status load(std::span<const uint8_t> data, Dev& d) {
#if FERRY_FUZZ_ENCODING == 1
  BinaryInput in(data);
  return load_section(kDevVmsd, &d, in);
#elif FERRY_FUZZ_ENCODING == 2
  BerInput in(data);
  return load_section(kDevVmsd, &d, in);
#else
  return load_any(kDevVmsd, &d, data);
#endif
}

void check_round_trip(Dev& loaded, Encoding e) {
  std::vector<uint8_t> out;
  Status st = save_to(e, kDevVmsd, &loaded, out);
  if (!st.ok()) fail(std::string("re-save as ") + encoding_name(e) + ": " + st.message());
  DevHolder again;
  st = load_any(kDevVmsd, &again.d, out);
  if (!st.ok()) fail(std::string("reload of ") + encoding_name(e) + ": " + st.message());
  const std::string diff = test::diff_dev(loaded, again.d);
  if (!diff.empty()) fail(std::string(encoding_name(e)) + " round trip differs in " + diff);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  DevHolder got;
  const Status st = load(std::span<const uint8_t>(data, size), got.d);
  if (!st.ok()) {
    if (st.message().empty()) fail("an error without a message");
    return 0;
  }
  check_round_trip(got.d, Encoding::kBinary);
  check_round_trip(got.d, Encoding::kBer);
  return 0;
}
