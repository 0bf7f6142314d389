#include "engine/vmstate/binary_output.h"

#include "engine/vmstate/list_format.h"
#include "engine/vmstate/qemu_wire.h"

namespace ferry::vmstate {

void BinaryOutput::put_be(uint64_t v, size_t width) {
  for (size_t i = width; i-- > 0;) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

Status BinaryOutput::put_name(std::string_view name) {
  if (name.empty() || name.size() > 255) {
    return make_error(Errc::kBadDescription, "name '%.*s' must be 1..255 bytes",
                      static_cast<int>(name.size()), name.data());
  }
  out_.push_back(static_cast<uint8_t>(name.size()));
  out_.insert(out_.end(), name.begin(), name.end());
  return Status::Ok();
}

Status BinaryOutput::start_section(SectionHeader& h) {
  out_.insert(out_.end(), std::begin(kQemuFileMagic), std::end(kQemuFileMagic));
  put_be(kQemuFileVersion, 4);
  out_.push_back(kQemuVmSectionFull);
  put_be(h.section_id, 4);
  FERRY_VMS_TRY(put_name(h.name));
  put_be(h.instance_id, 4);
  put_be(h.version_id, 4);
  return Status::Ok();
}

Status BinaryOutput::end_section(const SectionHeader& h) {
  out_.push_back(kQemuVmSectionFooter);
  put_be(h.section_id, 4);
  out_.push_back(kQemuVmEof);
  return Status::Ok();
}

Status BinaryOutput::start_subsection(const Description&, SubsectionHeader& h) {
  out_.push_back(kQemuVmSubsection);
  FERRY_VMS_TRY(put_name(h.name));
  put_be(h.version_id, 4);
  return Status::Ok();
}

Status BinaryOutput::visit_scalar(const char*, FerryVmsKind kind, uint64_t& value) {
  put_be(value, scalar_width(kind));
  return Status::Ok();
}

Status BinaryOutput::visit_buffer(const char*, uint8_t* data, size_t len) {
  out_.insert(out_.end(), data, data + len);
  return Status::Ok();
}

Status BinaryOutput::visit_unused(const char*, size_t len) {
  out_.insert(out_.end(), len, uint8_t{0});
  return Status::Ok();
}

Status BinaryOutput::start_list(const char*, ListHeader& h) {
  if (h.format == FERRY_VMS_LOOP_COUNT32) put_be(h.count, 4);
  return Status::Ok();
}

Status BinaryOutput::list_next(ListHeader& h, ListItem& item) {
  if (h.format == FERRY_VMS_LOOP_COUNT32) return Status::Ok();
  out_.push_back(item.more ? item.marker : kLoopEndMarker);
  return Status::Ok();
}

}  // namespace ferry::vmstate
