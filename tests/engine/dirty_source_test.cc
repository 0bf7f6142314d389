#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "ferry/bitmap_dirty_source.h"
#include "ferry/dirty_bitmap.h"
#include "ferry/uffd_wp_dirty_source.h"

namespace ferry {
namespace {

std::set<size_t> set_pages(const DirtyBitmap& bm) {
  std::set<size_t> s;
  for (size_t p = bm.find_next_set(0); p != DirtyBitmap::npos; p = bm.find_next_set(p + 1)) {
    s.insert(p);
  }
  return s;
}

// --- explicit marks ---------------------------------------------------------------------------

TEST(ExplicitMarkSource, SyncMovesMarksIntoTheBitmap) {
  ExplicitMarkSource src(1000);
  EXPECT_STREQ(src.name(), "explicit-marks");
  EXPECT_EQ(src.pages(), 1000u);
  DirtyBitmap bm(1000);
  src.mark(3);
  src.mark(999);
  src.mark_range(100, 70);
  src.sync(bm);
  std::set<size_t> want = {3, 999};
  for (size_t p = 100; p < 170; ++p) want.insert(p);
  EXPECT_EQ(set_pages(bm), want);

  bm.clear_all();
  src.sync(bm);
  EXPECT_EQ(bm.count(), 0u) << "a sync restarts tracking";
  src.mark(0);
  bm.set(5);
  src.sync(bm);
  EXPECT_EQ(set_pages(bm), (std::set<size_t>{0, 5})) << "sync ORs, it does not overwrite";

  DirtyBitmap wrong(999);
  EXPECT_THROW(src.sync(wrong), std::invalid_argument);
}

TEST(ExplicitMarkSource, MarksRacingWithSyncAreNeverLost) {
  constexpr size_t kPages = 1 << 16;
  ExplicitMarkSource src(kPages);
  DirtyBitmap bm(kPages);
  std::atomic<bool> done{false};
  std::thread marker([&] {
    for (size_t p = 0; p < kPages; p += 3) src.mark(p);
    done.store(true);
  });
  while (!done.load()) src.sync(bm);
  marker.join();
  src.sync(bm);
  EXPECT_EQ(bm.count(), (kPages + 2) / 3);
  for (size_t p = 0; p < kPages; ++p) ASSERT_EQ(bm.test(p), p % 3 == 0) << p;
}

// --- hypervisor bitmap ------------------------------------------------------------------------

// A stand-in for a KVM memory slot: the "hypervisor" logs writes into its own bitmap and hands
// them over (and clears) when asked, like KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG.
class FakeHypervisor {
 public:
  explicit FakeHypervisor(size_t pages) : log_(DirtyBitmap::words_for(pages)) {}
  void guest_writes(size_t page) {
    std::lock_guard lock(mu_);
    log_[page / 64] |= uint64_t{1} << (page % 64);
  }
  void fetch(uint64_t* words, size_t nwords) {
    std::lock_guard lock(mu_);
    for (size_t w = 0; w < nwords; ++w) {
      EXPECT_EQ(words[w], 0u) << "the source must hand over a zeroed log";
      words[w] = log_[w];
      log_[w] = 0;
    }
    ++fetches;
  }
  int fetches = 0;

 private:
  std::mutex mu_;
  std::vector<uint64_t> log_;
};

TEST(HypervisorBitmapSource, MergesTheHypervisorLogEachSync) {
  constexpr size_t kPages = 200;  // not a multiple of 64
  FakeHypervisor hv(kPages);
  HypervisorBitmapSource src(kPages, [&](uint64_t* w, size_t n) { hv.fetch(w, n); });
  EXPECT_STREQ(src.name(), "hypervisor-bitmap");
  EXPECT_EQ(src.pages(), kPages);
  DirtyBitmap bm(kPages);
  for (size_t p : {0, 63, 64, 150, 199}) hv.guest_writes(p);
  src.sync(bm);
  EXPECT_EQ(set_pages(bm), (std::set<size_t>{0, 63, 64, 150, 199}));
  bm.clear_all();
  hv.guest_writes(7);
  src.sync(bm);
  EXPECT_EQ(set_pages(bm), (std::set<size_t>{7}));
  src.sync(bm);
  EXPECT_EQ(set_pages(bm), (std::set<size_t>{7}));
  EXPECT_EQ(hv.fetches, 3);
}

TEST(HypervisorBitmapSource, FetchErrorsPropagateAndMismatchesAreRejected) {
  HypervisorBitmapSource failing(64, [](uint64_t* w, size_t) {
    w[0] = ~uint64_t{0};
    throw std::runtime_error("KVM_GET_DIRTY_LOG: EFAULT");
  }, "kvm-slot-0");
  EXPECT_STREQ(failing.name(), "kvm-slot-0");
  DirtyBitmap bm(64);
  EXPECT_THROW(failing.sync(bm), std::runtime_error);
  EXPECT_EQ(bm.count(), 0u) << "nothing is merged from a failed fetch";
  DirtyBitmap wrong(65);
  EXPECT_THROW(failing.sync(wrong), std::invalid_argument);
  EXPECT_THROW(HypervisorBitmapSource(64, nullptr), std::invalid_argument);
}

// --- userfaultfd write-protect + PAGEMAP_SCAN -------------------------------------------------

#define SKIP_WITHOUT_UFFD_WP()                                          \
  do {                                                                  \
    const std::string why = UffdWpDirtySource::probe();                 \
    if (!why.empty()) GTEST_SKIP() << "uffd-wp unavailable: " << why;   \
  } while (0)

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));

// Anonymous private memory, unmapped at scope exit.
class Mapping {
 public:
  explicit Mapping(size_t bytes, size_t align = 0) : bytes_(bytes + align) {
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap");
    raw_ = static_cast<unsigned char*>(p);
    uintptr_t a = reinterpret_cast<uintptr_t>(raw_);
    if (align) a = (a + align - 1) / align * align;
    data_ = reinterpret_cast<unsigned char*>(a);
  }
  ~Mapping() { munmap(raw_, bytes_); }
  unsigned char* data() const { return data_; }
  // Relaxed atomic stores: the racing test copies pages while another thread writes them, as a
  // migration does; atomics keep that a race the kernel sees but not a C++ data race.
  void write_page(size_t page, uint64_t v = 1) const {
    word(page * kPage + (page % 61) * 8).store(v, std::memory_order_relaxed);
  }
  void copy_page_to(unsigned char* dst, size_t page) const {
    for (size_t off = 0; off < kPage; off += 8) {
      const uint64_t v = word(page * kPage + off).load(std::memory_order_relaxed);
      std::memcpy(dst + page * kPage + off, &v, 8);
    }
  }

 private:
  size_t bytes_;
  unsigned char* raw_;
  unsigned char* data_;

  std::atomic_ref<uint64_t> word(size_t offset) const {
    return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(data_ + offset));
  }
};

TEST(UffdWpDirtySource, ProbeOnThisMachine) {
  const std::string why = UffdWpDirtySource::probe();
  std::printf("[          ] UffdWpDirtySource::probe(): %s\n",
              why.empty() ? "available" : why.c_str());
  RecordProperty("uffd_wp_probe", why.empty() ? "available" : why);
  SKIP_WITHOUT_UFFD_WP();
}

// Writes `pages` half from this thread and half from another one.
void write_from_two_threads(const Mapping& m, const std::vector<size_t>& pages, uint64_t v) {
  std::thread other([&] {
    for (size_t i = 1; i < pages.size(); i += 2) m.write_page(pages[i], v);
  });
  for (size_t i = 0; i < pages.size(); i += 2) m.write_page(pages[i], v);
  other.join();
}

std::vector<size_t> every_nth(size_t pages, size_t n, size_t offset) {
  std::vector<size_t> v;
  for (size_t p = offset; p < pages; p += n) v.push_back(p);
  return v;
}

void expect_exactly(const DirtyBitmap& bm, const std::vector<size_t>& pages) {
  const std::set<size_t> want(pages.begin(), pages.end());
  const std::set<size_t> got = set_pages(bm);
  size_t missed = 0, extra = 0;
  for (size_t p : want) missed += !got.count(p);
  for (size_t p : got) extra += !want.count(p);
  EXPECT_EQ(missed, 0u) << "written pages the sync did not report";
  EXPECT_EQ(extra, 0u) << "pages reported that were not written";
  EXPECT_EQ(got.size(), want.size());
}

class UffdWpRegion : public ::testing::TestWithParam<bool> {};  // param: populated before tracking

TEST_P(UffdWpRegion, ReportsExactlyTheWrittenPagesEachRound) {
  SKIP_WITHOUT_UFFD_WP();
  constexpr size_t kBytes = 64 << 20;
  const size_t pages = kBytes / kPage;
  Mapping m(kBytes);
  if (GetParam()) std::memset(m.data(), 0x5a, kBytes);
  UffdWpDirtySource src(m.data(), kBytes);
  EXPECT_STREQ(src.name(), "uffd-wp");
  ASSERT_EQ(src.pages(), pages);
  DirtyBitmap bm(pages);

  src.sync(bm);
  EXPECT_EQ(bm.count(), 0u) << "nothing written since tracking started";

  const auto first = every_nth(pages, 7, 0);
  write_from_two_threads(m, first, 1);
  src.sync(bm);
  expect_exactly(bm, first);

  bm.clear_all();
  const auto second = every_nth(pages, 11, 5);
  write_from_two_threads(m, second, 2);
  src.sync(bm);
  expect_exactly(bm, second);

  bm.clear_all();
  src.sync(bm);
  EXPECT_EQ(bm.count(), 0u);
  EXPECT_EQ(src.stats().syncs, 4u);
  EXPECT_EQ(src.stats().pages, first.size() + second.size());
}

INSTANTIATE_TEST_SUITE_P(Memory, UffdWpRegion, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Populated" : "Untouched"; });

TEST(UffdWpDirtySource, LoopsWhenTheRegionBufferFillsUp) {
  SKIP_WITHOUT_UFFD_WP();
  constexpr size_t kBytes = 8 << 20;
  const size_t pages = kBytes / kPage;
  Mapping m(kBytes);
  UffdWpDirtySource src(m.data(), kBytes, /*scan_regions=*/3);
  DirtyBitmap bm(pages);
  auto written = every_nth(pages, 2, 1);  // no two adjacent: one region per page
  for (size_t p = 40; p < 90; ++p) written.push_back(p);  // and one run of 50 pages
  std::sort(written.begin(), written.end());
  written.erase(std::unique(written.begin(), written.end()), written.end());
  for (size_t p : written) m.write_page(p);
  src.sync(bm);
  expect_exactly(bm, written);
  EXPECT_GT(src.stats().scan_calls, written.size() / 3 / 2) << "expected many resumed scans";
}

TEST(UffdWpDirtySource, ContiguousRunsAndWritesByTheKernel) {
  SKIP_WITHOUT_UFFD_WP();
  constexpr size_t kBytes = 4 << 20;
  const size_t pages = kBytes / kPage;
  Mapping m(kBytes);
  UffdWpDirtySource src(m.data(), kBytes);
  DirtyBitmap bm(pages);
  std::vector<size_t> written;
  for (size_t p = 100; p < 200; ++p) {
    m.write_page(p);
    written.push_back(p);
  }
  // read(2) fills page 500 from inside the kernel (copy_to_user).
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ASSERT_EQ(write(fds[1], "kernel", 6), 6);
  ASSERT_EQ(read(fds[0], m.data() + 500 * kPage + 16, 6), 6);
  close(fds[0]);
  close(fds[1]);
  written.push_back(500);
  src.sync(bm);
  expect_exactly(bm, written);
}

// The migration invariant: copy what each sync reports while a writer keeps writing; after the
// writer stops and one last sync + copy, the copy must equal the memory. A write lost between
// "reported" and "re-protected" would leave a stale page behind.
TEST(UffdWpDirtySource, WritesRacingWithSyncAreNeverLost) {
  SKIP_WITHOUT_UFFD_WP();
  constexpr size_t kBytes = 16 << 20;
  const size_t pages = kBytes / kPage;
  Mapping m(kBytes);
  std::memset(m.data(), 0, kBytes);
  UffdWpDirtySource src(m.data(), kBytes);
  std::vector<unsigned char> copy(m.data(), m.data() + kBytes);  // the bulk pass
  DirtyBitmap round(pages);
  DirtyBitmap seen(pages);
  std::vector<uint32_t> batch(128);
  auto sync_and_copy = [&] {
    src.sync(round);
    std::vector<uint64_t> w(round.words());
    round.copy_words(w.data());
    seen.merge_from(w.data(), w.size());
    size_t cursor = 0, got;
    do {
      got = round.take_batch(cursor, batch.data(), batch.size());
      for (size_t i = 0; i < got; ++i) {
        m.copy_page_to(copy.data(), batch[i]);
      }
    } while (got == batch.size());
  };
  const auto targets = every_nth(pages, 5, 2);
  std::atomic<bool> done{false};
  std::atomic<int> rounds{0};
  std::thread writer([&] {
    // At least 40 passes, and at least 10 syncs overlapping them however slow (sanitizers) a
    // sync is.
    for (uint64_t v = 1; v <= 40 || rounds.load() < 10; ++v) {
      for (size_t p : targets) m.write_page(p, v);
    }
    done.store(true);
  });
  while (!done.load()) {
    sync_and_copy();
    rounds.fetch_add(1);
  }
  writer.join();
  sync_and_copy();
  std::printf("[          ] %d sync rounds overlapped the writer\n", rounds.load());
  EXPECT_EQ(std::memcmp(copy.data(), m.data(), kBytes), 0) << "a racing write was lost";
  expect_exactly(seen, targets);

  // A write after the writer stopped is reported by the next sync, alone.
  m.write_page(targets[3], 0xee);
  src.sync(round);
  expect_exactly(round, {targets[3]});
}

// How much of [p, p + len) smaps says is backed by anonymous huge pages, in KiB (-1 unknown).
long anon_huge_kib(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  bool in = false;
  while (std::getline(smaps, line)) {
    unsigned long lo, hi;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) {
      in = a >= lo && a < hi;
    } else if (in && line.rfind("AnonHugePages:", 0) == 0) {
      return std::stol(line.substr(14));
    }
  }
  return -1;
}

TEST(UffdWpDirtySource, TransparentHugePagesAreTrackedPer4KiB) {
  SKIP_WITHOUT_UFFD_WP();
  constexpr size_t kHuge = 2 << 20;
  constexpr size_t kBytes = 4 * kHuge;
  const size_t pages = kBytes / kPage;
  Mapping m(kBytes, kHuge);
  ASSERT_EQ(madvise(m.data(), kBytes, MADV_HUGEPAGE), 0);
  std::memset(m.data(), 1, kBytes);
  const long huge_kib = anon_huge_kib(m.data());
  std::printf("[          ] AnonHugePages backing the range before tracking: %ld KiB\n", huge_kib);
  RecordProperty("anon_huge_kib", std::to_string(huge_kib));
  UffdWpDirtySource src(m.data(), kBytes);
  DirtyBitmap bm(pages);
  const std::vector<size_t> written = {0, 3, 511, 512, 700, 1500, pages - 1};
  for (size_t p : written) m.write_page(p, 2);
  src.sync(bm);
  expect_exactly(bm, written);
  bm.clear_all();
  src.sync(bm);
  EXPECT_EQ(bm.count(), 0u);
}

TEST(UffdWpDirtySource, RejectsBadRangesWithReasons) {
  SKIP_WITHOUT_UFFD_WP();
  Mapping m(16 * kPage);
  EXPECT_THROW(UffdWpDirtySource(m.data() + 1, 4 * kPage), std::invalid_argument);
  EXPECT_THROW(UffdWpDirtySource(m.data(), 4 * kPage + 1), std::invalid_argument);
  EXPECT_THROW(UffdWpDirtySource(m.data(), 0), std::invalid_argument);

  // Nothing mapped there.
  void* hole = mmap(nullptr, 4 * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(hole, MAP_FAILED);
  munmap(hole, 4 * kPage);
  try {
    UffdWpDirtySource src(hole, 4 * kPage);
    ADD_FAILURE() << "registering an unmapped range succeeded";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find("UFFDIO_REGISTER"), std::string::npos) << e.what();
  }

  // One range, one userfaultfd.
  UffdWpDirtySource first(m.data(), 16 * kPage);
  try {
    UffdWpDirtySource second(m.data(), 16 * kPage);
    ADD_FAILURE() << "a second registration of the same range succeeded";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EBUSY) << e.what();
  }

  DirtyBitmap wrong(15);
  EXPECT_THROW(first.sync(wrong), std::invalid_argument);
}

}  // namespace
}  // namespace ferry
