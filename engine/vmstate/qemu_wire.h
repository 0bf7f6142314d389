// QEMU's migration byte values used by the binary visitors (migration/savevm.c, vmstate.c).
#pragma once

#include <cstdint>

namespace ferry::vmstate {

inline constexpr uint8_t kQemuFileMagic[4] = {'Q', 'E', 'V', 'M'};  // QEMU_VM_FILE_MAGIC
inline constexpr uint32_t kQemuFileVersion = 3;                      // QEMU_VM_FILE_VERSION
inline constexpr uint8_t kQemuVmEof = 0x00;                          // QEMU_VM_EOF
inline constexpr uint8_t kQemuVmSectionFull = 0x04;                  // QEMU_VM_SECTION_FULL
inline constexpr uint8_t kQemuVmSubsection = 0x05;                   // QEMU_VM_SUBSECTION
inline constexpr uint8_t kQemuVmSectionFooter = 0x7e;                // QEMU_VM_SECTION_FOOTER

}  // namespace ferry::vmstate
