// Decodes a device payload (or any vmstate) from its vmdesc description, producing exactly what
// QEMU's scripts/analyze-migration.py prints for it:
//   - integers as "0x" + hex zero-padded to the field size; a negative signed value gets its
//     decimal appended: "0xffffffff (-1)". "uint8 equal"/"uint16 equal" count as signed there.
//   - bool as JSON true/false (first byte non-zero); every other type ("buffer",
//     "unused_buffer", "timer", "pci config", "tmp", unknown ones, ...) as space-separated hex
//     bytes of its "size"; "nullptr" as "nullptr"; "capability" as its string.
//   - "array_len" N: the field read N times; fields sharing a name collect into a list (one
//     element stays a bare value, as in the current analyzer); structs nest as objects.
//   - subsections: every one the description lists, in order, each introduced by 0x05, u8 name
//     length, name, be32 version; stored under the name read from the stream.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "engine/stream/byte_reader.h"

namespace ferry::stream {

inline constexpr uint8_t kQemuVmSubsection = 0x05;

// `desc` is an object with "fields" (and optionally "subsections"): a vmdesc device entry, a
// struct's "struct" member, or a subsection. `where` prefixes error messages ("section 'cpu'").
// Throws ParseError at the offending offset; reads nothing past what the description says.
nlohmann::ordered_json decode_vmstate(ByteReader& r, const nlohmann::json& desc,
                                      const std::string& where);

}  // namespace ferry::stream
