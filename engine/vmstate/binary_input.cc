#include "engine/vmstate/binary_input.h"

#include <cstring>

#include "engine/vmstate/list_format.h"
#include "engine/vmstate/qemu_wire.h"

namespace ferry::vmstate {

Status BinaryInput::need(size_t n, const char* what) const {
  const size_t left = data_.size() - pos_;
  if (n > left) {
    return make_error(Errc::kTruncated, "truncated %s at offset %zu: need %zu bytes, %zu left",
                      what, pos_, n, left);
  }
  return Status::Ok();
}

Status BinaryInput::get_be(uint64_t& v, size_t width, const char* what) {
  FERRY_VMS_TRY(need(width, what));
  v = 0;
  for (size_t i = 0; i < width; ++i) v = (v << 8) | data_[pos_ + i];
  pos_ += width;
  return Status::Ok();
}

Status BinaryInput::get_name(std::string_view& name, const char* what) {
  FERRY_VMS_TRY(need(1, what));
  const size_t len = data_[pos_];
  FERRY_VMS_TRY(need(1 + len, what));
  name = std::string_view(reinterpret_cast<const char*>(data_.data() + pos_ + 1), len);
  pos_ += 1 + len;
  return Status::Ok();
}

Status BinaryInput::start_section(SectionHeader& h) {
  FERRY_VMS_TRY(need(8, "stream header"));
  if (std::memcmp(data_.data(), kQemuFileMagic, 4) != 0) {
    return make_error(Errc::kBadTag, "no QEVM magic at offset 0");
  }
  pos_ = 4;
  uint64_t v;
  FERRY_VMS_TRY(get_be(v, 4, "stream version"));
  if (v != kQemuFileVersion) {
    return make_error(Errc::kBadTag, "stream version %llu at offset 4, expected %u",
                      static_cast<unsigned long long>(v), kQemuFileVersion);
  }
  FERRY_VMS_TRY(need(1, "section type"));
  if (data_[pos_] != kQemuVmSectionFull) {
    return make_error(Errc::kBadTag, "section type 0x%02x at offset %zu, expected 0x%02x",
                      data_[pos_], pos_, kQemuVmSectionFull);
  }
  ++pos_;
  FERRY_VMS_TRY(get_be(v, 4, "section id"));
  h.section_id = static_cast<uint32_t>(v);
  FERRY_VMS_TRY(get_name(h.name, "section name"));
  FERRY_VMS_TRY(get_be(v, 4, "instance id"));
  h.instance_id = static_cast<uint32_t>(v);
  FERRY_VMS_TRY(get_be(v, 4, "version id"));
  h.version_id = static_cast<uint32_t>(v);
  return Status::Ok();
}

Status BinaryInput::end_section(const SectionHeader& h) {
  FERRY_VMS_TRY(need(1, "section footer"));
  if (data_[pos_] == kQemuVmSubsection) {
    // A subsection nobody claimed: its name does not start with the section's name.
    std::string_view name;
    const size_t at = pos_;
    ++pos_;
    Status st = get_name(name, "subsection name");
    if (!st.ok()) return st;
    return make_error(Errc::kUnknownSubsection,
                      "unknown subsection '%.*s' at offset %zu in section '%.*s'",
                      static_cast<int>(name.size()), name.data(), at,
                      static_cast<int>(h.name.size()), h.name.data());
  }
  if (data_[pos_] != kQemuVmSectionFooter) {
    return make_error(Errc::kBadTag, "byte 0x%02x at offset %zu, expected the section footer 0x%02x",
                      data_[pos_], pos_, kQemuVmSectionFooter);
  }
  ++pos_;
  uint64_t id;
  FERRY_VMS_TRY(get_be(id, 4, "section footer id"));
  if (id != h.section_id) {
    return make_error(Errc::kBadTag, "section footer id %llu at offset %zu, expected %u",
                      static_cast<unsigned long long>(id), pos_ - 4, h.section_id);
  }
  FERRY_VMS_TRY(need(1, "end of stream"));
  if (data_[pos_] != kQemuVmEof) {
    return make_error(Errc::kBadTag, "byte 0x%02x at offset %zu, expected EOF 0x%02x", data_[pos_],
                      pos_, kQemuVmEof);
  }
  ++pos_;
  if (!at_end()) {
    return make_error(Errc::kTrailingData, "%zu bytes after the end of the stream at offset %zu",
                      data_.size() - pos_, pos_);
  }
  return Status::Ok();
}

Status BinaryInput::start_subsection(const Description& parent, SubsectionHeader& h) {
  h.present = false;
  if (pos_ >= data_.size() || data_[pos_] != kQemuVmSubsection) return Status::Ok();
  const size_t parent_len = parent.name ? std::strlen(parent.name) : 0;
  // Peek like QEMU: the name must be complete and start with the parent's name.
  if (data_.size() - pos_ < 2) return Status::Ok();
  const size_t len = data_[pos_ + 1];
  if (len < parent_len + 1 || data_.size() - pos_ - 2 < len) return Status::Ok();
  std::string_view name(reinterpret_cast<const char*>(data_.data() + pos_ + 2), len);
  if (name.substr(0, parent_len) != std::string_view(parent.name, parent_len)) {
    return Status::Ok();
  }
  // QEMU claims every prefixed name, so a subsection "dev/sub" would swallow its sibling
  // "dev/sub2". Claim a name the description does not list only when it follows the "parent/"
  // convention; otherwise leave it to the enclosing struct (streams QEMU loads load the same).
  bool known = false;
  for (const Description* const* s = parent.subsections; s && *s; ++s) {
    if ((*s)->name && name == (*s)->name) known = true;
  }
  if (!known && name[parent_len] != '/') return Status::Ok();
  pos_ += 2 + len;
  uint64_t v;
  FERRY_VMS_TRY(get_be(v, 4, "subsection version"));
  h.present = true;
  h.name = name;
  h.version_id = static_cast<uint32_t>(v);
  return Status::Ok();
}

Status BinaryInput::visit_scalar(const char* name, FerryVmsKind kind, uint64_t& value) {
  const size_t width = scalar_width(kind);
  uint64_t v;
  FERRY_VMS_TRY(get_be(v, width, name ? name : kind_name(kind)));
  if (kind == FERRY_VMS_BOOL) {
    value = v != 0;  // QEMU's get_bool: any non-zero byte is true
  } else if (scalar_signed(kind) && width < 8) {
    const uint64_t sign = uint64_t{1} << (8 * width - 1);
    value = (v ^ sign) - sign;  // sign-extend
  } else {
    value = v;
  }
  return Status::Ok();
}

Status BinaryInput::visit_buffer(const char* name, uint8_t* data, size_t len) {
  FERRY_VMS_TRY(need(len, name ? name : "buffer"));
  if (len) std::memcpy(data, data_.data() + pos_, len);
  pos_ += len;
  return Status::Ok();
}

Status BinaryInput::visit_unused(const char*, size_t len) {
  FERRY_VMS_TRY(need(len, "unused bytes"));
  pos_ += len;
  return Status::Ok();
}

Status BinaryInput::start_list(const char* name, ListHeader& h) {
  if (h.format == FERRY_VMS_LOOP_COUNT32) {
    uint64_t v;
    FERRY_VMS_TRY(get_be(v, 4, name ? name : "list count"));
    h.count = static_cast<uint32_t>(v);
    h.remaining = h.count;
    h.count_known = true;
  }
  return Status::Ok();
}

Status BinaryInput::list_next(ListHeader& h, ListItem& item) {
  if (h.format == FERRY_VMS_LOOP_COUNT32) {
    item.more = h.remaining > 0;
    if (item.more) --h.remaining;
    item.marker = kLoopElementMarker;
    return Status::Ok();
  }
  FERRY_VMS_TRY(need(1, "list marker"));
  const uint8_t m = data_[pos_++];
  item.more = m != kLoopEndMarker;
  item.marker = m;
  return Status::Ok();
}

}  // namespace ferry::vmstate
