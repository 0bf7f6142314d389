// Seeds for the fuzz targets.
//
//   fuzz_make_seeds DIR
//     writes DIR/binary/*, DIR/ber/* (the test device saved by BinaryOutput / BerOutput in a
//     few shapes) and DIR/stream/* (hand-built QEMU streams: every record type, RAM PAGE / ZERO /
//     XBZRLE / CONTINUE, a device decoded by the vmdesc, with and without the vmdesc trailer;
//     and the binary device section, which is a one-section QEVM stream), and DIR/stream/ferry-1ch
//     (a one-channel ferry stream file written by the real engine: HELLO, LZ4 and ZERO records,
//     an XBZRLE resend in the final pass, the test device as DEVICE + VMDESC, COMPLETE, HASHES,
//     DONE; a fixed session id, so the same bytes every run, ~1.5 KB). tests/fuzz/seeds/ is
//     this output, checked in; rerun after changing the fixture, the encodings or the wire
//     format.
//   fuzz_make_seeds --strip-ram IN.mig OUT
//     copies a real QEMU stream (with a vmdesc) small: the payload of every RAM PART/END
//     section becomes a bare EOS, every RAM block shrinks to one page in MEM_SIZE, only the
//     first 8 device sections stay, and the vmdesc keeps
//     only their descriptions. Header, configuration, MEM_SIZE (real block names), COMMAND and
//     real device encodings remain, in a few KB instead of 0.5-5 MB. tools/fuzz.sh uses it on
//     ../shared/corpus when that is present.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ferry/migration.h"
#include "ferry/bitmap_dirty_source.h"
#include "engine/stream/file_io.h"
#include "engine/stream/stream_format.h"
#include "engine/vmstate/input.h"
#include "engine/vmstate/walker.h"
#include "tests/stream/stream_builder.h"
#include "tests/vmstate/fixtures.h"
#include "tests/stream/handmade_device.h"
#include "ferry/transport.h"

namespace {

namespace fs = std::filesystem;
using namespace ferry;
using Bytes = std::vector<uint8_t>;

void write(const fs::path& path, std::span<const uint8_t> bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path.string());
}

struct Shape {
  const char* name;
  int nreqs;
  bool flag;
  uint32_t sub_value;
  uint16_t sub2_value;
};
constexpr Shape kShapes[] = {
    {"dev-full", 3, true, 0x44, 9},   // both subsections, gated field, 3 list elements
    {"dev-noreqs", 0, true, 0x44, 0}, // empty list, one subsection
    {"dev-plain", 1, false, 0, 0},    // no gated field, no subsections
};

int write_vmstate_seeds(const fs::path& dir) {
  for (const Shape& s : kShapes) {
    for (auto e : {vmstate::Encoding::kBinary, vmstate::Encoding::kBer}) {
      vmstate::test::Dev d{};
      vmstate::test::fill_dev(d, s.nreqs);
      d.flag = s.flag;
      d.sub_value = s.sub_value;
      d.sub2_value = s.sub2_value;
      Bytes out;
      const vmstate::Status st = vmstate::save_to(e, vmstate::test::kDevVmsd, &d, out, {3, 0});
      ferry_vms_release(&vmstate::test::kDevVmsd, &d);
      if (!st.ok()) {
        std::cerr << "save " << s.name << ": " << st.message() << "\n";
        return 1;
      }
      const bool bin = e == vmstate::Encoding::kBinary;
      write(dir / (bin ? "binary" : "ber") / s.name, out);
      if (bin && std::strcmp(s.name, "dev-full") == 0) write(dir / "stream" / "vmstate-section", out);
    }
  }
  return 0;
}

// The stream of tests/stream/handmade_stream_test.cc (good_stream), device "dev" matching the
// vmdesc that fuzz_qemu_stream.cc also passes as --vmdesc.
const char* const kVmdesc = ferry::stream::test::kHandmadeDeviceVmdesc;

Bytes handmade(bool with_vmdesc) {
  stream::test::StreamBuilder b;
  b.header().config("pc-test-1.0");
  b.start(2, "ram", 0, 4).mem_size({{"pc.ram", 4 * 4096}, {"/rom@etc/x", 4096}}).ram_eos().footer(2);
  b.part(2)
      .ram_page(0x0000, "pc.ram", 1)
      .ram_page(0x1000, "", 2)
      .ram_zero(0x0000, "")
      .ram_page(0x0000, "/rom@etc/x", 3)
      .ram_eos()
      .footer(2);
  b.command(11);
  b.end(2)
      .ram_xbzrle(0x0000, "pc.ram", {0x0a, 0x03, 0xaa, 0xbb, 0xcc})
      .ram_xbzrle(0x1000, "", {0x00, 0x01, 0x77})
      .ram_eos()
      .footer(2);
  b.full(7, "dev", 0, 1);
  b.be16(0x1234).be32(0xfffffffe).u8(1).raw("abc").u8(7).u8(8).be32(5);
  b.u8(0x05).sstr("dev/sub").be32(1).u8(0xff);
  b.footer(7).eof();
  if (with_vmdesc) b.vmdesc(kVmdesc);
  return b.bytes;
}

// A ferry stream file (engine/stream/ferry_stream.h) of 8 pages: pages 1 and 5 hold a pattern
// (sent as LZ4, a few bytes each), the rest are ZERO runs; page 1 changes while the guest is
// stopped, so the final pass resends it as an XBZRLE delta. One channel: the fuzzer has one
// input, and a stream of more channels needs its companion files.
int write_ferry_seed(const fs::path& out) {
  constexpr size_t kPage = 4096, kPages = 8;
  std::vector<uint8_t> storage((kPages + 1) * kPage, 0);
  auto* mem = reinterpret_cast<uint8_t*>(
      (reinterpret_cast<uintptr_t>(storage.data()) + kPage - 1) / kPage * kPage);
  for (size_t i = 0; i < kPage; ++i) {
    mem[1 * kPage + i] = static_cast<uint8_t>(i % 7);
    mem[5 * kPage + i] = static_cast<uint8_t>(i / 512);
  }
  auto marks = std::make_unique<ExplicitMarkSource>(kPages);
  ExplicitMarkSource* m = marks.get();
  std::vector<std::unique_ptr<DirtySource>> sources;
  sources.push_back(std::move(marks));
  MigrationConfig cfg;
  cfg.xbzrle = true;
  cfg.lz4 = true;
  cfg.verify = true;
  MigrationHooks hooks;
  hooks.stop_guest = [&] {
    mem[1 * kPage + 100] ^= 0x5a;
    m->mark(1);
  };
  vmstate::test::Dev d{};
  vmstate::test::fill_dev(d, 1);
  transport::Options o;
  o.channels = 1;
  o.session_id = 0x5eedf00d5eedf00dull;
  fs::create_directories(out.parent_path());
  {
    MigrationSource source({RamBlock{"pc.ram", mem, kPages * kPage, kPage}}, std::move(sources),
                           cfg, std::move(hooks));
    source.set_devices({Device{"dev", 0, &vmstate::test::kDevVmsd, &d}});
    const MigrationStats st = source.run(transport::connect("file:" + out.string(), o));
    if (st.pages.xbzrle == 0 || st.pages.lz4 == 0) {
      std::cerr << out.string() << ": expected XBZRLE and LZ4 pages\n";
      return 1;
    }
  }
  ferry_vms_release(&vmstate::test::kDevVmsd, &d);
  const Bytes bytes = stream::read_file(out);
  const stream::StreamInfo check = stream::read_stream(bytes);
  if (check.error) {
    std::cerr << out.string() << ": the ferry seed does not read back: offset "
              << check.error->offset << ": " << check.error->message << "\n";
    return 1;
  }
  return 0;
}

// fuzz_destination's inputs: a mode byte (1 one-way, 0 two-way), then the packets of the ferry
// seed stream without its 64-byte file hello (the in-memory channel is already connected).
int write_destination_seeds(const fs::path& ferry_stream, const fs::path& dir) {
  const Bytes stream = stream::read_file(ferry_stream);
  constexpr size_t kFileHello = 64;
  if (stream.size() <= kFileHello) {
    std::cerr << ferry_stream.string() << ": too short for a ferry stream\n";
    return 1;
  }
  fs::create_directories(dir);
  for (uint8_t mode : {uint8_t{1}, uint8_t{0}}) {
    Bytes seed{mode};
    seed.insert(seed.end(), stream.begin() + kFileHello, stream.end());
    write(dir / (mode ? "oneway" : "twoway"), seed);
  }
  return 0;
}

uint64_t be(const Bytes& f, uint64_t at, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | f[at + static_cast<uint64_t>(i)];
  return v;
}

// Rewrites a RAM START payload "MEM_SIZE, blocks, EOS" with every block one page long: the
// stripped stream carries no pages, and tens of MiB of RAM per run would slow the fuzzer ~30x.
bool shrink_mem_size(const Bytes& f, uint64_t p, uint64_t end, Bytes& o) {
  if (end - p < 8) return false;
  const uint64_t head = be(f, p, 8);
  if ((head & 0xfff) != 0x04) return false;
  uint64_t total = head & ~uint64_t{0xfff}, seen = 0;
  p += 8;
  Bytes blocks;
  uint64_t new_total = 0;
  while (seen < total) {
    if (p >= end || p + 1 + f[p] + 8 > end) return false;
    const uint64_t len = f[p];
    blocks.insert(blocks.end(), f.begin() + static_cast<long>(p),
                  f.begin() + static_cast<long>(p + 1 + len));
    seen += be(f, p + 1 + len, 8);
    for (int i = 7; i >= 0; --i) blocks.push_back(static_cast<uint8_t>(uint64_t{4096} >> (8 * i)));
    new_total += 4096;
    p += 1 + len + 8;
  }
  for (int i = 7; i >= 0; --i) o.push_back(static_cast<uint8_t>((new_total | 0x04) >> (8 * i)));
  o.insert(o.end(), blocks.begin(), blocks.end());
  o.insert(o.end(), f.begin() + static_cast<long>(p), f.begin() + static_cast<long>(end));
  return true;
}

// Keeps header, configuration, RAM START (MEM_SIZE, blocks shrunk to a page), RAM PART/END reduced to a bare EOS, the
// first `keep_devices` device sections, COMMAND records, EOF, and a compact vmdesc listing only
// the devices kept (a real vmdesc is ~100 KB of JSON, which would dominate every run).
int strip_ram(const fs::path& in, const fs::path& out, size_t keep_devices) {
  const Bytes file = stream::read_file(in);
  const stream::StreamInfo info = stream::read_stream(file);
  if (info.error) {
    std::cerr << in.string() << ": offset " << info.error->offset << ": " << info.error->message
              << "\n";
    return 1;
  }
  if (!info.vmdesc_in_stream) {
    std::cerr << in.string() << ": no vmdesc trailer\n";
    return 1;
  }
  auto copy = [&](Bytes& o, uint64_t from, uint64_t to) {
    o.insert(o.end(), file.begin() + static_cast<long>(from), file.begin() + static_cast<long>(to));
  };
  Bytes o;
  std::set<std::pair<std::string, uint32_t>> kept;
  for (const stream::Record& r : info.records) {
    switch (r.type) {
      case stream::RecordType::kVmdesc:
        break;
      case stream::RecordType::kSectionPart:
      case stream::RecordType::kSectionEnd:
        if (!r.is_ram) {
          copy(o, r.offset, r.end);
          break;
        }
        copy(o, r.offset, r.payload_offset);
        for (int i = 0; i < 7; ++i) o.push_back(0);
        o.push_back(0x10);  // EOS
        copy(o, r.payload_end, r.end);
        break;
      case stream::RecordType::kSectionStart:
        if (r.is_ram) {
          copy(o, r.offset, r.payload_offset);
          if (!shrink_mem_size(file, r.payload_offset, r.payload_end, o)) {
            std::cerr << in.string() << ": unexpected RAM START payload\n";
            return 1;
          }
          copy(o, r.payload_end, r.end);
          break;
        }
        [[fallthrough]];
      case stream::RecordType::kSectionFull:
        if (!r.is_ram) {
          if (kept.size() >= keep_devices) break;
          kept.insert({r.idstr, r.instance_id});
        }
        copy(o, r.offset, r.end);
        break;
      default:
        copy(o, r.offset, r.end);
        break;
    }
  }
  const std::string text(file.begin() + static_cast<long>(info.vmdesc_offset + 5), file.end());
  nlohmann::json desc = nlohmann::json::parse(text);
  nlohmann::json devices = nlohmann::json::array();
  for (const auto& d : desc["devices"]) {
    if (kept.count({d.value("name", ""), d.value("instance_id", 0u)})) devices.push_back(d);
  }
  desc["devices"] = devices;
  const std::string json = desc.dump();
  o.push_back(0x06);
  for (int i = 3; i >= 0; --i) o.push_back(static_cast<uint8_t>(json.size() >> (8 * i)));
  o.insert(o.end(), json.begin(), json.end());
  const stream::StreamInfo check = stream::read_stream(o);
  if (check.error) {
    std::cerr << out.string() << ": the stripped stream does not parse: offset "
              << check.error->offset << ": " << check.error->message << "\n";
    return 1;
  }
  write(out, o);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc == 4 && std::string(argv[1]) == "--strip-ram") return strip_ram(argv[2], argv[3], 8);
    if (argc != 2) {
      std::cerr << "usage: fuzz_make_seeds DIR | fuzz_make_seeds --strip-ram IN.mig OUT\n";
      return 2;
    }
    const fs::path dir = argv[1];
    if (int rc = write_vmstate_seeds(dir)) return rc;
    write(dir / "stream" / "handmade", handmade(true));
    write(dir / "stream" / "handmade-novmdesc", handmade(false));
    if (int rc = write_ferry_seed(dir / "stream" / "ferry-1ch")) return rc;
    return write_destination_seeds(dir / "stream" / "ferry-1ch", dir / "destination");
  } catch (const std::exception& e) {
    std::cerr << "fuzz_make_seeds: " << e.what() << "\n";
    return 1;
  }
}
