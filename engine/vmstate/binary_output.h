// Binary output: QEMU's vmstate encoding, byte for byte. Integers big-endian, bool one byte,
// buffers raw, padding as zeros, arrays as consecutive elements (counts live in their fields),
// subsections as 0x05, u8 name length, name, be32 version, then the subsection's state; lists:
// MARKER / MARKER_FIELD a marker byte before each element and 0 at the end (vmstate_save_qtailq),
// COUNT32 a be32 count first.
//
// A standalone section (save_section) is a one-section QEMU stream: "QEVM", be32 3, then
// SECTION_FULL (0x04, be32 section id, u8 len + name, be32 instance id, be32 version), the body,
// SECTION_FOOTER (0x7e, be32 section id) and EOF (0x00). Appends to the caller's vector.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/vmstate/visitor.h"

namespace ferry::vmstate {

class BinaryOutput final : public ScalarFunnelVisitor {
 public:
  explicit BinaryOutput(std::vector<uint8_t>& out) : out_(out) {}

  bool is_input() const override { return false; }
  size_t offset() const override { return out_.size(); }

  Status start_section(SectionHeader& h) override;
  Status end_section(const SectionHeader& h) override;
  Status start_struct(const char*, const Description&) override { return Status::Ok(); }
  Status end_struct(const char*, const Description&) override { return Status::Ok(); }
  Status start_subsection(const Description& parent, SubsectionHeader& h) override;
  Status end_subsection(const Description&, const SubsectionHeader&) override {
    return Status::Ok();
  }
  Status visit_buffer(const char* name, uint8_t* data, size_t len) override;
  Status visit_unused(const char* name, size_t len) override;
  Status start_array(const char*, uint32_t) override { return Status::Ok(); }
  Status end_array(const char*) override { return Status::Ok(); }
  Status start_list(const char* name, ListHeader& h) override;
  Status list_next(ListHeader& h, ListItem& item) override;
  Status end_list_item(ListHeader&, const ListItem&) override { return Status::Ok(); }
  Status end_list(const char*, ListHeader&) override { return Status::Ok(); }

 protected:
  Status visit_scalar(const char* name, FerryVmsKind kind, uint64_t& value) override;

 private:
  void put_be(uint64_t v, size_t width);
  Status put_name(std::string_view name);
  std::vector<uint8_t>& out_;
};

}  // namespace ferry::vmstate
