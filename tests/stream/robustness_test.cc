// Damaged copies of real streams: truncated at many offsets and bit-flipped with deterministic
// seeds. Each must end in an error or a success, never a crash, a hang or an out-of-bounds access
// (the FERRY_SANITIZE build runs this under ASan/UBSan, with fewer seeds to keep it quick).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "engine/stream/file_io.h"
#include "engine/stream/stream_format.h"
#include "tests/stream/test_support.h"

namespace ferry::stream {
namespace {

namespace fs = std::filesystem;

#ifdef FERRY_SANITIZE
constexpr int kFlipSeeds = 300;
constexpr int kXbzrleFlipSeeds = 40;
constexpr int kEvenTruncations = 150;
#else
constexpr int kFlipSeeds = 400;
constexpr int kXbzrleFlipSeeds = 60;
constexpr int kEvenTruncations = 600;
#endif

// Enough for the corpus (50 MB); a flipped MEM_SIZE must not make a test allocate more.
ReadOptions limited() {
  ReadOptions o;
  o.max_ram_bytes = 256ull << 20;
  return o;
}

std::vector<uint8_t> corpus_file(const char* rel) {
  const fs::path p = test::corpus_dir() / rel;
  if (!fs::exists(p)) return {};
  return read_file(p);
}

// Reads a copy of exactly `n` bytes (its own heap block, so ASan sees any read past it).
StreamInfo read_copy(const std::vector<uint8_t>& src, size_t n) {
  std::vector<uint8_t> copy(src.begin(), src.begin() + static_cast<long>(n));
  return read_stream(copy, limited());
}

std::vector<uint64_t> boundaries(const StreamInfo& info) {
  std::vector<uint64_t> v;
  for (const auto& r : info.records) {
    v.insert(v.end(), {r.offset, r.payload_offset, r.payload_end, r.end});
  }
  return v;
}

TEST(Robustness, TruncatedStreamsAlwaysFailWithAnOffset) {
  const auto bytes = corpus_file("qemu-7.2.22/pc-nodefaults.mig");
  if (bytes.empty()) GTEST_SKIP() << "corpus not found at " << test::corpus_dir();
  const StreamInfo full = read_stream(bytes, limited());
  ASSERT_FALSE(full.error);

  std::set<size_t> cuts;
  for (size_t i = 0; i < 64; ++i) cuts.insert(i);
  for (uint64_t b : boundaries(full)) {
    for (int d : {-9, -5, -2, -1, 0, 1, 2, 5, 9, 23}) {
      const int64_t c = static_cast<int64_t>(b) + d;
      if (c >= 0 && static_cast<size_t>(c) < bytes.size()) cuts.insert(static_cast<size_t>(c));
    }
  }
  for (int i = 0; i < kEvenTruncations; ++i) cuts.insert(bytes.size() * i / kEvenTruncations);
  for (size_t i = 1; i < 32; ++i) cuts.insert(bytes.size() - i);

  for (size_t n : cuts) {
    const StreamInfo info = read_copy(bytes, n);
    ASSERT_TRUE(info.error) << "truncated at " << n << " parsed without error";
    EXPECT_LE(info.error->offset, n) << info.error->message;
  }
  RecordProperty("truncations", static_cast<int>(cuts.size()));
}

// Where to flip: near record boundaries, in device payloads, in the vmdesc, or anywhere.
size_t pick_position(std::mt19937_64& rng, int region, const std::vector<uint64_t>& bounds,
                     uint64_t dev_begin, uint64_t dev_end, uint64_t json_begin, size_t size) {
  auto in = [&](uint64_t lo, uint64_t hi) {
    return static_cast<size_t>(lo + rng() % std::max<uint64_t>(1, hi - lo));
  };
  switch (region) {
    case 0: {
      const uint64_t b = bounds[rng() % bounds.size()];
      return std::min<size_t>(size - 1, static_cast<size_t>(b + rng() % 48 - std::min<uint64_t>(b, 16)));
    }
    case 1: return in(dev_begin, dev_end);
    case 2: return in(json_begin, size);
    default: return in(0, size);
  }
}

TEST(Robustness, BitFlippedStreamsNeverCrash) {
  const auto bytes = corpus_file("qemu-7.2.22/pc-nodefaults.mig");
  if (bytes.empty()) GTEST_SKIP() << "corpus not found at " << test::corpus_dir();
  const StreamInfo full = read_stream(bytes, limited());
  ASSERT_FALSE(full.error);
  const auto bounds = boundaries(full);
  uint64_t dev_begin = 0, eof = 0;
  for (const auto& r : full.records) {
    if (r.type == RecordType::kSectionFull && dev_begin == 0) dev_begin = r.offset;
    if (r.type == RecordType::kEof) eof = r.offset;
  }
  const uint64_t json_begin = full.vmdesc_offset + 5;

  int errors = 0;
  std::set<std::string> kinds;
  for (int seed = 0; seed < kFlipSeeds; ++seed) {
    std::mt19937_64 rng(static_cast<uint64_t>(seed) * 0x9e3779b97f4a7c15ULL + 1);
    std::vector<uint8_t> copy = bytes;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      const size_t pos = pick_position(rng, seed % 4, bounds, dev_begin, eof, json_begin, copy.size());
      copy[pos] ^= static_cast<uint8_t>(1u << (rng() % 8));
    }
    const StreamInfo info = read_stream(copy, limited());
    if (info.error) {
      ++errors;
      EXPECT_LE(info.error->offset, copy.size()) << "seed " << seed;
      EXPECT_FALSE(info.error->message.empty());
      kinds.insert(info.error->message.substr(0, 24));
    }
    // The JSON must always be printable, whatever bytes ended up in names and strings.
    (void)info.state.dump(4, ' ', true, nlohmann::ordered_json::error_handler_t::replace);
  }
  RecordProperty("seeds", kFlipSeeds);
  RecordProperty("errors", errors);
  RecordProperty("distinct_error_prefixes", static_cast<int>(kinds.size()));
  EXPECT_GT(errors, 0);
}

TEST(Robustness, BitFlippedXbzrleSectionsNeverCrash) {
  const auto bytes = corpus_file("qemu-10.0.2/pc-xbzrle.mig");
  if (bytes.empty()) GTEST_SKIP() << "corpus not found at " << test::corpus_dir();
  const StreamInfo full = read_stream(bytes, limited());
  ASSERT_FALSE(full.error);
  uint64_t begin = 0, end = 0;
  for (const auto& r : full.records) {
    if (r.is_ram && r.ram.xbzrle > 0 && begin == 0) begin = r.offset;
    if (r.type == RecordType::kSectionFull && end == 0) end = r.offset;
  }
  ASSERT_LT(begin, end);

  int errors = 0, xbzrle_errors = 0;
  for (int seed = 0; seed < kXbzrleFlipSeeds; ++seed) {
    std::mt19937_64 rng(static_cast<uint64_t>(seed) + 1000);
    std::vector<uint8_t> copy = bytes;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int f = 0; f < flips; ++f) {
      copy[begin + rng() % (end - begin)] ^= static_cast<uint8_t>(1u << (rng() % 8));
    }
    const StreamInfo info = read_stream(copy, limited());
    if (info.error) {
      ++errors;
      xbzrle_errors += info.error->message.find("XBZRLE") != std::string::npos;
      EXPECT_LE(info.error->offset, copy.size());
    }
  }
  RecordProperty("seeds", kXbzrleFlipSeeds);
  RecordProperty("errors", errors);
  RecordProperty("xbzrle_errors", xbzrle_errors);
}

TEST(Robustness, RandomBytesAfterAValidHeader) {
  for (int seed = 0; seed < 200; ++seed) {
    std::mt19937_64 rng(static_cast<uint64_t>(seed));
    std::vector<uint8_t> b = {'Q', 'E', 'V', 'M', 0, 0, 0, 3};
    const size_t n = rng() % 2048;
    for (size_t i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(rng()));
    // Bias towards plausible record types so the walk gets past the first byte.
    if (n > 0) b[8] = static_cast<uint8_t>(rng() % 9);
    const StreamInfo info = read_stream(b, limited());
    if (info.error) {
      EXPECT_LE(info.error->offset, b.size());
    }
  }
}

}  // namespace
}  // namespace ferry::stream
