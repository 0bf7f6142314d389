// The ferry CLI's helpers on their own: size parsing, the synthetic image, the writer, the
// progress line and the SVG chart.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "ferry/bitmap_dirty_source.h"
#include "tools/ferry/cli_util.h"
#include "tools/ferry/image.h"
#include "tools/ferry/migrate_options.h"
#include "tools/ferry/report.h"
#include "tools/ferry/workload.h"

namespace ferry::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(ParseSize, Units) {
  EXPECT_EQ(parse_size("0"), 0u);
  EXPECT_EQ(parse_size("4096"), 4096u);
  EXPECT_EQ(parse_size("4K"), 4096u);
  EXPECT_EQ(parse_size("4k"), 4096u);
  EXPECT_EQ(parse_size("4KiB"), 4096u);
  EXPECT_EQ(parse_size("4KB"), 4096u);
  EXPECT_EQ(parse_size("512M"), uint64_t{512} << 20);
  EXPECT_EQ(parse_size("2G"), uint64_t{2} << 30);
  EXPECT_EQ(parse_size("2g"), uint64_t{2} << 30);
  EXPECT_EQ(parse_size("1T"), uint64_t{1} << 40);
  EXPECT_EQ(parse_size("100B"), 100u);
}

TEST(ParseSize, BadInputSaysWhy) {
  auto why = [](const char* s) {
    try {
      parse_size(s);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  EXPECT_EQ(why(""), "empty size");
  EXPECT_THAT(why("G"), HasSubstr("does not start with a number"));
  EXPECT_THAT(why("-1G"), HasSubstr("does not start with a number"));
  EXPECT_THAT(why("2X"), HasSubstr("unknown unit"));
  EXPECT_THAT(why("2GG"), HasSubstr("unknown unit"));
  EXPECT_THAT(why("1.5G"), HasSubstr("unknown unit"));
  EXPECT_THAT(why("99999999999999999999"), HasSubstr("too large"));
  EXPECT_THAT(why("20000000000000T"), HasSubstr("too large"));
}

TEST(FormatSize, LargestUnit) {
  EXPECT_EQ(format_size(17), "17 B");
  EXPECT_EQ(format_size(4096), "4 KiB");
  EXPECT_EQ(format_size(uint64_t{2} << 30), "2 GiB");
  EXPECT_EQ(format_size(1536), "1.5 KiB");
}

TEST(MigrateOptions, ResolveChecksCombinations) {
  MigrateOptions o;
  EXPECT_EQ(o.resolve(), "");
  EXPECT_EQ(o.size, uint64_t{2} << 30);
  EXPECT_EQ(o.page_size, 4096u);
  o.size_text = "3M";
  o.page_size_text = "2M";
  EXPECT_THAT(o.resolve(), HasSubstr("not a multiple of the page size"));
  o.size_text = "0";
  EXPECT_THAT(o.resolve(), HasSubstr("more than 0"));
  o.size_text = "64M";
  o.bandwidth_text = "100M";
  EXPECT_EQ(o.resolve(), "");
  EXPECT_EQ(o.engine_config().bandwidth_limit_bytes_per_s, uint64_t{100} << 20);
  // --verify: off by default (it costs more than the CLI's 2 % budget), digest or full.
  EXPECT_FALSE(o.engine_config().verify);
  o.verify = "digest";
  EXPECT_TRUE(o.engine_config().verify);
  EXPECT_FALSE(o.engine_config().verify_full);
  o.verify = "full";
  EXPECT_TRUE(o.engine_config().verify);
  EXPECT_TRUE(o.engine_config().verify_full);
  EXPECT_EQ(o.engine_config().downtime_limit, std::chrono::milliseconds(30));
}

class Image : public ::testing::Test {
 protected:
  static constexpr size_t kSize = size_t{16} << 20;
};

TEST_F(Image, MixIsAboutHalfZeroAndDeterministicPerSeed) {
  GuestMemory a(kSize, false), b(kSize, false), c(kSize, false);
  const ImageMix ma = generate_image(a.data(), kSize, 4096, 7, 3);
  const ImageMix mb = generate_image(b.data(), kSize, 4096, 7, 1);  // other thread count
  const ImageMix mc = generate_image(c.data(), kSize, 4096, 8, 2);
  EXPECT_EQ(mc.total(), ma.total());
  const double n = static_cast<double>(ma.total());
  EXPECT_EQ(ma.total(), kSize / 4096);
  EXPECT_NEAR(static_cast<double>(ma.zero) / n, 0.5, 0.03);
  EXPECT_NEAR(static_cast<double>(ma.text) / n, 0.3, 0.03);
  EXPECT_NEAR(static_cast<double>(ma.random) / n, 0.2, 0.03);
  EXPECT_EQ(ma.zero, mb.zero);
  EXPECT_EQ(ma.text, mb.text);
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), kSize));
  EXPECT_NE(0, std::memcmp(a.data(), c.data(), kSize));
  EXPECT_EQ(image_hash(a.data(), kSize, 1), image_hash(b.data(), kSize, 4));
  EXPECT_NE(image_hash(a.data(), kSize), image_hash(c.data(), kSize));
}

TEST_F(Image, PagesHaveTheKindTheyWereGiven) {
  GuestMemory a(kSize, false);
  generate_image(a.data(), kSize, 4096, 3);
  size_t checked[3] = {0, 0, 0};
  for (size_t u = 0; u < kSize / 4096; ++u) {
    const uint8_t* p = a.data() + u * 4096;
    const UnitKind k = unit_kind(3, u);
    ++checked[static_cast<int>(k)];
    size_t zeros = 0, printable = 0;
    for (size_t i = 0; i < 4096; ++i) {
      zeros += p[i] == 0;
      printable += (p[i] >= 0x20 && p[i] < 0x7f) || p[i] == '\n';
    }
    switch (k) {
      case UnitKind::kZero: ASSERT_EQ(zeros, 4096u) << u; break;
      case UnitKind::kText: ASSERT_EQ(printable, 4096u) << u; break;
      case UnitKind::kRandom: ASSERT_LT(zeros, 64u) << u; ASSERT_LT(printable, 3000u) << u; break;
    }
  }
  EXPECT_GT(checked[0], 0u);
  EXPECT_GT(checked[1], 0u);
  EXPECT_GT(checked[2], 0u);
}

TEST_F(Image, HugePageUnitsAreWholeOfOneKind) {
  GuestMemory a(kSize, true);
  const ImageMix m = generate_image(a.data(), kSize, size_t{2} << 20, 11);
  EXPECT_EQ(m.total(), 8u);
  for (size_t u = 0; u < 8; ++u) {
    const uint8_t* p = a.data() + u * (size_t{2} << 20);
    const bool last_zero = p[(size_t{2} << 20) - 1] == 0 && p[(size_t{2} << 20) - 2] == 0;
    if (unit_kind(11, u) == UnitKind::kZero) EXPECT_TRUE(last_zero) << u;
    else EXPECT_FALSE(last_zero && p[0] == 0) << u;
  }
}

// --content: zero writes nothing; random gives every page the bytes the mix gives its random ones.
TEST_F(Image, ContentZeroAndRandom) {
  GuestMemory mix(kSize, false), zero(kSize, false), random(kSize, false);
  generate_image(mix.data(), kSize, 4096, 5);
  const ImageMix mz = generate_image(zero.data(), kSize, 4096, 5, ImageContent::kZero, 2);
  const ImageMix mr = generate_image(random.data(), kSize, 4096, 5, ImageContent::kRandom, 3);
  EXPECT_EQ(mz.zero, kSize / 4096);
  EXPECT_EQ(mr.random, kSize / 4096);
  const std::vector<uint8_t> zeros(kSize, 0);
  EXPECT_EQ(0, std::memcmp(zero.data(), zeros.data(), kSize));
  size_t same_random = 0;
  for (size_t u = 0; u < kSize / 4096; ++u) {
    const uint8_t* r = random.data() + u * 4096;
    ASSERT_NE(0, std::memcmp(r, zeros.data(), 4096)) << u;
    if (unit_kind(5, u) == UnitKind::kRandom) {
      ASSERT_EQ(0, std::memcmp(r, mix.data() + u * 4096, 4096)) << u;
      ++same_random;
    }
  }
  EXPECT_GT(same_random, 0u);
  ImageContent c = ImageContent::kMix;
  EXPECT_TRUE(parse_image_content("random", c));
  EXPECT_EQ(c, ImageContent::kRandom);
  EXPECT_FALSE(parse_image_content("Random", c));
  EXPECT_STREQ(image_content_name(ImageContent::kZero), "zero");
}

TEST_F(Image, HashSeesOneByte) {
  GuestMemory a(kSize, false);
  generate_image(a.data(), kSize, 4096, 1);
  const uint64_t h = image_hash(a.data(), kSize);
  a.data()[kSize - 1] ^= 1;
  EXPECT_NE(h, image_hash(a.data(), kSize));
  a.data()[kSize - 1] ^= 1;
  EXPECT_EQ(h, image_hash(a.data(), kSize));
  EXPECT_EQ(hash_hex(0x1234).size(), 16u);
}

TEST(DirtyWriter, WritesAtItsRateMarksAndParks) {
  constexpr size_t kSize = size_t{8} << 20;
  GuestMemory mem(kSize, false);
  ExplicitMarkSource marks(kSize / 4096);
  DirtyWriter::Config c;
  c.mem = mem.data();
  c.size = kSize;
  c.rate_bytes_per_s = 40.0 * (1 << 20);  // 10240 page writes/s
  c.hot_bytes = size_t{1} << 20;
  c.marks = &marks;
  DirtyWriter w(c);
  EXPECT_EQ(w.hot_pages(), 256u);
  w.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  w.pause();
  const uint64_t n = w.writes();
  EXPECT_GT(n, 500u);   // ~2000 expected; generous for loaded machines
  EXPECT_LT(n, 4000u);
  DirtyBitmap bm(kSize / 4096);
  marks.sync(bm);
  EXPECT_GT(bm.count(), 0u);
  EXPECT_LE(bm.count(), 2 * w.hot_pages());
  // Parked: nothing changes.
  const uint64_t h = image_hash(mem.data(), kSize);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(w.writes(), n);
  EXPECT_EQ(h, image_hash(mem.data(), kSize));
  w.set_throttle(99);
  w.resume();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  w.stop();
  EXPECT_LT(w.writes() - n, 200u);  // 1% of 10240/s for 0.1 s is ~10
}

TEST(ProgressLine, PlainAndBar) {
  Progress p;
  p.iteration = 2;
  p.pages_dirty_this_iteration = 5000;
  p.pages_sent_this_iteration = 1200;
  p.wire_bytes = uint64_t{812} << 20;
  p.elapsed_seconds = 1.25;
  p.throughput_bytes_per_s = 1834.25 * (1 << 20);
  EXPECT_EQ(progress_line(p, false),
            "iteration 2: sent 1200 of 5000 pages, remaining 3800, 1834.2 MiB/s, wire 812.0 MiB, "
            "1.2 s");
  const std::string bar = progress_line(p, true);
  EXPECT_EQ(bar,
            "[####............] iter 2   24%     3800 left  1834.2 MiB/s     812 MiB   1.2 s");
  EXPECT_LT(bar.size(), 80u);
  p.iteration = 0;
  EXPECT_THAT(progress_line(p, false), ::testing::StartsWith("bulk: "));
  p.final_pass = true;
  p.pages_sent_this_iteration = 9999;  // never more than the iteration's pages
  EXPECT_THAT(progress_line(p, false), ::testing::StartsWith("final: sent 5000 of 5000 pages, remaining 0,"));
}

bool name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':' || c == '-'; }

bool entity_at(const std::string& x, size_t i) {
  for (const char* e : {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"}) {
    if (x.compare(i, std::strlen(e), e) == 0) return true;
  }
  if (x.compare(i, 2, "&#") != 0) return false;
  size_t j = i + 2;
  while (j < x.size() && std::isdigit(static_cast<unsigned char>(x[j]))) ++j;
  return j > i + 2 && j < x.size() && x[j] == ';';
}

// name (ws+ name="value")* ws*, values without '<' and with '&' only starting entities.
bool tag_ok(const std::string& t) {
  size_t i = 0;
  if (t.empty() || !std::isalpha(static_cast<unsigned char>(t[0]))) return false;
  while (i < t.size() && name_char(t[i])) ++i;
  for (;;) {
    const size_t ws = i;
    while (i < t.size() && std::isspace(static_cast<unsigned char>(t[i]))) ++i;
    if (i == t.size()) return true;
    if (i == ws) return false;
    const size_t n0 = i;
    while (i < t.size() && name_char(t[i])) ++i;
    if (i == n0 || i + 1 >= t.size() || t[i] != '=' || t[i + 1] != '"') return false;
    const size_t close = t.find('"', i + 2);
    if (close == std::string::npos) return false;
    for (size_t k = i + 2; k < close; ++k) {
      if (t[k] == '<' || (t[k] == '&' && !entity_at(t, k))) return false;
    }
    i = close + 1;
  }
}

// A small well-formedness check: every tag closes in order, attributes are quoted, '&' only
// starts an entity, and there is one root element.
std::string xml_problem(const std::string& x) {
  std::vector<std::string> stack;
  size_t i = 0, roots = 0;
  if (x.rfind("<?xml", 0) == 0) i = x.find("?>") + 2;
  while (i < x.size()) {
    if (x[i] == '&') {
      if (!entity_at(x, i)) return "bad entity at " + std::to_string(i);
      ++i;
      continue;
    }
    if (x[i] != '<') {
      if (stack.empty() && !std::isspace(static_cast<unsigned char>(x[i]))) {
        return "text outside the root at " + std::to_string(i);
      }
      ++i;
      continue;
    }
    const size_t end = x.find('>', i);
    if (end == std::string::npos) return "unterminated tag";
    std::string tag = x.substr(i + 1, end - i - 1);
    i = end + 1;
    if (tag.empty()) return "empty tag";
    if (tag[0] == '/') {
      if (stack.empty() || stack.back() != tag.substr(1)) return "mismatched </" + tag.substr(1) + ">";
      stack.pop_back();
      continue;
    }
    const bool self = tag.back() == '/';
    if (self) tag.pop_back();
    if (!tag_ok(tag)) return "bad tag <" + tag + ">";
    const std::string name = tag.substr(0, tag.find_first_of(" \t\n"));
    if (stack.empty()) ++roots;
    if (!self) stack.push_back(name);
  }
  if (!stack.empty()) return "unclosed <" + stack.back() + ">";
  if (roots != 1) return "root elements: " + std::to_string(roots);
  return "";
}

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

TEST(Svg, WellFormedWithBothSeries) {
  std::vector<IterationStats> its(4);
  for (size_t i = 0; i < its.size(); ++i) {
    its[i].iteration = static_cast<uint32_t>(i);
    its[i].throughput_bytes_per_s = (1000.0 + 100 * i) * (1 << 20);
    its[i].remaining_dirty_pages = 10000 >> (2 * i);
  }
  its.back().final_pass = true;
  its.back().remaining_dirty_pages = 0;
  const std::string svg = render_svg(its, "2 GiB <demo> & \"friends\"");
  EXPECT_EQ(xml_problem(svg), "") << svg;
  EXPECT_THAT(svg, HasSubstr("<svg xmlns=\"http://www.w3.org/2000/svg\""));
  EXPECT_THAT(svg, HasSubstr("2 GiB &lt;demo&gt; &amp; &quot;friends&quot;"));
  EXPECT_THAT(svg, HasSubstr("<g id=\"throughput\""));
  EXPECT_EQ(count(svg, "<rect class=\"bar\""), its.size());
  EXPECT_EQ(count(svg, "<circle class=\"point\""), its.size());
  const size_t poly = svg.find("<polyline id=\"remaining\"");
  ASSERT_NE(poly, std::string::npos);
  const size_t pts = svg.find("points=\"", poly) + 8;
  const std::string points = svg.substr(pts, svg.find('"', pts) - pts);
  EXPECT_EQ(count(points, ","), its.size());
  EXPECT_THAT(svg, HasSubstr("throughput (MiB/s)"));
  EXPECT_THAT(svg, HasSubstr("remaining dirty pages"));
  EXPECT_THAT(svg, HasSubstr(">bulk</text>"));
  EXPECT_THAT(svg, HasSubstr(">F</text>"));
  EXPECT_THAT(svg, HasSubstr(">2.0k</text>"));  // throughput axis top: nice_ceil(1300)
  EXPECT_THAT(svg, Not(HasSubstr("nan")));
  EXPECT_THAT(svg, Not(HasSubstr("inf")));
}

TEST(Svg, TheCheckerCatchesBrokenXml) {
  EXPECT_EQ(xml_problem("<a x=\"1\"><b/>t &amp; u</a>"), "");
  EXPECT_NE(xml_problem("<a><b></a>"), "");
  EXPECT_NE(xml_problem("<a>x & y</a>"), "");
  EXPECT_NE(xml_problem("<a x=1></a>"), "");
  EXPECT_NE(xml_problem("<a></a><b></b>"), "");
  EXPECT_NE(xml_problem("<a>"), "");
}

TEST(Svg, EmptyAndZeroSeriesStayFinite) {
  const std::string empty = render_svg({}, "nothing");
  EXPECT_EQ(xml_problem(empty), "");
  std::vector<IterationStats> zeros(2);
  const std::string z = render_svg(zeros, "zeros");
  EXPECT_EQ(xml_problem(z), "");
  EXPECT_THAT(z, Not(HasSubstr("nan")));
  EXPECT_THAT(z, Not(HasSubstr("inf")));
}

TEST(NiceCeil, Steps) {
  EXPECT_DOUBLE_EQ(nice_ceil(0), 1);
  EXPECT_DOUBLE_EQ(nice_ceil(1), 1);
  EXPECT_DOUBLE_EQ(nice_ceil(1.1), 2);
  EXPECT_DOUBLE_EQ(nice_ceil(2.2), 2.5);
  EXPECT_DOUBLE_EQ(nice_ceil(3), 5);
  EXPECT_DOUBLE_EQ(nice_ceil(1300), 2000);
  EXPECT_DOUBLE_EQ(nice_ceil(7000), 10000);
}

}  // namespace
}  // namespace ferry::cli
