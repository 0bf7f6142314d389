// Linked lists: every loop format x container x allocator combination that makes sense, through
// the binary (byte-exact), BER and debug visitors; loads into non-empty lists; loops that never
// end within the data; the element cap.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "engine/vmstate/binary_input.h"
#include "engine/vmstate/binary_output.h"
#include "engine/vmstate/ber_input.h"
#include "engine/vmstate/ber_output.h"
#include "engine/vmstate/debug_output.h"
#include "engine/vmstate/input.h"
#include "engine/vmstate/list_allocator.h"
#include "engine/vmstate/list_container.h"
#include "engine/vmstate/walker.h"
#include "tests/vmstate/fixtures.h"

namespace ferry::vmstate::test {
namespace {

using Bytes = std::vector<uint8_t>;

enum class Cont { kTailq, kVectorPtr, kListPtr, kCallbacks, kVectorVal, kListVal };
enum class Alloc { kMalloc, kNewDelete, kCallbacks, kNone };

const char* cont_name(Cont c) {
  switch (c) {
    case Cont::kTailq: return "tailq";
    case Cont::kVectorPtr: return "vectorPtr";
    case Cont::kListPtr: return "listPtr";
    case Cont::kCallbacks: return "callbacks";
    case Cont::kVectorVal: return "vectorVal";
    case Cont::kListVal: return "listVal";
  }
  return "?";
}
const char* alloc_name(Alloc a) {
  switch (a) {
    case Alloc::kMalloc: return "malloc";
    case Alloc::kNewDelete: return "new";
    case Alloc::kCallbacks: return "callbacks";
    case Alloc::kNone: return "none";
  }
  return "?";
}

// ---- Caller-callback allocator: counts live elements.
int g_live = 0;
void* counting_alloc(const FerryVmsAllocator* a, size_t size) {
  ++*static_cast<int*>(a->opaque);
  return std::calloc(1, size);
}
void counting_free(const FerryVmsAllocator* a, void* p) {
  --*static_cast<int*>(a->opaque);
  std::free(p);
}
const FerryVmsAllocator kCountingAllocator = {&counting_alloc, &counting_free, &g_live};

// ---- Caller-callback container: a fixed array of slots.
struct Slots {
  Req* slot[8];
  uint32_t n;
};
size_t slots_count(const FerryVmsContainer*, const void* head) {
  return static_cast<const Slots*>(head)->n;
}
void* slots_first(const FerryVmsContainer*, void* head, FerryVmsCursor* cur) {
  auto* s = static_cast<Slots*>(head);
  cur->index = 0;
  return s->n ? s->slot[0] : nullptr;
}
void* slots_next(const FerryVmsContainer*, void* head, FerryVmsCursor* cur) {
  auto* s = static_cast<Slots*>(head);
  return ++cur->index < s->n ? s->slot[cur->index] : nullptr;
}
int slots_append(const FerryVmsContainer*, void* head, void* e) {
  auto* s = static_cast<Slots*>(head);
  if (s->n == 8) return -1;
  s->slot[s->n++] = static_cast<Req*>(e);
  return 0;
}
void slots_clear(const FerryVmsContainer*, void* head,
                 void (*free_elem)(const FerryVmsAllocator*, void*), const FerryVmsAllocator* a) {
  auto* s = static_cast<Slots*>(head);
  for (uint32_t i = 0; i < s->n; ++i) {
    if (free_elem) free_elem(a, s->slot[i]);
  }
  s->n = 0;
}
const FerryVmsContainerOps kSlotsOps = {&slots_count, &slots_first, &slots_next, &slots_append,
                                        nullptr, &slots_clear};
const FerryVmsContainer kSlotsContainer = {&kSlotsOps, 0, 0, 0, 0, nullptr};

const FerryVmsContainer kTailqContainer = FERRY_VMS_TAILQ_CONTAINER(Req, link);

struct Combo {
  FerryVmsLoopFormat format;
  Cont cont;
  Alloc alloc;
};

// The object under test: {u32 before; <container> list; u32 after} plus its description.
struct Env {
  virtual ~Env() = default;
  virtual void* obj() = 0;
  virtual void* head() = 0;
  FerryVmsList list{};
  FerryVmsField fields[4]{};
  FerryVmsDescription d{};

  uint32_t& before() { return *static_cast<uint32_t*>(obj()); }

  void release() { ferry_vms_release(&d, obj()); }
  void add(uint32_t tag, uint8_t retry) {
    const FerryVmsContainer* c = list.container;
    void* e;
    if (c->ops->emplace) {
      e = c->ops->emplace(c, head());
    } else {
      e = list.allocator->alloc(list.allocator, sizeof(Req));
      ASSERT_EQ(c->ops->append(c, head(), e), 0);
    }
    auto* r = static_cast<Req*>(e);
    r->tag = tag;
    r->retry = retry;
    for (int i = 0; i < 4; ++i) r->cdb[i] = static_cast<uint8_t>(tag * 3 + i);
  }
  std::vector<Req> elements() {
    std::vector<Req> v;
    FerryVmsCursor cur{};
    const FerryVmsContainer* c = list.container;
    for (void* e = c->ops->first(c, head(), &cur); e; e = c->ops->next(c, head(), &cur)) {
      v.push_back(*static_cast<Req*>(e));
    }
    return v;
  }
};

template <typename C>
struct EnvT final : Env {
  struct S {
    uint32_t before;
    C list;
    uint32_t after;
  } s{};
  void* obj() override { return &s; }
  void* head() override { return &s.list; }
  ~EnvT() override { release(); }
};

template <typename C>
std::unique_ptr<Env> make_env_t(const Combo& combo, const FerryVmsContainer* container) {
  auto env = std::make_unique<EnvT<C>>();
  using S = typename EnvT<C>::S;
  Env& e = *env;
  e.list.format = combo.format;
  e.list.marker_offset = offsetof(Req, retry);
  e.list.container = container;
  e.list.element = &kReqVmsd;
  e.list.element_size = sizeof(Req);
  switch (combo.alloc) {
    case Alloc::kMalloc: e.list.allocator = &ferry_vms_malloc_allocator; break;
    case Alloc::kNewDelete: e.list.allocator = new_delete_allocator<Req>(); break;
    case Alloc::kCallbacks: e.list.allocator = &kCountingAllocator; break;
    case Alloc::kNone: e.list.allocator = nullptr; break;
  }
  // std::list makes S non-standard-layout: offsets from member pointers.
  e.fields[0] = ::ferry::vmstate::detail::base_field("before", FERRY_VMS_U32,
                                                     member_offset(&S::before), 4);
  e.fields[1] = FERRY_VMS_LIST_ANY_LAYOUT(S, list, e.list);
  e.fields[1].name = "reqs";
  e.fields[2] = ::ferry::vmstate::detail::base_field("after", FERRY_VMS_U32,
                                                     member_offset(&S::after), 4);
  e.fields[3] = end_of_fields();
  e.d = FerryVmsDescription{"queue", 1, 1, nullptr, nullptr, nullptr, e.fields, nullptr};
  env->s.before = 0xaabbccdd;
  env->s.after = 0x11223344;
  return env;
}

std::unique_ptr<Env> make_env(const Combo& c) {
  switch (c.cont) {
    case Cont::kTailq: return make_env_t<FerryVmsTailqHead>(c, &kTailqContainer);
    case Cont::kVectorPtr: return make_env_t<std::vector<Req*>>(c, vector_container<Req*>());
    case Cont::kListPtr: return make_env_t<std::list<Req*>>(c, std_list_container<Req*>());
    case Cont::kCallbacks: return make_env_t<Slots>(c, &kSlotsContainer);
    case Cont::kVectorVal: return make_env_t<std::vector<Req>>(c, vector_container<Req>());
    case Cont::kListVal: return make_env_t<std::list<Req>>(c, std_list_container<Req>());
  }
  return nullptr;
}

void put_be32(Bytes& b, uint32_t v) {
  for (int i = 3; i >= 0; --i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// QEMU's encoding of the body, by hand: before, the loop, after.
Bytes expected_body(FerryVmsLoopFormat f, const std::vector<std::pair<uint32_t, uint8_t>>& elems) {
  Bytes b;
  put_be32(b, 0xaabbccdd);
  if (f == FERRY_VMS_LOOP_COUNT32) put_be32(b, static_cast<uint32_t>(elems.size()));
  for (auto [tag, retry] : elems) {
    if (f == FERRY_VMS_LOOP_MARKER) b.push_back(1);
    if (f == FERRY_VMS_LOOP_MARKER_FIELD) b.push_back(retry);
    put_be32(b, tag);
    for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(tag * 3 + i));
  }
  if (f != FERRY_VMS_LOOP_COUNT32) b.push_back(0);
  put_be32(b, 0x11223344);
  return b;
}

class ListCombo : public ::testing::TestWithParam<Combo> {
 protected:
  void SetUp() override { g_live = 0; }
  void TearDown() override { EXPECT_EQ(g_live, 0) << "callback allocator leaked elements"; }

  std::vector<std::pair<uint32_t, uint8_t>> fill(Env& e, int n, uint32_t base = 0x100) {
    std::vector<std::pair<uint32_t, uint8_t>> v;
    for (int i = 0; i < n; ++i) {
      const uint8_t retry = static_cast<uint8_t>(1 + i % 2);
      e.add(base + static_cast<uint32_t>(i), retry);
      v.emplace_back(base + static_cast<uint32_t>(i), retry);
    }
    return v;
  }

  void expect_same(Env& a, Env& b) {
    auto x = a.elements(), y = b.elements();
    ASSERT_EQ(x.size(), y.size());
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_EQ(x[i].tag, y[i].tag) << i;
      EXPECT_EQ(std::memcmp(x[i].cdb, y[i].cdb, 4), 0) << i;
      if (GetParam().format == FERRY_VMS_LOOP_MARKER_FIELD) {
        EXPECT_EQ(x[i].retry, y[i].retry) << i;
      }
    }
  }
};

TEST_P(ListCombo, BinaryBytesAndRoundTrip) {
  for (int n : {0, 1, 3}) {
    auto src = make_env(GetParam());
    auto elems = fill(*src, n);
    Bytes body;
    BinaryOutput out(body);
    ASSERT_TRUE(save_state(src->d, src->obj(), out).ok());
    EXPECT_EQ(hex(body), hex(expected_body(GetParam().format, elems))) << n << " elements";

    auto dst = make_env(GetParam());
    BinaryInput in(body);
    Status st = load_state(dst->d, dst->obj(), in, 1);
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_TRUE(in.at_end());
    expect_same(*src, *dst);
  }
}

TEST_P(ListCombo, SectionRoundTripThroughEveryEncoding) {
  for (Encoding enc : {Encoding::kBinary, Encoding::kBer}) {
    auto src = make_env(GetParam());
    fill(*src, 3);
    Bytes bytes;
    ASSERT_TRUE(save_to(enc, src->d, src->obj(), bytes).ok());
    auto dst = make_env(GetParam());
    Encoding detected;
    Status st = load_any(dst->d, dst->obj(), bytes, nullptr, &detected);
    ASSERT_TRUE(st.ok()) << encoding_name(enc) << ": " << st.message();
    EXPECT_EQ(detected, enc);
    expect_same(*src, *dst);
    EXPECT_EQ(dst->before(), 0xaabbccddu);
  }
}

TEST_P(ListCombo, DebugOutputShowsTheLoop) {
  auto src = make_env(GetParam());
  fill(*src, 2);
  std::string text;
  DebugOutput out(text);
  ASSERT_TRUE(save_state(src->d, src->obj(), out).ok());
  EXPECT_NE(text.find(std::string("reqs: list (") + loop_format_name(GetParam().format) +
                      ", 2 elements) {"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("tag: u32 = 257 (0x101)"), std::string::npos) << text;
  if (GetParam().format == FERRY_VMS_LOOP_MARKER_FIELD) {
    EXPECT_NE(text.find("[1] marker 2: struct 'req'"), std::string::npos) << text;
  }
}

TEST_P(ListCombo, LoadIntoNonEmptyListIsAnErrorUnlessAppend) {
  auto src = make_env(GetParam());
  fill(*src, 2);
  for (Encoding enc : {Encoding::kBinary, Encoding::kBer}) {
    Bytes bytes;
    ASSERT_TRUE(save_to(enc, src->d, src->obj(), bytes).ok());
    auto dst = make_env(GetParam());
    fill(*dst, 1, 0x900);
    Status st = load_any(dst->d, dst->obj(), bytes);
    EXPECT_EQ(st.code(), Errc::kListNotEmpty) << st.message();
    EXPECT_NE(st.message().find("list 'reqs' already has 1 elements"), std::string::npos)
        << st.message();
    EXPECT_EQ(dst->elements().size(), 1u);

    auto app = make_env(GetParam());
    app->list.flags = FERRY_VMS_LIST_APPEND;
    fill(*app, 1, 0x900);
    st = load_any(app->d, app->obj(), bytes);
    ASSERT_TRUE(st.ok()) << st.message();
    auto got = app->elements();
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0].tag, 0x900u);
    EXPECT_EQ(got[1].tag, 0x100u);
    EXPECT_EQ(got[2].tag, 0x101u);
  }
}

TEST_P(ListCombo, LoopThatNeverEndsWithinTheData) {
  const FerryVmsLoopFormat f = GetParam().format;
  // Binary: many elements and no terminator (or a count far beyond the data).
  Bytes body;
  put_be32(body, 0xaabbccdd);
  if (f == FERRY_VMS_LOOP_COUNT32) put_be32(body, 1000);
  for (int i = 0; i < 5; ++i) {
    if (f != FERRY_VMS_LOOP_COUNT32) body.push_back(1);
    put_be32(body, 7);
    for (int k = 0; k < 4; ++k) body.push_back(0);
  }
  {
    auto dst = make_env(GetParam());
    BinaryInput in(body);
    Status st = load_state(dst->d, dst->obj(), in, 1);
    ASSERT_EQ(st.code(), Errc::kTruncated) << st.message();
    EXPECT_NE(st.message().find("offset " + std::to_string(body.size())), std::string::npos)
        << st.message();
    EXPECT_LE(dst->elements().size(), 6u);  // never more than the data could hold
  }
  // A count beyond the cap is refused before allocating anything.
  if (f == FERRY_VMS_LOOP_COUNT32) {
    Bytes huge;
    put_be32(huge, 0xaabbccdd);
    put_be32(huge, 0xffffffff);
    auto dst = make_env(GetParam());
    BinaryInput in(huge);
    Status st = load_state(dst->d, dst->obj(), in, 1);
    EXPECT_EQ(st.code(), Errc::kListLimit) << st.message();
    EXPECT_EQ(dst->elements().size(), 0u);
  }
  // BER: a list without its end-of-contents.
  {
    auto src = make_env(GetParam());
    fill(*src, 3);
    Bytes ber;
    BerOutput out(ber);
    ASSERT_TRUE(save_state(src->d, src->obj(), out).ok());
    // Cut right after the third element (before the list's 00 00 and the rest).
    const size_t cut = ber.size() - 2 /*struct eoc*/ - 17 /*field 'after'*/ -
                       2 /*field 'reqs' eoc*/ - 2 /*list eoc*/;
    ASSERT_EQ(ber[cut], 0);
    ASSERT_EQ(ber[cut + 4], 0x30);
    auto dst = make_env(GetParam());
    BerInput in(std::span(ber.data(), cut));
    Status st = load_state(dst->d, dst->obj(), in, 1);
    EXPECT_EQ(st.code(), Errc::kTruncated) << st.message();
    // The element whose data ran out is already linked (walker.h: link, then load), so
    // ferry_vms_release() frees it; with marker-field items the marker is read first.
    EXPECT_EQ(dst->elements().size(), f == FERRY_VMS_LOOP_MARKER_FIELD ? 3u : 4u);
  }
}

TEST_P(ListCombo, ElementCap) {
  auto src = make_env(GetParam());
  fill(*src, 3);
  for (Encoding enc : {Encoding::kBinary, Encoding::kBer}) {
    Bytes bytes;
    ASSERT_TRUE(save_to(enc, src->d, src->obj(), bytes).ok());
    auto dst = make_env(GetParam());
    dst->list.max_elements = 2;
    Status st = load_any(dst->d, dst->obj(), bytes);
    EXPECT_EQ(st.code(), Errc::kListLimit) << st.message();
    EXPECT_NE(st.message().find("list 'reqs'"), std::string::npos) << st.message();
    EXPECT_LE(dst->elements().size(), 2u);
  }
}

std::vector<Combo> all_combos() {
  std::vector<Combo> v;
  for (FerryVmsLoopFormat f :
       {FERRY_VMS_LOOP_MARKER, FERRY_VMS_LOOP_MARKER_FIELD, FERRY_VMS_LOOP_COUNT32}) {
    for (Cont c : {Cont::kTailq, Cont::kVectorPtr, Cont::kListPtr, Cont::kCallbacks}) {
      for (Alloc a : {Alloc::kMalloc, Alloc::kNewDelete, Alloc::kCallbacks}) v.push_back({f, c, a});
    }
    v.push_back({f, Cont::kVectorVal, Alloc::kNone});
    v.push_back({f, Cont::kListVal, Alloc::kNone});
  }
  return v;
}

INSTANTIATE_TEST_SUITE_P(VmstateLists, ListCombo, ::testing::ValuesIn(all_combos()),
                         [](const ::testing::TestParamInfo<Combo>& i) {
                           std::string s = loop_format_name(i.param.format);
                           for (char& ch : s) {
                             if (ch == '-') ch = '_';
                           }
                           return s + "_" + cont_name(i.param.cont) + "_" +
                                  alloc_name(i.param.alloc);
                         });

// Combinations that do not make sense are refused, not guessed at.
TEST(VmstateList, PointerContainerWithoutAllocatorIsRefused) {
  auto env = make_env({FERRY_VMS_LOOP_MARKER, Cont::kTailq, Alloc::kNone});
  Bytes body = {0, 0, 0, 0, 0, 0, 0, 0, 0};
  BinaryInput in(body);
  Status st = load_state(env->d, env->obj(), in, 1);
  EXPECT_EQ(st.code(), Errc::kBadDescription) << st.message();
}

TEST(VmstateList, MarkerFieldZeroCannotBeSaved) {
  auto env = make_env({FERRY_VMS_LOOP_MARKER_FIELD, Cont::kTailq, Alloc::kMalloc});
  env->add(5, 0);
  Bytes out;
  BinaryOutput v(out);
  Status st = save_state(env->d, env->obj(), v);
  EXPECT_EQ(st.code(), Errc::kOutOfRange);
  EXPECT_NE(st.message().find("marker 0"), std::string::npos) << st.message();
}

TEST(VmstateList, FailedAppendFreesTheElement) {
  g_live = 0;
  {
    auto src = make_env({FERRY_VMS_LOOP_COUNT32, Cont::kVectorPtr, Alloc::kMalloc});
    for (int i = 0; i < 9; ++i) src->add(static_cast<uint32_t>(i), 1);
    Bytes out;
    BinaryOutput v(out);
    ASSERT_TRUE(save_state(src->d, src->obj(), v).ok());
    auto dst = make_env({FERRY_VMS_LOOP_COUNT32, Cont::kCallbacks, Alloc::kCallbacks});
    BinaryInput in(out);
    Status st = load_state(dst->d, dst->obj(), in, 1);
    EXPECT_EQ(st.code(), Errc::kAllocFailed) << st.message();
    EXPECT_EQ(g_live, 8);  // the ninth was freed, the eight linked ones are released below
  }
  EXPECT_EQ(g_live, 0);
}

}  // namespace
}  // namespace ferry::vmstate::test
