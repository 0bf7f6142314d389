// Replays QEMU RAM section payloads (the "ram" START/PART/END sections, migration/ram.c
// ram_load_precopy) into a RamImage. One RamLoader lives for the whole stream because the block
// of the previous page record persists across sections: a PART often starts with CONTINUE.
#pragma once

#include <cstdint>

#include "engine/stream/byte_reader.h"
#include "engine/stream/ram_image.h"

namespace ferry::stream {

// RAM record flags: the low bits of the be64 that starts every record.
namespace ram_flag {
inline constexpr uint64_t kZero = 0x02;
inline constexpr uint64_t kMemSize = 0x04;
inline constexpr uint64_t kPage = 0x08;
inline constexpr uint64_t kEos = 0x10;
inline constexpr uint64_t kContinue = 0x20;
inline constexpr uint64_t kXbzrle = 0x40;
inline constexpr uint64_t kHook = 0x80;
inline constexpr uint64_t kCompressPage = 0x100;
inline constexpr uint64_t kMultifdFlush = 0x200;
}  // namespace ram_flag

// What one RAM payload contained, as counted by the corpus .walk.txt files.
struct RamSectionCounts {
  uint64_t mem_size = 0;
  uint64_t zero = 0;
  uint64_t normal = 0;
  uint64_t xbzrle = 0;
  uint64_t named = 0;      // page records that carry a block name
  uint64_t continued = 0;  // page records with CONTINUE (block of the previous record)
  uint64_t eos = 0;
  uint64_t multifd_flush = 0;
  bool first_record_continue = false;
  uint64_t pages() const { return zero + normal + xbzrle; }
};

class RamLoader {
 public:
  // page_size: TARGET_PAGE_SIZE (the vmdesc's page_size); max_total_bytes caps what MEM_SIZE may
  // ask us to allocate, since the stream is untrusted.
  RamLoader(RamImage& image, uint32_t page_size, uint64_t max_total_bytes);

  // Reads records up to and including EOS. `counts` is updated as records are read, so a caller
  // that catches the ParseError still knows what came before it.
  void load_section(ByteReader& r, RamSectionCounts& counts);

  bool has_blocks() const { return !image_.blocks().empty(); }

 private:
  void read_mem_size(ByteReader& r, uint64_t total);
  RamBlock& block_for(ByteReader& r, uint64_t flags, uint64_t record_offset,
                      RamSectionCounts& counts);
  uint8_t* page_at(RamBlock& block, uint64_t offset, uint64_t record_offset) const;
  void load_xbzrle(ByteReader& r, RamBlock& block, uint64_t offset, uint8_t* page);

  RamImage& image_;
  RamBlock* current_ = nullptr;
  uint32_t page_size_;
  uint64_t max_total_bytes_;
};

}  // namespace ferry::stream
