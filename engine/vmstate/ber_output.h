// BER output in the form engine/vmstate/ferry_vmstate.asn1 describes: a section is
// [APPLICATION 70] {formatVersion, name, sectionId, instanceId, versionId, body}; structs are
// SEQUENCE OF (Field {name, value} | Subsection); arrays [APPLICATION 4], lists [APPLICATION 3]
// (marker-field items as [APPLICATION 6] {marker, element}), padding [APPLICATION 5] INTEGER.
// Every constructed value uses the indefinite length form; nothing is back-patched.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/vmstate/ber.h"
#include "engine/vmstate/visitor.h"

namespace ferry::vmstate {

class BerOutput final : public ScalarFunnelVisitor {
 public:
  explicit BerOutput(std::vector<uint8_t>& out) : w_(out) {}

  bool is_input() const override { return false; }
  size_t offset() const override { return w_.size(); }

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
  void open_field(const char* name);
  void close_field(const char* name);
  ber::Writer w_;
};

}  // namespace ferry::vmstate
