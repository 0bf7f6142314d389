// QEMU's vmdesc: a JSON description of what a device section's body holds, so a reader without
// the device code (scripts/analyze-migration.py, `ferry dump`) can decode it. Like QEMU (which
// builds it in vmstate_save_state_v while saving), the description is of one save: it lists the
// fields present in the saved version, variable arrays with the count they had, and only the
// subsections that were needed. So it is produced by the save itself: save_state_described()
// writes the body with BinaryOutput and describes it in the same walk, and the two cannot
// disagree.
//
// Shape (QEMU 7.2..10.0, savevm.c / vmstate.c), one object per body / struct / subsection:
//   {"vmsd_name": d.name, "version": v, "fields": [F...], "subsections": [S...]}
//   ("subsections" only when at least one was saved; S has the same shape)
// F, one per field (arrays of scalars, and of structs without subsections or field_exists,
// are "compressed" into one entry; other struct arrays get one entry per element with "index"):
//   {"name", ["array_len": n (n > 1)], ["index": i], "type", ["struct": {...}], "size"}
//   type: "bool", "uint8".."uint64", "int8".."int64", "buffer", "unused_buffer", "struct",
//         lists: "qtailq" (QEMU's marker-byte loop), "ferry list marker-field",
//         "ferry list count32"; size: bytes of one element (scalars, compressed arrays) or
//         bytes the field took on the wire (structs, lists: decoders show lists as hex bytes).
// A device entry of the document adds "name" (idstr) and "instance_id" in front:
//   {"page_size": N, "devices": [{"name", "instance_id", "vmsd_name", "version", "fields",
//   "subsections"}...]}
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/vmstate/errors.h"
#include "ferry/vmstate.h"

namespace ferry::vmstate {

// save_state(d, opaque, BinaryOutput(out)) (appends to `out`, pre_save hooks run) and sets
// `desc` to the description of what was written (the object shape above). On error `desc`
// is unspecified.
Status save_state_described(const Description& d, void* opaque, std::vector<uint8_t>& out,
                            nlohmann::ordered_json& desc);

// {"name": idstr, "instance_id": instance_id} followed by the members of `body_desc`.
nlohmann::ordered_json vmdesc_device(std::string_view idstr, uint32_t instance_id,
                                     const nlohmann::ordered_json& body_desc);

// {"page_size": page_size, "devices": [...]} as compact JSON text (QEMU writes it compact).
std::string vmdesc_document(uint32_t page_size, const std::vector<nlohmann::ordered_json>& devices);

}  // namespace ferry::vmstate
