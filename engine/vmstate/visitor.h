// The one interface the walker drives. Output visitors read the values the walker hands them;
// input visitors overwrite them. The same calls happen in the same order in both directions, so
// an encoding is one class per direction and nothing else.
//
// Naming: `name` is the field's name for struct members and nullptr for array elements, list
// elements and the top-level body (BER wraps named values in a Field, debug prints "[i]").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/vmstate/errors.h"
#include "ferry/vmstate.h"

namespace ferry::vmstate {

// A standalone section (QEMU's SECTION_FULL: id, name, instance, version).
struct SectionHeader {
  std::string_view name;  // output: the description's name; input: from the stream
  uint32_t section_id = 0;
  uint32_t instance_id = 0;
  uint32_t version_id = 0;
};

struct SubsectionHeader {
  bool present = false;   // input: false when this struct has no (more) subsections
  std::string_view name;  // input: points into the input buffer
  uint32_t version_id = 0;
};

struct ListHeader {
  FerryVmsLoopFormat format = FERRY_VMS_LOOP_MARKER;
  uint32_t count = 0;        // output: number of elements; input: set when the encoding knows it
  bool count_known = false;  // input: the encoding carried a count (binary COUNT32)
  uint32_t remaining = 0;    // visitor's own bookkeeping for counted loops
};

struct ListItem {
  bool more = false;   // output: set by the walker (false once, after the last element)
  uint8_t marker = 1;  // marker byte (FERRY_VMS_LOOP_MARKER_FIELD: the element's field)
};

class Visitor {
 public:
  virtual ~Visitor() = default;

  virtual bool is_input() const = 0;
  // Current position in the encoding (bytes), for error messages.
  virtual size_t offset() const = 0;

  virtual Status start_section(SectionHeader& h) = 0;
  virtual Status end_section(const SectionHeader& h) = 0;

  virtual Status start_struct(const char* name, const Description& d) = 0;
  virtual Status end_struct(const char* name, const Description& d) = 0;

  // Output: writes the header of the subsection h.name. Input: reads the next subsection header
  // of `parent`'s struct, or sets h.present = false when there is none.
  virtual Status start_subsection(const Description& parent, SubsectionHeader& h) = 0;
  virtual Status end_subsection(const Description& parent, const SubsectionHeader& h) = 0;

  virtual Status visit_bool(const char* name, bool& v) = 0;
  virtual Status visit_u8(const char* name, uint8_t& v) = 0;
  virtual Status visit_u16(const char* name, uint16_t& v) = 0;
  virtual Status visit_u32(const char* name, uint32_t& v) = 0;
  virtual Status visit_u64(const char* name, uint64_t& v) = 0;
  virtual Status visit_i8(const char* name, int8_t& v) = 0;
  virtual Status visit_i16(const char* name, int16_t& v) = 0;
  virtual Status visit_i32(const char* name, int32_t& v) = 0;
  virtual Status visit_i64(const char* name, int64_t& v) = 0;
  virtual Status visit_buffer(const char* name, uint8_t* data, size_t len) = 0;
  virtual Status visit_unused(const char* name, size_t len) = 0;

  // Arrays: the count is known from the description (fixed) or from the count field.
  virtual Status start_array(const char* name, uint32_t count) = 0;
  virtual Status end_array(const char* name) = 0;

  // Lists: start_list, then list_next before every element and once more with more == false
  // (input: the visitor sets more/marker), end_list_item after each element, end_list.
  virtual Status start_list(const char* name, ListHeader& h) = 0;
  virtual Status list_next(ListHeader& h, ListItem& item) = 0;
  virtual Status end_list_item(ListHeader& h, const ListItem& item) = 0;
  virtual Status end_list(const char* name, ListHeader& h) = 0;
};

// Helper base: funnels the nine scalar kinds into one call carrying the kind and the value
// (zero- or sign-extended to 64 bits). Input visitors must only store values that fit the kind.
class ScalarFunnelVisitor : public Visitor {
 public:
  Status visit_bool(const char* name, bool& v) final;
  Status visit_u8(const char* name, uint8_t& v) final { return funnel(name, FERRY_VMS_U8, v); }
  Status visit_u16(const char* name, uint16_t& v) final { return funnel(name, FERRY_VMS_U16, v); }
  Status visit_u32(const char* name, uint32_t& v) final { return funnel(name, FERRY_VMS_U32, v); }
  Status visit_u64(const char* name, uint64_t& v) final { return funnel(name, FERRY_VMS_U64, v); }
  Status visit_i8(const char* name, int8_t& v) final { return funnel(name, FERRY_VMS_I8, v); }
  Status visit_i16(const char* name, int16_t& v) final { return funnel(name, FERRY_VMS_I16, v); }
  Status visit_i32(const char* name, int32_t& v) final { return funnel(name, FERRY_VMS_I32, v); }
  Status visit_i64(const char* name, int64_t& v) final { return funnel(name, FERRY_VMS_I64, v); }

 protected:
  // kind is FERRY_VMS_BOOL (value 0/1) or one of the integer kinds.
  virtual Status visit_scalar(const char* name, FerryVmsKind kind, uint64_t& value) = 0;

 private:
  template <typename T>
  Status funnel(const char* name, FerryVmsKind kind, T& v) {
    uint64_t raw = static_cast<uint64_t>(v);  // sign-extends signed types
    Status st = visit_scalar(name, kind, raw);
    if (st.ok() && is_input()) v = static_cast<T>(raw);
    return st;
  }
};

inline Status ScalarFunnelVisitor::visit_bool(const char* name, bool& v) {
  uint64_t raw = v ? 1 : 0;
  Status st = visit_scalar(name, FERRY_VMS_BOOL, raw);
  if (st.ok() && is_input()) v = raw != 0;
  return st;
}

// Width in bytes / signedness / printable name of a scalar kind.
constexpr size_t scalar_width(FerryVmsKind k) {
  switch (k) {
    case FERRY_VMS_BOOL: case FERRY_VMS_U8: case FERRY_VMS_I8: return 1;
    case FERRY_VMS_U16: case FERRY_VMS_I16: return 2;
    case FERRY_VMS_U32: case FERRY_VMS_I32: return 4;
    case FERRY_VMS_U64: case FERRY_VMS_I64: return 8;
    default: return 0;
  }
}
constexpr bool scalar_signed(FerryVmsKind k) {
  return k == FERRY_VMS_I8 || k == FERRY_VMS_I16 || k == FERRY_VMS_I32 || k == FERRY_VMS_I64;
}
const char* kind_name(FerryVmsKind k);
const char* loop_format_name(FerryVmsLoopFormat f);

}  // namespace ferry::vmstate
