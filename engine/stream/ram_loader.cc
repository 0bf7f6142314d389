#include "engine/stream/ram_loader.h"

#include <cstring>

#include "codecs/xbzrle.h"
#include "codecs/zero_page.h"

namespace ferry::stream {
namespace {

// The byte after an XBZRLE record's block name: QEMU's ENCODING_FLAG_XBZRLE.
constexpr uint8_t kXbzrleEncoding = 0x01;

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

}  // namespace

RamLoader::RamLoader(RamImage& image, uint32_t page_size, uint64_t max_total_bytes)
    : image_(image), page_size_(page_size), max_total_bytes_(max_total_bytes) {}

void RamLoader::load_section(ByteReader& r, RamSectionCounts& counts) {
  const uint64_t flag_mask = page_size_ - 1;
  bool first = true;
  for (;;) {
    const uint64_t record_offset = r.pos();
    const uint64_t word = r.be64("RAM record header (be64 offset|flags)");
    uint64_t flags = word & flag_mask;
    const uint64_t addr = word & ~flag_mask;
    if (first) counts.first_record_continue = (flags & ram_flag::kContinue) != 0;
    first = false;

    // QEMU treats the kinds as exclusive (it switches on flags without CONTINUE), so do we.
    const uint64_t kind = flags & ~ram_flag::kContinue;
    switch (kind) {
      case ram_flag::kMemSize:
        ++counts.mem_size;
        read_mem_size(r, addr);
        break;
      case ram_flag::kZero: {
        RamBlock& b = block_for(r, flags, record_offset, counts);
        uint8_t* page = page_at(b, addr, record_offset);
        const uint64_t fill_offset = r.pos();
        const uint8_t fill = r.u8("ZERO page fill byte");
        if (fill != 0) {
          ByteReader::fail_at(fill_offset, "ZERO page record with fill byte " + hex(fill) +
                                               " (QEMU only sends 0)");
        }
        // Only write when needed: untouched parts of the image stay unallocated.
        if (!ferry::is_zero_page(page, page_size_)) std::memset(page, 0, page_size_);
        ++counts.zero;
        ++b.counts.zero;
        break;
      }
      case ram_flag::kPage: {
        RamBlock& b = block_for(r, flags, record_offset, counts);
        uint8_t* page = page_at(b, addr, record_offset);
        auto src = r.bytes(page_size_, "page data");
        std::memcpy(page, src.data(), page_size_);
        ++counts.normal;
        ++b.counts.normal;
        break;
      }
      case ram_flag::kXbzrle: {
        RamBlock& b = block_for(r, flags, record_offset, counts);
        uint8_t* page = page_at(b, addr, record_offset);
        load_xbzrle(r, b, addr, page);
        ++counts.xbzrle;
        ++b.counts.xbzrle;
        break;
      }
      case ram_flag::kMultifdFlush:
        ++counts.multifd_flush;
        break;
      case ram_flag::kEos:
        ++counts.eos;
        return;
      default:
        if (flags & ram_flag::kHook) {
          r.fail_at(record_offset, "RAM record with HOOK flag (RDMA): not supported in a file");
        }
        if (flags & ram_flag::kCompressPage) {
          r.fail_at(record_offset, "RAM record with COMPRESS_PAGE flag: not supported");
        }
        r.fail_at(record_offset, "unknown combination of RAM record flags " + hex(flags));
    }
  }
}

void RamLoader::read_mem_size(ByteReader& r, uint64_t total) {
  // A second MEM_SIZE (QEMU accepts one per section) must describe the blocks we already have.
  const bool verify = has_blocks();
  if (!verify && total > max_total_bytes_) {
    r.fail("MEM_SIZE announces " + std::to_string(total) + " bytes of RAM, more than the limit of " +
           std::to_string(max_total_bytes_));
  }
  uint64_t left = total;
  while (left > 0) {
    const uint64_t entry_offset = r.pos();
    std::string name = r.short_string("RAM block name");
    const uint64_t length = r.be64("RAM block used_length");
    if (length > left) {
      r.fail_at(entry_offset, "MEM_SIZE block " + quoted(name) + " is " + hex(length) +
                                  " bytes, more than the " + hex(left) +
                                  " bytes left of the announced total " + hex(total));
    }
    left -= length;
    RamBlock* existing = image_.find(name);
    if (verify) {
      if (existing == nullptr) {
        r.fail_at(entry_offset, "MEM_SIZE repeats with a new block " + quoted(name));
      }
      if (existing->size() != length) {
        r.fail_at(entry_offset, "MEM_SIZE repeats block " + quoted(name) + " with size " +
                                    hex(length) + " instead of " + hex(existing->size()));
      }
      continue;
    }
    if (existing != nullptr) {
      r.fail_at(entry_offset, "MEM_SIZE lists block " + quoted(name) + " twice");
    }
    if (image_.add(name, length) == nullptr) {
      r.fail_at(entry_offset,
                "cannot allocate RAM block " + quoted(name) + " of " + hex(length) + " bytes");
    }
  }
}

RamBlock& RamLoader::block_for(ByteReader& r, uint64_t flags, uint64_t record_offset,
                               RamSectionCounts& counts) {
  if (flags & ram_flag::kContinue) {
    if (current_ == nullptr) {
      r.fail_at(record_offset, "page record with CONTINUE but no previous page record named a block");
    }
    ++counts.continued;
    return *current_;
  }
  const uint64_t name_offset = r.pos();
  std::string name = r.short_string("RAM block name");
  RamBlock* b = image_.find(name);
  if (b == nullptr) {
    r.fail_at(name_offset, "unknown RAM block " + quoted(name) +
                               (has_blocks() ? " (not in MEM_SIZE)" : " (no MEM_SIZE record yet)"));
  }
  ++counts.named;
  current_ = b;
  return *b;
}

uint8_t* RamLoader::page_at(RamBlock& block, uint64_t offset, uint64_t record_offset) const {
  if (offset >= block.size() || block.size() - offset < page_size_) {
    ByteReader::fail_at(record_offset, "page offset " + hex(offset) + " is beyond RAM block " +
                                           quoted(block.name()) + " (size " + hex(block.size()) +
                                           ")");
  }
  return block.data() + offset;
}

void RamLoader::load_xbzrle(ByteReader& r, RamBlock& block, uint64_t offset, uint8_t* page) {
  const uint64_t header_offset = r.pos();
  const uint8_t encoding = r.u8("XBZRLE encoding flag");
  if (encoding != kXbzrleEncoding) {
    r.fail_at(header_offset, "XBZRLE record with encoding flag " + hex(encoding) + " (expected 0x1)");
  }
  const uint64_t len_offset = r.pos();
  const uint16_t len = r.be16("XBZRLE delta length");
  if (len == 0 || len > page_size_) {
    r.fail_at(len_offset, "XBZRLE delta length " + std::to_string(len) + " is outside 1.." +
                              std::to_string(page_size_));
  }
  const uint64_t delta_offset = r.pos();
  auto delta = r.bytes(len, "XBZRLE delta");
  const auto res = ferry::xbzrle::decode(delta.data(), delta.size(), page, page_size_);
  if (res.error != ferry::xbzrle::DecodeError::kOk) {
    r.fail_at(delta_offset + res.offset,
              std::string("XBZRLE delta for block ") + quoted(block.name()) + " page " +
                  hex(offset) + " rejected: " + ferry::xbzrle::decode_error_string(res.error));
  }
}

}  // namespace ferry::stream
