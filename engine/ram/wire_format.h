// The bytes of a ferry RAM migration on its channels. Every packet, data or control, starts
// with the same fixed 40-byte little-endian header, so a receiver always reads 40 bytes, checks
// them, and only then knows how much more to read:
//
//   off size field
//    0  4   magic 'FRYP' (0x50595246)
//    4  1   version (kWireVersion)
//    5  1   type (PacketType)
//    6  2   flags (kFlagFinal on the last SYNC)
//    8  8   packet number: per channel and direction, 1, 2, 3, ... with no gap
//   16  4   block id (DATA) / 0
//   20  4   record count (DATA) / 0
//   24  4   page count (DATA: pages the records cover) / iteration (SYNC) / 0
//   28  4   payload bytes after the records (DATA) / body bytes (control)
//   32  4   checksum of the records (DATA) or the body (control), 0 when empty
//   36  4   checksum of bytes 0..35
//
// DATA: record_count 12-byte records, then the payloads in record order:
//   u32 page index in the block, u32 length, u8 kind (PageKind), u8 record flags, 2 reserved
//   zero bytes. Record flag kRecordPlaced (NORMAL only, only towards a destination that
//   advertised RDMA placement): the page's bytes were RDMA-written straight into the
//   destination page before this packet on the same channel; no payload follows for it.
//   NORMAL: length == page size, the page's bytes. ZERO: length = number of consecutive zero
//   pages starting at the index (a run), no payload. XBZRLE: a delta of `length` bytes against
//   the destination's current page. LZ4: `length` bytes of LZ4 block decoding to one page.
//   Page indices inside a packet strictly increase and runs do not overlap, so the receiver
//   may apply records in any order. NORMAL payloads are read straight into destination pages;
//   the other payloads together fit the owned-payload bound announced in HELLO.
// SYNC: sent by every channel at the end of each iteration (page count = iteration, counting
//   the bulk pass as 0). A receiver does not read past SYNC(n) until every channel has reached
//   SYNC(n), so an older copy of a page never lands after a newer one from another channel.
// Control (channel 0 only; bodies are little-endian fields, strings as u16 length + bytes):
//   HELLO     src->dst  u32 channels, u32 batch_pages, u32 owned_payload_cap, u32 flags,
//                       u32 nblocks, nblocks x (string name, u64 size, u64 page size)
//   HELLO_ACK dst->src  empty, or (when HELLO has kHelloFlagRdmaPlacement) the placement
//                       answer: u8 mode (0 = stream, 1 = RDMA placement), string reason (why
//                       stream; empty otherwise), and for mode 1: u32 channels, u32 nblocks,
//                       nblocks x (u32 block id, u64 addr, u64 length, channels x u64 rkey):
//                       each block registered with every channel. The source checks it against
//                       its own blocks (validate_placement) before writing anything.
//   SYNC_ACK  dst->src  data channel, placement only: header only, page count = iteration. A
//                       receiver sends it after its SYNC(n) passed the barrier, i.e. once every
//                       channel's records up to SYNC(n) were applied; a sender posts no RDMA
//                       WRITE of iteration n+1 before it has it (an in-flight ZERO/XBZRLE record
//                       of iteration n must not be applied over a newer placed page). None for
//                       the final SYNC. Packet numbers continue those of the direction.
//   ERROR     either    string message: the peer's reason for giving up (the destination sends
//                       it for refusals during setup and completion; mid-stream failures abort
//                       the channels instead, as no thread is free to write channel 0 then)
//   COMPLETE  src->dst  PageCounts sent (4 x u64) after the final SYNC
//   CONFIRM   dst->src  PageCounts received (4 x u64)
//   HASHES    dst->src  u32 nblocks, nblocks x u64 digest (engine/ram/page_digest.h: the sum of
//                       the page terms of each block). With kHelloFlagVerify, sent right after
//                       CONFIRM: the digests the receivers kept as pages landed. With
//                       kHelloFlagVerifyFull too, sent only when VERIFY asks, digests of a full
//                       re-hash of the blocks. (src->dst in one-way streams, below.)
//   VERIFY    src->dst  empty, kHelloFlagVerifyFull only: re-hash your blocks now
//   DEVICE    src->dst  (guest stopped, after the final SYNC, before COMPLETE; only when
//                       devices are registered) one device section, byte for byte as QEMU's
//                       savevm.c writes it (big-endian, unlike the other bodies): u8 0x04
//                       SECTION_FULL, be32 section id, u8 len + idstr, be32 instance id, be32
//                       version id, the vmstate body (engine/vmstate binary encoding), u8 0x7e
//                       SECTION_FOOTER, be32 section id. One packet per device.
//   VMDESC    src->dst  after the DEVICE packets: u32 number of DEVICE packets, then QEMU's
//                       vmdesc trailer: u8 0x06, be32 length, that many bytes of JSON describing
//                       every device (engine/vmstate/vmdesc_json.h). The destination loads the
//                       devices (post_load hooks) before it answers COMPLETE; a refusal is an
//                       ERROR in place of CONFIRM.
//   DONE      src->dst  u8 result (0 = completed, not verified; 1 = completed, digests equal;
//                       2 = failed: digests differ), string message (why, for 2). The
//                       destination may run the guest once it has DONE with result 0 or 1.
//
// One-way streams (a stream file, transport::kOneWay: `ferry send --connect file:PATH`): the
// same packets in the same order, minus every dst->src one. The source waits for no
// HELLO_ACK, CONFIRM or HASHES (stream placement only); with verify it writes HASHES src->dst
// (u32 nblocks, nblocks x u64 digest of what it sent, or of a full re-hash with
// kHelloFlagVerifyFull; the two are equal when nothing went wrong) before DONE, and the reader
// checks what it loaded against them. DONE's result is then 0. A reader sends nothing.
//
// Every decode function checks each field against what the receiver owns before anything is
// used, and throws MigrationError "channel C, packet P, offset O: what is wrong".
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/migration.h"
#include "ferry/transport.h"

namespace ferry::wire {

inline constexpr uint32_t kMagic = 0x50595246;  // "FRYP" in memory order
// 2: HASHES carry page digests (XXH3 page terms), sent unprompted after CONFIRM.
inline constexpr uint8_t kWireVersion = 2;
inline constexpr size_t kHeaderSize = 40;
inline constexpr size_t kRecordSize = 12;
// Bounds a receiver holds the sender to.
inline constexpr uint32_t kMaxBatchPages = 65536;
inline constexpr uint32_t kMaxBlocks = 4096;
inline constexpr uint32_t kMaxChannels = 256;
inline constexpr size_t kMaxControlBody = 4u << 20;
inline constexpr size_t kMaxOwnedPayload = 64u << 20;
// Fuzz builds (FERRY_FUZZ defines FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION) let a wrong
// checksum pass, so that mutated inputs reach the checks behind it; every other build refuses.
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
inline constexpr bool kChecksumsEnforced = false;
#else
inline constexpr bool kChecksumsEnforced = true;
#endif

enum class PacketType : uint8_t {
  kData = 1,
  kSync = 2,
  kHello = 3,
  kHelloAck = 4,
  kError = 5,
  kComplete = 6,
  kConfirm = 7,
  kVerify = 8,
  kHashes = 9,
  kDone = 10,
  kDevice = 11,  // device state (engine/device): one QEMU section per packet
  kVmdesc = 12,  // after the DEVICE packets: their count and the JSON description
  kSyncAck = 32,  // placement only; numbered apart from the sequential control types
};
const char* type_name(PacketType t);

inline constexpr uint16_t kFlagFinal = 1;       // SYNC: the last one; no DATA follows
inline constexpr uint32_t kHelloFlagVerify = 1;  // HELLO: HASHES follow CONFIRM (digests)
// HELLO: every source channel can RDMA-write; advertise your blocks in HELLO_ACK.
inline constexpr uint32_t kHelloFlagRdmaPlacement = 2;
// HELLO, with kHelloFlagVerify: VERIFY asks for a full re-hash instead of the kept digests.
inline constexpr uint32_t kHelloFlagVerifyFull = 4;
inline constexpr uint8_t kRecordPlaced = 1;  // record flags (byte 9)

struct Header {
  PacketType type = PacketType::kData;
  uint16_t flags = 0;
  uint64_t packet = 0;
  uint32_t block = 0;
  uint32_t records = 0;
  uint32_t pages = 0;    // DATA: pages covered; SYNC: iteration
  uint32_t payload = 0;  // DATA: payload bytes; control: body bytes
  uint32_t body_checksum = 0;
};

struct Record {
  uint32_t page = 0;
  uint32_t length = 0;
  PageKind kind = PageKind::kNormal;
  bool placed = false;  // kRecordPlaced: bytes already RDMA-written, no payload
};

// "channel C, packet P, offset O: what".
[[noreturn]] void fail(uint32_t channel, uint64_t packet, size_t offset, const std::string& what);

// 32-bit checksum for headers, records and bodies (not a security measure: it catches
// desynchronised streams and corrupted lengths before they are used).
uint32_t checksum32(const void* data, size_t len);

void encode_header(const Header& h, uint8_t out[kHeaderSize]);
// Checks magic, version, header checksum, type and packet number == expected_packet.
Header decode_header(const uint8_t in[kHeaderSize], uint32_t channel, uint64_t expected_packet);

inline void encode_record(const Record& r, uint8_t* out) {
  std::memcpy(out, &r.page, 4);  // little-endian hosts only (static_assert in the .cc)
  std::memcpy(out + 4, &r.length, 4);
  out[8] = static_cast<uint8_t>(r.kind);
  out[9] = r.placed ? kRecordPlaced : 0;
  out[10] = out[11] = 0;
}

// What the receiver owns, to check DATA against.
struct DataLimits {
  const std::vector<RamBlock>* blocks = nullptr;
  uint32_t max_records = 0;       // batch_pages from HELLO
  size_t owned_payload_cap = 0;   // from HELLO, bounded by kMaxOwnedPayload
  bool placement = false;         // we advertised RDMA placement: placed NORMAL records allowed
};
// Checks a DATA header's counts against the limits (before the records are read).
void check_data_header(const Header& h, uint32_t channel, const DataLimits& lim);
// Decodes and checks every record of a DATA packet (after check_data_header and after the
// records' checksum matched). Returns how many payload bytes do not go straight into pages.
size_t decode_records(const Header& h, const uint8_t* bytes, uint32_t channel,
                      const DataLimits& lim, Record* out);

// Little-endian body writer / bounds-checked reader for control messages.
class BodyWriter {
 public:
  void u8(uint8_t v) { buf_.push_back(v); }
  void u16(uint16_t v) { put(&v, 2); }
  void u32(uint32_t v) { put(&v, 4); }
  void u64(uint64_t v) { put(&v, 8); }
  void str(std::string_view s);
  const std::vector<uint8_t>& bytes() const { return buf_; }

 private:
  void put(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    buf_.insert(buf_.end(), b, b + n);
  }
  std::vector<uint8_t> buf_;
};

class BodyReader {
 public:
  BodyReader(const uint8_t* p, size_t n, uint32_t channel, uint64_t packet)
      : p_(p), n_(n), channel_(channel), packet_(packet) {}
  uint8_t u8(const char* field);
  uint16_t u16(const char* field);
  uint32_t u32(const char* field);
  uint64_t u64(const char* field);
  std::string str(const char* field);
  // Throws unless the whole body was consumed.
  void end();
  size_t offset() const { return kHeaderSize + off_; }

 private:
  void get(void* out, size_t len, const char* field);
  const uint8_t* p_;
  size_t n_;
  size_t off_ = 0;
  uint32_t channel_;
  uint64_t packet_;
};

struct Hello {
  uint32_t channels = 0;
  uint32_t batch_pages = 0;
  uint32_t owned_payload_cap = 0;
  uint32_t flags = 0;
  struct Block {
    std::string name;
    uint64_t size = 0;
    uint64_t page_size = 0;
  };
  std::vector<Block> blocks;
};
std::vector<uint8_t> encode_hello(const Hello& h);
Hello decode_hello(const uint8_t* body, size_t n, uint32_t channel, uint64_t packet);

// HELLO_ACK's placement answer (see the spec above).
struct HelloAck {
  uint8_t mode = 0;  // 0 stream, 1 RDMA placement
  std::string reason;
  uint32_t channels = 0;
  struct Block {
    uint32_t id = 0;
    uint64_t addr = 0;
    uint64_t length = 0;
    std::vector<uint64_t> keys;  // one per channel
  };
  std::vector<Block> blocks;
};
std::vector<uint8_t> encode_hello_ack(const HelloAck& a);
// Decodes the body (bounds only; validate_placement checks it against the source's blocks).
HelloAck decode_hello_ack(const uint8_t* body, size_t n, uint32_t channel, uint64_t packet);
// The source's check of the destination's advertisement: mode 1, the channel count, every block
// exactly once, length == the block's size, addr + length without overflow, keys of 32 bits.
// Returns [channel][block] regions; throws MigrationError naming what is wrong.
std::vector<std::vector<transport::RemoteRegion>> validate_placement(
    const HelloAck& a, const std::vector<RamBlock>& blocks, uint32_t channels);

void encode_counts(BodyWriter& w, const PageCounts& c);
PageCounts decode_counts(BodyReader& r);

// HASHES body: u32 nblocks, nblocks x u64 (the digest of each block). decode_hashes refuses a count
// other than `expected_blocks` ("HASHES for N blocks, <expected_what> M").
std::vector<uint8_t> encode_hashes(const std::vector<uint64_t>& hashes);
std::vector<uint64_t> decode_hashes(const uint8_t* body, size_t n, uint32_t channel,
                                    uint64_t packet, size_t expected_blocks,
                                    const char* expected_what = "expected");

// Largest non-NORMAL payload a sender puts in one packet for these blocks: one packet's
// worth of pages, at least one page, at most 1 MiB unless a page is bigger.
size_t owned_payload_cap(const std::vector<RamBlock>& blocks, size_t batch_pages);

}  // namespace ferry::wire
