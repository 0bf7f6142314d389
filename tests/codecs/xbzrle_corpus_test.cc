// Deltas QEMU 10.0.2 really sent (see ../shared/corpus/README.md): our decoder must apply them,
// and every encoder must reproduce them byte for byte. A small sample lives in the repo so the
// check runs even where the shared corpus is not mounted.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "codecs/xbzrle.h"

namespace ferry::xbzrle {
namespace {

constexpr size_t kPage = 4096;

struct Record {
  std::vector<uint8_t> delta, old_page, new_page;
};

// Format: per record, be16 delta_len, delta, 4096 bytes old page, 4096 bytes new page.
bool read_vectors(const std::string& path, std::vector<Record>* out, std::string* error) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::vector<uint8_t> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t i = 0;
  while (i < data.size()) {
    if (data.size() - i < 2) {
      *error = "truncated length at " + std::to_string(i);
      return true;
    }
    size_t len = size_t{data[i]} << 8 | data[i + 1];
    i += 2;
    if (data.size() - i < len + 2 * kPage) {
      *error = "truncated record at " + std::to_string(i);
      return true;
    }
    auto at = data.begin() + static_cast<long>(i);
    Record r;
    r.delta.assign(at, at + static_cast<long>(len));
    r.old_page.assign(at + static_cast<long>(len), at + static_cast<long>(len + kPage));
    r.new_page.assign(at + static_cast<long>(len + kPage), at + static_cast<long>(len + 2 * kPage));
    out->push_back(std::move(r));
    i += len + 2 * kPage;
  }
  return true;
}

void check_records(const std::vector<Record>& records) {
  std::vector<uint8_t> dst(2 * kPage);
  for (size_t n = 0; n < records.size(); ++n) {
    const Record& r = records[n];
    SCOPED_TRACE("record " + std::to_string(n));
    std::vector<uint8_t> page = r.old_page;
    DecodeResult res = decode(r.delta.data(), r.delta.size(), page.data(), page.size());
    ASSERT_EQ(res.error, DecodeError::kOk)
        << decode_error_string(res.error) << " at " << res.offset;
    ASSERT_EQ(page, r.new_page);
    for (Variant v : kAllVariants) {
      if (!variant_available(v)) continue;
      long len = encode_variant(v, r.old_page.data(), r.new_page.data(), kPage, dst.data(),
                                dst.size());
      ASSERT_EQ(len, static_cast<long>(r.delta.size())) << variant_name(v);
      ASSERT_TRUE(std::equal(r.delta.begin(), r.delta.end(), dst.begin())) << variant_name(v);
      // QEMU's own buffer is one page: the delta must fit exactly there too.
      len = encode_variant(v, r.old_page.data(), r.new_page.data(), kPage, dst.data(),
                           r.delta.size());
      ASSERT_EQ(len, static_cast<long>(r.delta.size())) << variant_name(v) << " exact cap";
    }
  }
}

TEST(XbzrleCorpus, Qemu1002SharedVectors) {
  const std::string path =
      FERRY_SOURCE_DIR "/../shared/corpus/xbzrle/qemu-10.0.2-pc-xbzrle.vectors";
  std::vector<Record> records;
  std::string error;
  if (!read_vectors(path, &records, &error)) {
    GTEST_SKIP() << "shared XBZRLE corpus not found at " << path;
  }
  ASSERT_EQ(error, "");
  ASSERT_EQ(records.size(), 600u);
  check_records(records);
}

// Records 0-7 (the longest deltas) and 60-67 (from the random sample) of the shared file.
TEST(XbzrleCorpus, Qemu1002SampleInRepo) {
  const std::string path = FERRY_SOURCE_DIR "/tests/data/xbzrle-sample.vectors";
  std::vector<Record> records;
  std::string error;
  ASSERT_TRUE(read_vectors(path, &records, &error)) << "missing " << path;
  ASSERT_EQ(error, "");
  ASSERT_EQ(records.size(), 16u);
  check_records(records);
}

}  // namespace
}  // namespace ferry::xbzrle
