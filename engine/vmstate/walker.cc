#include "engine/vmstate/walker.h"

#include <cstring>
#include <string>

namespace ferry::vmstate {
namespace {

const char* safe(const char* s) { return s ? s : "?"; }

std::string field_context(const Field& f, const Description& d) {
  std::string s = "field '";
  s += safe(f.name);
  s += "' of '";
  s += safe(d.name);
  s += "'";
  return s;
}

bool field_exists(const Field& f, void* opaque, int version_id) {
  if (f.field_exists) return f.field_exists(opaque, version_id);
  return version_id >= f.version_id;
}

class Walker {
 public:
  explicit Walker(Visitor& v) : v_(v), input_(v.is_input()) {}

  Status walk_struct(const char* name, const Description& d, void* obj, int version_id);
  Status check_version(const Description& d, int version_id, const char* what);

 private:
  Status walk_fields(const Description& d, void* obj, int version_id);
  Status walk_field(const Field& f, uint8_t* base);
  Status walk_element(const Field& f, uint8_t* p, const char* name);
  Status walk_struct_pointer(const Field& f, uint8_t* p, const char* name);
  Status walk_list(const Field& f, uint8_t* head);
  Status save_subsections(const Description& d, void* obj);
  Status load_subsections(const Description& d, void* obj);

  Visitor& v_;
  bool input_;
  int depth_ = 0;
};

Status Walker::check_version(const Description& d, int version_id, const char* what) {
  if (version_id > d.version_id) {
    return make_error(Errc::kVersionTooNew,
                      "%s '%s' version %d is newer than the supported version %d (offset %zu)",
                      what, safe(d.name), version_id, d.version_id, v_.offset());
  }
  if (version_id < d.minimum_version_id) {
    return make_error(Errc::kVersionTooOld,
                      "%s '%s' version %d is older than the minimum version %d (offset %zu)", what,
                      safe(d.name), version_id, d.minimum_version_id, v_.offset());
  }
  return Status::Ok();
}

Status Walker::walk_struct(const char* name, const Description& d, void* obj, int version_id) {
  if (depth_ >= kMaxDepth) {
    return make_error(Errc::kDepthLimit, "nesting deeper than %d at '%s' (offset %zu)", kMaxDepth,
                      safe(d.name), v_.offset());
  }
  if (!d.fields) {
    return make_error(Errc::kBadDescription, "description '%s' has no field table", safe(d.name));
  }
  if (!input_ && d.pre_save) {
    int rc = d.pre_save(obj);
    if (rc != 0) {
      return make_error(Errc::kHookFailed, "pre_save of '%s' failed (%d)", safe(d.name), rc);
    }
  }
  ++depth_;
  Status st = v_.start_struct(name, d);
  if (st.ok()) st = walk_fields(d, obj, version_id);
  if (st.ok()) st = input_ ? load_subsections(d, obj) : save_subsections(d, obj);
  if (st.ok()) st = v_.end_struct(name, d);
  --depth_;
  FERRY_VMS_TRY(st);
  if (input_ && d.post_load) {
    int rc = d.post_load(obj, version_id);
    if (rc != 0) {
      return make_error(Errc::kHookFailed, "post_load of '%s' (version %d) failed (%d)",
                        safe(d.name), version_id, rc);
    }
  }
  return Status::Ok();
}

Status Walker::walk_fields(const Description& d, void* obj, int version_id) {
  auto* base = static_cast<uint8_t*>(obj);
  for (const Field* f = d.fields; f->kind != FERRY_VMS_END; ++f) {
    if (!field_exists(*f, obj, version_id)) continue;
    Status st = walk_field(*f, base);
    if (!st.ok()) return st.add_context(field_context(*f, d));
  }
  return Status::Ok();
}

Status Walker::walk_field(const Field& f, uint8_t* base) {
  uint8_t* p = base + f.offset;
  uint32_t count = 0;
  switch (f.array) {
    case FERRY_VMS_SINGLE:
      return walk_element(f, p, f.name);
    case FERRY_VMS_ARRAY:
      count = f.num;
      break;
    case FERRY_VMS_VARRAY8: {
      uint8_t c;
      std::memcpy(&c, base + f.num_offset, sizeof c);
      count = c;
      break;
    }
    case FERRY_VMS_VARRAY16: {
      uint16_t c;
      std::memcpy(&c, base + f.num_offset, sizeof c);
      count = c;
      break;
    }
    case FERRY_VMS_VARRAY32:
      std::memcpy(&count, base + f.num_offset, sizeof count);
      break;
    default:
      return make_error(Errc::kBadDescription, "bad array mode %d", static_cast<int>(f.array));
  }
  if (count > f.num) {
    return make_error(Errc::kCountTooLarge,
                      "array '%s' count %u is larger than its %u allocated elements (offset %zu)",
                      safe(f.name), count, f.num, v_.offset());
  }
  if (f.kind == FERRY_VMS_LIST || f.kind == FERRY_VMS_STRUCT_POINTER) {
    return make_error(Errc::kBadDescription, "arrays of %s are not supported", kind_name(f.kind));
  }
  FERRY_VMS_TRY(v_.start_array(f.name, count));
  for (uint32_t i = 0; i < count; ++i) {
    Status st = walk_element(f, p + static_cast<size_t>(i) * f.size, nullptr);
    if (!st.ok()) return st.add_context("element " + std::to_string(i));
  }
  return v_.end_array(f.name);
}

Status Walker::walk_element(const Field& f, uint8_t* p, const char* name) {
  switch (f.kind) {
    case FERRY_VMS_BOOL: return v_.visit_bool(name, *reinterpret_cast<bool*>(p));
    case FERRY_VMS_U8: return v_.visit_u8(name, *p);
    case FERRY_VMS_U16: return v_.visit_u16(name, *reinterpret_cast<uint16_t*>(p));
    case FERRY_VMS_U32: return v_.visit_u32(name, *reinterpret_cast<uint32_t*>(p));
    case FERRY_VMS_U64: return v_.visit_u64(name, *reinterpret_cast<uint64_t*>(p));
    case FERRY_VMS_I8: return v_.visit_i8(name, *reinterpret_cast<int8_t*>(p));
    case FERRY_VMS_I16: return v_.visit_i16(name, *reinterpret_cast<int16_t*>(p));
    case FERRY_VMS_I32: return v_.visit_i32(name, *reinterpret_cast<int32_t*>(p));
    case FERRY_VMS_I64: return v_.visit_i64(name, *reinterpret_cast<int64_t*>(p));
    case FERRY_VMS_BUFFER: return v_.visit_buffer(name, p, f.size);
    case FERRY_VMS_UNUSED: return v_.visit_unused(name, f.size);
    case FERRY_VMS_STRUCT:
      if (!f.vmsd) return make_error(Errc::kBadDescription, "struct field without description");
      return walk_struct(name, *f.vmsd, p, f.vmsd->version_id);
    case FERRY_VMS_STRUCT_POINTER: return walk_struct_pointer(f, p, name);
    case FERRY_VMS_LIST: return walk_list(f, p);
    default:
      return make_error(Errc::kBadDescription, "unknown field kind %d", static_cast<int>(f.kind));
  }
}

Status Walker::walk_struct_pointer(const Field& f, uint8_t* p, const char* name) {
  if (!f.vmsd) return make_error(Errc::kBadDescription, "struct pointer without description");
  void* target;
  std::memcpy(&target, p, sizeof target);
  if (!target) {
    if (!input_) {
      return make_error(Errc::kNullPointer, "struct pointer '%s' is NULL", safe(f.name));
    }
    if (!f.allocator || !f.allocator->alloc) {
      return make_error(Errc::kBadDescription,
                        "struct pointer '%s' is NULL and the field has no allocator",
                        safe(f.name));
    }
    target = f.allocator->alloc(f.allocator, f.size);
    if (!target) return make_error(Errc::kAllocFailed, "allocating %zu bytes failed", f.size);
    std::memcpy(p, &target, sizeof target);
  }
  return walk_struct(name, *f.vmsd, target, f.vmsd->version_id);
}

Status Walker::walk_list(const Field& f, uint8_t* head) {
  const FerryVmsList* l = f.list;
  if (!l || !l->container || !l->container->ops || !l->element || !l->element->fields) {
    return make_error(Errc::kBadDescription, "list '%s' is missing a part", safe(f.name));
  }
  const FerryVmsContainer& c = *l->container;
  const FerryVmsContainerOps& ops = *c.ops;
  const Description& ed = *l->element;
  ListHeader h;
  h.format = l->format;
  if (h.format != FERRY_VMS_LOOP_MARKER && h.format != FERRY_VMS_LOOP_MARKER_FIELD &&
      h.format != FERRY_VMS_LOOP_COUNT32) {
    return make_error(Errc::kBadDescription, "list '%s': unknown loop format %d", safe(f.name),
                      static_cast<int>(h.format));
  }
  const bool marker_field = h.format == FERRY_VMS_LOOP_MARKER_FIELD;
  if (depth_ >= kMaxDepth) {
    return make_error(Errc::kDepthLimit, "nesting deeper than %d at list '%s' (offset %zu)",
                      kMaxDepth, safe(f.name), v_.offset());
  }

  if (!input_) {
    size_t n = ops.count(&c, head);
    if (n > UINT32_MAX) {
      return make_error(Errc::kOutOfRange, "list '%s' has %zu elements", safe(f.name), n);
    }
    h.count = static_cast<uint32_t>(n);
    FERRY_VMS_TRY(v_.start_list(f.name, h));
    FerryVmsCursor cur{};
    size_t i = 0;
    for (void* e = ops.first(&c, head, &cur); e; e = ops.next(&c, head, &cur), ++i) {
      ListItem item;
      item.more = true;
      item.marker = 1;
      if (marker_field) {
        std::memcpy(&item.marker, static_cast<uint8_t*>(e) + l->marker_offset, 1);
        if (item.marker == 0) {
          return make_error(Errc::kOutOfRange,
                            "list '%s' element %zu has marker 0 (0 ends the loop on the wire)",
                            safe(f.name), i);
        }
      }
      Status st = v_.list_next(h, item);
      if (st.ok()) st = walk_struct(nullptr, ed, e, ed.version_id);
      if (st.ok()) st = v_.end_list_item(h, item);
      if (!st.ok()) return st.add_context("list element " + std::to_string(i));
    }
    if (i != n) {
      return make_error(Errc::kBadDescription, "list '%s': container counted %zu, iterated %zu",
                        safe(f.name), n, i);
    }
    ListItem end;
    end.more = false;
    FERRY_VMS_TRY(v_.list_next(h, end));
    return v_.end_list(f.name, h);
  }

  // Load.
  const bool by_value = ops.emplace != nullptr;
  if (!by_value && (!ops.append || !l->allocator || !l->allocator->alloc)) {
    return make_error(Errc::kBadDescription,
                      "list '%s': a pointer container needs append and an allocator",
                      safe(f.name));
  }
  if (ops.count(&c, head) != 0 && !(l->flags & FERRY_VMS_LIST_APPEND)) {
    return make_error(Errc::kListNotEmpty,
                      "list '%s' already has %zu elements (loading appends only with "
                      "FERRY_VMS_LIST_APPEND)",
                      safe(f.name), ops.count(&c, head));
  }
  const uint32_t cap = l->max_elements ? l->max_elements : FERRY_VMS_DEFAULT_MAX_LIST_ELEMENTS;
  FERRY_VMS_TRY(v_.start_list(f.name, h));
  if (h.count_known && h.count > cap) {
    return make_error(Errc::kListLimit, "list '%s' count %u exceeds its limit of %u (offset %zu)",
                      safe(f.name), h.count, cap, v_.offset());
  }
  for (uint32_t i = 0;; ++i) {
    ListItem item;
    FERRY_VMS_TRY(v_.list_next(h, item));
    if (!item.more) break;
    if (i >= cap) {
      return make_error(Errc::kListLimit,
                        "list '%s' has more than %u elements (its limit) at offset %zu",
                        safe(f.name), cap, v_.offset());
    }
    void* e;
    if (by_value) {
      e = ops.emplace(&c, head);
      if (!e) return make_error(Errc::kAllocFailed, "list '%s': emplace failed", safe(f.name));
    } else {
      e = l->allocator->alloc(l->allocator, l->element_size);
      if (!e) {
        return make_error(Errc::kAllocFailed, "list '%s': allocating %zu bytes failed",
                          safe(f.name), l->element_size);
      }
      if (ops.append(&c, head, e) != 0) {
        if (l->allocator->free) l->allocator->free(l->allocator, e);
        return make_error(Errc::kAllocFailed, "list '%s': append failed", safe(f.name));
      }
    }
    if (marker_field) std::memcpy(static_cast<uint8_t*>(e) + l->marker_offset, &item.marker, 1);
    Status st = walk_struct(nullptr, ed, e, ed.version_id);
    if (st.ok()) st = v_.end_list_item(h, item);
    if (!st.ok()) return st.add_context("list element " + std::to_string(i));
  }
  return v_.end_list(f.name, h);
}

Status Walker::save_subsections(const Description& d, void* obj) {
  if (!d.subsections) return Status::Ok();
  for (const Description* const* s = d.subsections; *s; ++s) {
    const Description& sub = **s;
    if (sub.needed && !sub.needed(obj)) continue;
    SubsectionHeader h;
    h.present = true;
    h.name = sub.name ? std::string_view(sub.name) : std::string_view();
    h.version_id = static_cast<uint32_t>(sub.version_id);
    Status st = v_.start_subsection(d, h);
    if (st.ok()) st = walk_struct(nullptr, sub, obj, sub.version_id);
    if (st.ok()) st = v_.end_subsection(d, h);
    if (!st.ok()) return st.add_context("subsection '" + std::string(h.name) + "'");
  }
  return Status::Ok();
}

Status Walker::load_subsections(const Description& d, void* obj) {
  for (;;) {
    SubsectionHeader h;
    FERRY_VMS_TRY(v_.start_subsection(d, h));
    if (!h.present) return Status::Ok();
    const Description* sub = nullptr;
    if (d.subsections) {
      for (const Description* const* s = d.subsections; *s; ++s) {
        if ((*s)->name && h.name == (*s)->name) {
          sub = *s;
          break;
        }
      }
    }
    if (!sub) {
      return make_error(Errc::kUnknownSubsection,
                        "unknown subsection '%.*s' in '%s' (offset %zu)",
                        static_cast<int>(h.name.size()), h.name.data(), safe(d.name), v_.offset());
    }
    if (h.version_id > static_cast<uint32_t>(INT32_MAX)) {
      return make_error(Errc::kVersionTooNew, "subsection '%s' version %u is out of range",
                        safe(sub->name), h.version_id);
    }
    const int version = static_cast<int>(h.version_id);
    FERRY_VMS_TRY(check_version(*sub, version, "subsection"));
    Status st = walk_struct(nullptr, *sub, obj, version);
    if (st.ok()) st = v_.end_subsection(d, h);
    if (!st.ok()) return st.add_context("subsection '" + std::string(safe(sub->name)) + "'");
  }
}

}  // namespace

Status save_state(const Description& d, void* opaque, Visitor& out) {
  Walker w(out);
  return w.walk_struct(nullptr, d, opaque, d.version_id);
}

Status load_state(const Description& d, void* opaque, Visitor& in, int version_id) {
  Walker w(in);
  FERRY_VMS_TRY(w.check_version(d, version_id, "section"));
  return w.walk_struct(nullptr, d, opaque, version_id);
}

Status save_section(const Description& d, void* opaque, Visitor& out, SectionIds ids) {
  SectionHeader h;
  h.name = d.name ? std::string_view(d.name) : std::string_view();
  h.section_id = ids.section_id;
  h.instance_id = ids.instance_id;
  h.version_id = static_cast<uint32_t>(d.version_id);
  FERRY_VMS_TRY(out.start_section(h));
  Status st = save_state(d, opaque, out);
  if (!st.ok()) return st.add_context("section '" + std::string(h.name) + "'");
  return out.end_section(h);
}

Status load_section(const Description& d, void* opaque, Visitor& in, SectionIds* ids) {
  SectionHeader h;
  FERRY_VMS_TRY(in.start_section(h));
  if (!d.name || h.name != d.name) {
    return make_error(Errc::kNameMismatch, "stream has section '%.*s', the description is '%s'",
                      static_cast<int>(h.name.size()), h.name.data(), safe(d.name));
  }
  if (h.version_id > static_cast<uint32_t>(INT32_MAX)) {
    return make_error(Errc::kVersionTooNew, "section '%s' version %u is out of range", d.name,
                      h.version_id);
  }
  if (ids) {
    ids->section_id = h.section_id;
    ids->instance_id = h.instance_id;
  }
  Status st = load_state(d, opaque, in, static_cast<int>(h.version_id));
  if (!st.ok()) return st.add_context("section '" + std::string(d.name) + "'");
  return in.end_section(h);
}

}  // namespace ferry::vmstate
