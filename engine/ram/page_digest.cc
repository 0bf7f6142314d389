#include "engine/ram/page_digest.h"

#include <sys/mman.h>

#include <cerrno>
#include <memory>
#include <new>
#include <system_error>

// Header-only use (XXH_INLINE_ALL): XXH3 is inlined here, so libferry gains no link dependency.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "codecs/cpu_features.h"
#include "engine/ram/page_hash_variants.h"

namespace ferry::ram {
namespace {

uint64_t xxh3_baseline(const void* data, size_t len) { return XXH3_64bits(data, len); }

// The widest XXH3 build this CPU runs (FERRY_SIMD caps it, as for the codecs), chosen once.
using HashFn = uint64_t (*)(const void*, size_t);
HashFn pick_xxh3() {
#ifdef FERRY_HAVE_XXH3_AVX2
  if (dispatch_level() >= SimdLevel::kAvx2) return &xxh3_avx2;
#endif
  return &xxh3_baseline;
}
const HashFn xxh3 = pick_xxh3();

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The index goes in after hashing so that a page landing at the wrong index changes the sum.
uint64_t term_of(uint64_t content_hash, uint64_t zero_hash, uint64_t page) {
  if (content_hash == zero_hash) return 0;
  return mix64(content_hash ^ (page * 0x9E3779B97F4A7C15ull));
}

uint64_t zero_page_hash(size_t page_size) {
  const auto zeros = std::make_unique<uint8_t[]>(page_size);  // value-initialised: zero
  return xxh3(zeros.get(), page_size);
}

}  // namespace

uint64_t page_term(const uint8_t* data, size_t page_size, uint64_t page) {
  return term_of(xxh3(data, page_size), zero_page_hash(page_size), page);
}

uint64_t full_digest(const uint8_t* mem, size_t size, size_t page_size) {
  const uint64_t zero_hash = zero_page_hash(page_size);
  uint64_t sum = 0;
  for (uint64_t i = 0; i < size / page_size; ++i) {
    sum += term_of(xxh3(mem + i * page_size, page_size), zero_hash, i);
  }
  return sum;
}

PageTerms::PageTerms(uint64_t pages, size_t page_size)
    : pages_(pages), page_size_(page_size), zero_hash_(zero_page_hash(page_size)) {
  if (pages_ == 0) return;
  void* p = ::mmap(nullptr, pages_ * sizeof(uint64_t), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    throw std::system_error(errno, std::generic_category(),
                            "mmap of the verification digest's page terms (" +
                                std::to_string(pages_ * sizeof(uint64_t)) + " bytes)");
  }
  terms_ = static_cast<uint64_t*>(p);
}

PageTerms::~PageTerms() {
  if (terms_ != nullptr) ::munmap(terms_, pages_ * sizeof(uint64_t));
}

PageTerms::PageTerms(PageTerms&& o) noexcept
    : terms_(o.terms_), pages_(o.pages_), page_size_(o.page_size_), zero_hash_(o.zero_hash_) {
  o.terms_ = nullptr;
  o.pages_ = 0;
}

uint64_t PageTerms::update(uint32_t page, const uint8_t* data) {
  const uint64_t t = term_of(xxh3(data, page_size_), zero_hash_, page);
  const uint64_t delta = t - terms_[page];
  terms_[page] = t;
  return delta;
}

uint64_t PageTerms::clear(uint32_t first, uint32_t count) {
  uint64_t delta = 0;
  for (uint64_t i = first; i < uint64_t{first} + count; ++i) {
    // Reading an untouched term maps the shared zero page; only real terms are written.
    if (terms_[i] != 0) {
      delta -= terms_[i];
      terms_[i] = 0;
    }
  }
  return delta;
}

DigestTable::DigestTable(const std::vector<RamBlock>& blocks) {
  blocks_.reserve(blocks.size());
  for (const auto& b : blocks) blocks_.emplace_back(b.size / b.page_size, b.page_size);
}

void add_sums(DigestSums& into, const DigestSums& from) {
  if (into.size() < from.size()) into.resize(from.size(), 0);
  for (size_t i = 0; i < from.size(); ++i) into[i] += from[i];
}

std::vector<uint64_t> full_block_digests(const std::vector<RamBlock>& blocks) {
  std::vector<uint64_t> v;
  v.reserve(blocks.size());
  for (const auto& b : blocks) {
    v.push_back(full_digest(static_cast<const uint8_t*>(b.host), b.size, b.page_size));
  }
  return v;
}

}  // namespace ferry::ram
