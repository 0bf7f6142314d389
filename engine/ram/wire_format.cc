#include "engine/ram/wire_format.h"

#include <algorithm>
#include <bit>
#include <cstdio>

namespace ferry::wire {

// The encoders memcpy host integers: the format is little-endian, and so must the host be.
static_assert(std::endian::native == std::endian::little, "ferry's wire format assumes LE hosts");

const char* type_name(PacketType t) {
  switch (t) {
    case PacketType::kData: return "DATA";
    case PacketType::kSync: return "SYNC";
    case PacketType::kHello: return "HELLO";
    case PacketType::kHelloAck: return "HELLO_ACK";
    case PacketType::kError: return "ERROR";
    case PacketType::kComplete: return "COMPLETE";
    case PacketType::kConfirm: return "CONFIRM";
    case PacketType::kVerify: return "VERIFY";
    case PacketType::kHashes: return "HASHES";
    case PacketType::kDone: return "DONE";
    case PacketType::kDevice: return "DEVICE";
    case PacketType::kVmdesc: return "VMDESC";
    case PacketType::kSyncAck: return "SYNC_ACK";
  }
  return "?";
}

void fail(uint32_t channel, uint64_t packet, size_t offset, const std::string& what) {
  throw MigrationError("channel " + std::to_string(channel) + ", packet " +
                       std::to_string(packet) + ", offset " + std::to_string(offset) + ": " +
                       what);
}

uint32_t checksum32(const void* data, size_t len) {
  // FNV-1a over 8-byte words (then the tail), folded to 32 bits: cheap for a 40-byte header
  // and the ~1.5 KiB of records of a packet.
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t h = 0xcbf29ce484222325ull ^ len;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 29;
  }
  for (; i < len; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  h ^= h >> 32;
  return static_cast<uint32_t>(h);
}

namespace {
template <typename T>
void put(uint8_t* out, size_t off, T v) {
  std::memcpy(out + off, &v, sizeof v);
}
template <typename T>
T get(const uint8_t* in, size_t off) {
  T v;
  std::memcpy(&v, in + off, sizeof v);
  return v;
}
std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}
}  // namespace

void encode_header(const Header& h, uint8_t out[kHeaderSize]) {
  put<uint32_t>(out, 0, kMagic);
  out[4] = kWireVersion;
  out[5] = static_cast<uint8_t>(h.type);
  put<uint16_t>(out, 6, h.flags);
  put<uint64_t>(out, 8, h.packet);
  put<uint32_t>(out, 16, h.block);
  put<uint32_t>(out, 20, h.records);
  put<uint32_t>(out, 24, h.pages);
  put<uint32_t>(out, 28, h.payload);
  put<uint32_t>(out, 32, h.body_checksum);
  put<uint32_t>(out, 36, checksum32(out, 36));
}

Header decode_header(const uint8_t in[kHeaderSize], uint32_t channel, uint64_t expected) {
  const uint32_t magic = get<uint32_t>(in, 0);
  if (magic != kMagic) {
    fail(channel, expected, 0,
         "bad magic " + hex(magic) + " (expected " + hex(kMagic) + "): not a ferry packet");
  }
  if (in[4] != kWireVersion) {
    fail(channel, expected, 4,
         "wire version " + std::to_string(in[4]) + ", this side speaks " +
             std::to_string(kWireVersion));
  }
  const uint32_t sum = get<uint32_t>(in, 36);
  if (kChecksumsEnforced && sum != checksum32(in, 36)) {
    fail(channel, expected, 36,
         "header checksum " + hex(sum) + " does not match " + hex(checksum32(in, 36)));
  }
  Header h;
  h.packet = get<uint64_t>(in, 8);
  if (h.packet != expected) {
    fail(channel, expected, 8,
         "packet number " + std::to_string(h.packet) + " out of sequence (expected " +
             std::to_string(expected) + ")");
  }
  const uint8_t t = in[5];
  if ((t < static_cast<uint8_t>(PacketType::kData) || t > static_cast<uint8_t>(PacketType::kVmdesc)) &&
      t != static_cast<uint8_t>(PacketType::kSyncAck)) {
    fail(channel, expected, 5, "unknown packet type " + std::to_string(t));
  }
  h.type = static_cast<PacketType>(t);
  h.flags = get<uint16_t>(in, 6);
  h.block = get<uint32_t>(in, 16);
  h.records = get<uint32_t>(in, 20);
  h.pages = get<uint32_t>(in, 24);
  h.payload = get<uint32_t>(in, 28);
  h.body_checksum = get<uint32_t>(in, 32);
  if (h.flags & ~kFlagFinal) fail(channel, expected, 6, "unknown flags " + hex(h.flags));
  if (h.type != PacketType::kData) {
    if (h.block != 0 || h.records != 0) {
      fail(channel, expected, 16, std::string(type_name(h.type)) + " with block/record fields");
    }
    if (h.type != PacketType::kSync && h.type != PacketType::kSyncAck && h.pages != 0) {
      fail(channel, expected, 24, std::string(type_name(h.type)) + " with a page count");
    }
    if (h.payload > kMaxControlBody) {
      fail(channel, expected, 28,
           std::string(type_name(h.type)) + " body of " + std::to_string(h.payload) +
               " bytes exceeds " + std::to_string(kMaxControlBody));
    }
    if (h.type == PacketType::kSync && h.payload != 0) {
      fail(channel, expected, 28, "SYNC with a body");
    }
  }
  return h;
}

void check_data_header(const Header& h, uint32_t channel, const DataLimits& lim) {
  const auto& blocks = *lim.blocks;
  if (h.block >= blocks.size()) {
    fail(channel, h.packet, 16,
         "block id " + std::to_string(h.block) + " >= " + std::to_string(blocks.size()) +
             " blocks");
  }
  if (h.records == 0 || h.records > lim.max_records) {
    fail(channel, h.packet, 20,
         "record count " + std::to_string(h.records) + " not in 1.." +
             std::to_string(lim.max_records));
  }
  const RamBlock& b = blocks[h.block];
  const uint64_t npages = b.size / b.page_size;
  if (h.pages < h.records || h.pages > npages) {
    fail(channel, h.packet, 24,
         "page count " + std::to_string(h.pages) + " for " + std::to_string(h.records) +
             " records in block '" + b.name + "' of " + std::to_string(npages) + " pages");
  }
  const uint64_t max_payload =
      static_cast<uint64_t>(h.records) * b.page_size;  // every record at most one page
  if (h.payload > max_payload) {
    fail(channel, h.packet, 28,
         "payload " + std::to_string(h.payload) + " bytes exceeds " + std::to_string(h.records) +
             " pages of " + std::to_string(b.page_size));
  }
}

size_t decode_records(const Header& h, const uint8_t* bytes, uint32_t channel,
                      const DataLimits& lim, Record* out) {
  const RamBlock& b = (*lim.blocks)[h.block];
  const uint64_t npages = b.size / b.page_size;
  uint64_t next_free = 0;  // first page index a following record may use
  uint64_t payload = 0;
  uint64_t owned = 0;
  uint64_t pages = 0;
  for (uint32_t i = 0; i < h.records; ++i) {
    const uint8_t* r = bytes + i * kRecordSize;
    const size_t off = kHeaderSize + i * kRecordSize;
    Record rec;
    rec.page = get<uint32_t>(r, 0);
    rec.length = get<uint32_t>(r, 4);
    const uint8_t kind = r[8];
    if (rec.page >= npages) {
      fail(channel, h.packet, off,
           "record " + std::to_string(i) + ": page index " + std::to_string(rec.page) +
               " >= " + std::to_string(npages) + " pages in block '" + b.name + "'");
    }
    if (rec.page < next_free) {
      fail(channel, h.packet, off,
           "record " + std::to_string(i) + ": page index " + std::to_string(rec.page) +
               " not after the previous record's pages");
    }
    if (kind > static_cast<uint8_t>(PageKind::kLz4)) {
      fail(channel, h.packet, off + 8,
           "record " + std::to_string(i) + ": unknown page kind " + std::to_string(kind));
    }
    if (r[10] | r[11]) {
      fail(channel, h.packet, off + 10, "record " + std::to_string(i) + ": reserved bytes set");
    }
    if (r[9] != 0 && (r[9] != kRecordPlaced || !lim.placement ||
                      kind != static_cast<uint8_t>(PageKind::kNormal))) {
      fail(channel, h.packet, off + 9,
           "record " + std::to_string(i) + ": record flags " + std::to_string(r[9]) +
               (lim.placement ? " (only NORMAL pages can be placed)"
                              : " (placed page, but no RDMA placement was advertised)"));
    }
    rec.placed = r[9] == kRecordPlaced;
    rec.kind = static_cast<PageKind>(kind);
    uint64_t covers = 1;
    switch (rec.kind) {
      case PageKind::kNormal:
        if (rec.length != b.page_size) {
          fail(channel, h.packet, off + 4,
               "record " + std::to_string(i) + ": NORMAL length " + std::to_string(rec.length) +
                   " != page size " + std::to_string(b.page_size));
        }
        if (!rec.placed) payload += rec.length;
        break;
      case PageKind::kZero:
        covers = rec.length;
        if (covers == 0 || rec.page + covers > npages) {
          fail(channel, h.packet, off + 4,
               "record " + std::to_string(i) + ": ZERO run of " + std::to_string(rec.length) +
                   " pages from " + std::to_string(rec.page) + " overruns block '" + b.name +
                   "' of " + std::to_string(npages) + " pages");
        }
        break;
      case PageKind::kXbzrle:
      case PageKind::kLz4:
        if (rec.length > b.page_size || (rec.kind == PageKind::kLz4 && rec.length == 0)) {
          fail(channel, h.packet, off + 4,
               "record " + std::to_string(i) + ": " +
                   (rec.kind == PageKind::kLz4 ? "LZ4" : "XBZRLE") + " length " +
                   std::to_string(rec.length) + " not within page size " +
                   std::to_string(b.page_size));
        }
        payload += rec.length;
        owned += rec.length;
        break;
    }
    next_free = rec.page + covers;
    pages += covers;
    out[i] = rec;
  }
  if (pages != h.pages) {
    fail(channel, h.packet, 24,
         "header says " + std::to_string(h.pages) + " pages, records cover " +
             std::to_string(pages));
  }
  if (payload != h.payload) {
    fail(channel, h.packet, 28,
         "header says " + std::to_string(h.payload) + " payload bytes, records add up to " +
             std::to_string(payload));
  }
  if (owned > lim.owned_payload_cap) {
    fail(channel, h.packet, kHeaderSize,
         "encoded payload " + std::to_string(owned) + " bytes exceeds the announced " +
             std::to_string(lim.owned_payload_cap));
  }
  return static_cast<size_t>(owned);
}

void BodyWriter::str(std::string_view s) {
  u16(static_cast<uint16_t>(std::min<size_t>(s.size(), 65535)));
  put(s.data(), std::min<size_t>(s.size(), 65535));
}

void BodyReader::get(void* out, size_t len, const char* field) {
  if (len > n_ - off_) {
    fail(channel_, packet_, offset(),
         std::string("body ends inside field '") + field + "' (" + std::to_string(n_) +
             " bytes)");
  }
  std::memcpy(out, p_ + off_, len);
  off_ += len;
}
uint8_t BodyReader::u8(const char* f) { uint8_t v; get(&v, 1, f); return v; }
uint16_t BodyReader::u16(const char* f) { uint16_t v; get(&v, 2, f); return v; }
uint32_t BodyReader::u32(const char* f) { uint32_t v; get(&v, 4, f); return v; }
uint64_t BodyReader::u64(const char* f) { uint64_t v; get(&v, 8, f); return v; }
std::string BodyReader::str(const char* f) {
  const uint16_t len = u16(f);
  std::string s(len, '\0');
  get(s.data(), len, f);
  return s;
}
void BodyReader::end() {
  if (off_ != n_) {
    fail(channel_, packet_, offset(),
         std::to_string(n_ - off_) + " unexpected bytes at the end of the body");
  }
}

std::vector<uint8_t> encode_hello(const Hello& h) {
  BodyWriter w;
  w.u32(h.channels);
  w.u32(h.batch_pages);
  w.u32(h.owned_payload_cap);
  w.u32(h.flags);
  w.u32(static_cast<uint32_t>(h.blocks.size()));
  for (const auto& b : h.blocks) {
    w.str(b.name);
    w.u64(b.size);
    w.u64(b.page_size);
  }
  return w.bytes();
}

Hello decode_hello(const uint8_t* body, size_t n, uint32_t channel, uint64_t packet) {
  BodyReader r(body, n, channel, packet);
  Hello h;
  h.channels = r.u32("channels");
  h.batch_pages = r.u32("batch_pages");
  h.owned_payload_cap = r.u32("owned_payload_cap");
  h.flags = r.u32("flags");
  if (h.channels == 0 || h.channels > kMaxChannels) {
    fail(channel, packet, kHeaderSize, "HELLO channel count " + std::to_string(h.channels));
  }
  if (h.batch_pages == 0 || h.batch_pages > kMaxBatchPages) {
    fail(channel, packet, kHeaderSize + 4, "HELLO batch_pages " + std::to_string(h.batch_pages));
  }
  if (h.owned_payload_cap > kMaxOwnedPayload) {
    fail(channel, packet, kHeaderSize + 8,
         "HELLO owned payload bound " + std::to_string(h.owned_payload_cap));
  }
  const uint32_t nblocks = r.u32("nblocks");
  if (nblocks > kMaxBlocks) {
    fail(channel, packet, kHeaderSize + 16, "HELLO block count " + std::to_string(nblocks));
  }
  for (uint32_t i = 0; i < nblocks; ++i) {
    Hello::Block b;
    b.name = r.str("block name");
    b.size = r.u64("block size");
    b.page_size = r.u64("block page size");
    h.blocks.push_back(std::move(b));
  }
  r.end();
  return h;
}

std::vector<uint8_t> encode_hello_ack(const HelloAck& a) {
  BodyWriter w;
  w.u8(a.mode);
  w.str(a.reason);
  if (a.mode != 1) return w.bytes();
  w.u32(a.channels);
  w.u32(static_cast<uint32_t>(a.blocks.size()));
  for (const auto& b : a.blocks) {
    w.u32(b.id);
    w.u64(b.addr);
    w.u64(b.length);
    for (uint64_t k : b.keys) w.u64(k);
  }
  return w.bytes();
}

HelloAck decode_hello_ack(const uint8_t* body, size_t n, uint32_t channel, uint64_t packet) {
  BodyReader r(body, n, channel, packet);
  HelloAck a;
  a.mode = r.u8("placement mode");
  a.reason = r.str("placement reason");
  if (a.mode > 1) {
    fail(channel, packet, kHeaderSize, "HELLO_ACK placement mode " + std::to_string(a.mode));
  }
  if (a.mode == 1) {
    a.channels = r.u32("placement channels");
    if (a.channels == 0 || a.channels > kMaxChannels) {
      fail(channel, packet, r.offset() - 4,
           "HELLO_ACK placement for " + std::to_string(a.channels) + " channels");
    }
    const uint32_t nblocks = r.u32("placement nblocks");
    if (nblocks > kMaxBlocks) {
      fail(channel, packet, r.offset() - 4,
           "HELLO_ACK placement for " + std::to_string(nblocks) + " blocks");
    }
    for (uint32_t i = 0; i < nblocks; ++i) {
      HelloAck::Block b;
      b.id = r.u32("placement block id");
      b.addr = r.u64("placement block address");
      b.length = r.u64("placement block length");
      for (uint32_t c = 0; c < a.channels; ++c) b.keys.push_back(r.u64("placement rkey"));
      a.blocks.push_back(std::move(b));
    }
  }
  r.end();
  return a;
}

std::vector<std::vector<transport::RemoteRegion>> validate_placement(
    const HelloAck& a, const std::vector<RamBlock>& blocks, uint32_t channels) {
  auto bad = [](const std::string& what) -> MigrationError {
    return MigrationError("destination's RDMA placement advertisement rejected: " + what);
  };
  if (a.mode != 1) throw bad("mode " + std::to_string(a.mode) + " is not RDMA placement");
  if (a.channels != channels) {
    throw bad("it covers " + std::to_string(a.channels) + " channels, the session has " +
              std::to_string(channels));
  }
  if (a.blocks.size() != blocks.size()) {
    throw bad(std::to_string(a.blocks.size()) + " blocks advertised, the source has " +
              std::to_string(blocks.size()));
  }
  std::vector<std::vector<transport::RemoteRegion>> out(
      channels, std::vector<transport::RemoteRegion>(blocks.size()));
  std::vector<bool> seen(blocks.size(), false);
  for (const auto& b : a.blocks) {
    if (b.id >= blocks.size()) {
      throw bad("block id " + std::to_string(b.id) + " but the source has only " +
                std::to_string(blocks.size()) + " blocks");
    }
    const RamBlock& mine = blocks[b.id];
    if (seen[b.id]) throw bad("block '" + mine.name + "' advertised twice");
    seen[b.id] = true;
    if (b.length != mine.size) {
      throw bad("block '" + mine.name + "': advertised length " + std::to_string(b.length) +
                " != block size " + std::to_string(mine.size));
    }
    if (b.addr == 0 || b.addr + b.length < b.addr) {
      throw bad("block '" + mine.name + "': region at " + std::to_string(b.addr) + " of " +
                std::to_string(b.length) + " bytes " +
                (b.addr == 0 ? "has a null address" : "wraps the address space"));
    }
    if (b.keys.size() != channels) {
      throw bad("block '" + mine.name + "': " + std::to_string(b.keys.size()) + " keys for " +
                std::to_string(channels) + " channels");
    }
    for (uint32_t c = 0; c < channels; ++c) {
      if (b.keys[c] > 0xFFFFFFFFull) {
        throw bad("block '" + mine.name + "', channel " + std::to_string(c) + ": key " +
                  std::to_string(b.keys[c]) + " is not a 32-bit rkey");
      }
      out[c][b.id] = transport::RemoteRegion{b.addr, b.length, b.keys[c]};
    }
  }
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (!seen[i]) throw bad("block '" + blocks[i].name + "' missing");
  }
  return out;
}

void encode_counts(BodyWriter& w, const PageCounts& c) {
  w.u64(c.normal);
  w.u64(c.zero);
  w.u64(c.xbzrle);
  w.u64(c.lz4);
}

PageCounts decode_counts(BodyReader& r) {
  PageCounts c;
  c.normal = r.u64("normal pages");
  c.zero = r.u64("zero pages");
  c.xbzrle = r.u64("xbzrle pages");
  c.lz4 = r.u64("lz4 pages");
  return c;
}

std::vector<uint8_t> encode_hashes(const std::vector<uint64_t>& hashes) {
  BodyWriter w;
  w.u32(static_cast<uint32_t>(hashes.size()));
  for (uint64_t h : hashes) w.u64(h);
  return w.bytes();
}

std::vector<uint64_t> decode_hashes(const uint8_t* body, size_t n, uint32_t channel,
                                    uint64_t packet, size_t expected_blocks,
                                    const char* expected_what) {
  BodyReader r(body, n, channel, packet);
  const uint32_t nb = r.u32("nblocks");
  if (nb != expected_blocks) {
    fail(channel, packet, kHeaderSize,
         "HASHES for " + std::to_string(nb) + " blocks, " + expected_what + " " +
             std::to_string(expected_blocks));
  }
  std::vector<uint64_t> v;
  for (uint32_t i = 0; i < nb; ++i) v.push_back(r.u64("hash"));
  r.end();
  return v;
}

size_t owned_payload_cap(const std::vector<RamBlock>& blocks, size_t batch_pages) {
  size_t max_page = 4096;
  for (const auto& b : blocks) max_page = std::max(max_page, b.page_size);
  const size_t batch_bytes = std::min<size_t>(batch_pages * max_page, 1u << 20);
  return std::min(std::max(batch_bytes, max_page), kMaxOwnedPayload);
}

}  // namespace ferry::wire
