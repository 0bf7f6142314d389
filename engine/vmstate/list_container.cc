// The intrusive tail queue (C ABI): head {first, last}, entry {next, prev}, element pointers,
// located through the offsets in FerryVmsContainer.
#include <cstring>

#include "ferry/vmstate.h"

namespace {

void* get_ptr(const void* base, size_t off) {
  void* p;
  std::memcpy(&p, static_cast<const uint8_t*>(base) + off, sizeof p);
  return p;
}
void set_ptr(void* base, size_t off, void* p) {
  std::memcpy(static_cast<uint8_t*>(base) + off, &p, sizeof p);
}

size_t tailq_count(const FerryVmsContainer* c, const void* head) {
  size_t n = 0;
  for (void* e = get_ptr(head, c->head_first); e; e = get_ptr(e, c->entry_next)) ++n;
  return n;
}
void* tailq_first(const FerryVmsContainer* c, void* head, FerryVmsCursor* cur) {
  cur->ptr = get_ptr(head, c->head_first);
  return cur->ptr;
}
void* tailq_next(const FerryVmsContainer* c, void*, FerryVmsCursor* cur) {
  if (!cur->ptr) return nullptr;
  cur->ptr = get_ptr(cur->ptr, c->entry_next);
  return cur->ptr;
}
int tailq_append(const FerryVmsContainer* c, void* head, void* elem) {
  void* last = get_ptr(head, c->head_last);
  set_ptr(elem, c->entry_next, nullptr);
  set_ptr(elem, c->entry_prev, last);
  if (last) {
    set_ptr(last, c->entry_next, elem);
  } else {
    set_ptr(head, c->head_first, elem);
  }
  set_ptr(head, c->head_last, elem);
  return 0;
}
void tailq_clear(const FerryVmsContainer* c, void* head,
                 void (*free_elem)(const FerryVmsAllocator*, void*),
                 const FerryVmsAllocator* alloc) {
  void* e = get_ptr(head, c->head_first);
  while (e) {
    void* next = get_ptr(e, c->entry_next);
    if (free_elem) free_elem(alloc, e);
    e = next;
  }
  set_ptr(head, c->head_first, nullptr);
  set_ptr(head, c->head_last, nullptr);
}

}  // namespace

extern "C" const FerryVmsContainerOps ferry_vms_tailq_ops = {
    &tailq_count, &tailq_first, &tailq_next, &tailq_append, nullptr, &tailq_clear};
