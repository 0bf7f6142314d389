/* Device state descriptions (QEMU's VMStateDescription, by field offsets).
 *
 * The first half of this header is plain C (C11): descriptions are static tables of structs with
 * offsets, sizes, function pointers and opaque pointers, so device code written in C can describe
 * its state. The second half (C++ only) adds constexpr helpers that compute offsetof() and check
 * member types at compile time: FERRY_VMS_UINT32(MyDev, reg) refuses to compile unless
 * MyDev::reg is a uint32_t.
 *
 * A description lists fields (terminated by FERRY_VMS_END), optional subsections (a NULL-terminated
 * array of descriptions, each with its own needed() predicate) and pre_save/post_load hooks. The
 * walker (walker.h) drives a visitor (visitor.h) over a description and an object; the visitor
 * decides the encoding (binary = QEMU's vmstate bytes, BER, debug text).
 *
 * Versions: a stream carries the version of each section/subsection. Loading refuses versions
 * newer than version_id or older than minimum_version_id. A field is present in a given version
 * when field_exists(opaque, version) says so, or (without field_exists) when version >=
 * field.version_id. Nested structs and list elements use their description's version_id (as QEMU).
 *
 * Linked lists (FERRY_VMS_LIST) combine four independent parts, see FerryVmsList below.
 */
#ifndef FERRY_ENGINE_VMSTATE_VMSTATE_H
#define FERRY_ENGINE_VMSTATE_VMSTATE_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/export.h"
#ifndef __cplusplus
#include <stdbool.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum FerryVmsKind {
  FERRY_VMS_END = 0, /* terminates a field table */
  FERRY_VMS_BOOL,    /* bool, one byte on the binary wire (QEMU: any non-zero byte is true) */
  FERRY_VMS_U8,
  FERRY_VMS_U16,
  FERRY_VMS_U32,
  FERRY_VMS_U64,
  FERRY_VMS_I8,
  FERRY_VMS_I16,
  FERRY_VMS_I32,
  FERRY_VMS_I64,          /* integers: big-endian on the binary wire */
  FERRY_VMS_BUFFER,       /* `size` raw bytes (uint8_t[size]) */
  FERRY_VMS_UNUSED,       /* `size` padding bytes: written as zeros, skipped on load; no storage */
  FERRY_VMS_STRUCT,       /* nested struct described by `vmsd`, `size` = sizeof the struct */
  FERRY_VMS_STRUCT_POINTER, /* pointer to a struct described by `vmsd`; on load a NULL pointer is
                               filled with allocator->alloc(size); saving a NULL pointer is an
                               error (QEMU's encoding has no "absent" form) */
  FERRY_VMS_LIST          /* linked list, see FerryVmsList */
} FerryVmsKind;

typedef enum FerryVmsArrayMode {
  FERRY_VMS_SINGLE = 0,   /* one element */
  FERRY_VMS_ARRAY,        /* `num` elements of `size` bytes */
  FERRY_VMS_VARRAY8,      /* count in a uint8_t at `num_offset`; at most `num` (capacity) */
  FERRY_VMS_VARRAY16,     /* count in a uint16_t */
  FERRY_VMS_VARRAY32      /* count in a uint32_t */
} FerryVmsArrayMode;

struct FerryVmsDescription;
struct FerryVmsList;
struct FerryVmsAllocator;

typedef struct FerryVmsField {
  const char* name;
  FerryVmsKind kind;
  FerryVmsArrayMode array;
  size_t offset;      /* of the field (first element) in the containing struct */
  size_t size;        /* bytes of one element: scalar width, buffer length, sizeof(struct),
                         padding length; for STRUCT_POINTER the size of the pointee */
  uint32_t num;       /* ARRAY: element count; VARRAY*: capacity (allocated elements) */
  size_t num_offset;  /* VARRAY*: offset of the count field in the containing struct */
  int version_id;     /* present when the stream version >= version_id (0: always) */
  bool (*field_exists)(void* opaque, int version_id); /* overrides version_id when set */
  const struct FerryVmsDescription* vmsd;    /* STRUCT, STRUCT_POINTER */
  const struct FerryVmsAllocator* allocator; /* STRUCT_POINTER: allocation on load (may be NULL:
                                                then loading into a NULL pointer is an error) */
  const struct FerryVmsList* list;           /* LIST */
} FerryVmsField;

typedef struct FerryVmsDescription {
  const char* name;
  int version_id;
  int minimum_version_id;
  /* Subsections only: whether to send it (NULL: always, as QEMU). */
  bool (*needed)(void* opaque);
  /* Hooks; a non-zero return aborts the save/load with an error naming the description. */
  int (*pre_save)(void* opaque);
  int (*post_load)(void* opaque, int version_id);
  const FerryVmsField* fields; /* terminated by a field of kind FERRY_VMS_END */
  const struct FerryVmsDescription* const* subsections; /* NULL-terminated, may be NULL */
} FerryVmsDescription;

/* ---- Linked lists: "a loop, with this format, into this data structure, using this allocator" */

/* Part 1: the loop format on the wire. */
typedef enum FerryVmsLoopFormat {
  /* QEMU's QTAILQ format (vmstate_save_qtailq): byte 1 before each element, byte 0 ends. */
  FERRY_VMS_LOOP_MARKER = 0,
  /* A non-zero marker byte before each element that is also a uint8_t field of the element (at
   * FerryVmsList.marker_offset), e.g. SCSI requests' 1/2; byte 0 ends. Saving an element whose
   * marker field is 0 is an error. */
  FERRY_VMS_LOOP_MARKER_FIELD = 1,
  /* be32 element count, then the elements. */
  FERRY_VMS_LOOP_COUNT32 = 2
} FerryVmsLoopFormat;

/* Part 4: the allocator for elements (and STRUCT_POINTER targets). alloc returns zeroed,
 * constructed storage of `size` bytes or NULL. */
typedef struct FerryVmsAllocator {
  void* (*alloc)(const struct FerryVmsAllocator* self, size_t size);
  void (*free)(const struct FerryVmsAllocator* self, void* p);
  void* opaque;
} FerryVmsAllocator;

/* Iteration state for containers (a container keeps what it needs here). */
typedef struct FerryVmsCursor {
  void* ptr;
  size_t index;
  void* aux[2];
} FerryVmsCursor;

struct FerryVmsContainer;

/* Part 2: the container. Pointer containers (intrusive tail queue, std::vector<T*>,
 * std::list<T*>, callbacks) implement `append` and get elements from the allocator; by-value
 * containers (std::vector<T>, std::list<T>) implement `emplace` and need no allocator. */
typedef struct FerryVmsContainerOps {
  size_t (*count)(const struct FerryVmsContainer* c, const void* head);
  /* Element pointers in order; NULL at the end. */
  void* (*first)(const struct FerryVmsContainer* c, void* head, FerryVmsCursor* cur);
  void* (*next)(const struct FerryVmsContainer* c, void* head, FerryVmsCursor* cur);
  /* Link an allocated element at the tail; non-zero on failure. NULL for by-value containers. */
  int (*append)(const struct FerryVmsContainer* c, void* head, void* elem);
  /* Construct an element at the tail and return it (NULL on failure). NULL for pointer
   * containers. */
  void* (*emplace)(const struct FerryVmsContainer* c, void* head);
  /* Empty the container; pointer containers hand each element to free_elem(alloc, elem). */
  void (*clear)(const struct FerryVmsContainer* c, void* head,
                void (*free_elem)(const FerryVmsAllocator* alloc, void* elem),
                const FerryVmsAllocator* alloc);
} FerryVmsContainerOps;

typedef struct FerryVmsContainer {
  const FerryVmsContainerOps* ops;
  /* Intrusive tail queue layout (FerryVmsTailqHead / FerryVmsTailqEntry or any struct with the
   * same roles): head pointers at head_first/head_last (relative to the list field), element
   * links at entry_next/entry_prev (relative to the element). Unused by other containers. */
  size_t head_first, head_last, entry_next, entry_prev;
  void* opaque; /* for caller-callback containers */
} FerryVmsContainer;

/* Load into a list that already has elements: by default an error (FERRY_VMS_E_LIST_NOT_EMPTY),
 * so a stream never silently merges with stale state. With FERRY_VMS_LIST_APPEND the loaded
 * elements are appended after the existing ones. */
#define FERRY_VMS_LIST_APPEND 1u
/* Load cap when FerryVmsList.max_elements is 0. */
#define FERRY_VMS_DEFAULT_MAX_LIST_ELEMENTS (1u << 20)

typedef struct FerryVmsList {
  FerryVmsLoopFormat format;            /* part 1 */
  size_t marker_offset;                 /* FERRY_VMS_LOOP_MARKER_FIELD: uint8_t in the element */
  const FerryVmsContainer* container;   /* part 2 */
  const FerryVmsDescription* element;   /* part 3: per-element description */
  size_t element_size;
  const FerryVmsAllocator* allocator;   /* part 4 (NULL for by-value containers) */
  uint32_t max_elements;                /* load cap (0: the default); more is an error */
  unsigned flags;                       /* FERRY_VMS_LIST_APPEND */
} FerryVmsList;

/* Intrusive tail queue in QTAILQ's roles: head first/last, entry next/prev (element pointers). */
typedef struct FerryVmsTailqHead {
  void* first;
  void* last;
} FerryVmsTailqHead;
typedef struct FerryVmsTailqEntry {
  void* next;
  void* prev;
} FerryVmsTailqEntry;

/* Built-ins (list_container.cc, list_allocator.cc). */
FERRY_API extern const FerryVmsContainerOps ferry_vms_tailq_ops;
FERRY_API extern const FerryVmsAllocator ferry_vms_malloc_allocator; /* calloc / free */

/* A tail queue container for elements of type T linked through member `entry`
 * (a FerryVmsTailqEntry), with the head being a FerryVmsTailqHead. */
#define FERRY_VMS_TAILQ_CONTAINER(T, entry)                                         \
  {                                                                                 \
    &ferry_vms_tailq_ops, offsetof(FerryVmsTailqHead, first),                       \
        offsetof(FerryVmsTailqHead, last), offsetof(T, entry) + offsetof(FerryVmsTailqEntry, next), \
        offsetof(T, entry) + offsetof(FerryVmsTailqEntry, prev), NULL               \
  }

/* Frees everything loading allocated (STRUCT_POINTER targets whose field has an allocator, list
 * elements), recursively, and empties lists. Safe after a failed load. Fields and subsections
 * are all visited regardless of versions or needed(). */
FERRY_API void ferry_vms_release(const FerryVmsDescription* vmsd, void* opaque);

/* ---- C field initialisers (no type checks; C++ code should use the checked macros below). */
#define FERRY_VMS_C_FIELD(S, m, kind_)                                                     \
  { #m, kind_, FERRY_VMS_SINGLE, offsetof(S, m), sizeof(((S*)0)->m), 0, 0, 0, NULL, NULL, \
    NULL, NULL }
#define FERRY_VMS_C_ARRAY(S, m, kind_, elem_size)                                       \
  { #m, kind_, FERRY_VMS_ARRAY, offsetof(S, m), (elem_size),                           \
    (uint32_t)(sizeof(((S*)0)->m) / (elem_size)), 0, 0, NULL, NULL, NULL, NULL }
#define FERRY_VMS_C_VARRAY32(S, m, count_member, kind_, elem_size)                       \
  { #m, kind_, FERRY_VMS_VARRAY32, offsetof(S, m), (elem_size),                        \
    (uint32_t)(sizeof(((S*)0)->m) / (elem_size)), offsetof(S, count_member), 0, NULL, NULL, \
    NULL, NULL }
#define FERRY_VMS_C_STRUCT(S, m, vmsd_)                                                      \
  { #m, FERRY_VMS_STRUCT, FERRY_VMS_SINGLE, offsetof(S, m), sizeof(((S*)0)->m), 0, 0, 0, NULL, \
    &(vmsd_), NULL, NULL }
#define FERRY_VMS_C_LIST(S, m, list_)                                                          \
  { #m, FERRY_VMS_LIST, FERRY_VMS_SINGLE, offsetof(S, m), sizeof(((S*)0)->m), 0, 0, 0, NULL, NULL, \
    NULL, &(list_) }
#define FERRY_VMS_C_END \
  { NULL, FERRY_VMS_END, FERRY_VMS_SINGLE, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL }

#ifdef __cplusplus
} /* extern "C" */

#include <cstring>
#include <type_traits>

namespace ferry::vmstate {

using Field = FerryVmsField;
using Description = FerryVmsDescription;

template <typename T>
inline constexpr bool is_scalar_member_v =
    std::is_same_v<T, bool> || std::is_same_v<T, uint8_t> || std::is_same_v<T, uint16_t> ||
    std::is_same_v<T, uint32_t> || std::is_same_v<T, uint64_t> || std::is_same_v<T, int8_t> ||
    std::is_same_v<T, int16_t> || std::is_same_v<T, int32_t> || std::is_same_v<T, int64_t>;

template <typename T>
constexpr FerryVmsKind scalar_kind() {
  static_assert(is_scalar_member_v<T>,
                "vmstate scalar fields must be bool or (u)int8/16/32/64_t");
  if constexpr (std::is_same_v<T, bool>) return FERRY_VMS_BOOL;
  else if constexpr (std::is_same_v<T, uint8_t>) return FERRY_VMS_U8;
  else if constexpr (std::is_same_v<T, uint16_t>) return FERRY_VMS_U16;
  else if constexpr (std::is_same_v<T, uint32_t>) return FERRY_VMS_U32;
  else if constexpr (std::is_same_v<T, uint64_t>) return FERRY_VMS_U64;
  else if constexpr (std::is_same_v<T, int8_t>) return FERRY_VMS_I8;
  else if constexpr (std::is_same_v<T, int16_t>) return FERRY_VMS_I16;
  else if constexpr (std::is_same_v<T, int32_t>) return FERRY_VMS_I32;
  else return FERRY_VMS_I64;
}

namespace detail {
template <typename S>
constexpr void check_owner() {
  static_assert(std::is_standard_layout_v<S>,
                "vmstate describes standard-layout structs by offset (offsetof)");
}
constexpr Field base_field(const char* name, FerryVmsKind kind, size_t offset, size_t size) {
  return Field{name, kind, FERRY_VMS_SINGLE, offset, size, 0, 0, 0, nullptr, nullptr, nullptr,
               nullptr};
}
}  // namespace detail

// One scalar; `Expected` = void accepts any scalar type (the kind follows the member's type).
template <typename S, typename Expected, typename Member>
constexpr Field scalar_field(const char* name, size_t offset) {
  detail::check_owner<S>();
  if constexpr (!std::is_void_v<Expected>) {
    static_assert(std::is_same_v<Expected, Member>, "member type does not match the field macro");
  }
  return detail::base_field(name, scalar_kind<Member>(), offset, sizeof(Member));
}

// Fixed array of scalars: Member must be T[N].
template <typename S, typename Member>
constexpr Field array_field(const char* name, size_t offset) {
  detail::check_owner<S>();
  static_assert(std::is_array_v<Member> && std::rank_v<Member> == 1, "member must be T[N]");
  using E = std::remove_extent_t<Member>;
  Field f = detail::base_field(name, scalar_kind<E>(), offset, sizeof(E));
  f.array = FERRY_VMS_ARRAY;
  f.num = static_cast<uint32_t>(std::extent_v<Member>);
  return f;
}

// Variable array of scalars: Member is T[capacity], Count is uint8_t/uint16_t/uint32_t.
template <typename S, typename Member, typename Count>
constexpr Field varray_field(const char* name, size_t offset, size_t count_offset) {
  detail::check_owner<S>();
  static_assert(std::is_array_v<Member> && std::rank_v<Member> == 1, "member must be T[N]");
  static_assert(std::is_same_v<Count, uint8_t> || std::is_same_v<Count, uint16_t> ||
                    std::is_same_v<Count, uint32_t>,
                "variable array counts are uint8_t, uint16_t or uint32_t");
  using E = std::remove_extent_t<Member>;
  Field f = detail::base_field(name, FERRY_VMS_END, offset, sizeof(E));
  if constexpr (std::is_class_v<E>) {
    f.kind = FERRY_VMS_STRUCT;
  } else {
    f.kind = scalar_kind<E>();
  }
  f.array = std::is_same_v<Count, uint8_t>    ? FERRY_VMS_VARRAY8
            : std::is_same_v<Count, uint16_t> ? FERRY_VMS_VARRAY16
                                              : FERRY_VMS_VARRAY32;
  f.num = static_cast<uint32_t>(std::extent_v<Member>);
  f.num_offset = count_offset;
  return f;
}

// Fixed buffer: Member is uint8_t[N] (or char/int8_t[N]).
template <typename S, typename Member>
constexpr Field buffer_field(const char* name, size_t offset) {
  detail::check_owner<S>();
  static_assert(std::is_array_v<Member> && std::rank_v<Member> == 1 &&
                    sizeof(std::remove_extent_t<Member>) == 1,
                "buffer members are byte arrays");
  return detail::base_field(name, FERRY_VMS_BUFFER, offset, sizeof(Member));
}

// Nested struct (Member a class) or fixed array of structs (Member T[N]).
template <typename S, typename Member>
constexpr Field struct_field(const char* name, size_t offset, const Description& vmsd) {
  detail::check_owner<S>();
  Field f = detail::base_field(name, FERRY_VMS_STRUCT, offset, sizeof(Member));
  if constexpr (std::is_array_v<Member>) {
    using E = std::remove_extent_t<Member>;
    static_assert(std::is_class_v<E>, "struct arrays hold structs");
    f.size = sizeof(E);
    f.array = FERRY_VMS_ARRAY;
    f.num = static_cast<uint32_t>(std::extent_v<Member>);
  } else {
    static_assert(std::is_class_v<Member>, "struct fields must be structs");
  }
  f.vmsd = &vmsd;
  return f;
}

// Variable array of structs: Member T[capacity], count in another field.
template <typename S, typename Member, typename Count>
constexpr Field struct_varray_field(const char* name, size_t offset, size_t count_offset,
                                    const Description& vmsd) {
  static_assert(std::is_class_v<std::remove_extent_t<Member>>, "struct arrays hold structs");
  Field f = varray_field<S, Member, Count>(name, offset, count_offset);
  f.vmsd = &vmsd;
  return f;
}

template <typename S, typename Member>
constexpr Field struct_pointer_field(const char* name, size_t offset, const Description& vmsd,
                                     const FerryVmsAllocator* allocator) {
  detail::check_owner<S>();
  static_assert(std::is_pointer_v<Member> && std::is_class_v<std::remove_pointer_t<Member>>,
                "struct pointer fields are T*");
  Field f = detail::base_field(name, FERRY_VMS_STRUCT_POINTER, offset,
                               sizeof(std::remove_pointer_t<Member>));
  f.vmsd = &vmsd;
  f.allocator = allocator;
  return f;
}

template <typename S, typename Member>
constexpr Field list_field(const char* name, size_t offset, const FerryVmsList& list) {
  detail::check_owner<S>();
  Field f = detail::base_field(name, FERRY_VMS_LIST, offset, sizeof(Member));
  f.list = &list;
  return f;
}

// Offset of a data member of any struct without virtual bases, from its member pointer (Itanium
// C++ ABI: a data member pointer is the offset). For structs that are not standard-layout, where
// offsetof() is not available: e.g. a struct holding a std::list. Not constexpr.
template <typename S, typename M>
inline size_t member_offset(M S::*mp) {
  static_assert(sizeof(mp) == sizeof(ptrdiff_t), "data member pointers must be plain offsets");
  ptrdiff_t off;
  std::memcpy(&off, &mp, sizeof off);
  return static_cast<size_t>(off);
}

// The same as list_field for a struct that is not standard-layout (runtime offset).
template <typename S, typename Member>
inline Field list_field_any_layout(const char* name, Member S::*mp, const FerryVmsList& list) {
  Field f = detail::base_field(name, FERRY_VMS_LIST, member_offset(mp), sizeof(Member));
  f.list = &list;
  return f;
}

constexpr Field unused_field(size_t bytes) {
  return detail::base_field("unused", FERRY_VMS_UNUSED, 0, bytes);
}

// Modifiers: present from version v on / present when pred(opaque, version).
constexpr Field since(Field f, int version_id) {
  f.version_id = version_id;
  return f;
}
constexpr Field when(Field f, bool (*exists)(void*, int)) {
  f.field_exists = exists;
  return f;
}

constexpr Field end_of_fields() { return detail::base_field(nullptr, FERRY_VMS_END, 0, 0); }

}  // namespace ferry::vmstate

#define FERRY_VMS_FIELD_T_(S, m, T) \
  ::ferry::vmstate::scalar_field<S, T, decltype(S::m)>(#m, offsetof(S, m))
#define FERRY_VMS_FIELD(S, m) FERRY_VMS_FIELD_T_(S, m, void)
#define FERRY_VMS_BOOL(S, m) FERRY_VMS_FIELD_T_(S, m, bool)
#define FERRY_VMS_UINT8(S, m) FERRY_VMS_FIELD_T_(S, m, uint8_t)
#define FERRY_VMS_UINT16(S, m) FERRY_VMS_FIELD_T_(S, m, uint16_t)
#define FERRY_VMS_UINT32(S, m) FERRY_VMS_FIELD_T_(S, m, uint32_t)
#define FERRY_VMS_UINT64(S, m) FERRY_VMS_FIELD_T_(S, m, uint64_t)
#define FERRY_VMS_INT8(S, m) FERRY_VMS_FIELD_T_(S, m, int8_t)
#define FERRY_VMS_INT16(S, m) FERRY_VMS_FIELD_T_(S, m, int16_t)
#define FERRY_VMS_INT32(S, m) FERRY_VMS_FIELD_T_(S, m, int32_t)
#define FERRY_VMS_INT64(S, m) FERRY_VMS_FIELD_T_(S, m, int64_t)
#define FERRY_VMS_ARRAY(S, m) ::ferry::vmstate::array_field<S, decltype(S::m)>(#m, offsetof(S, m))
#define FERRY_VMS_VARRAY(S, m, count)                                              \
  ::ferry::vmstate::varray_field<S, decltype(S::m), decltype(S::count)>(#m, offsetof(S, m), \
                                                                      offsetof(S, count))
#define FERRY_VMS_BUFFER(S, m) ::ferry::vmstate::buffer_field<S, decltype(S::m)>(#m, offsetof(S, m))
#define FERRY_VMS_STRUCT(S, m, vmsd) \
  ::ferry::vmstate::struct_field<S, decltype(S::m)>(#m, offsetof(S, m), vmsd)
#define FERRY_VMS_STRUCT_VARRAY(S, m, count, vmsd)                                   \
  ::ferry::vmstate::struct_varray_field<S, decltype(S::m), decltype(S::count)>(      \
      #m, offsetof(S, m), offsetof(S, count), vmsd)
#define FERRY_VMS_STRUCT_POINTER(S, m, vmsd, allocator) \
  ::ferry::vmstate::struct_pointer_field<S, decltype(S::m)>(#m, offsetof(S, m), vmsd, allocator)
#define FERRY_VMS_LIST(S, m, list) \
  ::ferry::vmstate::list_field<S, decltype(S::m)>(#m, offsetof(S, m), list)
// For structs that hold a std::list (not standard-layout): the field is initialised at run time,
// so the field table must be `const`, not `constexpr`.
#define FERRY_VMS_LIST_ANY_LAYOUT(S, m, list) \
  ::ferry::vmstate::list_field_any_layout(#m, &S::m, list)
#define FERRY_VMS_UNUSED(bytes) ::ferry::vmstate::unused_field(bytes)
#define FERRY_VMS_END_OF_FIELDS() ::ferry::vmstate::end_of_fields()

#endif /* __cplusplus */

#endif /* FERRY_ENGINE_VMSTATE_VMSTATE_H */
