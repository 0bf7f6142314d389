// The vmdesc-driven decoder against analyze-migration.py's formatting rules, one rule per test.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/stream/vmstate_decoder.h"

namespace ferry::stream {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;
using ::testing::HasSubstr;

ordered_json decode(const std::vector<uint8_t>& bytes, const std::string& desc_fields,
                    size_t* consumed = nullptr, const std::string& subsections = "") {
  std::string d = "{\"fields\": " + desc_fields;
  if (!subsections.empty()) d += ", \"subsections\": " + subsections;
  d += "}";
  ByteReader r(bytes);
  auto v = decode_vmstate(r, json::parse(d), "section 'test'");
  if (consumed) *consumed = r.pos();
  return v;
}

std::string one(const std::vector<uint8_t>& bytes, const std::string& type, int size) {
  auto v = decode(bytes, R"([{"name": "f", "type": ")" + type + R"(", "size": )" +
                             std::to_string(size) + "}]");
  return v["f"].dump();
}

TEST(VmstateDecoder, UnsignedIsZeroPaddedHex) {
  EXPECT_EQ(one({0x01}, "uint8", 1), "\"0x01\"");
  EXPECT_EQ(one({0xff, 0xfe}, "uint16", 2), "\"0xfffe\"");
  EXPECT_EQ(one({0, 0, 0, 5}, "uint32", 4), "\"0x00000005\"");
  EXPECT_EQ(one({0xff, 0xff, 0xff, 0xff}, "uint32 equal", 4), "\"0xffffffff\"");
  EXPECT_EQ(one({0, 0, 0, 0, 0, 0, 0x12, 0x34}, "uint64", 8), "\"0x0000000000001234\"");
}

TEST(VmstateDecoder, NegativeSignedGetsDecimal) {
  EXPECT_EQ(one({0x7f}, "int8", 1), "\"0x7f\"");
  EXPECT_EQ(one({0x80}, "int8", 1), "\"0x80 (-128)\"");
  EXPECT_EQ(one({0xff, 0xff, 0xff, 0xfe}, "int32", 4), "\"0xfffffffe (-2)\"");
  EXPECT_EQ(one({0x80, 0, 0, 0, 0, 0, 0, 0}, "int64", 8),
            "\"0x8000000000000000 (-9223372036854775808)\"");
  EXPECT_EQ(one({0xff, 0xff, 0xff, 0xff}, "int32 le", 4), "\"0xffffffff (-1)\"");
  // analyze-migration.py reads the "equal" variants of uint8/uint16 as signed.
  EXPECT_EQ(one({0xff}, "uint8 equal", 1), "\"0xff (-1)\"");
  EXPECT_EQ(one({0x80, 0x00}, "uint16 equal", 2), "\"0x8000 (-32768)\"");
  // An odd size still sign-extends from its top byte.
  EXPECT_EQ(one({0xff, 0xff, 0xfe}, "int32", 3), "\"0xfffffe (-2)\"");
}

TEST(VmstateDecoder, BoolLooksAtTheFirstByte) {
  EXPECT_EQ(one({0}, "bool", 1), "false");
  EXPECT_EQ(one({2}, "bool", 1), "true");
}

TEST(VmstateDecoder, OtherTypesAreHexBytes) {
  EXPECT_EQ(one({0xde, 0xad, 0x01}, "buffer", 3), "\"de ad 01\"");
  EXPECT_EQ(one({0, 0}, "unused_buffer", 2), "\"00 00\"");
  EXPECT_EQ(one({1, 2, 3, 4, 5, 6, 7, 8}, "timer", 8), "\"01 02 03 04 05 06 07 08\"");
  EXPECT_EQ(one({0xab}, "some type nobody knows", 1), "\"ab\"");
  EXPECT_EQ(one({}, "buffer", 0), "\"\"");
}

TEST(VmstateDecoder, NullptrAndCapability) {
  EXPECT_EQ(one({'0'}, "nullptr", 1), "\"nullptr\"");
  auto v = decode({3, 'x', 'y', 'z'}, R"([{"name": "c", "type": "capability", "size": 3}])");
  EXPECT_EQ(v["c"], "xyz");
}

TEST(VmstateDecoder, ArrayLenUnfoldsIntoAList) {
  size_t used = 0;
  auto v = decode({1, 2, 3, 9}, R"([{"name": "a", "array_len": 3, "type": "uint8", "size": 1},
                                    {"name": "b", "type": "uint8", "size": 1}])",
                  &used);
  EXPECT_EQ(v.dump(), R"({"a":["0x01","0x02","0x03"],"b":"0x09"})");
  EXPECT_EQ(used, 4u);
}

TEST(VmstateDecoder, RepeatedNamesCollectIntoAList) {
  // QEMU's uncompressed arrays: one entry per element with "index".
  auto v = decode({1, 2}, R"([{"name": "e", "index": 0, "type": "uint8", "size": 1},
                              {"name": "e", "index": 1, "type": "uint8", "size": 1}])");
  EXPECT_EQ(v.dump(), R"({"e":["0x01","0x02"]})");
  // array_len 1 (or 0) reads one element and stays a bare value, as in the current analyzer.
  auto w = decode({7}, R"([{"name": "e", "array_len": 1, "type": "uint8", "size": 1}])");
  EXPECT_EQ(w.dump(), R"({"e":"0x07"})");
}

TEST(VmstateDecoder, StructsNestAndArraysOfStructs) {
  auto v = decode({0, 1, 0, 2, 5},
                  R"([{"name": "s", "array_len": 2, "type": "struct", "size": 2,
                       "struct": {"vmsd_name": "x", "version": 1,
                                  "fields": [{"name": "v", "type": "uint16", "size": 2}]}},
                      {"name": "t", "type": "uint8", "size": 1}])");
  EXPECT_EQ(v.dump(), R"({"s":[{"v":"0x0001"},{"v":"0x0002"}],"t":"0x05"})");
}

TEST(VmstateDecoder, Subsections) {
  std::vector<uint8_t> b = {0x11, 0x05, 5, 'd', 'e', 'v', '/', 's', 0, 0, 0, 1, 0x22};
  size_t used = 0;
  auto v = decode(b, R"([{"name": "a", "type": "uint8", "size": 1}])", &used,
                  R"([{"vmsd_name": "dev/s", "version": 1,
                       "fields": [{"name": "b", "type": "uint8", "size": 1}]}])");
  EXPECT_EQ(v.dump(), R"({"a":"0x11","dev/s":{"b":"0x22"}})");
  EXPECT_EQ(used, b.size());
}

TEST(VmstateDecoder, MissingSubsectionIsAnErrorAtItsOffset) {
  std::vector<uint8_t> b = {0x11, 0x06};
  try {
    decode(b, R"([{"name": "a", "type": "uint8", "size": 1}])", nullptr,
           R"([{"vmsd_name": "dev/s", "version": 1, "fields": []}])");
    FAIL();
  } catch (const ParseError& e) {
    EXPECT_EQ(e.offset(), 1u);
    EXPECT_THAT(e.message(), HasSubstr("expected subsection 'dev/s' (byte 0x05), found 0x6"));
  }
}

TEST(VmstateDecoder, SubsectionWithAnotherNameIsAnError) {
  std::vector<uint8_t> b = {0x05, 1, 'z', 0, 0, 0, 1};
  EXPECT_THROW(decode(b, "[]", nullptr, R"([{"vmsd_name": "dev/s", "version": 1, "fields": []}])"),
               ParseError);
}

TEST(VmstateDecoder, TruncatedFieldNamesTheFieldPath) {
  std::vector<uint8_t> b = {0, 1, 0};
  try {
    decode(b, R"([{"name": "s", "array_len": 2, "type": "struct", "size": 2,
                   "struct": {"fields": [{"name": "v", "type": "uint16", "size": 2}]}}])");
    FAIL();
  } catch (const ParseError& e) {
    EXPECT_EQ(e.offset(), 2u);
    EXPECT_THAT(e.message(), HasSubstr("section 'test' field 's[1].v'"));
    EXPECT_THAT(e.message(), HasSubstr("runs past the end"));
  }
}

TEST(VmstateDecoder, MalformedDescriptionsAreErrorsNotCrashes) {
  const std::vector<uint8_t> b(64, 0);
  for (const char* fields : {
           R"([{"name": "a", "type": "uint8"}])",                      // no size
           R"([{"name": "a", "type": "uint8", "size": -1}])",          // negative size
           R"([{"name": "a", "type": "uint8", "size": "1"}])",         // size as a string
           R"([{"type": "uint8", "size": 1}])",                        // no name
           R"([{"name": "a", "size": 1}])",                            // no type
           R"([{"name": "a", "type": "struct", "size": 1}])",          // struct without struct
           R"([{"name": "a", "type": "struct", "struct": {}}])",       // struct without fields
           R"([{"name": "a", "type": "uint64", "size": 9}])",          // integer too wide
           R"([{"name": "a", "type": "bool", "size": 0}])",            // empty bool
           R"([{"name": "a", "type": "uint8", "size": 1, "array_len": 1.5}])",
           R"([{"name": "a", "type": "buffer", "size": 1000}])",       // past the end
           R"([{"name": "a", "type": "nullptr", "size": 1}])",         // not '0'
           R"([{"name": "a", "type": "buffer", "size": 0, "array_len": 100000000}])",
           R"([{"name": "a", "type": "struct", "struct": {"fields": []}, "array_len": 1000000000000}])",
           R"([7])",
       }) {
    EXPECT_THROW(decode(b, fields), ParseError) << fields;
  }
  EXPECT_THROW(decode(b, R"({"a": 1})"), ParseError);
}

TEST(VmstateDecoder, ManyDistinctFieldsDecodeInLinearTime) {
  // Without an index, collecting fields by name is quadratic in their number.
  constexpr int kFields = 50000;
  std::string fields = "[";
  for (int i = 0; i < kFields; ++i) {
    if (i) fields += ",";
    fields += R"({"name": "f)" + std::to_string(i) + R"(", "type": "uint8", "size": 1})";
  }
  fields += "]";
  const std::vector<uint8_t> b(kFields, 0x2a);
  auto v = decode(b, fields);
  ASSERT_EQ(v.size(), static_cast<size_t>(kFields));
  EXPECT_EQ(v["f49999"], "0x2a");
  EXPECT_EQ(v.begin().key(), "f0");
}

TEST(VmstateDecoder, DeepNestingIsRefused) {
  std::string s = R"({"name": "a", "type": "uint8", "size": 1})";
  for (int i = 0; i < 100; ++i) {
    s = R"({"name": "n", "type": "struct", "struct": {"fields": [)" + s + "]}}";
  }
  const std::vector<uint8_t> b(8, 0);
  EXPECT_THROW(decode(b, "[" + s + "]"), ParseError);
}

}  // namespace
}  // namespace ferry::stream
