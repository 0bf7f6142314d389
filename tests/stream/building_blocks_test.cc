// ByteReader bounds checks, block file names and vmdesc trailer location.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "engine/stream/block_name.h"
#include "engine/stream/byte_reader.h"
#include "engine/stream/vmdesc.h"

namespace ferry::stream {
namespace {

using ::testing::HasSubstr;

TEST(ByteReader, ReadsBigEndian) {
  const std::vector<uint8_t> b = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  ByteReader r(b);
  EXPECT_EQ(r.u8("x"), 1);
  EXPECT_EQ(r.be16("x"), 0x0203);
  EXPECT_EQ(r.be32("x"), 0x04050607u);
  EXPECT_EQ(r.be64("x"), 0x08090a0b0c0d0e0fULL);
  EXPECT_TRUE(r.at_end());
}

TEST(ByteReader, TruncationNamesOffsetAndField) {
  const std::vector<uint8_t> b = {0, 0, 0, 0, 0, 0, 0, 1, 2};
  ByteReader r(b);
  r.be32("a");
  r.bytes(3, "b");
  try {
    r.be32("section id");
    FAIL();
  } catch (const ParseError& e) {
    EXPECT_EQ(e.offset(), 7u);
    EXPECT_EQ(e.message(),
              "truncated: expected section id (4 bytes), but the file ends after 2 bytes");
    EXPECT_STREQ(e.what(),
                 "offset 0x7: truncated: expected section id (4 bytes), but the file ends after 2 "
                 "bytes");
  }
  EXPECT_EQ(r.pos(), 7u);  // a failed read consumes nothing
  EXPECT_THROW(r.bytes(SIZE_MAX, "huge"), ParseError);
  EXPECT_THROW(r.seek(10), ParseError);
}

TEST(ByteReader, ShortStringChecksItsLength) {
  const std::vector<uint8_t> b = {5, 'a', 'b'};
  ByteReader r(b);
  EXPECT_THROW(r.short_string("name"), ParseError);
  const std::vector<uint8_t> ok = {2, 'a', 'b'};
  ByteReader r2(ok);
  EXPECT_EQ(r2.short_string("name"), "ab");
}

TEST(BlockFileName, Mapping) {
  EXPECT_EQ(block_file_name("pc.ram"), "pc.ram");
  EXPECT_EQ(block_file_name("/rom@etc/acpi/tables"), "_rom@etc_acpi_tables");
  EXPECT_EQ(block_file_name("0000:00:02.0/vga.vram"), "0000:00:02.0_vga.vram");
  EXPECT_EQ(block_file_name("a_b"), "a%5Fb");
  EXPECT_EQ(block_file_name("a%b c"), "a%25b%20c");
  EXPECT_EQ(block_file_name(".."), "%2E.");
  EXPECT_EQ(block_file_name(""), "%");
  EXPECT_EQ(block_file_name(std::string("\xff\x00", 2)), "%FF%00");
}

TEST(BlockFileName, Injective) {
  const std::vector<std::string> names = {"a/b", "a_b", "a%5Fb", "_a", "/a", "%2Fa", ".a",
                                          "%2Ea", "a.", "",    "%",   "%25"};
  std::set<std::string> seen;
  for (const auto& n : names) EXPECT_TRUE(seen.insert(block_file_name(n)).second) << n;
}

TEST(VmdescTrailer, FoundOnlyWhenItRunsToTheEnd) {
  std::vector<uint8_t> b = {0x00, 0x06, 0, 0, 0, 2, '{', '}'};
  EXPECT_EQ(find_vmdesc_trailer(b), 1u);
  b.push_back(' ');
  EXPECT_FALSE(find_vmdesc_trailer(b).has_value());
  EXPECT_FALSE(find_vmdesc_trailer(std::vector<uint8_t>{0x06, 0, 0}).has_value());
  EXPECT_EQ(find_vmdesc_trailer(std::vector<uint8_t>{0x06, 0, 0, 0, 0}), 0u);
}

TEST(Vmdesc, BadDocumentsAreRememberedNotThrown) {
  Vmdesc bad("{\"devices\": [}", 100, "test");
  EXPECT_FALSE(bad.ok());
  EXPECT_THAT(bad.error(), HasSubstr("not valid JSON"));
  EXPECT_GE(bad.error_offset(), 100u);
  EXPECT_FALSE(Vmdesc("[]", 0, "t").ok());
  EXPECT_FALSE(Vmdesc("{\"page_size\": 1000, \"devices\": []}", 0, "t").ok());
  Vmdesc good(R"({"page_size": 8192, "devices": [{"name": "a", "instance_id": 1, "fields": []},
                 {"name": 5}]})",
              0, "t");
  ASSERT_TRUE(good.ok()) << good.error();
  EXPECT_EQ(good.page_size(), 8192u);
  EXPECT_NE(good.device("a", 1), nullptr);
  EXPECT_EQ(good.device("a", 0), nullptr);
}

}  // namespace
}  // namespace ferry::stream
