// Reading a standalone section without knowing its encoding: the first four bytes tell.
// "QEVM" -> binary (QEMU's stream header, see binary_output.h); 7F 46 80 02 -> BER as BerOutput
// writes it (see ber_output.h / ferry_vmstate.asn1); 7F 46 followed by a definite length octet
// (00..7F, 81..88) -> BER from another writer. Anything else is Errc::kUnknownFormat.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/vmstate/walker.h"

namespace ferry::vmstate {

enum class Encoding : uint8_t { kUnknown, kBinary, kBer };

Encoding detect_encoding(std::span<const uint8_t> data);
const char* encoding_name(Encoding e);

// Detects the encoding and loads the section into `opaque`.
Status load_any(const Description& d, void* opaque, std::span<const uint8_t> data,
                SectionIds* ids = nullptr, Encoding* detected = nullptr);

// Convenience: save a standalone section in one encoding (appends to `out`).
Status save_to(Encoding e, const Description& d, void* opaque, std::vector<uint8_t>& out,
               SectionIds ids = {});

}  // namespace ferry::vmstate
