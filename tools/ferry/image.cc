#include "tools/ferry/image.h"

#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace ferry::cli {
namespace {

constexpr size_t kAlign = size_t{2} << 20;

// A small vocabulary: enough variety for text to look like text, little enough that LZ4 finds
// plenty of matches (as it does in real page caches).
constexpr std::array<std::string_view, 64> kWords = {
    "the",       "migration", "page",     "memory",  "guest",    "host",     "dirty",
    "channel",   "stream",    "device",   "state",   "kernel",   "socket",   "buffer",
    "network",   "thread",    "queue",    "virtual", "machine",  "ferry",    "transfer",
    "bandwidth", "downtime",  "iteration", "source", "destination", "block", "section",
    "and",       "of",        "to",       "in",      "is",       "that",     "for",
    "with",      "on",        "as",       "by",      "at",       "from",     "this",
    "write",     "read",      "copy",     "zero",    "delta",    "cache",    "hit",
    "miss",      "vector",    "register", "interrupt", "timer",  "clock",    "disk",
    "file",      "system",    "process",  "user",    "data",     "error",    "value",
    "record"};

unsigned pick_threads(unsigned threads) {
  if (threads != 0) return threads;
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  return std::min(hw, 8u);
}

template <typename Fn>
void parallel_for(size_t n, unsigned threads, Fn fn) {
  threads = static_cast<unsigned>(std::min<size_t>(pick_threads(threads), std::max<size_t>(n, 1)));
  if (threads <= 1) {
    fn(0, n, 0u);
    return;
  }
  std::vector<std::thread> pool;
  const size_t per = (n + threads - 1) / threads;
  for (unsigned t = 0; t < threads; ++t) {
    const size_t b = std::min(n, per * t);
    const size_t e = std::min(n, b + per);
    pool.emplace_back([=, &fn] { fn(b, e, t); });
  }
  for (auto& th : pool) th.join();
}

// XXH3 (libxxhash, inlined): the image check runs at memory bandwidth.
uint64_t hash_range(const uint8_t* p, size_t len, uint64_t seed) {
  return XXH3_64bits_withSeed(p, len, seed);
}

}  // namespace

GuestMemory::GuestMemory(size_t size, bool huge) : size_(size) {
  map_size_ = size + kAlign;
  map_ = ::mmap(nullptr, map_size_, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    throw std::system_error(errno, std::generic_category(),
                            "mmap of " + std::to_string(size) + " bytes of guest memory");
  }
  const auto base = reinterpret_cast<uintptr_t>(map_);
  data_ = reinterpret_cast<uint8_t*>((base + kAlign - 1) & ~(kAlign - 1));
  if (huge) ::madvise(data_, size_, MADV_HUGEPAGE);
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; Debian 12's headers may lack it
#endif

namespace {

// MemAvailable of /proc/meminfo in bytes; 0 when it cannot be read.
uint64_t available_memory() {
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (f == nullptr) return 0;
  char line[256];
  unsigned long long kib = 0;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::sscanf(line, "MemAvailable: %llu kB", &kib) == 1) break;
  }
  std::fclose(f);
  return uint64_t{kib} << 10;
}

}  // namespace

void GuestMemory::populate() {
  // Faulting in more than the machine has would end in the OOM killer, not in an error.
  if (const uint64_t avail = available_memory(); avail != 0 && size_ > avail) {
    throw std::system_error(ENOMEM, std::generic_category(),
                            "preallocating " + std::to_string(size_) +
                                " bytes of guest memory: only " + std::to_string(avail) +
                                " bytes are available (MemAvailable)");
  }
  if (::madvise(data_, size_, MADV_POPULATE_WRITE) != 0) {
    throw std::system_error(errno, std::generic_category(),
                            "preallocating " + std::to_string(size_) +
                                " bytes of guest memory (MADV_POPULATE_WRITE)");
  }
}

GuestMemory::~GuestMemory() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

UnitKind unit_kind(uint64_t seed, uint64_t index) {
  const uint64_t r = mix64(seed * 0x100000001B3ull ^ mix64(index)) % 100;
  if (r < 50) return UnitKind::kZero;
  if (r < 80) return UnitKind::kText;
  return UnitKind::kRandom;
}

void fill_random(uint8_t* out, size_t len, uint64_t key) {
  uint64_t s = mix64(key ^ 0xA5A5A5A5DEADBEEFull);
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    s += 0x9E3779B97F4A7C15ull;
    uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    std::memcpy(out + i, &z, 8);
  }
  for (; i < len; ++i) out[i] = static_cast<uint8_t>(mix64(s + i));
}

// Words drawn one by one: ~300 MB/s, too slow for gigabytes, so it only builds the corpus
// that fill_text() copies windows of.
void compose_text(uint8_t* out, size_t len, uint64_t key) {
  uint64_t s = mix64(key ^ 0x5EED7E77ull);
  size_t i = 0;
  size_t line = 0;
  while (i < len) {
    s = mix64(s);
    // One draw picks up to 4 words (6 bits each) and the punctuation after the last one.
    for (int k = 0; k < 4 && i < len; ++k) {
      const std::string_view w = kWords[(s >> (6 * k)) & 63];
      const size_t n = std::min(w.size(), len - i);
      std::memcpy(out + i, w.data(), n);
      i += n;
      line += n;
      if (i < len) {
        char sep = ' ';
        if (line > 72) {
          sep = '\n';
          line = 0;
        } else if (((s >> 40) & 15) == 0 && k == 3) {
          sep = '.';
        }
        out[i++] = static_cast<uint8_t>(sep);
        ++line;
      }
    }
  }
}

namespace {

constexpr size_t kCorpus = size_t{1} << 20;

const uint8_t* corpus() {
  static const std::vector<uint8_t> text = [] {
    std::vector<uint8_t> t(kCorpus);
    compose_text(t.data(), t.size(), 0x7E47C0DE);
    return t;
  }();
  return text.data();
}

}  // namespace

void fill_text(uint8_t* out, size_t len, uint64_t key) {
  // 4 KiB windows of the corpus at offsets chosen by the key: as fast as memcpy.
  const uint8_t* c = corpus();
  constexpr size_t kWindow = 4096;
  for (size_t i = 0; i < len; i += kWindow) {
    const size_t n = std::min(kWindow, len - i);
    key = mix64(key);
    std::memcpy(out + i, c + key % (kCorpus - kWindow + 1), n);
  }
}

const char* image_content_name(ImageContent c) {
  switch (c) {
    case ImageContent::kMix: return "mix";
    case ImageContent::kZero: return "zero";
    case ImageContent::kRandom: return "random";
  }
  return "?";
}

bool parse_image_content(std::string_view text, ImageContent& out) {
  for (ImageContent c : {ImageContent::kMix, ImageContent::kZero, ImageContent::kRandom}) {
    if (text == image_content_name(c)) {
      out = c;
      return true;
    }
  }
  return false;
}

ImageMix generate_image(uint8_t* mem, size_t size, size_t unit, uint64_t seed, unsigned threads) {
  return generate_image(mem, size, unit, seed, ImageContent::kMix, threads);
}

namespace {
UnitKind content_kind(ImageContent content, uint64_t seed, uint64_t index) {
  switch (content) {
    case ImageContent::kZero: return UnitKind::kZero;
    case ImageContent::kRandom: return UnitKind::kRandom;
    case ImageContent::kMix: break;
  }
  return unit_kind(seed, index);
}
}  // namespace

ImageMix generate_image(uint8_t* mem, size_t size, size_t unit, uint64_t seed, ImageContent content,
                        unsigned threads) {
  const size_t units = size / unit;
  std::vector<ImageMix> per(pick_threads(threads));
  parallel_for(units, static_cast<unsigned>(per.size()), [&](size_t b, size_t e, unsigned t) {
    ImageMix m;
    for (size_t u = b; u < e; ++u) {
      uint8_t* p = mem + u * unit;
      const uint64_t key = mix64(seed) ^ (u * 0xD6E8FEB86659FD93ull);
      switch (content_kind(content, seed, u)) {
        case UnitKind::kZero: ++m.zero; break;
        case UnitKind::kText: fill_text(p, unit, key); ++m.text; break;
        case UnitKind::kRandom: fill_random(p, unit, key); ++m.random; break;
      }
    }
    per[t] = m;
  });
  ImageMix total;
  for (const ImageMix& m : per) {
    total.zero += m.zero;
    total.text += m.text;
    total.random += m.random;
  }
  return total;
}

uint64_t image_hash(const uint8_t* mem, size_t size, unsigned threads) {
  // Fixed 16 MiB chunks hashed in parallel, then their hashes in order: independent of threads.
  constexpr size_t kChunk = size_t{16} << 20;
  const size_t chunks = (size + kChunk - 1) / kChunk;
  std::vector<uint64_t> hashes(chunks);
  parallel_for(chunks, threads, [&](size_t b, size_t e, unsigned) {
    for (size_t c = b; c < e; ++c) {
      const size_t off = c * kChunk;
      hashes[c] = hash_range(mem + off, std::min(kChunk, size - off), c);
    }
  });
  return hash_range(reinterpret_cast<const uint8_t*>(hashes.data()), hashes.size() * 8, size);
}

std::string hash_hex(uint64_t h) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace ferry::cli
