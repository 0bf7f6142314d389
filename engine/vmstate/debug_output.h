// Debug output: indented, human-readable text with names and values, e.g.
//   section 'dev' (section 1, instance 0, version 3) {
//     flags: u32 = 5 (0x5)
//     regs: array[2] {
//       [0]: u16 = 1 (0x1)
//     }
//     reqs: list (marker-field, 1 element) {
//       [0] marker 2: struct 'req' { ... }
//     }
//     subsection 'dev/extra' version 1 { ... }
//   }
// Appends to the caller's string. Output only.
#pragma once

#include <string>

#include "engine/vmstate/visitor.h"

namespace ferry::vmstate {

class DebugOutput final : public ScalarFunnelVisitor {
 public:
  explicit DebugOutput(std::string& out) : out_(out) {}

  bool is_input() const override { return false; }
  size_t offset() const override { return out_.size(); }

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

  // Buffers longer than this print the first bytes and "...".
  static constexpr size_t kMaxBufferBytes = 32;

 protected:
  Status visit_scalar(const char* name, FerryVmsKind kind, uint64_t& value) override;

 private:
  void line_start(const char* name);  // indentation + "name: " or "[i]: "
  void open_block();
  void close_block();

  std::string& out_;
  int indent_ = 0;
  // Per nesting level: the next element index (arrays/lists), -1 outside of them.
  long index_[kMaxDepth * 4] = {};
  int level_ = 0;
  bool pending_item_ = false;  // list_next printed "[i] marker m: " already
};

}  // namespace ferry::vmstate
