#include "engine/vmstate/visitor.h"

namespace ferry::vmstate {

const char* kind_name(FerryVmsKind k) {
  switch (k) {
    case FERRY_VMS_END: return "end";
    case FERRY_VMS_BOOL: return "bool";
    case FERRY_VMS_U8: return "u8";
    case FERRY_VMS_U16: return "u16";
    case FERRY_VMS_U32: return "u32";
    case FERRY_VMS_U64: return "u64";
    case FERRY_VMS_I8: return "i8";
    case FERRY_VMS_I16: return "i16";
    case FERRY_VMS_I32: return "i32";
    case FERRY_VMS_I64: return "i64";
    case FERRY_VMS_BUFFER: return "buffer";
    case FERRY_VMS_UNUSED: return "unused";
    case FERRY_VMS_STRUCT: return "struct";
    case FERRY_VMS_STRUCT_POINTER: return "struct pointer";
    case FERRY_VMS_LIST: return "list";
  }
  return "?";
}

const char* loop_format_name(FerryVmsLoopFormat f) {
  switch (f) {
    case FERRY_VMS_LOOP_MARKER: return "marker";
    case FERRY_VMS_LOOP_MARKER_FIELD: return "marker-field";
    case FERRY_VMS_LOOP_COUNT32: return "count32";
  }
  return "?";
}

}  // namespace ferry::vmstate
