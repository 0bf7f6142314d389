// Binary input: reads what BinaryOutput writes (QEMU's vmstate encoding). Every read is checked
// against the end of the data; errors name the offset. Subsections follow QEMU's
// vmstate_subsection_load: a 0x05 whose name starts with the struct's name belongs to it (an
// unknown one is an error naming it); any other byte ends the struct's subsections. One
// refinement: an unknown name is claimed only if "/" follows the struct's name, so subsection
// "dev/sub" does not swallow its sibling "dev/sub2" (QEMU would fail there).
#pragma once

#include <cstdint>
#include <span>

#include "engine/vmstate/visitor.h"

namespace ferry::vmstate {

class BinaryInput final : public ScalarFunnelVisitor {
 public:
  explicit BinaryInput(std::span<const uint8_t> data) : data_(data) {}

  bool is_input() const override { return true; }
  size_t offset() const override { return pos_; }
  bool at_end() const { return pos_ == data_.size(); }

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
  Status need(size_t n, const char* what) const;
  Status get_be(uint64_t& v, size_t width, const char* what);
  Status get_name(std::string_view& name, const char* what);

  std::span<const uint8_t> data_;
  size_t pos_ = 0;
};

}  // namespace ferry::vmstate
