// The synthetic guest memory image of `ferry demo/send/recv`: an anonymous mapping filled with
// a realistic mix of page contents, generated deterministically from a seed so both hosts of a
// send/recv pair can agree on it, and a fast content hash to compare two images.
//
// Mix (per unit of `unit` bytes: the RAM block's page size, 4 KiB or 2 MiB): about half zero
// units (never touched: the kernel's zero page), 30% text-like units (words of a small built-in
// vocabulary, as in file caches and heaps full of strings) and 20% random units (compressed or
// encrypted data). Which unit gets which content depends only on (seed, unit index).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ferry::cli {

enum class UnitKind : uint8_t { kZero = 0, kText = 1, kRandom = 2 };

// What the whole image holds: the mix above, every unit zero, or every unit random (the
// random units' bytes are those the mix would give them). `--content` of the CLI.
enum class ImageContent : uint8_t { kMix = 0, kZero = 1, kRandom = 2 };

// "mix", "zero", "random"; parse_image_content returns false for any other text.
const char* image_content_name(ImageContent c);
bool parse_image_content(std::string_view text, ImageContent& out);

struct ImageMix {
  uint64_t zero = 0;
  uint64_t text = 0;
  uint64_t random = 0;
  uint64_t total() const { return zero + text + random; }
};

// Private anonymous memory aligned to 2 MiB, unmapped on destruction. Untouched pages read as
// zero and cost no RAM until written.
class GuestMemory {
 public:
  // Throws std::system_error when the mapping fails. huge: ask for transparent huge pages.
  GuestMemory(size_t size, bool huge);
  ~GuestMemory();
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

  // Faults every page in for writing now (MADV_POPULATE_WRITE, Linux 5.14), so that receiving
  // later costs no page faults: a destination preallocating its guest RAM, as QEMU's
  // `prealloc=on`. The pages stay zero. Throws std::system_error when the kernel refuses
  // (EINVAL on kernels without it, ENOMEM when the memory is not there).
  void populate();

 private:
  void* map_ = nullptr;
  size_t map_size_ = 0;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// What content unit `index` of an image generated with `seed` gets.
UnitKind unit_kind(uint64_t seed, uint64_t index);

// Fills [mem, mem + size) (size a multiple of unit, unit a multiple of 64) as described above;
// zero units are not written (the memory must already be zero). threads = 0: one per CPU,
// at most 8. Returns how many units of each kind it made. Same seed, size and unit: same bytes.
ImageMix generate_image(uint8_t* mem, size_t size, size_t unit, uint64_t seed, unsigned threads = 0);
// The same for another content: kMix is the above; kZero writes nothing; kRandom fills every
// unit as the mix fills its random ones.
ImageMix generate_image(uint8_t* mem, size_t size, size_t unit, uint64_t seed, ImageContent content,
                        unsigned threads = 0);

// Content hash of [mem, mem + size) (size a multiple of 64): the same bytes give the same value
// whatever the thread count. Not cryptographic; for checking that a copy arrived intact.
uint64_t image_hash(const uint8_t* mem, size_t size, unsigned threads = 0);
std::string hash_hex(uint64_t h);

// Fills `out` (len bytes) with text-like content chosen by `key` (used by the writer too).
void fill_text(uint8_t* out, size_t len, uint64_t key);
// Fills `out` (len bytes, a multiple of 8) with pseudo-random bytes chosen by `key`.
void fill_random(uint8_t* out, size_t len, uint64_t key);

// splitmix64: the mixing step used for every seed-derived choice.
inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace ferry::cli
