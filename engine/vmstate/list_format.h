// Part 1 of a list: the loop format on the wire (FerryVmsLoopFormat in vmstate.h). The byte
// values of QEMU's binary encoding; BER carries the same loop as [APPLICATION 3] with one item
// per element ([APPLICATION 6] {marker, element} for FERRY_VMS_LOOP_MARKER_FIELD).
#pragma once

#include <cstdint>

namespace ferry::vmstate {

inline constexpr uint8_t kLoopElementMarker = 1;  // QTAILQ: before each element
inline constexpr uint8_t kLoopEndMarker = 0;      // ends MARKER / MARKER_FIELD loops

}  // namespace ferry::vmstate
