#include "engine/vmstate/input.h"

#include <cstring>

#include "engine/vmstate/ber.h"
#include "engine/vmstate/ber_input.h"
#include "engine/vmstate/ber_output.h"
#include "engine/vmstate/binary_input.h"
#include "engine/vmstate/binary_output.h"
#include "engine/vmstate/qemu_wire.h"

namespace ferry::vmstate {

Encoding detect_encoding(std::span<const uint8_t> data) {
  if (data.size() < 4) return Encoding::kUnknown;
  if (std::memcmp(data.data(), kQemuFileMagic, 4) == 0) return Encoding::kBinary;
  if (std::memcmp(data.data(), ber::kSectionPrefix, 4) == 0) return Encoding::kBer;
  // Another BER writer may use a definite length: 7F 46, then a short or long length form.
  if (data[0] == ber::kSectionPrefix[0] && data[1] == ber::kSectionPrefix[1] &&
      data[2] != 0x80 && data[2] <= 0x88) {
    return Encoding::kBer;
  }
  return Encoding::kUnknown;
}

const char* encoding_name(Encoding e) {
  switch (e) {
    case Encoding::kBinary: return "binary";
    case Encoding::kBer: return "BER";
    case Encoding::kUnknown: break;
  }
  return "unknown";
}

Status load_any(const Description& d, void* opaque, std::span<const uint8_t> data,
                SectionIds* ids, Encoding* detected) {
  const Encoding e = detect_encoding(data);
  if (detected) *detected = e;
  switch (e) {
    case Encoding::kBinary: {
      BinaryInput in(data);
      return load_section(d, opaque, in, ids);
    }
    case Encoding::kBer: {
      BerInput in(data);
      return load_section(d, opaque, in, ids);
    }
    case Encoding::kUnknown: break;
  }
  uint8_t first[4] = {};
  std::memcpy(first, data.data(), data.size() < 4 ? data.size() : 4);
  return make_error(Errc::kUnknownFormat,
                    "unknown device state encoding: first bytes %02x %02x %02x %02x (%zu bytes)"
                    " are neither \"QEVM\" (binary) nor 7f 46 ... (BER)",
                    first[0], first[1], first[2], first[3], data.size());
}

Status save_to(Encoding e, const Description& d, void* opaque, std::vector<uint8_t>& out,
               SectionIds ids) {
  switch (e) {
    case Encoding::kBinary: {
      BinaryOutput v(out);
      return save_section(d, opaque, v, ids);
    }
    case Encoding::kBer: {
      BerOutput v(out);
      return save_section(d, opaque, v, ids);
    }
    case Encoding::kUnknown: break;
  }
  return make_error(Errc::kUnknownFormat, "no encoding chosen");
}

}  // namespace ferry::vmstate
