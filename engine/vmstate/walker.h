// The walker: drives a Visitor over a description and an object. Direction comes from the
// visitor (is_input). No heap use of its own; recursion is bounded by kMaxDepth.
//
// Save: pre_save hook, fields present in the description's version, needed subsections (each:
// header + its struct), in order. Load: version checks (too new / too old), fields, subsections
// found in the stream (unknown ones are an error naming them), post_load hook. Allocation on
// load: NULL struct pointers get field.allocator->alloc(size); list elements come from the list's
// allocator (pointer containers) or the container (by-value ones).
//
// Lists on load: an existing non-empty list is an error (Errc::kListNotEmpty) unless the list
// has FERRY_VMS_LIST_APPEND, which appends. An element is linked into the container before its
// fields are loaded, so after a failed load everything allocated is reachable from the object:
// ferry_vms_release() frees it. At most max_elements (default FERRY_VMS_DEFAULT_MAX_LIST_ELEMENTS)
// elements are loaded; a longer list is Errc::kListLimit (so a stream whose loop never ends runs
// into either the cap or the end of the data, never unbounded allocation).
#pragma once

#include "engine/vmstate/errors.h"
#include "engine/vmstate/visitor.h"
#include "ferry/vmstate.h"

namespace ferry::vmstate {

// The body only (QEMU's vmstate_save_state / vmstate_load_state): fields and subsections.
Status save_state(const Description& d, void* opaque, Visitor& out);
Status load_state(const Description& d, void* opaque, Visitor& in, int version_id);

// A standalone section: header (name, ids, version) + body + end. On load the section name must
// be the description's name; `ids` (optional) receives the ids read.
struct SectionIds {
  uint32_t section_id = 0;
  uint32_t instance_id = 0;
};
Status save_section(const Description& d, void* opaque, Visitor& out, SectionIds ids = {});
Status load_section(const Description& d, void* opaque, Visitor& in, SectionIds* ids = nullptr);

}  // namespace ferry::vmstate
