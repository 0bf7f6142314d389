// Reader for QEMU's migration stream (migration/savevm.c, "QEVM" version 3): header,
// configuration, START/PART/END/FULL sections with footers, COMMAND records, EOF and the vmdesc
// trailer. RAM sections go to a RamLoader, device sections to the vmdesc-driven decoder. See
// ../shared/corpus/README.md for the byte layout.
#pragma once

#include <cstdint>
#include <span>

#include "engine/stream/stream_format.h"

namespace ferry::stream {

inline constexpr uint32_t kQemuMagic = 0x5145564d;  // "QEVM"
inline constexpr uint32_t kQemuVersion = 3;

// Top-level record types (QEMU_VM_*).
namespace qemu_vm {
inline constexpr uint8_t kEof = 0x00;
inline constexpr uint8_t kSectionStart = 0x01;
inline constexpr uint8_t kSectionPart = 0x02;
inline constexpr uint8_t kSectionEnd = 0x03;
inline constexpr uint8_t kSectionFull = 0x04;
inline constexpr uint8_t kSubsection = 0x05;
inline constexpr uint8_t kVmDescription = 0x06;
inline constexpr uint8_t kConfiguration = 0x07;
inline constexpr uint8_t kCommand = 0x08;
inline constexpr uint8_t kSectionFooter = 0x7e;
}  // namespace qemu_vm

bool is_qemu_stream(std::span<const uint8_t> file);  // starts with "QEVM"
StreamInfo read_qemu_stream(std::span<const uint8_t> file, const ReadOptions& options);

}  // namespace ferry::stream
