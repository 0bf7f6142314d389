#include "engine/vmstate/vmdesc_json.h"

#include <optional>

#include "engine/vmstate/binary_output.h"
#include "engine/vmstate/walker.h"

namespace ferry::vmstate {
namespace {

using nlohmann::ordered_json;

const char* qemu_type_name(FerryVmsKind k) {
  switch (k) {
    case FERRY_VMS_BOOL: return "bool";
    case FERRY_VMS_U8: return "uint8";
    case FERRY_VMS_U16: return "uint16";
    case FERRY_VMS_U32: return "uint32";
    case FERRY_VMS_U64: return "uint64";
    case FERRY_VMS_I8: return "int8";
    case FERRY_VMS_I16: return "int16";
    case FERRY_VMS_I32: return "int32";
    case FERRY_VMS_I64: return "int64";
    case FERRY_VMS_BUFFER: return "buffer";
    case FERRY_VMS_UNUSED: return "unused_buffer";
    default: return "struct";
  }
}

const char* list_type_name(FerryVmsLoopFormat f) {
  switch (f) {
    case FERRY_VMS_LOOP_MARKER: return "qtailq";
    case FERRY_VMS_LOOP_MARKER_FIELD: return "ferry list marker-field";
    case FERRY_VMS_LOOP_COUNT32: return "ferry list count32";
  }
  return "ferry list";
}

// QEMU's vmsd_can_compress for a struct element: no field_exists anywhere, no subsections.
bool can_compress(const Description& d, int depth = 0) {
  if (depth > kMaxDepth || d.subsections || !d.fields) return false;
  for (const Field* f = d.fields; f->kind != FERRY_VMS_END; ++f) {
    if (f->field_exists) return false;
    if ((f->kind == FERRY_VMS_STRUCT || f->kind == FERRY_VMS_STRUCT_POINTER) && f->vmsd &&
        !can_compress(*f->vmsd, depth + 1)) {
      return false;
    }
  }
  return true;
}

ordered_json struct_desc(std::string_view name, int64_t version) {
  ordered_json d = ordered_json::object();
  d["vmsd_name"] = std::string(name);
  d["version"] = version;
  d["fields"] = ordered_json::array();
  return d;
}

// Forwards every call to a BinaryOutput and records the shape of what it wrote.
class DescribingOutput final : public ScalarFunnelVisitor {
 public:
  explicit DescribingOutput(std::vector<uint8_t>& out) : bin_(out) {}

  bool is_input() const override { return false; }
  size_t offset() const override { return bin_.offset(); }
  ordered_json take() { return std::move(result_); }

  Status start_section(SectionHeader& h) override { return bin_.start_section(h); }
  Status end_section(const SectionHeader& h) override { return bin_.end_section(h); }

  Status start_struct(const char* name, const Description& d) override {
    FERRY_VMS_TRY(bin_.start_struct(name, d));
    Frame fr;
    fr.start = offset();
    if (suppressed_ > 0) {
      fr.kind = Frame::kSkip;
    } else if (pending_sub_) {
      fr.role = Frame::kSubsection;
      fr.desc = struct_desc(pending_sub_->first, pending_sub_->second);
      pending_sub_.reset();
    } else if (frames_.empty()) {
      fr.role = Frame::kTop;
      fr.desc = struct_desc(d.name ? d.name : "", d.version_id);
    } else if (frames_.back().kind == Frame::kArray) {
      Frame& arr = frames_.back();
      if (arr.index == 0) arr.compress = can_compress(d);
      if (arr.compress && arr.index > 0) {
        fr.kind = Frame::kSkip;
      } else {
        fr.role = Frame::kField;
        fr.entry["name"] = arr.name;
        if (arr.count > 1) {
          if (arr.compress) fr.entry["array_len"] = arr.count;
          else fr.entry["index"] = arr.index;
        }
        fr.entry["type"] = "struct";
        fr.desc = struct_desc(d.name ? d.name : "", d.version_id);
      }
      ++arr.index;
    } else {
      fr.role = Frame::kField;
      fr.entry["name"] = name ? name : "";
      fr.entry["type"] = "struct";
      fr.desc = struct_desc(d.name ? d.name : "", d.version_id);
    }
    if (fr.kind == Frame::kSkip) ++suppressed_;
    frames_.push_back(std::move(fr));
    return Status::Ok();
  }

  Status end_struct(const char* name, const Description& d) override {
    FERRY_VMS_TRY(bin_.end_struct(name, d));
    Frame fr = std::move(frames_.back());
    frames_.pop_back();
    if (fr.kind == Frame::kSkip) {
      --suppressed_;
      return Status::Ok();
    }
    switch (fr.role) {
      case Frame::kTop:
        result_ = std::move(fr.desc);
        break;
      case Frame::kSubsection: {
        ordered_json& parent = current_struct();
        if (!parent.contains("subsections")) parent["subsections"] = ordered_json::array();
        parent["subsections"].push_back(std::move(fr.desc));
        break;
      }
      case Frame::kField:
        fr.entry["struct"] = std::move(fr.desc);
        fr.entry["size"] = offset() - fr.start;
        current_struct()["fields"].push_back(std::move(fr.entry));
        break;
    }
    return Status::Ok();
  }

  Status start_subsection(const Description& parent, SubsectionHeader& h) override {
    FERRY_VMS_TRY(bin_.start_subsection(parent, h));
    if (suppressed_ == 0) pending_sub_.emplace(std::string(h.name), h.version_id);
    return Status::Ok();
  }
  Status end_subsection(const Description& parent, const SubsectionHeader& h) override {
    return bin_.end_subsection(parent, h);
  }

  Status visit_buffer(const char* name, uint8_t* data, size_t len) override {
    FERRY_VMS_TRY(bin_.visit_buffer(name, data, len));
    leaf(name, FERRY_VMS_BUFFER, len);
    return Status::Ok();
  }
  Status visit_unused(const char* name, size_t len) override {
    FERRY_VMS_TRY(bin_.visit_unused(name, len));
    leaf(name, FERRY_VMS_UNUSED, len);
    return Status::Ok();
  }

  Status start_array(const char* name, uint32_t count) override {
    FERRY_VMS_TRY(bin_.start_array(name, count));
    Frame fr;
    fr.kind = Frame::kArray;
    fr.name = name ? name : "";
    fr.count = count;
    frames_.push_back(std::move(fr));
    return Status::Ok();
  }
  Status end_array(const char* name) override {
    FERRY_VMS_TRY(bin_.end_array(name));
    frames_.pop_back();
    return Status::Ok();
  }

  Status start_list(const char* name, ListHeader& h) override {
    Frame fr;
    fr.kind = Frame::kList;
    fr.start = offset();  // before the count prefix (COUNT32): it is part of the field
    FERRY_VMS_TRY(bin_.start_list(name, h));
    if (suppressed_ == 0) {
      fr.entry["name"] = name ? name : "";
      fr.entry["type"] = list_type_name(h.format);
    }
    ++suppressed_;
    frames_.push_back(std::move(fr));
    return Status::Ok();
  }
  Status list_next(ListHeader& h, ListItem& item) override { return bin_.list_next(h, item); }
  Status end_list_item(ListHeader& h, const ListItem& item) override {
    return bin_.end_list_item(h, item);
  }
  Status end_list(const char* name, ListHeader& h) override {
    FERRY_VMS_TRY(bin_.end_list(name, h));
    Frame fr = std::move(frames_.back());
    frames_.pop_back();
    --suppressed_;
    if (suppressed_ == 0) {
      fr.entry["size"] = offset() - fr.start;
      current_struct()["fields"].push_back(std::move(fr.entry));
    }
    return Status::Ok();
  }

 protected:
  Status visit_scalar(const char* name, FerryVmsKind kind, uint64_t& value) override {
    Status st;
    switch (kind) {
      case FERRY_VMS_BOOL: {
        bool v = value != 0;
        st = bin_.visit_bool(name, v);
        break;
      }
      case FERRY_VMS_U8: case FERRY_VMS_I8: {
        uint8_t v = static_cast<uint8_t>(value);
        st = bin_.visit_u8(name, v);
        break;
      }
      case FERRY_VMS_U16: case FERRY_VMS_I16: {
        uint16_t v = static_cast<uint16_t>(value);
        st = bin_.visit_u16(name, v);
        break;
      }
      case FERRY_VMS_U32: case FERRY_VMS_I32: {
        uint32_t v = static_cast<uint32_t>(value);
        st = bin_.visit_u32(name, v);
        break;
      }
      default:
        st = bin_.visit_u64(name, value);
        break;
    }
    FERRY_VMS_TRY(st);
    leaf(name, kind, scalar_width(kind));
    return Status::Ok();
  }

 private:
  struct Frame {
    enum Kind { kStruct, kArray, kList, kSkip } kind = kStruct;
    enum Role { kTop, kField, kSubsection } role = kField;
    size_t start = 0;
    ordered_json entry = ordered_json::object();  // the field entry (kField, kList)
    ordered_json desc;                            // the struct's description (kStruct)
    std::string name;                             // kArray
    uint32_t count = 0;
    uint32_t index = 0;
    bool compress = true;
  };

  // The innermost struct being described (there is always one below a field).
  ordered_json& current_struct() {
    for (auto it = frames_.rbegin(); it != frames_.rend(); ++it) {
      if (it->kind == Frame::kStruct) return it->desc;
    }
    return result_;  // unreachable for walker-driven calls
  }

  void leaf(const char* name, FerryVmsKind kind, size_t size) {
    if (suppressed_ > 0) return;
    ordered_json e = ordered_json::object();
    if (!frames_.empty() && frames_.back().kind == Frame::kArray) {
      Frame& arr = frames_.back();
      // Arrays of scalars / buffers compress: one entry describing the first element.
      if (arr.index++ > 0) return;
      e["name"] = arr.name;
      if (arr.count > 1) e["array_len"] = arr.count;
    } else {
      e["name"] = name ? name : (kind == FERRY_VMS_UNUSED ? "unused" : "");
    }
    e["type"] = qemu_type_name(kind);
    e["size"] = size;
    current_struct()["fields"].push_back(std::move(e));
  }

  BinaryOutput bin_;
  std::vector<Frame> frames_;
  int suppressed_ = 0;
  std::optional<std::pair<std::string, uint32_t>> pending_sub_;
  ordered_json result_ = ordered_json::object();
};

}  // namespace

Status save_state_described(const Description& d, void* opaque, std::vector<uint8_t>& out,
                            ordered_json& desc) {
  DescribingOutput v(out);
  FERRY_VMS_TRY(save_state(d, opaque, v));
  desc = v.take();
  return Status::Ok();
}

ordered_json vmdesc_device(std::string_view idstr, uint32_t instance_id,
                           const ordered_json& body_desc) {
  ordered_json dev = ordered_json::object();
  dev["name"] = std::string(idstr);
  dev["instance_id"] = instance_id;
  for (auto it = body_desc.begin(); it != body_desc.end(); ++it) dev[it.key()] = it.value();
  return dev;
}

std::string vmdesc_document(uint32_t page_size, const std::vector<ordered_json>& devices) {
  ordered_json doc = ordered_json::object();
  doc["page_size"] = page_size;
  doc["devices"] = ordered_json::array();
  for (const auto& d : devices) doc["devices"].push_back(d);
  return doc.dump();
}

}  // namespace ferry::vmstate
