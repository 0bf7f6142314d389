// Pages known zero from the page tables (engine/ram/page_population.h): what the kernel says
// about each kind of page, which mappings qualify, and migrations of memory in every state
// (unpopulated, the shared zero page, written zeros, data, a shared mapping whose page tables
// are empty but whose pages are not), with a guest writing into untouched pages meanwhile.
#include "engine/ram/page_population.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "ferry/bitmap_dirty_source.h"
#include "ferry/migration.h"
#include "tests/engine/migration_test_util.h"

namespace ferry {
namespace {

using ram::PagePopulation;
using ram::PageState;

constexpr size_t kPage = 4096;

constexpr const char* kNoScan = "this kernel has no PAGEMAP_SCAN with PAGE_IS_PFNZERO (Linux 6.7+)";

class AnonPages {
 public:
  explicit AnonPages(size_t pages) : len_(pages * kPage) {
    mem_ = static_cast<uint8_t*>(
        mmap(nullptr, len_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (mem_ == MAP_FAILED) throw std::runtime_error("mmap");
    // Base pages only: a huge page would make neighbours share one state.
    madvise(mem_, len_, MADV_NOHUGEPAGE);
  }
  ~AnonPages() { munmap(mem_, len_); }
  uint8_t* page(size_t i) { return mem_ + i * kPage; }

 private:
  size_t len_;
  uint8_t* mem_;
};

uint8_t read_byte(const uint8_t* p) { return *static_cast<const volatile uint8_t*>(p); }

TEST(PagePopulation, TellsEachKindOfPage) {
  auto pop = PagePopulation::open();
  if (!pop) GTEST_SKIP() << kNoScan;
  AnonPages m(8);
  m.page(1)[10] = 7;                      // data
  EXPECT_EQ(read_byte(m.page(2)), 0);     // read only: the shared zero page
  std::memset(m.page(3), 0, kPage);       // zeros, but written: a page of its own
  m.page(6)[0] = 1;                       // data next to untouched pages
  std::vector<PageState> s;
  std::vector<uint64_t> scratch;
  ASSERT_TRUE(pop->classify(m.page(0), 8, kPage, s, scratch));
  const std::vector<PageState> want = {PageState::kZero,    PageState::kPresent, PageState::kZero,
                                       PageState::kPresent, PageState::kZero,    PageState::kZero,
                                       PageState::kPresent, PageState::kZero};
  EXPECT_EQ(s, want);
}

TEST(PagePopulation, LargerPagesAreZeroOnlyWhenEveryPartIs) {
  auto pop = PagePopulation::open();
  if (!pop) GTEST_SKIP() << kNoScan;
  AnonPages m(8);
  m.page(3)[0] = 1;  // second half of 8 KiB page 1
  std::vector<PageState> s;
  std::vector<uint64_t> scratch;
  ASSERT_TRUE(pop->classify(m.page(0), 4, 2 * kPage, s, scratch));
  const std::vector<PageState> want = {PageState::kZero, PageState::kPresent, PageState::kZero,
                                       PageState::kZero};
  EXPECT_EQ(s, want);
}

TEST(PagePopulation, ManyRegionsNeverClaimTooMuch) {
  // Alternating pages: one region per written page, more than a scan returns at once. Pages
  // past where the scan stopped must be unknown, never zero.
  auto pop = PagePopulation::open();
  if (!pop) GTEST_SKIP() << kNoScan;
  constexpr size_t kPages = 8192;
  AnonPages m(kPages);
  for (size_t i = 0; i < kPages; i += 2) m.page(i)[0] = 1;
  std::vector<PageState> s;
  std::vector<uint64_t> scratch;
  ASSERT_TRUE(pop->classify(m.page(0), kPages, kPage, s, scratch));
  size_t known = 0;
  for (size_t i = 0; i < kPages; ++i) {
    if (i % 2 == 0) {
      EXPECT_NE(s[i], PageState::kZero) << "written page " << i;
    }
    if (s[i] == PageState::kZero) ++known;
  }
  EXPECT_GT(known, 0u);
}

TEST(PagePopulation, OnlyPrivateAnonymousMemoryQualifies) {
  AnonPages anon(4);
  EXPECT_TRUE(PagePopulation::private_anonymous(anon.page(0), 4 * kPage));

  const int fd = memfd_create("ferry-population-test", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 4 * kPage), 0);
  for (int flags : {MAP_SHARED, MAP_PRIVATE}) {
    void* m = mmap(nullptr, 4 * kPage, PROT_READ | PROT_WRITE, flags, fd, 0);
    ASSERT_NE(m, MAP_FAILED);
    EXPECT_FALSE(PagePopulation::private_anonymous(m, 4 * kPage)) << "memfd, flags " << flags;
    munmap(m, 4 * kPage);
  }
  close(fd);
  void* shared = mmap(nullptr, 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                      -1, 0);
  ASSERT_NE(shared, MAP_FAILED);
  EXPECT_FALSE(PagePopulation::private_anonymous(shared, 4 * kPage));
  munmap(shared, 4 * kPage);

  // A range running past its mapping into unmapped space.
  auto* hole = static_cast<uint8_t*>(
      mmap(nullptr, 8 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(hole, MAP_FAILED);
  munmap(hole + 4 * kPage, 4 * kPage);
  EXPECT_TRUE(PagePopulation::private_anonymous(hole, 4 * kPage));
  EXPECT_FALSE(PagePopulation::private_anonymous(hole, 8 * kPage));
  munmap(hole, 4 * kPage);
}

struct Result {
  MigrationStats src;
  std::string err;
};

Result migrate(uint8_t* src, uint8_t* dst, size_t size, MigrationConfig cfg,
               ExplicitMarkSource& marks, MigrationHooks hooks = {}) {
  testing::ChannelPair p = testing::make_channels("tcp:127.0.0.1:0", 2);
  std::vector<std::unique_ptr<DirtySource>> sources;
  sources.push_back(std::make_unique<testing::DirtySourceProxy>(&marks));
  MigrationDestination d({RamBlock{"ram0", dst, size, kPage}});
  MigrationSource s({RamBlock{"ram0", src, size, kPage}}, std::move(sources), cfg,
                    std::move(hooks));
  Result r;
  std::thread dt([&] {
    try {
      d.run(std::move(p.dst));
    } catch (const MigrationError& e) {
      r.err += std::string("destination: ") + e.what();
    }
  });
  try {
    r.src = s.run(std::move(p.src));
  } catch (const MigrationError& e) {
    r.err += std::string("source: ") + e.what();
  }
  dt.join();
  return r;
}

// 1 MiB: every fourth page data, every fourth read only, the rest untouched; the destination
// starts full of garbage, so a ZERO that was not sent shows.
struct Guest {
  static constexpr size_t kPages = 256;
  static constexpr size_t kSize = kPages * kPage;
  testing::GuardedMem src{kSize}, dst{kSize};
  ExplicitMarkSource marks{kPages};
  size_t untouched = 0;

  Guest() {
    for (size_t i = 0; i < kPages; ++i) {
      if (i % 4 == 0) {
        std::memset(src.data() + i * kPage, static_cast<int>(i | 1), kPage);
      } else if (i % 4 == 1) {
        EXPECT_EQ(read_byte(src.data() + i * kPage), 0);
        ++untouched;
      } else if (i % 8 == 2) {
        std::memset(src.data() + i * kPage, 0, kPage);
      } else {
        ++untouched;
      }
    }
    std::memset(dst.data(), 0xEE, kSize);
  }
};

TEST(PagePopulationMigration, UnpopulatedPagesGoAsZeroWithoutBeingRead) {
  if (!PagePopulation::open()) GTEST_SKIP() << kNoScan;
  Guest g;
  MigrationConfig cfg;
  const Result r = migrate(g.src.data(), g.dst.data(), Guest::kSize, cfg, g.marks);
  ASSERT_EQ(r.err, "");
  EXPECT_EQ(std::memcmp(g.src.data(), g.dst.data(), Guest::kSize), 0);
  EXPECT_TRUE(g.dst.canaries_intact());
  // The written zeros are read and found zero; only the others are known without a read.
  EXPECT_EQ(r.src.zero_pages_unread, g.untouched);
  EXPECT_EQ(r.src.pages.zero, Guest::kPages - Guest::kPages / 4);
}

TEST(PagePopulationMigration, SwitchedOffEveryPageIsRead) {
  Guest g;
  MigrationConfig cfg;
  cfg.zero_from_page_tables = false;
  const Result r = migrate(g.src.data(), g.dst.data(), Guest::kSize, cfg, g.marks);
  ASSERT_EQ(r.err, "");
  EXPECT_EQ(std::memcmp(g.src.data(), g.dst.data(), Guest::kSize), 0);
  EXPECT_EQ(r.src.zero_pages_unread, 0u);
  EXPECT_EQ(r.src.pages.zero, Guest::kPages - Guest::kPages / 4);
}

TEST(PagePopulationMigration, SharedMemoryWithEmptyPageTablesIsRead) {
  // The guest's RAM is a memfd mapped fresh: no page table entries, yet every page holds data
  // (written through write(2)). A source that took empty entries for zeros would lose it all.
  constexpr size_t kSize = 64 * kPage;
  const int fd = memfd_create("ferry-population-guest", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::vector<uint8_t> content(kSize);
  for (size_t i = 0; i < kSize; ++i) content[i] = static_cast<uint8_t>(i * 31 + 1);
  ASSERT_EQ(pwrite(fd, content.data(), kSize, 0), static_cast<ssize_t>(kSize));
  auto* src = static_cast<uint8_t*>(mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ASSERT_NE(src, MAP_FAILED);
  close(fd);
  testing::GuardedMem dst(kSize);
  ExplicitMarkSource marks(kSize / kPage);
  const Result r = migrate(src, dst.data(), kSize, MigrationConfig{}, marks);
  ASSERT_EQ(r.err, "");
  EXPECT_EQ(std::memcmp(content.data(), dst.data(), kSize), 0);
  EXPECT_EQ(r.src.zero_pages_unread, 0u);
  munmap(src, kSize);
}

TEST(PagePopulationMigration, GuestWritingIntoUntouchedPagesLosesNothing) {
  // Most of the guest untouched while a writer fills pages at random: a page found empty by
  // one scan and written right after must still arrive with what was written.
  constexpr size_t kPages = 4096;
  constexpr size_t kSize = kPages * kPage;
  testing::GuardedMem src(kSize), dst(kSize);
  std::memset(dst.data(), 0xEE, kSize);
  for (size_t i = 0; i < kPages; i += 16) src.data()[i * kPage] = 1;
  ExplicitMarkSource marks(kPages);
  testing::GuestWriter writer(src.data(), kSize, kPage, &marks, 17);
  MigrationHooks h;
  h.stop_guest = [&] { writer.stop(); };
  MigrationConfig cfg;
  cfg.downtime_limit = std::chrono::milliseconds(50);
  cfg.max_iterations = 8;
  writer.start();
  const Result r = migrate(src.data(), dst.data(), kSize, cfg, marks, std::move(h));
  writer.stop();
  ASSERT_EQ(r.err, "");
  EXPECT_GT(writer.writes(), 0u);
  EXPECT_EQ(testing::first_diff_page(src.data(), dst.data(), kSize, kPage), -1);
  EXPECT_TRUE(dst.canaries_intact());
}

}  // namespace
}  // namespace ferry
