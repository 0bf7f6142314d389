#include "engine/vmstate/ber_input.h"

#include <cstring>
#include <limits>

namespace ferry::vmstate {

Status BerInput::open_field(const char* name) {
  if (!name) return Status::Ok();
  FERRY_VMS_TRY(r_.open(ber::kSequence, name));
  const size_t at = r_.offset();
  std::string_view found;
  FERRY_VMS_TRY(r_.get_string(found, "field name"));
  if (found != name) {
    return make_error(Errc::kNameMismatch, "expected field '%s' at offset %zu, found '%.*s'", name,
                      at, static_cast<int>(found.size()), found.data());
  }
  return Status::Ok();
}

Status BerInput::close_field(const char* name) {
  if (!name) return Status::Ok();
  return r_.close(name);
}

Status BerInput::start_section(SectionHeader& h) {
  FERRY_VMS_TRY(r_.open(ber::kSection, "section"));
  uint64_t v;
  const size_t at = r_.offset();
  FERRY_VMS_TRY(r_.get_unsigned(ber::kInteger, UINT32_MAX, v, "formatVersion"));
  if (v != ber::kFormatVersion) {
    return make_error(Errc::kVersionTooNew, "BER format version %llu at offset %zu, expected %u",
                      static_cast<unsigned long long>(v), at, ber::kFormatVersion);
  }
  FERRY_VMS_TRY(r_.get_string(h.name, "section name"));
  FERRY_VMS_TRY(r_.get_unsigned(ber::kInteger, UINT32_MAX, v, "sectionId"));
  h.section_id = static_cast<uint32_t>(v);
  FERRY_VMS_TRY(r_.get_unsigned(ber::kInteger, UINT32_MAX, v, "instanceId"));
  h.instance_id = static_cast<uint32_t>(v);
  FERRY_VMS_TRY(r_.get_unsigned(ber::kInteger, UINT32_MAX, v, "versionId"));
  h.version_id = static_cast<uint32_t>(v);
  return Status::Ok();
}

Status BerInput::end_section(const SectionHeader&) {
  FERRY_VMS_TRY(r_.close("section"));
  if (!r_.at_end()) {
    return make_error(Errc::kTrailingData, "data after the end of the section at offset %zu",
                      r_.offset());
  }
  return Status::Ok();
}

Status BerInput::start_struct(const char* name, const Description& d) {
  FERRY_VMS_TRY(open_field(name));
  return r_.open(ber::kSequence, d.name ? d.name : "struct");
}

Status BerInput::end_struct(const char* name, const Description& d) {
  FERRY_VMS_TRY(r_.close(d.name ? d.name : "struct"));
  return close_field(name);
}

Status BerInput::start_subsection(const Description&, SubsectionHeader& h) {
  h.present = false;
  if (r_.at_end()) return Status::Ok();
  FERRY_VMS_TRY(r_.open(ber::kSubsection, "subsection"));
  FERRY_VMS_TRY(r_.get_string(h.name, "subsection name"));
  uint64_t v;
  FERRY_VMS_TRY(r_.get_unsigned(ber::kInteger, UINT32_MAX, v, "subsection versionId"));
  h.version_id = static_cast<uint32_t>(v);
  h.present = true;
  return Status::Ok();
}

Status BerInput::end_subsection(const Description&, const SubsectionHeader&) {
  return r_.close("subsection");
}

Status BerInput::visit_scalar(const char* name, FerryVmsKind kind, uint64_t& value) {
  FERRY_VMS_TRY(open_field(name));
  const char* what = name ? name : kind_name(kind);
  if (kind == FERRY_VMS_BOOL) {
    bool b;
    FERRY_VMS_TRY(r_.get_bool(b, what));
    value = b;
  } else if (scalar_signed(kind)) {
    const size_t bits = 8 * scalar_width(kind);
    const int64_t max = static_cast<int64_t>((uint64_t{1} << (bits - 1)) - 1);
    int64_t s;
    FERRY_VMS_TRY(r_.get_signed(ber::kInteger, -max - 1, max, s, what));
    value = static_cast<uint64_t>(s);
  } else {
    const size_t bits = 8 * scalar_width(kind);
    const uint64_t max = bits == 64 ? UINT64_MAX : (uint64_t{1} << bits) - 1;
    FERRY_VMS_TRY(r_.get_unsigned(ber::kInteger, max, value, what));
  }
  return close_field(name);
}

Status BerInput::visit_buffer(const char* name, uint8_t* data, size_t len) {
  FERRY_VMS_TRY(open_field(name));
  const size_t at = r_.offset();
  std::span<const uint8_t> c;
  FERRY_VMS_TRY(r_.get_primitive(ber::kOctetString, c, name ? name : "buffer"));
  if (c.size() != len) {
    return make_error(Errc::kBadLength, "buffer '%s' at offset %zu has %zu bytes, expected %zu",
                      name ? name : "", at, c.size(), len);
  }
  if (len) std::memcpy(data, c.data(), len);
  return close_field(name);
}

Status BerInput::visit_unused(const char* name, size_t len) {
  FERRY_VMS_TRY(open_field(name));
  const size_t at = r_.offset();
  uint64_t v;
  FERRY_VMS_TRY(r_.get_unsigned(ber::kUnused, UINT64_MAX, v, "unused"));
  if (v != len) {
    return make_error(Errc::kBadLength, "padding of %llu bytes at offset %zu, expected %zu",
                      static_cast<unsigned long long>(v), at, len);
  }
  return close_field(name);
}

Status BerInput::start_array(const char* name, uint32_t) {
  FERRY_VMS_TRY(open_field(name));
  return r_.open(ber::kArray, name ? name : "array");
}

Status BerInput::end_array(const char* name) {
  if (!r_.at_end()) {
    ber::Tag t{};
    FERRY_VMS_TRY(r_.peek(t));  // truncated data is reported as such
    return make_error(Errc::kCountTooLarge,
                      "array '%s' has more elements than its count at offset %zu",
                      name ? name : "", r_.offset());
  }
  FERRY_VMS_TRY(r_.close(name ? name : "array"));
  return close_field(name);
}

Status BerInput::start_list(const char* name, ListHeader& h) {
  FERRY_VMS_TRY(open_field(name));
  h.count_known = false;
  return r_.open(ber::kList, name ? name : "list");
}

Status BerInput::list_next(ListHeader& h, ListItem& item) {
  if (r_.at_end()) {
    item.more = false;
    return Status::Ok();
  }
  item.more = true;
  item.marker = 1;
  if (h.format == FERRY_VMS_LOOP_MARKER_FIELD) {
    FERRY_VMS_TRY(r_.open(ber::kMarked, "marked list element"));
    uint64_t m;
    const size_t at = r_.offset();
    FERRY_VMS_TRY(r_.get_unsigned(ber::kInteger, 255, m, "list marker"));
    if (m == 0) {
      return make_error(Errc::kOutOfRange, "list marker 0 at offset %zu (markers are 1..255)", at);
    }
    item.marker = static_cast<uint8_t>(m);
  }
  return Status::Ok();
}

Status BerInput::end_list_item(ListHeader& h, const ListItem&) {
  if (h.format == FERRY_VMS_LOOP_MARKER_FIELD) return r_.close("marked list element");
  return Status::Ok();
}

Status BerInput::end_list(const char* name, ListHeader&) {
  FERRY_VMS_TRY(r_.close(name ? name : "list"));
  return close_field(name);
}

}  // namespace ferry::vmstate
