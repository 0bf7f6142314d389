// ferry_vms_release: frees what loading allocated (see vmstate.h).
#include <cstring>

#include "engine/vmstate/visitor.h"
#include "ferry/vmstate.h"

namespace {

void release_struct(const FerryVmsDescription* d, void* obj, int depth);

void free_elem(const FerryVmsAllocator* a, void* e) {
  if (a && a->free) a->free(a, e);
}

void release_fields(const FerryVmsDescription* d, void* obj, int depth) {
  auto* base = static_cast<uint8_t*>(obj);
  for (const FerryVmsField* f = d->fields; f && f->kind != FERRY_VMS_END; ++f) {
    uint8_t* p = base + f->offset;
    const uint32_t n = f->array == FERRY_VMS_SINGLE ? 1 : f->num;  // every allocated element
    switch (f->kind) {
      case FERRY_VMS_STRUCT:
        for (uint32_t i = 0; i < n && f->vmsd; ++i) release_struct(f->vmsd, p + i * f->size, depth);
        break;
      case FERRY_VMS_STRUCT_POINTER: {
        if (f->array != FERRY_VMS_SINGLE || !f->allocator || !f->vmsd) break;
        void* target;
        std::memcpy(&target, p, sizeof target);
        if (!target) break;
        release_struct(f->vmsd, target, depth);
        free_elem(f->allocator, target);
        target = nullptr;
        std::memcpy(p, &target, sizeof target);
        break;
      }
      case FERRY_VMS_LIST: {
        const FerryVmsList* l = f->list;
        if (f->array != FERRY_VMS_SINGLE || !l || !l->container || !l->container->ops) break;
        const FerryVmsContainer* c = l->container;
        if (l->element) {
          FerryVmsCursor cur{};
          for (void* e = c->ops->first(c, p, &cur); e; e = c->ops->next(c, p, &cur)) {
            release_struct(l->element, e, depth);
          }
        }
        if (c->ops->clear) c->ops->clear(c, p, c->ops->emplace ? nullptr : &free_elem, l->allocator);
        break;
      }
      default:
        break;
    }
  }
}

void release_struct(const FerryVmsDescription* d, void* obj, int depth) {
  if (!d || !obj || depth >= 4 * ferry::vmstate::kMaxDepth) return;  // loads nest <= kMaxDepth
  release_fields(d, obj, depth + 1);
  if (d->subsections) {
    for (const FerryVmsDescription* const* s = d->subsections; *s; ++s) {
      release_struct(*s, obj, depth + 1);
    }
  }
}

}  // namespace

extern "C" void ferry_vms_release(const FerryVmsDescription* vmsd, void* opaque) {
  release_struct(vmsd, opaque, 0);
}
