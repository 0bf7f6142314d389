#include "engine/vmstate/ber_output.h"

namespace ferry::vmstate {

void BerOutput::open_field(const char* name) {
  if (!name) return;
  w_.open(ber::kSequence);
  w_.put_string(name);
}

void BerOutput::close_field(const char* name) {
  if (name) w_.close();
}

Status BerOutput::start_section(SectionHeader& h) {
  w_.open(ber::kSection);
  w_.put_unsigned(ber::kInteger, ber::kFormatVersion);
  w_.put_string(h.name);
  w_.put_unsigned(ber::kInteger, h.section_id);
  w_.put_unsigned(ber::kInteger, h.instance_id);
  w_.put_unsigned(ber::kInteger, h.version_id);
  return Status::Ok();
}

Status BerOutput::end_section(const SectionHeader&) {
  w_.close();
  return Status::Ok();
}

Status BerOutput::start_struct(const char* name, const Description&) {
  open_field(name);
  w_.open(ber::kSequence);
  return Status::Ok();
}

Status BerOutput::end_struct(const char* name, const Description&) {
  w_.close();
  close_field(name);
  return Status::Ok();
}

Status BerOutput::start_subsection(const Description&, SubsectionHeader& h) {
  w_.open(ber::kSubsection);
  w_.put_string(h.name);
  w_.put_unsigned(ber::kInteger, h.version_id);
  return Status::Ok();
}

Status BerOutput::end_subsection(const Description&, const SubsectionHeader&) {
  w_.close();
  return Status::Ok();
}

Status BerOutput::visit_scalar(const char* name, FerryVmsKind kind, uint64_t& value) {
  open_field(name);
  if (kind == FERRY_VMS_BOOL) {
    w_.put_bool(value != 0);
  } else if (scalar_signed(kind)) {
    w_.put_signed(ber::kInteger, static_cast<int64_t>(value));
  } else {
    w_.put_unsigned(ber::kInteger, value);
  }
  close_field(name);
  return Status::Ok();
}

Status BerOutput::visit_buffer(const char* name, uint8_t* data, size_t len) {
  open_field(name);
  w_.put_bytes(ber::kOctetString, data, len);
  close_field(name);
  return Status::Ok();
}

Status BerOutput::visit_unused(const char* name, size_t len) {
  open_field(name);
  w_.put_unsigned(ber::kUnused, len);
  close_field(name);
  return Status::Ok();
}

Status BerOutput::start_array(const char* name, uint32_t) {
  open_field(name);
  w_.open(ber::kArray);
  return Status::Ok();
}

Status BerOutput::end_array(const char* name) {
  w_.close();
  close_field(name);
  return Status::Ok();
}

Status BerOutput::start_list(const char* name, ListHeader&) {
  open_field(name);
  w_.open(ber::kList);
  return Status::Ok();
}

Status BerOutput::list_next(ListHeader& h, ListItem& item) {
  if (item.more && h.format == FERRY_VMS_LOOP_MARKER_FIELD) {
    w_.open(ber::kMarked);
    w_.put_unsigned(ber::kInteger, item.marker);
  }
  return Status::Ok();
}

Status BerOutput::end_list_item(ListHeader& h, const ListItem&) {
  if (h.format == FERRY_VMS_LOOP_MARKER_FIELD) w_.close();
  return Status::Ok();
}

Status BerOutput::end_list(const char* name, ListHeader&) {
  w_.close();
  close_field(name);
  return Status::Ok();
}

}  // namespace ferry::vmstate
