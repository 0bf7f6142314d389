// XBZRLE encoder/decoder: canonical output, every variant equal to a byte-at-a-time reference,
// exact dst_cap behaviour, and a decoder that refuses every malformed delta without touching
// the page.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "codecs/cpu_features.h"
#include "codecs/xbzrle.h"

namespace ferry::xbzrle {
namespace {

using Bytes = std::vector<uint8_t>;

void put_uleb(Bytes& out, uint64_t v) {
  for (; v >= 0x80; v >>= 7) out.push_back(static_cast<uint8_t>(v | 0x80));
  out.push_back(static_cast<uint8_t>(v));
}

// The format written out as plainly as possible: the yardstick for every variant.
Bytes reference_encode(const Bytes& a, const Bytes& b) {
  Bytes out;
  size_t i = 0, n = a.size();
  while (i < n) {
    size_t z = i;
    while (i < n && a[i] == b[i]) ++i;
    if (i == n) break;
    size_t s = i;
    while (i < n && a[i] != b[i]) ++i;
    put_uleb(out, s - z);
    put_uleb(out, i - s);
    out.insert(out.end(), b.begin() + static_cast<long>(s), b.begin() + static_cast<long>(i));
  }
  return out;
}

Bytes random_bytes(std::mt19937_64& rng, size_t n) {
  Bytes v(n);
  for (auto& x : v) x = static_cast<uint8_t>(rng());
  return v;
}

// A changed byte that really differs from the old one.
uint8_t differ(uint8_t old, std::mt19937_64& rng) {
  return static_cast<uint8_t>(old ^ (1 + rng() % 255));
}

// New page from old with a mix of scattered bytes and runs, at the given change density.
Bytes mutate(const Bytes& old, std::mt19937_64& rng, double density) {
  Bytes b = old;
  if (b.empty()) return b;
  std::uniform_real_distribution<double> u(0, 1);
  switch (rng() % 3) {
    case 0:  // scattered bytes
      for (auto& x : b) {
        if (u(rng) < density) x = differ(x, rng);
      }
      break;
    case 1: {  // runs of up to 300 bytes, often crossing 64-byte chunks
      size_t target = static_cast<size_t>(density * static_cast<double>(b.size()));
      for (size_t done = 0; done < target;) {
        size_t len = 1 + rng() % 300, at = rng() % b.size();
        for (size_t i = at; i < std::min(b.size(), at + len); ++i) b[i] = differ(b[i], rng);
        done += len;
      }
      break;
    }
    default:  // whole 64-byte blocks rewritten with random bytes (some may stay equal)
      for (size_t at = 0; at < b.size(); at += 64) {
        if (u(rng) >= density) continue;
        for (size_t i = at; i < std::min(b.size(), at + 64); ++i) {
          b[i] = static_cast<uint8_t>(rng());
        }
      }
  }
  return b;
}

class XbzrleVariant : public ::testing::TestWithParam<Variant> {
 protected:
  void SetUp() override {
    if (!variant_available(GetParam())) {
      GTEST_SKIP() << "this CPU cannot run the " << variant_name(GetParam()) << " encoder";
    }
  }
  // Encodes with the parameter's variant into a buffer of `cap` bytes followed by guard bytes
  // that must survive. Returns the encoder's result; out gets the delta on success.
  long encode_checked(const uint8_t* a, const uint8_t* b, size_t len, size_t cap, Bytes* out) {
    constexpr size_t kGuard = 80;
    Bytes buf(cap + kGuard, 0xEE);
    long r = encode_variant(GetParam(), a, b, len, buf.data(), cap);
    for (size_t i = cap; i < buf.size(); ++i) {
      EXPECT_EQ(buf[i], 0xEE) << "wrote past dst_cap=" << cap << " at " << i;
    }
    if (r >= 0 && out != nullptr) out->assign(buf.begin(), buf.begin() + r);
    return r;
  }
  Bytes encode(const Bytes& a, const Bytes& b) {
    Bytes out;
    long r = encode_checked(a.data(), b.data(), a.size(), 2 * a.size() + 16, &out);
    EXPECT_GE(r, 0);
    return out;
  }
  // Encode, compare with the reference, decode onto a copy of the old page.
  void round_trip(const Bytes& a, const Bytes& b, const std::string& what) {
    SCOPED_TRACE(what);
    Bytes delta = encode(a, b);
    ASSERT_EQ(delta, reference_encode(a, b));
    Bytes page = a;
    DecodeResult r = decode(delta.data(), delta.size(), page.data(), page.size());
    ASSERT_EQ(r.error, DecodeError::kOk) << decode_error_string(r.error) << " at " << r.offset;
    ASSERT_EQ(page, b);
  }
};

TEST_P(XbzrleVariant, HandWrittenCanonicalDeltas) {
  Bytes a(16, 0);
  auto with = [&](std::initializer_list<std::pair<size_t, uint8_t>> changes) {
    Bytes b = a;
    for (auto [i, v] : changes) b[i] = v;
    return b;
  };
  EXPECT_EQ(encode(a, a), Bytes{});
  EXPECT_EQ(encode(a, with({{0, 0xAA}})), (Bytes{0x00, 0x01, 0xAA}));  // only empty run: first
  EXPECT_EQ(encode(a, with({{5, 0x11}})), (Bytes{0x05, 0x01, 0x11}));
  EXPECT_EQ(encode(a, with({{15, 0x22}})), (Bytes{0x0F, 0x01, 0x22}));  // no trailing run
  EXPECT_EQ(encode(a, with({{3, 1}, {4, 2}, {10, 3}})),
            (Bytes{0x03, 0x02, 0x01, 0x02, 0x05, 0x01, 0x03}));
  Bytes all(16, 0x7F);
  Bytes expect{0x00, 0x10};
  expect.insert(expect.end(), all.begin(), all.end());
  EXPECT_EQ(encode(a, all), expect);

  // Two-byte ULEB128: unchanged 200 = c8 01, changed 130 = 82 01.
  Bytes big(400, 0), big_new(400, 0);
  std::fill(big_new.begin() + 200, big_new.begin() + 330, 0x55);
  Bytes big_expect{0xC8, 0x01, 0x82, 0x01};
  big_expect.insert(big_expect.end(), 130, 0x55);
  EXPECT_EQ(encode(big, big_new), big_expect);

  // Three-byte ULEB128 (beyond anything QEMU sends): unchanged 19999 = 9f 9c 01.
  Bytes huge(20000, 0), huge_new(20000, 0);
  huge_new.back() = 9;
  EXPECT_EQ(encode(huge, huge_new), (Bytes{0x9F, 0x9C, 0x01, 0x01, 0x09}));
}

TEST_P(XbzrleVariant, StructuredRoundTrips) {
  std::mt19937_64 rng(7);
  for (size_t len : {1, 2, 7, 8, 9, 63, 64, 65, 127, 128, 129, 255, 256, 257, 1000, 4095, 4096,
                     4097, 8192, 12345}) {
    Bytes a = random_bytes(rng, len);
    std::string at = "len " + std::to_string(len);
    round_trip(a, a, at + " unchanged");
    Bytes b = a;
    for (auto& x : b) x = differ(x, rng);
    round_trip(a, b, at + " all different");
    b = a;
    b[0] = differ(b[0], rng);
    round_trip(a, b, at + " first byte");
    b = a;
    b[len - 1] = differ(b[len - 1], rng);
    round_trip(a, b, at + " last byte");
    b = a;
    for (size_t i = 0; i < len; i += 2) b[i] = differ(b[i], rng);
    round_trip(a, b, at + " every other byte");
    b = a;
    for (size_t i = 0; i < len; i += 97) b[i] = differ(b[i], rng);
    round_trip(a, b, at + " sparse single bytes");
    // Runs around every 64-byte boundary: the SIMD chunk and 256-byte group edges.
    for (size_t edge = 64; edge < len; edge += 64) {
      b = a;
      for (size_t i = edge - std::min<size_t>(edge, 3); i < std::min(len, edge + 2); ++i) {
        b[i] = differ(b[i], rng);
      }
      round_trip(a, b, at + " run across " + std::to_string(edge));
    }
    if (len > 300) {
      b = a;
      for (size_t i = 10; i < 10 + 200; ++i) b[i] = differ(b[i], rng);  // 2-byte run length
      round_trip(a, b, at + " long changed run");
      b = a;
      b[len - 1] = differ(b[len - 1], rng);
      b[1] = differ(b[1], rng);
      round_trip(a, b, at + " long unchanged run");
    }
  }
}

TEST_P(XbzrleVariant, UnalignedPointers) {
  std::mt19937_64 rng(11);
  for (size_t off_a = 0; off_a < 8; ++off_a) {
    for (size_t off_b : {0, 1, 3, 5, 63}) {
      Bytes a_buf = random_bytes(rng, 4096 + 64), b_buf = a_buf;
      for (int k = 0; k < 60; ++k) {
        size_t i = rng() % b_buf.size();
        b_buf[i] = differ(b_buf[i], rng);
      }
      // The pages are a_buf[off_a..] and b_buf[off_b..], each 4096 - 1 bytes.
      Bytes a(a_buf.begin() + off_a, a_buf.begin() + off_a + 4095);
      Bytes b(b_buf.begin() + off_b, b_buf.begin() + off_b + 4095);
      Bytes got;
      long r = encode_checked(a_buf.data() + off_a, b_buf.data() + off_b, 4095, 9000, &got);
      ASSERT_GE(r, 0);
      ASSERT_EQ(got, reference_encode(a, b)) << off_a << "/" << off_b;
    }
  }
}

TEST_P(XbzrleVariant, EqualsReferenceOnRandomizedPairs) {
  std::mt19937_64 rng(1234);
  const double densities[] = {0.0005, 0.002, 0.01, 0.03, 0.1, 0.3, 0.5, 0.9, 0.995};
  for (int iter = 0; iter < 3000; ++iter) {
    size_t len = iter % 5 == 0 ? 4096 : rng() % 9000;
    Bytes a = iter % 7 == 0 ? Bytes(len, 0) : random_bytes(rng, len);
    Bytes b = mutate(a, rng, densities[rng() % std::size(densities)]);
    Bytes want = reference_encode(a, b);
    // Mostly ample room; sometimes a cap around the delta size to exercise giving up.
    size_t cap = rng() % 3 == 0 ? want.size() - std::min(want.size(), rng() % 4) : 2 * len + 16;
    Bytes got;
    long r = encode_checked(a.data(), b.data(), len, cap, &got);
    if (want.size() > cap) {
      ASSERT_EQ(r, kDoesNotFit) << "iter " << iter;
    } else {
      ASSERT_EQ(got, want) << "iter " << iter << " len " << len;
    }
  }
}

// Runs of 1 to 9 bytes (around the longest run the AVX-512 encoder packs eight at a time)
// after unchanged runs on both sides of the 1/2-byte ULEB128 boundary, up to the last byte of
// pages of one block and of more than two.
TEST_P(XbzrleVariant, ShortRunsAfterShortAndLongGaps) {
  std::mt19937_64 rng(21);
  const size_t gaps[] = {1, 2, 7, 126, 127, 128, 129, 300};
  for (int iter = 0; iter < 300; ++iter) {
    size_t len = iter % 2 == 0 ? 4096 : 2 * 4096 + rng() % 100;
    Bytes a = random_bytes(rng, len), b = a;
    for (size_t i = rng() % 8;;) {
      size_t run = 1 + rng() % 9;
      if (i + run > len) break;
      for (size_t k = i; k < i + run; ++k) b[k] = differ(b[k], rng);
      i += run + gaps[rng() % std::size(gaps)];
    }
    if (iter % 3 == 0) b[len - 1] = differ(a[len - 1], rng);
    round_trip(a, b, "iter " + std::to_string(iter));
  }
}

TEST_P(XbzrleVariant, DstCapIsExact) {
  std::mt19937_64 rng(99);
  for (double density : {0.01, 0.2}) {
    Bytes a = random_bytes(rng, 1500);
    Bytes b = mutate(a, rng, density);
    Bytes want = reference_encode(a, b);
    ASSERT_GT(want.size(), 0u);
    for (size_t cap = 0; cap <= want.size() + 2; ++cap) {
      Bytes got;
      long r = encode_checked(a.data(), b.data(), a.size(), cap, &got);
      if (cap < want.size()) {
        ASSERT_EQ(r, kDoesNotFit) << "cap " << cap << " of " << want.size();
      } else {
        ASSERT_EQ(got, want) << "cap " << cap;
      }
    }
  }
  // Unchanged and empty pages fit in nothing.
  Bytes a(4096, 3);
  EXPECT_EQ(encode_checked(a.data(), a.data(), a.size(), 0, nullptr), 0);
  EXPECT_EQ(encode_checked(a.data(), a.data(), 0, 0, nullptr), 0);
}

// Every run length from 1 to past the longest run the SIMD encoders move in 32-byte blocks,
// ending at each of the last 40 bytes of the page, with dst_cap from 2 bytes short of the delta
// to 40 bytes over it: the block moves must neither read past the page nor write past dst_cap,
// and a delta one byte too big must be refused.
TEST_P(XbzrleVariant, LongRunsNearTheEndOfThePageAndOfDst) {
  std::mt19937_64 rng(31);
  const size_t len = 2 * 4096 + 40;  // a run reaching into the second block, and a short last one
  const Bytes a = random_bytes(rng, len);
  for (size_t run : {1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 200, 1023, 1024, 1025,
                     1100}) {
    for (size_t gap = 0; gap < 40; ++gap) {
      Bytes b = a;
      size_t end = len - gap, start = end - run;
      for (size_t i = start; i < end; ++i) b[i] = differ(b[i], rng);
      size_t early = rng() % 64;  // an earlier run, so dst already holds bytes
      b[early] = differ(b[early], rng);
      const Bytes want = reference_encode(a, b);
      for (size_t cap = want.size() - 2; cap <= want.size() + 40; ++cap) {
        Bytes got;
        long r = encode_checked(a.data(), b.data(), len, cap, &got);
        std::string at = "run " + std::to_string(run) + " gap " + std::to_string(gap) + " cap " +
                         std::to_string(cap) + " of " + std::to_string(want.size());
        if (cap < want.size()) {
          ASSERT_EQ(r, kDoesNotFit) << at;
        } else {
          ASSERT_EQ(got, want) << at;
        }
      }
    }
  }
}

// The dense benchmark mixes, with QEMU's own dst_cap (one page) and caps around the delta: the
// encoders may give up from a block's byte count before emitting, and must do it exactly when
// the canonical delta does not fit.
TEST_P(XbzrleVariant, DenseMixesNearAndOverTheCap) {
  std::mt19937_64 rng(41);
  constexpr size_t kPage = 4096;
  int fitted = 0, refused = 0;
  for (int iter = 0; iter < 400; ++iter) {
    size_t len = iter % 4 == 3 ? 3 * kPage + rng() % 999 : kPage;
    Bytes a = random_bytes(rng, len), b = a;
    switch (iter % 4) {
      case 0:  // half64: alternating fully changed and unchanged 64-byte chunks
        for (size_t c = (rng() & 1) * 64; c < len; c += 128) {
          for (size_t i = c; i < std::min(len, c + 64); ++i) b[i] = differ(b[i], rng);
        }
        break;
      case 1:  // rand50: the delta is about a page long
        for (auto& x : b) {
          if (rng() & 1) x = differ(x, rng);
        }
        break;
      case 2:  // whole chunks rewritten at random: runs of 64 bytes and more, some split
        for (size_t c = 0; c < len; c += 64) {
          if (rng() & 1) std::generate(b.begin() + c, b.begin() + c + 64, [&] { return rng(); });
        }
        break;
      default:  // every byte changed but a few: runs of hundreds of bytes over several blocks
        for (auto& x : b) {
          if (rng() % 300 != 0) x = differ(x, rng);
        }
    }
    const Bytes want = reference_encode(a, b);
    for (size_t cap : {len, want.size() - 1, want.size(), want.size() + 1, 2 * len}) {
      Bytes got;
      long r = encode_checked(a.data(), b.data(), len, cap, &got);
      std::string at = "iter " + std::to_string(iter) + " cap " + std::to_string(cap) + " of " +
                       std::to_string(want.size());
      if (cap < want.size()) {
        ASSERT_EQ(r, kDoesNotFit) << at;
        refused += cap == len;
      } else {
        ASSERT_EQ(got, want) << at;
        fitted += cap == len;
      }
    }
  }
  // Both outcomes at the page-sized cap, or the test would not check what it claims to.
  EXPECT_GT(fitted, 100);
  EXPECT_GT(refused, 50);
}

INSTANTIATE_TEST_SUITE_P(Variants, XbzrleVariant, ::testing::ValuesIn(kAllVariants),
                         [](const auto& info) { return std::string(variant_name(info.param)); });

TEST(Xbzrle, DispatchedEncodeMatchesScalar) {
  std::mt19937_64 rng(5);
  Bytes a = random_bytes(rng, 4096), b = mutate(a, rng, 0.05);
  Bytes d1(8192), d2(8192);
  long r1 = encode(a.data(), b.data(), 4096, d1.data(), d1.size());
  long r2 = encode_scalar(a.data(), b.data(), 4096, d2.data(), d2.size());
  ASSERT_EQ(r1, r2);
  EXPECT_TRUE(std::equal(d1.begin(), d1.begin() + r1, d2.begin()));
  EXPECT_TRUE(variant_available(best_variant()));
  EXPECT_TRUE(variant_available(Variant::kScalar));
}

// encode() never uses a variant above the FERRY_SIMD cap. ctest also runs this test with
// FERRY_SIMD=scalar (tests/codecs/CMakeLists.txt), where encode() must be the scalar encoder.
TEST(Xbzrle, DispatchStaysUnderTheSimdCap) {
  SimdLevel level = dispatch_level();
  Variant best = best_variant();
  SCOPED_TRACE(std::string("dispatch level ") + simd_level_name(level) + ", encode() uses " +
               variant_name(best));
  EXPECT_TRUE(variant_available(best));
  if (level < SimdLevel::kAvx512) {
    EXPECT_NE(best, Variant::kAvx512);
  }
  if (level < SimdLevel::kAvx2) {
    EXPECT_EQ(best, Variant::kScalar);
  }
  const char* cap = std::getenv("FERRY_SIMD");
  if (cap != nullptr && std::string(cap) == "scalar") {
    EXPECT_EQ(level, SimdLevel::kScalar);
    EXPECT_EQ(best, Variant::kScalar);
  }
}

// Decoding malformed deltas: the right error, the right offset, and the page untouched.
struct BadDelta {
  const char* name;
  Bytes delta;
  DecodeError error;
  size_t offset;
};

TEST(XbzrleDecode, RefusesMalformedDeltasAndLeavesThePage) {
  const BadDelta cases[] = {
      {"truncated uleb", {0x80}, DecodeError::kTruncated, 0},
      {"truncated second uleb", {0x05, 0x81}, DecodeError::kTruncated, 1},
      {"zero-length changed run", {0x00, 0x00}, DecodeError::kZeroLengthRun, 1},
      {"empty unchanged run after the first", {0x00, 0x01, 0xAA, 0x00, 0x01, 0xBB},
       DecodeError::kZeroLengthZeroRun, 3},
      {"unchanged run past end", {0x11, 0x01, 0xAA}, DecodeError::kRunPastEnd, 0},
      {"changed run past end", {0x0F, 0x02, 0xAA, 0xBB}, DecodeError::kRunPastEnd, 1},
      {"later run past end", {0x00, 0x01, 0xAA, 0x0E, 0x02, 1, 2}, DecodeError::kRunPastEnd, 4},
      {"trailing unchanged-run header", {0x00, 0x01, 0xAA, 0x05}, DecodeError::kTrailingGarbage,
       3},
      {"lone unchanged-run header", {0x03}, DecodeError::kTrailingGarbage, 0},
      {"cut-off run bytes", {0x00, 0x03, 0xAA, 0xBB}, DecodeError::kCutOffRun, 1},
      {"run header without bytes", {0x02, 0x01}, DecodeError::kCutOffRun, 1},
      {"six-byte uleb", {0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, DecodeError::kOverlongUleb, 0},
      {"uleb above 32 bits", {0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F}, DecodeError::kLengthOverflow,
       1},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Bytes page(16);
    for (size_t i = 0; i < page.size(); ++i) page[i] = static_cast<uint8_t>(i);
    Bytes before = page;
    DecodeResult r = decode(c.delta.data(), c.delta.size(), page.data(), page.size());
    EXPECT_EQ(r.error, c.error) << decode_error_string(r.error);
    EXPECT_EQ(r.offset, c.offset);
    EXPECT_EQ(page, before) << "a refused delta must not touch the page";
    EXPECT_STRNE(decode_error_string(r.error), "unknown decode error");
  }
}

// QEMU's uleb128_decode_small takes a 2-byte encoding whatever its high group holds, so a
// delta from another encoder with padded lengths loads there; it must load here too.
TEST(XbzrleDecode, AcceptsNonMinimalLengthsLikeQemu) {
  Bytes page(16, 0);
  const Bytes padded{0x80, 0x00, 0x82, 0x00, 0xAA, 0xBB, 0x83, 0x80, 0x00, 0x81, 0x00, 0xCC};
  const DecodeResult r = decode(padded.data(), padded.size(), page.data(), page.size());
  ASSERT_EQ(r.error, DecodeError::kOk) << decode_error_string(r.error);
  Bytes want(16, 0);
  want[0] = 0xAA;
  want[1] = 0xBB;
  want[5] = 0xCC;
  EXPECT_EQ(page, want);
  // Padding does not let a zero-length run through.
  const Bytes padded_zero{0x00, 0x01, 0xAA, 0x80, 0x00, 0x01, 0xBB};
  EXPECT_EQ(decode(padded_zero.data(), padded_zero.size(), page.data(), page.size()).error,
            DecodeError::kZeroLengthZeroRun);
}

TEST(XbzrleDecode, AcceptsEdgeCases) {
  Bytes page(16, 0);
  EXPECT_EQ(decode(nullptr, 0, page.data(), page.size()).error, DecodeError::kOk);
  EXPECT_EQ(page, Bytes(16, 0));
  Bytes full{0x00, 0x10};
  full.insert(full.end(), 16, 0x44);
  ASSERT_EQ(decode(full.data(), full.size(), page.data(), page.size()).error, DecodeError::kOk);
  EXPECT_EQ(page, Bytes(16, 0x44));
  Bytes last{0x0F, 0x01, 0x09};  // a run ending exactly at the page end
  ASSERT_EQ(decode(last.data(), last.size(), page.data(), page.size()).error, DecodeError::kOk);
  EXPECT_EQ(page[15], 0x09);
  // Any delta is too big for an empty page except the empty one.
  EXPECT_EQ(decode(last.data(), last.size(), page.data(), 0).error, DecodeError::kRunPastEnd);
}

}  // namespace
}  // namespace ferry::xbzrle
