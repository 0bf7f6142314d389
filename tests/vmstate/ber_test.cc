// BER input against malformed data (truncation, lengths, tags, names, ranges, nesting) and the
// walker's depth limit; definite lengths are accepted as well as indefinite ones.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "engine/vmstate/ber_input.h"
#include "engine/vmstate/ber_output.h"
#include "engine/vmstate/binary_input.h"
#include "engine/vmstate/binary_output.h"
#include "engine/vmstate/input.h"
#include "engine/vmstate/walker.h"
#include "tests/vmstate/fixtures.h"

namespace ferry::vmstate::test {
namespace {

using Bytes = std::vector<uint8_t>;

struct DevHolder {
  Dev d{};
  ~DevHolder() { ferry_vms_release(&kDevVmsd, &d); }
};

Bytes dev_ber() {
  DevHolder h;
  fill_dev(h.d, 2);
  h.d.sub2_value = 5;
  Bytes out;
  EXPECT_TRUE(save_to(Encoding::kBer, kDevVmsd, &h.d, out, {1, 0}).ok());
  return out;
}

size_t find(const Bytes& b, std::initializer_list<uint8_t> needle) {
  auto it = std::search(b.begin(), b.end(), needle.begin(), needle.end());
  EXPECT_NE(it, b.end());
  return static_cast<size_t>(it - b.begin());
}

Status load(const Bytes& b) {
  DevHolder got;
  return load_any(kDevVmsd, &got.d, b);
}

bool mentions(const Status& st, const std::string& text) {
  return st.message().find(text) != std::string::npos;
}

TEST(VmstateBerInput, RejectsEveryTruncation) {
  const Bytes good = dev_ber();
  ASSERT_TRUE(load(good).ok());
  for (size_t n = 4; n < good.size(); ++n) {
    Status st = load(Bytes(good.begin(), good.begin() + static_cast<long>(n)));
    ASSERT_FALSE(st.ok()) << n;
    EXPECT_TRUE(st.code() == Errc::kTruncated || st.code() == Errc::kBadLength)
        << n << ": " << errc_name(st.code()) << ": " << st.message();
    EXPECT_TRUE(mentions(st, "offset")) << st.message();
  }
}

TEST(VmstateBerInput, MalformedLengths) {
  const Bytes good = dev_ber();
  // The formatVersion INTEGER is at offset 3: 02 01 01; its length octet is at offset 4.
  ASSERT_EQ(good[3], 0x02);
  struct Case {
    Bytes length;  // replaces the single length octet
    Errc code;
    const char* text;
  } cases[] = {
      {{0x89, 1, 2, 3, 4, 5, 6, 7, 8, 9}, Errc::kBadLength, "BER length with 9 octets at offset 4"},
      {{0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Errc::kBadLength, "exceeds"},
      {{0x84, 0x00, 0x10, 0x00, 0x00}, Errc::kBadLength, "BER length 1048576 at offset 4 exceeds"},
      {{0xff}, Errc::kBadLength, "at offset 4"},
      {{0x80}, Errc::kBadLength, "indefinite length on a primitive INTEGER at offset 3"},
      {{0x00}, Errc::kBadLength, "INTEGER of 0 octets at offset 3"},
  };
  for (const Case& c : cases) {
    Bytes b(good.begin(), good.begin() + 4);
    b.insert(b.end(), c.length.begin(), c.length.end());
    b.insert(b.end(), good.begin() + 5, good.end());
    Status st = load(b);
    EXPECT_EQ(st.code(), c.code) << st.message();
    EXPECT_TRUE(mentions(st, c.text)) << st.message();
  }
}

TEST(VmstateBerInput, WrongTagNamesExpectedAndFound) {
  Bytes b = dev_ber();
  const size_t at = find(b, {0x0c, 0x02, 'u', '8'}) + 4;  // value of field u8
  ASSERT_EQ(b[at], 0x02);
  b[at] = 0x04;
  Status st = load(b);
  EXPECT_EQ(st.code(), Errc::kBadTag);
  EXPECT_TRUE(mentions(st, "expected INTEGER (u8) at offset " + std::to_string(at) +
                               ", found OCTET STRING"))
      << st.message();
  EXPECT_TRUE(mentions(st, "field 'u8' of 'dev'")) << st.message();

  b = dev_ber();
  b[0] = 0x7e;  // still detected? no: the prefix is the detection
  EXPECT_EQ(load(b).code(), Errc::kUnknownFormat);

  b = dev_ber();
  const size_t list = find(b, {0x0c, 0x04, 'r', 'e', 'q', 's'}) + 6;
  ASSERT_EQ(b[list], 0x63);
  b[list] = 0x64;  // an array where the list should be
  st = load(b);
  EXPECT_EQ(st.code(), Errc::kBadTag);
  EXPECT_TRUE(mentions(st, "expected [APPLICATION 3] constructed (reqs)")) << st.message();
  EXPECT_TRUE(mentions(st, "found [APPLICATION 4] constructed")) << st.message();

  b = dev_ber();
  const size_t sub = find(b, {0x62, 0x80, 0x0c});
  b[sub] = 0x63;  // not a subsection
  st = load(b);
  EXPECT_EQ(st.code(), Errc::kBadTag) << st.message();
  EXPECT_TRUE(mentions(st, "offset " + std::to_string(sub))) << st.message();
}

TEST(VmstateBerInput, FieldNameMismatch) {
  Bytes b = dev_ber();
  const size_t at = find(b, {0x0c, 0x02, 'u', '8'});
  b[at + 3] = '9';
  Status st = load(b);
  EXPECT_EQ(st.code(), Errc::kNameMismatch);
  EXPECT_TRUE(mentions(st, "expected field 'u8' at offset " + std::to_string(at) + ", found 'u9'"))
      << st.message();
}

TEST(VmstateBerInput, UnknownSubsectionAndBadVersion) {
  Bytes b = dev_ber();
  size_t at = find(b, {'d', 'e', 'v', '/', 's', 'u', 'b', '2'});
  b[at + 7] = '9';
  Status st = load(b);
  EXPECT_EQ(st.code(), Errc::kUnknownSubsection);
  EXPECT_TRUE(mentions(st, "unknown subsection 'dev/sub9' in 'dev'")) << st.message();

  b = dev_ber();
  at = find(b, {'d', 'e', 'v', '/', 's', 'u', 'b', '2'});
  ASSERT_EQ(b[at + 8], 0x02);  // versionId 1
  b[at + 10] = 2;
  st = load(b);
  EXPECT_EQ(st.code(), Errc::kVersionTooNew) << st.message();
  EXPECT_TRUE(mentions(st, "subsection 'dev/sub2' version 2")) << st.message();
}

// A one-field description for hand-made streams.
struct One {
  uint8_t x;
  uint8_t n;
  uint16_t arr[2];
};
constexpr FerryVmsField kOneFields[] = {
    FERRY_VMS_UINT8(One, x), FERRY_VMS_UINT8(One, n), FERRY_VMS_VARRAY(One, arr, n),
    FERRY_VMS_END_OF_FIELDS()};
const FerryVmsDescription kOneVmsd = {"one", 1, 1, nullptr, nullptr, nullptr, kOneFields, nullptr};

Bytes one_body(Bytes x_value, uint8_t n, Bytes arr_items) {
  Bytes b = {0x30, 0x80, 0x30, 0x80, 0x0c, 0x01, 'x'};
  b.insert(b.end(), x_value.begin(), x_value.end());
  b.insert(b.end(), {0x00, 0x00, 0x30, 0x80, 0x0c, 0x01, 'n', 0x02, 0x01, n, 0x00, 0x00});
  b.insert(b.end(), {0x30, 0x80, 0x0c, 0x03, 'a', 'r', 'r', 0x64, 0x80});
  b.insert(b.end(), arr_items.begin(), arr_items.end());
  b.insert(b.end(), {0x00, 0x00, 0x00, 0x00, 0x00, 0x00});
  return b;
}

Status load_one(const Bytes& b, One* out = nullptr) {
  One o{};
  BerInput in(b);
  Status st = load_state(kOneVmsd, &o, in, 1);
  if (out) *out = o;
  return st;
}

TEST(VmstateBerInput, HandMadeStreamsAndRanges) {
  One o{};
  ASSERT_TRUE(load_one(one_body({0x02, 0x01, 0x07}, 2, {0x02, 0x01, 0x01, 0x02, 0x01, 0x02}), &o)
                  .ok());
  EXPECT_EQ(o.x, 7);
  EXPECT_EQ(o.arr[1], 2);

  Status st = load_one(one_body({0x02, 0x02, 0x01, 0x2c}, 0, {}));  // 300 in a u8
  EXPECT_EQ(st.code(), Errc::kOutOfRange);
  EXPECT_TRUE(mentions(st, "INTEGER 300 at offset 7 exceeds 255 (x)")) << st.message();
  st = load_one(one_body({0x02, 0x01, 0xff}, 0, {}));  // -1 in a u8
  EXPECT_EQ(st.code(), Errc::kOutOfRange) << st.message();
  st = load_one(one_body({0x02, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 0, {}));
  EXPECT_EQ(st.code(), Errc::kBadLength) << st.message();
  st = load_one(one_body({0x01, 0x02, 0xff, 0xff}, 0, {}));  // a BOOLEAN where INTEGER belongs
  EXPECT_EQ(st.code(), Errc::kBadTag) << st.message();

  // Variable array: count 3 > 2 allocated; more / fewer elements than the count field says.
  st = load_one(one_body({0x02, 0x01, 0x07}, 3, {0x02, 0x01, 1, 0x02, 0x01, 2, 0x02, 0x01, 3}));
  EXPECT_EQ(st.code(), Errc::kCountTooLarge);
  EXPECT_TRUE(mentions(st, "array 'arr' count 3 is larger than its 2 allocated")) << st.message();
  st = load_one(one_body({0x02, 0x01, 0x07}, 1, {0x02, 0x01, 1, 0x02, 0x01, 2}));
  EXPECT_EQ(st.code(), Errc::kCountTooLarge) << st.message();
  st = load_one(one_body({0x02, 0x01, 0x07}, 2, {0x02, 0x01, 1}));
  EXPECT_EQ(st.code(), Errc::kBadTag) << st.message();
  EXPECT_TRUE(mentions(st, "found the end of the enclosing value")) << st.message();

  // Extra field at the end of the struct.
  Bytes extra = one_body({0x02, 0x01, 0x07}, 0, {});
  extra.insert(extra.end() - 2, {0x02, 0x01, 0x00});
  st = load_one(extra);
  EXPECT_EQ(st.code(), Errc::kBadTag) << st.message();

  // Tag numbers: a long-form tag that never ends / is too large.
  Bytes tag = one_body({0x02, 0x01, 0x07}, 0, {});
  tag[2] = 0x3f;  // [UNIVERSAL long form] constructed
  tag.insert(tag.begin() + 3, {0x81, 0x82, 0x83, 0x84, 0x05});
  st = load_one(tag);
  EXPECT_EQ(st.code(), Errc::kBadTag) << st.message();
  EXPECT_TRUE(mentions(st, "tag number too large at offset 2")) << st.message();
}

TEST(VmstateBerInput, TrailingDataAfterSection) {
  Bytes b = dev_ber();
  b.push_back(0);
  Status st = load(b);
  EXPECT_EQ(st.code(), Errc::kTrailingData) << st.message();
}

// Re-encodes a BER value with definite lengths everywhere (what another BER writer may send).
size_t to_definite(const Bytes& in, size_t pos, Bytes& out) {
  const size_t start = pos;
  const uint8_t id = in[pos++];
  size_t id_len = 1;
  if ((id & 0x1f) == 0x1f) {
    while (in[pos++] & 0x80) ++id_len;
    ++id_len;
  }
  Bytes content;
  const uint8_t l = in[pos++];
  if (l == 0x80) {
    while (!(in[pos] == 0 && in[pos + 1] == 0)) pos = to_definite(in, pos, content);
    pos += 2;
  } else {
    size_t len = l;
    if (l & 0x80) {
      len = 0;
      for (int i = 0; i < (l & 0x7f); ++i) len = (len << 8) | in[pos++];
    }
    if (id & 0x20) {
      const size_t end = pos + len;
      while (pos < end) pos = to_definite(in, pos, content);
    } else {
      content.assign(in.begin() + static_cast<long>(pos), in.begin() + static_cast<long>(pos + len));
      pos += len;
    }
  }
  out.insert(out.end(), in.begin() + static_cast<long>(start),
             in.begin() + static_cast<long>(start + id_len));
  if (content.size() < 0x80) {
    out.push_back(static_cast<uint8_t>(content.size()));
  } else {
    out.push_back(0x82);
    out.push_back(static_cast<uint8_t>(content.size() >> 8));
    out.push_back(static_cast<uint8_t>(content.size()));
  }
  out.insert(out.end(), content.begin(), content.end());
  return pos;
}

TEST(VmstateBerInput, AcceptsDefiniteLengths) {
  const Bytes indefinite = dev_ber();
  Bytes definite;
  ASSERT_EQ(to_definite(indefinite, 0, definite), indefinite.size());
  ASSERT_LT(definite.size(), indefinite.size());
  DevHolder src;
  fill_dev(src.d, 2);
  src.d.sub2_value = 5;
  DevHolder got;
  BerInput in(definite);
  Status st = load_section(kDevVmsd, &got.d, in);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(diff_dev(src.d, got.d), "");

  // A nested definite length running past its parent.
  Bytes bad = definite;
  const size_t at = find(bad, {0x0c, 0x02, 'u', '8'}) + 4;  // u8's INTEGER: 02 02 00 ab
  ASSERT_EQ(bad[at], 0x02);
  bad[at + 1] = 0x7f;
  st = load(bad);
  EXPECT_EQ(st.code(), Errc::kBadLength);
  EXPECT_TRUE(mentions(st, "BER length 127 at offset " + std::to_string(at + 1) + " exceeds"))
      << st.message();
}

// ---- Nesting: a tree whose nodes hold a list of nodes.
struct Node {
  FerryVmsTailqEntry link;
  FerryVmsTailqHead children;
  uint8_t id;
};
extern const FerryVmsDescription kNodeVmsd;
extern const FerryVmsList kNodeList;
constexpr FerryVmsContainer kNodeTailq = FERRY_VMS_TAILQ_CONTAINER(Node, link);
constexpr FerryVmsField kNodeFields[] = {FERRY_VMS_LIST(Node, children, kNodeList),
                                         FERRY_VMS_END_OF_FIELDS()};
const FerryVmsDescription kNodeVmsd = {"node", 1, 1, nullptr, nullptr, nullptr, kNodeFields,
                                       nullptr};
const FerryVmsList kNodeList = {FERRY_VMS_LOOP_MARKER, 0, &kNodeTailq, &kNodeVmsd, sizeof(Node),
                                &ferry_vms_malloc_allocator, 0, 0};

struct Tree {
  Node root{};
  ~Tree() { ferry_vms_release(&kNodeVmsd, &root); }
};

TEST(VmstateDepth, BerNestingLimit) {
  Bytes b;
  for (int i = 0; i < 100; ++i) {
    b.insert(b.end(), {0x30, 0x80, 0x30, 0x80, 0x0c, 0x08, 'c', 'h', 'i', 'l', 'd', 'r', 'e', 'n',
                       0x63, 0x80});
  }
  Tree t;
  BerInput in(b);
  Status st = load_state(kNodeVmsd, &t.root, in, 1);
  EXPECT_EQ(st.code(), Errc::kDepthLimit) << st.message();
  EXPECT_TRUE(mentions(st, "BER nesting deeper than 128 at offset")) << st.message();
}

TEST(VmstateDepth, BinaryNestingLimit) {
  const Bytes b(1000, 0x01);  // every node has a first child, forever
  Tree t;
  BinaryInput in(b);
  Status st = load_state(kNodeVmsd, &t.root, in, 1);
  EXPECT_EQ(st.code(), Errc::kDepthLimit) << st.message();
  EXPECT_TRUE(mentions(st, "nesting deeper than 64")) << st.message();
  EXPECT_TRUE(mentions(st, "offset")) << st.message();
}

TEST(VmstateDepth, SavingTooDeepIsAnErrorNotACrash) {
  Tree t;
  Node* parent = &t.root;
  for (int i = 0; i < 100; ++i) {
    auto* n = static_cast<Node*>(ferry_vms_malloc_allocator.alloc(&ferry_vms_malloc_allocator,
                                                                  sizeof(Node)));
    ferry_vms_tailq_ops.append(&kNodeTailq, &parent->children, n);
    parent = n;
  }
  Bytes out;
  BinaryOutput v(out);
  EXPECT_EQ(save_state(kNodeVmsd, &t.root, v).code(), Errc::kDepthLimit);
  // A shallow tree round-trips.
  Tree shallow;
  for (int i = 0; i < 3; ++i) {
    auto* n = static_cast<Node*>(std::calloc(1, sizeof(Node)));
    ferry_vms_tailq_ops.append(&kNodeTailq, &shallow.root.children, n);
    auto* c = static_cast<Node*>(std::calloc(1, sizeof(Node)));
    ferry_vms_tailq_ops.append(&kNodeTailq, &n->children, c);
  }
  out.clear();
  BinaryOutput v2(out);
  ASSERT_TRUE(save_state(kNodeVmsd, &shallow.root, v2).ok());
  EXPECT_EQ(hex(out), "01 01 00 00 01 01 00 00 01 01 00 00 00");
}

}  // namespace
}  // namespace ferry::vmstate::test
