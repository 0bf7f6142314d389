// BER input: reads what BerOutput writes (definite lengths are accepted too). Checks every tag,
// length and name against the description: a field whose name differs is Errc::kNameMismatch, an
// array whose element count differs from its count field is an error, integers must fit their
// field. Nesting is limited (ber::kMaxBerDepth); errors name the offset.
#pragma once

#include <cstdint>
#include <span>

#include "engine/vmstate/ber.h"
#include "engine/vmstate/visitor.h"

namespace ferry::vmstate {

class BerInput final : public ScalarFunnelVisitor {
 public:
  explicit BerInput(std::span<const uint8_t> data) : r_(data) {}

  bool is_input() const override { return true; }
  size_t offset() const override { return r_.offset(); }

  Status start_section(SectionHeader& h) override;
  Status end_section(const SectionHeader& h) override;
  Status start_struct(const char* name, const Description& d) override;
  Status end_struct(const char* name, const Description& d) override;
  Status start_subsection(const Description& parent, SubsectionHeader& h) override;
  Status end_subsection(const Description& parent, const SubsectionHeader& h) override;
  Status visit_buffer(const char* name, uint8_t* data, size_t len) override;
  Status visit_unused(const char* name, size_t len) override;
  Status start_array(const char* name, uint32_t count) override;
  Status end_array(const char* name) override;
  Status start_list(const char* name, ListHeader& h) override;
  Status list_next(ListHeader& h, ListItem& item) override;
  Status end_list_item(ListHeader& h, const ListItem& item) override;
  Status end_list(const char* name, ListHeader& h) override;

 protected:
  Status visit_scalar(const char* name, FerryVmsKind kind, uint64_t& value) override;

 private:
  Status open_field(const char* name);
  Status close_field(const char* name);
  ber::Reader r_;
};

}  // namespace ferry::vmstate
