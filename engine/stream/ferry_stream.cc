#include "engine/stream/ferry_stream.h"

#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <unordered_map>
#include <utility>

#include "codecs/lz4_page.h"
#include "codecs/xbzrle.h"
#include "ferry/migration.h"
#include "engine/ram/page_digest.h"
#include "engine/ram/wire_format.h"
#include "engine/stream/byte_reader.h"
#include "engine/stream/vmdesc.h"
#include "engine/stream/vmstate_decoder.h"
#include "transports/handshake.h"

namespace ferry::stream {
namespace {

namespace hs = transport::handshake;
using wire::PacketType;

constexpr uint8_t kSectionFull = 0x04;
constexpr uint8_t kSectionFooter = 0x7e;
constexpr uint8_t kVmDescription = 0x06;
constexpr size_t kFooterSize = 5;  // 0x7e, be32 section id

// A ParseError in the file of one channel (0: the file given to read_stream).
class ChannelError : public ParseError {
 public:
  ChannelError(uint32_t channel, uint64_t offset, std::string message)
      : ParseError(offset, std::move(message)), channel_(channel) {}
  uint32_t channel() const { return channel_; }

 private:
  uint32_t channel_;
};

struct Channel {
  uint32_t index = 0;
  std::string name;            // channel 0: empty (the file given)
  std::vector<uint8_t> owned;  // a companion file's bytes
  std::span<const uint8_t> data;
  size_t pos = 0;
  uint64_t next_packet = 1;
};

struct Packet {
  wire::Header h;
  uint64_t offset = 0;            // of the header in its channel's file
  std::span<const uint8_t> body;  // control body, or DATA records then payloads
  uint64_t body_offset() const { return offset + wire::kHeaderSize; }
};

// A DEVICE packet whose section header was read; decoded once the VMDESC arrives.
struct PendingDevice {
  size_t record;  // index in StreamInfo::records
  Packet packet;
};

uint32_t le32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}
uint32_t be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

std::string hex64(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%016llx", static_cast<unsigned long long>(v));
  return b;
}

std::string counts_text(const PageCounts& c) {
  return std::to_string(c.total()) + " pages (normal " + std::to_string(c.normal) + ", zero " +
         std::to_string(c.zero) + ", xbzrle " + std::to_string(c.xbzrle) + ", lz4 " +
         std::to_string(c.lz4) + ")";
}

// ByteReader's truncation messages speak of "the file"; inside a packet body it is the body.
std::string body_message(std::string m, const char* what) {
  const std::string from = "the file ends";
  if (auto at = m.find(from); at != std::string::npos) {
    m.replace(at, from.size(), std::string("the ") + what + " ends");
  }
  return m;
}

bool dst_to_src(PacketType t) {
  return t == PacketType::kHelloAck || t == PacketType::kConfirm || t == PacketType::kSyncAck;
}

class FerryReader {
 public:
  FerryReader(std::span<const uint8_t> file, const ReadOptions& options, StreamInfo& info)
      : file_(file), options_(options), info_(info) {}

  void run() {
    try {
      read();
    } catch (const ChannelError& e) {
      set_error(e.channel(), e.offset(), e.message());
    } catch (const ParseError& e) {
      set_error(0, e.offset(), e.message());
    } catch (const std::bad_alloc&) {
      set_error(current_, position(), "out of memory");
    } catch (const std::exception& e) {
      // Not expected (every input check throws a ParseError), but never let it escape.
      set_error(current_, position(), std::string("internal error: ") + e.what());
    }
  }

 private:
  FerryStreamInfo& f() { return *info_.ferry; }

  void set_error(uint32_t channel, uint64_t offset, std::string message) {
    std::string file;
    if (channel > 0 && channel < channels_.size()) file = channels_[channel].name;
    info_.error = StreamError(offset, std::move(message), std::move(file));
  }
  uint64_t position() const {
    return current_ < channels_.size() ? channels_[current_].pos : 0;
  }

  [[noreturn]] void fail(const Channel& c, uint64_t offset, std::string what) const {
    throw ChannelError(c.index, offset, std::move(what));
  }
  static std::string where(const Channel& c, uint64_t packet, uint64_t offset, const char* type) {
    std::string s = "channel " + std::to_string(c.index) + ", packet " + std::to_string(packet) + " (";
    if (type != nullptr) s += std::string(type) + " ";
    return s + "at " + hex(offset) + ")";
  }
  static std::string where(const Channel& c, const Packet& p) {
    return where(c, p.h.packet, p.offset, wire::type_name(p.h.type));
  }
  // `at` is relative to the packet's first byte, as in the engine's messages.
  [[noreturn]] void fail_packet(const Channel& c, const Packet& p, uint64_t at,
                                const std::string& what) const {
    fail(c, p.offset + at, where(c, p) + ": " + what);
  }

  // Runs one of the engine's decode functions; its MigrationError "channel C, packet P, offset
  // O: what" (O within the packet) becomes a ChannelError at the file offset.
  template <typename F>
  auto wire_call(const Channel& c, uint64_t packet_offset, uint64_t packet, const char* type,
                 F&& fn) -> decltype(fn()) {
    try {
      return fn();
    } catch (const MigrationError& e) {
      const std::string m = e.what();
      unsigned long long ch = 0, pk = 0, off = 0;
      int used = -1;
      if (std::sscanf(m.c_str(), "channel %llu, packet %llu, offset %llu: %n", &ch, &pk, &off,
                      &used) == 3 &&
          used > 0) {
        fail(c, packet_offset + off, where(c, packet, packet_offset, type) + ": " + m.substr(used));
      }
      fail(c, packet_offset, where(c, packet, packet_offset, type) + ": " + m);
    }
  }

  void read() {
    info_.ferry.emplace();
    channels_.reserve(1);
    Channel c0;
    c0.data = file_;
    channels_.push_back(std::move(c0));
    f().files.push_back({"", file_.size(), 0});
    const hs::Hello h0 = read_handshake(channels_[0], nullptr);
    read_hello();
    open_companions(h0);
    read_iterations();
    read_epilogue();
  }

  // The 64-byte handshake at offset 0; `first` is channel 0's (for companion files).
  hs::Hello read_handshake(Channel& c, const hs::Hello* first) {
    current_ = c.index;
    if (c.data.size() < hs::kSize) {
      fail(c, 0,
           "truncated: the file holds " + std::to_string(c.data.size()) + " of the " +
               std::to_string(hs::kSize) + " bytes of a ferry stream file's handshake");
    }
    const hs::Hello h = hs::decode(std::span<const uint8_t, hs::kSize>(c.data.data(), hs::kSize));
    if (first == nullptr && h.magic == hs::kMagic) {
      // Shown by the summary even if a check below fails.
      f().handshake_version = h.version;
      f().session_id = h.session_id;
      f().channels = h.count;
    }
    if (h.magic != hs::kMagic) {
      fail(c, 0, "bad magic " + hex(be32(c.data.data())) + " (expected " +
                     hex(be32(reinterpret_cast<const uint8_t*>("FRYC"))) +
                     " 'FRYC'): not a ferry stream file");
    }
    if (h.version != hs::kProtocolVersion) {
      fail(c, 4, "handshake protocol version " + std::to_string(h.version) +
                     ", this reader knows " + std::to_string(hs::kProtocolVersion));
    }
    if (!h.checksum_ok) fail(c, 60, "handshake checksum mismatch (the 64-byte header is damaged)");
    if (h.role != hs::Role::kFileWriter) {
      fail(c, 6, "handshake role " + std::to_string(static_cast<unsigned>(h.role)) +
                     " (expected 3, file writer): not a stream file");
    }
    if (h.status != hs::Status::kOk) {
      fail(c, 7, "handshake status " + std::to_string(static_cast<unsigned>(h.status)) +
                     " (a stream file's writer never refuses)");
    }
    if (h.count == 0 || h.count > wire::kMaxChannels) {
      fail(c, 20, "handshake channel count " + std::to_string(h.count) + " not in 1.." +
                      std::to_string(wire::kMaxChannels));
    }
    if (first == nullptr) {
      if (h.index != 0) {
        fail(c, 16, "this is the file of channel " + std::to_string(h.index) + " of a " +
                        std::to_string(h.count) + "-channel stream (session " +
                        hex64(h.session_id) + "): dump channel 0's file (this name without ." +
                        std::to_string(h.index) + ")");
      }
    } else {
      if (h.session_id != first->session_id) {
        fail(c, 8, "session id " + hex64(h.session_id) + " differs from channel 0's " +
                       hex64(first->session_id) + ": a file of another stream");
      }
      if (h.count != first->count) {
        fail(c, 20, "handshake says " + std::to_string(h.count) + " channels, channel 0's " +
                        std::to_string(first->count));
      }
      if (h.index != c.index) {
        fail(c, 16, "the file for channel " + std::to_string(c.index) + " says it is channel " +
                        std::to_string(h.index));
      }
    }
    c.pos = hs::kSize;
    return h;
  }

  // The next packet of channel c: header checked (wire::decode_header: magic, version,
  // checksum, sequence, type, flags), DATA counts checked against HELLO, the whole body
  // present, control bodies' checksums. `expect` names what may come, for truncation messages.
  Packet next_packet(Channel& c, const std::string& expect) {
    current_ = c.index;
    const size_t at = c.pos;
    const size_t left = c.data.size() - at;
    if (left < wire::kHeaderSize) {
      if (left == 0) {
        fail(c, at, "truncated: channel " + std::to_string(c.index) + " ends before packet " +
                        std::to_string(c.next_packet) + " (expected " + expect + ")");
      }
      fail(c, at, "truncated: channel " + std::to_string(c.index) +
                      " ends inside the header of packet " + std::to_string(c.next_packet) + " (" +
                      std::to_string(left) + " of " + std::to_string(wire::kHeaderSize) +
                      " bytes; expected " + expect + ")");
    }
    Packet p;
    p.offset = at;
    p.h = wire_call(c, at, c.next_packet, nullptr,
                    [&] { return wire::decode_header(c.data.data() + at, c.index, c.next_packet); });
    ++c.next_packet;
    ++f().files[c.index].packets;
    size_t body = p.h.payload;
    if (p.h.type == PacketType::kData) {
      if (!have_hello_) fail_packet(c, p, 5, "DATA before HELLO");
      wire_call(c, at, p.h.packet, "DATA",
                [&] { wire::check_data_header(p.h, c.index, limits_); });
      body = size_t{p.h.records} * wire::kRecordSize + p.h.payload;
    }
    if (body > left - wire::kHeaderSize) {
      fail(c, at + wire::kHeaderSize,
           "truncated: " + where(c, p) + " has a body of " + std::to_string(body) +
               " bytes, but the file ends after " + std::to_string(left - wire::kHeaderSize));
    }
    p.body = c.data.subspan(at + wire::kHeaderSize, body);
    c.pos = at + wire::kHeaderSize + body;
    if (p.h.type != PacketType::kData && p.h.type != PacketType::kSync) {
      const uint32_t sum = body == 0 ? 0 : wire::checksum32(p.body.data(), body);
      if (sum != p.h.body_checksum) {
        fail_packet(c, p, wire::kHeaderSize,
                    "body checksum " + hex(sum) + " does not match the header's " +
                        hex(p.h.body_checksum));
      }
    }
    return p;
  }

  // A packet of a type the reader does not expect here (ERROR: the source's reason).
  [[noreturn]] void unexpected(Channel& c, const Packet& p, const std::string& expected) {
    if (p.h.type == PacketType::kError) {
      const std::string msg = wire_call(c, p.offset, p.h.packet, "ERROR", [&] {
        wire::BodyReader r(p.body.data(), p.body.size(), c.index, p.h.packet);
        return r.str("error message");
      });
      fail_packet(c, p, wire::kHeaderSize,
                  "the source gave up: " + msg + " (the stream ends here, incomplete)");
    }
    std::string why;
    if (dst_to_src(p.h.type)) {
      why = " (a destination->source packet: a stream file never contains one)";
    } else if (p.h.type == PacketType::kVerify) {
      why = " (a two-way session's packet: a stream file carries HASHES instead)";
    }
    fail_packet(c, p, 5, std::string("unexpected ") + wire::type_name(p.h.type) + why +
                             ", expected " + expected);
  }

  void read_hello() {
    Channel& c = channels_[0];
    const Packet p = next_packet(c, "HELLO");
    if (p.h.type != PacketType::kHello) unexpected(c, p, "HELLO first");
    const wire::Hello hello = wire_call(c, p.offset, p.h.packet, "HELLO", [&] {
      return wire::decode_hello(p.body.data(), p.body.size(), 0, p.h.packet);
    });
    if (hello.channels != f().channels) {
      fail_packet(c, p, wire::kHeaderSize,
                  "HELLO says " + std::to_string(hello.channels) + " channels, the handshake " +
                      std::to_string(f().channels));
    }
    if (hello.blocks.empty()) fail_packet(c, p, wire::kHeaderSize + 16, "HELLO lists no RAM blocks");
    f().batch_pages = hello.batch_pages;
    f().owned_payload_cap = hello.owned_payload_cap;
    f().hello_flags = hello.flags;
    f().verify_announced = (hello.flags & wire::kHelloFlagVerify) != 0;

    // The engine's own rules for a block list (engine/ram/block_check.cc), and our RAM cap.
    std::set<std::string> names;
    uint64_t total = 0;
    uint64_t entry = wire::kHeaderSize + 20;  // offset of block i's entry in the packet
    for (size_t i = 0; i < hello.blocks.size(); ++i) {
      const auto& b = hello.blocks[i];
      const std::string what = "HELLO block " + std::to_string(i) + " '" + b.name + "': ";
      if (b.name.empty() || b.name.size() > 255) {
        fail_packet(c, p, entry, what + "name of " + std::to_string(b.name.size()) +
                                     " bytes (1..255)");
      }
      if (!names.insert(b.name).second) fail_packet(c, p, entry, what + "listed twice");
      const uint64_t size_at = entry + 2 + b.name.size();
      if (b.page_size < 512 || b.page_size > wire::kMaxOwnedPayload ||
          (b.page_size & (b.page_size - 1)) != 0) {
        fail_packet(c, p, size_at + 8, what + "page size " + std::to_string(b.page_size) +
                                           " is not a power of two in 512..64 MiB");
      }
      if (b.size == 0 || b.size % b.page_size != 0) {
        fail_packet(c, p, size_at, what + "size " + std::to_string(b.size) +
                                       " is not a non-zero multiple of the page size " +
                                       std::to_string(b.page_size));
      }
      if (b.size / b.page_size > std::numeric_limits<uint32_t>::max()) {
        fail_packet(c, p, size_at, what + std::to_string(b.size / b.page_size) +
                                       " pages do not fit the records' 32-bit page index");
      }
      if (b.size > options_.max_ram_bytes - total) {
        fail_packet(c, p, size_at,
                    what + "the blocks add up to more than the limit of " +
                        std::to_string(options_.max_ram_bytes) + " bytes of RAM");
      }
      total += b.size;
      entry = size_at + 16;
    }
    for (size_t i = 0; i < hello.blocks.size(); ++i) {
      const auto& b = hello.blocks[i];
      RamBlock* img = info_.ram.add(b.name, b.size);
      if (img == nullptr) {
        fail_packet(c, p, wire::kHeaderSize,
                    "cannot allocate RAM block '" + b.name + "' of " + std::to_string(b.size) +
                        " bytes");
      }
      image_.push_back(img);
      f().blocks.push_back({b.name, b.size, b.page_size});
      ferry::RamBlock wb;
      wb.name = b.name;
      wb.size = static_cast<size_t>(b.size);
      wb.page_size = static_cast<size_t>(b.page_size);
      wire_blocks_.push_back(std::move(wb));
      // One bit per page: it may hold non-zero bytes (everything starts zero).
      nonzero_.emplace_back(static_cast<size_t>((b.size / b.page_size + 63) / 64), 0);
    }
    limits_.blocks = &wire_blocks_;
    limits_.max_records = hello.batch_pages;
    limits_.owned_payload_cap = hello.owned_payload_cap;
    limits_.placement = false;  // nothing is RDMA-written into a file
    records_.resize(hello.batch_pages);
    have_hello_ = true;
    f().hello = true;
  }

  void open_companions(const hs::Hello& h0) {
    const uint32_t n = f().channels;
    channels_.reserve(n);
    for (uint32_t i = 1; i < n; ++i) {
      const std::string which = "channel " + std::to_string(i) + " of " + std::to_string(n);
      if (!options_.channel_file) {
        fail(channels_[0], 20,
             "the stream has " + std::to_string(n) + " channels, and no file was given for " +
                 which + " (a stream file keeps channel i in PATH.i)");
      }
      ChannelFile cf = options_.channel_file(i);
      if (cf.name.empty()) cf.name = "channel " + std::to_string(i);
      if (!cf.error.empty()) {
        fail(channels_[0], 20, which + " is missing: cannot read " + cf.name + ": " + cf.error);
      }
      Channel c;
      c.index = i;
      c.name = std::move(cf.name);
      c.owned = std::move(cf.bytes);
      channels_.push_back(std::move(c));
      Channel& added = channels_.back();
      added.data = added.owned;
      f().files.push_back({added.name, added.data.size(), 0});
      read_handshake(added, &h0);
    }
  }

  void read_iterations() {
    for (uint32_t it = 0;; ++it) {
      f().iterations.push_back({});
      const size_t ix = f().iterations.size() - 1;
      f().iterations[ix].iteration = it;
      std::optional<bool> final_pass;
      const std::string expect = "DATA or SYNC " + std::to_string(it);
      for (Channel& c : channels_) {
        for (;;) {
          const Packet p = next_packet(c, expect);
          FerryIteration& iter = f().iterations[ix];
          ++iter.packets;
          iter.bytes += wire::kHeaderSize + p.body.size();
          if (p.h.type == PacketType::kData) {
            apply_data(c, p, iter);
            continue;
          }
          if (p.h.type != PacketType::kSync) unexpected(c, p, expect);
          if (p.h.pages != it) {
            fail_packet(c, p, 24, "SYNC for iteration " + std::to_string(p.h.pages) +
                                      ", expected " + std::to_string(it));
          }
          const bool fin = (p.h.flags & wire::kFlagFinal) != 0;
          if (!final_pass) {
            final_pass = fin;
          } else if (*final_pass != fin) {
            fail_packet(c, p, 6, "SYNC " + std::to_string(it) + " is " +
                                     (fin ? "" : "not ") + "the final one here, but it is " +
                                     (fin ? "not " : "") + "on channel 0");
          }
          break;
        }
      }
      f().iterations[ix].final_pass = *final_pass;
      f().iterations[ix].synced = true;
      if (*final_pass) break;
    }
    f().final_sync = true;
    for (size_t i = 1; i < channels_.size(); ++i) {
      Channel& c = channels_[i];
      current_ = c.index;
      if (c.pos != c.data.size()) {
        fail(c, c.pos, std::to_string(c.data.size() - c.pos) +
                           " unexpected bytes after the final SYNC (channels other than 0 end "
                           "there)");
      }
    }
  }

  void mark(uint32_t block, uint64_t page) { nonzero_[block][page / 64] |= uint64_t{1} << (page % 64); }

  // ZERO run: only pages that may hold data are cleared, so untouched memory stays unallocated
  // and a long run costs a bit test per page.
  void zero_run(uint32_t block, uint64_t first, uint64_t count) {
    auto& bits = nonzero_[block];
    RamBlock* img = image_[block];
    const size_t ps = wire_blocks_[block].page_size;
    const uint64_t end = first + count;
    for (uint64_t pg = first; pg < end;) {
      const uint64_t word = bits[pg / 64];
      if (word == 0 && pg % 64 == 0 && pg + 64 <= end) {
        pg += 64;
        continue;
      }
      if (word >> (pg % 64) & 1) {
        std::memset(img->data() + pg * ps, 0, ps);
        bits[pg / 64] &= ~(uint64_t{1} << (pg % 64));
      }
      ++pg;
    }
  }

  void apply_data(const Channel& c, const Packet& p, FerryIteration& iter) {
    const wire::Header& h = p.h;
    const size_t rec_bytes = size_t{h.records} * wire::kRecordSize;
    const uint8_t* recs = p.body.data();
    const uint32_t sum = wire::checksum32(recs, rec_bytes);
    if (sum != h.body_checksum) {
      fail_packet(c, p, wire::kHeaderSize,
                  "records checksum " + hex(sum) + " does not match the header's " +
                      hex(h.body_checksum));
    }
    for (uint32_t i = 0; i < h.records; ++i) {
      if (recs[i * wire::kRecordSize + 9] == wire::kRecordPlaced) {
        fail_packet(c, p, wire::kHeaderSize + i * wire::kRecordSize + 9,
                    "record " + std::to_string(i) +
                        ": flag 'placed' (the page was RDMA-written into the destination, its "
                        "bytes are not in the stream): a stream file never has it");
      }
    }
    wire_call(c, p.offset, h.packet, "DATA",
              [&] { wire::decode_records(h, recs, c.index, limits_, records_.data()); });
    const uint32_t block = h.block;
    RamBlock* img = image_[block];
    const size_t ps = wire_blocks_[block].page_size;
    const uint8_t* payload = recs + rec_bytes;
    size_t off = 0;  // into the payloads
    for (uint32_t i = 0; i < h.records; ++i) {
      const wire::Record& r = records_[i];
      uint8_t* page = img->data() + size_t{r.page} * ps;
      const uint64_t at = wire::kHeaderSize + rec_bytes + off;  // the payload, in the packet
      switch (r.kind) {
        case PageKind::kNormal:
          std::memcpy(page, payload + off, ps);
          off += ps;
          mark(block, r.page);
          ++iter.pages.normal;
          ++img->counts.normal;
          break;
        case PageKind::kZero:
          zero_run(block, r.page, r.length);
          iter.pages.zero += r.length;
          img->counts.zero += r.length;
          break;
        case PageKind::kXbzrle: {
          const auto res = xbzrle::decode(payload + off, r.length, page, ps);
          if (res.error != xbzrle::DecodeError::kOk) {
            fail_packet(c, p, at + res.offset,
                        "record " + std::to_string(i) + ": bad XBZRLE delta for page " +
                            std::to_string(r.page) + " of block '" + wire_blocks_[block].name +
                            "': " + xbzrle::decode_error_string(res.error));
          }
          off += r.length;
          mark(block, r.page);
          ++iter.pages.xbzrle;
          ++img->counts.xbzrle;
          break;
        }
        case PageKind::kLz4: {
          const auto err = lz4::decompress(payload + off, r.length, page, ps);
          if (err != lz4::DecodeError::kOk) {
            fail_packet(c, p, at,
                        "record " + std::to_string(i) + ": bad LZ4 page " +
                            std::to_string(r.page) + " of block '" + wire_blocks_[block].name +
                            "': " + lz4::decode_error_string(err));
          }
          off += r.length;
          mark(block, r.page);
          ++iter.pages.lz4;
          ++img->counts.lz4;
          break;
        }
      }
    }
  }

  // Channel 0 after the final SYNC: DEVICE..., VMDESC, COMPLETE, [HASHES], DONE, end of file.
  void read_epilogue() {
    Channel& c = channels_[0];
    const std::string after_sync = "DEVICE, VMDESC or COMPLETE";
    Packet p = next_packet(c, after_sync);
    while (p.h.type == PacketType::kDevice) {
      read_device(c, p);
      p = next_packet(c, "DEVICE or VMDESC");
    }
    if (p.h.type == PacketType::kVmdesc) {
      read_vmdesc(c, p);
      p = next_packet(c, "COMPLETE");
    } else if (!devices_.empty()) {
      unexpected(c, p, "VMDESC after the DEVICE packets");
    }
    if (p.h.type != PacketType::kComplete) unexpected(c, p, devices_.empty() ? after_sync : "COMPLETE");
    read_complete(c, p);

    const std::string after_complete = f().verify_announced ? "HASHES (HELLO announced verify)"
                                                            : "HASHES or DONE";
    p = next_packet(c, after_complete);
    if (p.h.type == PacketType::kHashes) {
      read_hashes(c, p);
      p = next_packet(c, "DONE");
    } else if (p.h.type == PacketType::kDone && f().verify_announced) {
      fail_packet(c, p, 5, "DONE without the HASHES that HELLO's verify flag announced");
    }
    if (p.h.type != PacketType::kDone) unexpected(c, p, f().hashes ? "DONE" : after_complete);
    read_done(c, p);
    if (c.pos != c.data.size()) {
      fail(c, c.pos, std::to_string(c.data.size() - c.pos) +
                         " unexpected bytes after DONE (the last packet of a stream)");
    }
    if (hash_error_) throw *hash_error_;
  }

  void read_device(Channel& c, const Packet& p) {
    ++f().devices;
    f().device_bytes += p.body.size();
    const uint64_t start = p.body_offset();
    const uint64_t end = start + p.body.size();
    Record rec;
    rec.type = RecordType::kSectionFull;
    rec.offset = start;
    rec.end = end;
    try {
      ByteReader r(c.data.first(end));
      r.seek(start);
      const uint8_t type = r.u8("section type");
      if (type != kSectionFull) {
        ByteReader::fail_at(start, "the body starts with " + hex(type) +
                                       ", expected 0x04 (QEMU's SECTION_FULL)");
      }
      rec.section_id = r.be32("section id");
      rec.idstr = r.short_string("section idstr");
      rec.instance_id = r.be32("section instance id");
      rec.version_id = r.be32("section version id");
      rec.payload_offset = r.pos();
      if (r.remaining() < kFooterSize) {
        r.fail("truncated: no room for the section footer (5 bytes) after the section header");
      }
      rec.payload_end = end - kFooterSize;
      const uint8_t* foot = c.data.data() + rec.payload_end;
      if (foot[0] != kSectionFooter) {
        ByteReader::fail_at(rec.payload_end, "the section footer byte is " + hex(foot[0]) +
                                                 ", expected 0x7e");
      }
      if (be32(foot + 1) != rec.section_id) {
        ByteReader::fail_at(rec.payload_end + 1,
                            "the section footer names section id " +
                                std::to_string(be32(foot + 1)) + ", the header " +
                                std::to_string(rec.section_id));
      }
    } catch (const ChannelError&) {
      throw;
    } catch (const ParseError& e) {
      info_.records.push_back(rec);  // listed as far as it was read
      fail(c, e.offset(), where(c, p) + ": " + body_message(e.message(), "DEVICE body"));
    }
    info_.records.push_back(rec);
    devices_.push_back({info_.records.size() - 1, p});
  }

  void read_vmdesc(Channel& c, const Packet& p) {
    f().device_bytes += p.body.size();
    const uint8_t* b = p.body.data();
    const size_t n = p.body.size();
    if (n < 4) fail_packet(c, p, wire::kHeaderSize, "VMDESC body of " + std::to_string(n) + " bytes");
    const uint32_t count = le32(b);
    if (count != devices_.size()) {
      fail_packet(c, p, wire::kHeaderSize,
                  "VMDESC counts " + std::to_string(count) + " devices, the stream has " +
                      std::to_string(devices_.size()) + " DEVICE packets");
    }
    if (n < 9) {
      fail_packet(c, p, wire::kHeaderSize + 4,
                  "VMDESC body of " + std::to_string(n) + " bytes ends inside QEMU's vmdesc record");
    }
    if (b[4] != kVmDescription) {
      fail_packet(c, p, wire::kHeaderSize + 4,
                  "expected the vmdesc record type 0x06, found " + hex(b[4]));
    }
    const uint32_t len = be32(b + 5);
    if (len != n - 9) {
      fail_packet(c, p, wire::kHeaderSize + 5,
                  "vmdesc length " + std::to_string(len) + ", but the body holds " +
                      std::to_string(n - 9) + " bytes of JSON");
    }
    const uint64_t json_at = p.body_offset() + 9;
    info_.vmdesc_in_stream = true;
    info_.vmdesc_offset = p.body_offset() + 4;
    info_.vmdesc_length = len;
    std::optional<Vmdesc> vmdesc;
    if (options_.vmdesc_json) {
      vmdesc.emplace(*options_.vmdesc_json, 0, options_.vmdesc_source);
    } else {
      vmdesc.emplace(std::string_view(reinterpret_cast<const char*>(b + 9), len), json_at,
                     "VMDESC packet at " + hex(p.offset));
    }
    info_.vmdesc_source = options_.vmdesc_json ? options_.vmdesc_source : "the stream";
    info_.vmdesc_devices = vmdesc->device_count();
    if (!vmdesc->ok()) {
      if (options_.vmdesc_json) {
        fail_packet(c, p, 0, "cannot decode the devices: " + vmdesc->error() +
                                 " (at offset " + hex(vmdesc->error_offset()) + " of it)");
      }
      fail(c, vmdesc->error_offset(), where(c, p) + ": " + vmdesc->error());
    }
    for (const PendingDevice& d : devices_) decode_device(c, d, *vmdesc);
  }

  void decode_device(Channel& c, const PendingDevice& d, const Vmdesc& vmdesc) {
    Record& rec = info_.records[d.record];
    const std::string name = "device section '" + rec.idstr + "' (id " +
                             std::to_string(rec.section_id) + ", instance " +
                             std::to_string(rec.instance_id) + ")";
    const nlohmann::json* desc = vmdesc.device(rec.idstr, rec.instance_id);
    if (desc == nullptr) {
      fail(c, rec.offset, where(c, d.packet) + ": " + name + ": no entry for it in the vmdesc (" +
                              vmdesc.source() + ")");
    }
    nlohmann::ordered_json value;
    try {
      ByteReader r(c.data.first(rec.payload_end));
      r.seek(rec.payload_offset);
      value = decode_vmstate(r, *desc, "section '" + rec.idstr + "'");
      if (!r.at_end()) {
        r.fail(name + ": the vmdesc describes " + std::to_string(r.pos() - rec.payload_offset) +
               " bytes of fields, the section holds " +
               std::to_string(rec.payload_end - rec.payload_offset));
      }
    } catch (const ParseError& e) {
      fail(c, e.offset(), where(c, d.packet) + ": " + body_message(e.message(), "section payload"));
    }
    set_state(rec.idstr + " (" + std::to_string(rec.section_id) + ")", std::move(value));
    rec.decoded = true;
  }

  // info_.state[key] = value with a hash index (ordered_json looks keys up linearly); a key
  // keeps its first place, as for QEMU streams.
  void set_state(const std::string& key, nlohmann::ordered_json value) {
    auto& pairs = info_.state.get_ref<nlohmann::ordered_json::object_t&>();
    auto [it, inserted] = state_index_.try_emplace(key, pairs.size());
    if (inserted) {
      pairs.emplace_back(key, std::move(value));
    } else {
      (pairs.begin() + static_cast<long>(it->second))->second = std::move(value);
    }
  }

  PageCounts total_pages() const {
    PageCounts t;
    for (const auto& it : info_.ferry->iterations) {
      t.normal += it.pages.normal;
      t.zero += it.pages.zero;
      t.xbzrle += it.pages.xbzrle;
      t.lz4 += it.pages.lz4;
    }
    return t;
  }

  void read_complete(Channel& c, const Packet& p) {
    const ferry::PageCounts sent = wire_call(c, p.offset, p.h.packet, "COMPLETE", [&] {
      wire::BodyReader r(p.body.data(), p.body.size(), 0, p.h.packet);
      const ferry::PageCounts v = wire::decode_counts(r);
      r.end();
      return v;
    });
    PageCounts s;
    s.normal = sent.normal;
    s.zero = sent.zero;
    s.xbzrle = sent.xbzrle;
    s.lz4 = sent.lz4;
    f().complete_counts = s;
    const PageCounts got = total_pages();
    if (s.normal != got.normal || s.zero != got.zero || s.xbzrle != got.xbzrle ||
        s.lz4 != got.lz4) {
      fail_packet(c, p, wire::kHeaderSize,
                  "COMPLETE says the source sent " + counts_text(s) + ", the records cover " +
                      counts_text(got));
    }
    f().complete = true;
  }

  void read_hashes(Channel& c, const Packet& p) {
    const std::vector<uint64_t> hashes = wire_call(c, p.offset, p.h.packet, "HASHES", [&] {
      return wire::decode_hashes(p.body.data(), p.body.size(), 0, p.h.packet, image_.size(),
                                 "HELLO listed");
    });
    f().hashes = true;
    f().recorded_hashes = hashes;
    f().hashes_match = true;
    for (size_t i = 0; i < image_.size(); ++i) {
      const auto bytes = image_[i]->bytes();
      f().image_hashes.push_back(
          ram::full_digest(bytes.data(), bytes.size(), f().blocks[i].page_size));
      if (f().image_hashes[i] != hashes[i] && f().hashes_match) {
        f().hashes_match = false;
        hash_error_.emplace(0, p.body_offset() + 4 + 8 * i,
                            where(c, p) + ": verification failed: block '" + image_[i]->name() +
                                "' of the reconstructed RAM has the digest " +
                                hex64(f().image_hashes[i]) + ", the stream recorded " +
                                hex64(hashes[i]) +
                                " (page bytes carry no checksum of their own: some are damaged)");
      }
    }
  }

  void read_done(Channel& c, const Packet& p) {
    std::pair<uint8_t, std::string> done = wire_call(c, p.offset, p.h.packet, "DONE", [&] {
      wire::BodyReader r(p.body.data(), p.body.size(), 0, p.h.packet);
      const uint8_t result = r.u8("result");
      std::string msg = r.str("message");
      r.end();
      return std::make_pair(result, std::move(msg));
    });
    if (done.first > 2) {
      fail_packet(c, p, wire::kHeaderSize, "DONE result " + std::to_string(done.first) + " (0..2)");
    }
    f().done = true;
    f().done_result = done.first;
    f().done_message = done.second;
    if (done.first == 2) {
      fail_packet(c, p, wire::kHeaderSize,
                  "the source reported a failed verification" +
                      (done.second.empty() ? std::string() : ": " + done.second));
    }
  }

  std::span<const uint8_t> file_;
  const ReadOptions& options_;
  StreamInfo& info_;
  std::vector<Channel> channels_;
  uint32_t current_ = 0;  // the channel being read (for errors that carry no channel)
  bool have_hello_ = false;
  std::vector<RamBlock*> image_;
  std::vector<ferry::RamBlock> wire_blocks_;  // HELLO's blocks for wire::DataLimits
  std::vector<std::vector<uint64_t>> nonzero_;
  wire::DataLimits limits_;
  std::vector<wire::Record> records_;
  std::vector<PendingDevice> devices_;
  std::unordered_map<std::string, size_t> state_index_;
  std::optional<ChannelError> hash_error_;
};

}  // namespace

bool is_ferry_stream(std::span<const uint8_t> file) {
  return file.size() >= 4 && file[0] == 'F' && file[1] == 'R' && file[2] == 'Y' && file[3] == 'C';
}

StreamInfo read_ferry_stream(std::span<const uint8_t> file, const ReadOptions& options) {
  StreamInfo info;
  info.format = "ferry";
  info.version = wire::kWireVersion;
  info.file_size = file.size();
  FerryReader(file, options, info).run();
  return info;
}

}  // namespace ferry::stream
