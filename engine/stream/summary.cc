#include "engine/stream/summary.h"

#include <cstdio>

namespace ferry::stream {
namespace {

std::string fmt(const char* f, auto... args) {
  char buf[512];
  std::snprintf(buf, sizeof buf, f, args...);
  return buf;
}

unsigned long long ull(uint64_t v) { return static_cast<unsigned long long>(v); }

std::string pages(const RamSectionCounts& c) {
  std::string s;
  if (c.mem_size) s += "MEM_SIZE";
  if (c.pages() == 0) return s.empty() ? "no pages" : s;
  if (!s.empty()) s += ", ";
  s += fmt("%llu pages (zero %llu, normal %llu, xbzrle %llu)", ull(c.pages()), ull(c.zero),
           ull(c.normal), ull(c.xbzrle));
  if (c.named || c.continued) s += fmt(", %llu named, %llu continue", ull(c.named), ull(c.continued));
  return s;
}

std::string contents(const Record& r, const StreamInfo& info) {
  switch (r.type) {
    case RecordType::kHeader:
      return fmt("%s version %u", info.format.c_str(), info.version);
    case RecordType::kConfiguration:
      return "machine '" + info.machine + "'";
    case RecordType::kCommand:
      return fmt("command %u %s, %u bytes", r.command, r.command_name.c_str(), r.command_len);
    case RecordType::kVmdesc:
      return fmt("%llu bytes of JSON", ull(r.payload_end - r.payload_offset));
    case RecordType::kEof:
      return "";
    default:
      if (r.is_ram) return pages(r.ram);
      return r.decoded ? "device, decoded" : "device, not decoded";
  }
}

bool is_section(RecordType t) {
  return t == RecordType::kSectionStart || t == RecordType::kSectionPart ||
         t == RecordType::kSectionEnd || t == RecordType::kSectionFull;
}

std::string kinds(const PageCounts& c) {
  return fmt("%10llu %9llu %9llu %9llu %9llu", ull(c.total()), ull(c.normal), ull(c.zero),
             ull(c.xbzrle), ull(c.lz4));
}

void add(PageCounts& to, const PageCounts& c) {
  to.normal += c.normal;
  to.zero += c.zero;
  to.xbzrle += c.xbzrle;
  to.lz4 += c.lz4;
}

// ferry's own stream files (engine/stream/ferry_stream.h).
// "vmdesc:    <where> 0x... (N bytes of JSON); M device descriptions used from ..." (no newline).
void print_vmdesc_line(std::ostream& out, const StreamInfo& info, const char* where) {
  if (info.vmdesc_in_stream) {
    out << fmt("vmdesc:    %s 0x%llx (%llu bytes of JSON)", where, ull(info.vmdesc_offset),
               ull(info.vmdesc_length));
  } else {
    out << "vmdesc:    absent";
  }
  if (!info.vmdesc_source.empty()) {
    out << fmt("; %zu device descriptions used from %s", info.vmdesc_devices,
               info.vmdesc_source.c_str());
  }
}

void print_ferry_summary(std::ostream& out, const std::string& file_name, const StreamInfo& info) {
  const FerryStreamInfo& f = *info.ferry;
  out << "file:      " << file_name << " (" << info.file_size << " bytes)\n";
  out << "format:    ferry stream file, wire version " << info.version << ", handshake version "
      << f.handshake_version << "\n";
  out << fmt("session:   0x%016llx, %u channel%s", ull(f.session_id), f.channels,
             f.channels == 1 ? "" : "s");
  if (f.hello) {
    out << fmt(", batches of up to %u pages", f.batch_pages);
    std::string flags;
    if (f.hello_flags & 1) flags += " verify";
    if (f.hello_flags & 2) flags += " rdma-placement-offer";
    if (f.hello_flags & ~3u) flags += fmt(" 0x%x", f.hello_flags & ~3u);
    if (!flags.empty()) out << ", flags:" << flags;
  }
  out << "\n";
  out << fmt("  %-7s %-44s %12s %9s\n", "channel", "file", "bytes", "packets");
  for (size_t i = 0; i < f.files.size(); ++i) {
    const auto& cf = f.files[i];
    out << fmt("  %-7zu %-44s %12llu %9llu\n", i, (i == 0 ? file_name : cf.name).c_str(),
               ull(cf.size), ull(cf.packets));
  }

  out << fmt("\nRAM blocks: %zu, %llu bytes\n", f.blocks.size(), ull(info.ram.total_bytes()));
  if (!f.blocks.empty()) {
    // "sent": pages the records cover (a page resent in a later iteration counts again).
    out << fmt("  %-24s %12s %8s %9s %10s %9s %9s %9s %9s\n", "name", "bytes", "page", "pages",
               "sent", "normal", "zero", "xbzrle", "lz4");
    for (size_t i = 0; i < f.blocks.size() && i < info.ram.blocks().size(); ++i) {
      const auto& b = f.blocks[i];
      out << fmt("  %-24s %12llu %8llu %9llu ", b.name.c_str(), ull(b.size), ull(b.page_size),
                 ull(b.size / b.page_size))
          << kinds(info.ram.blocks()[i]->counts) << "\n";
    }
  }

  size_t synced = 0;
  for (const auto& it : f.iterations) synced += it.synced;
  out << fmt("\niterations: %zu%s\n", synced,
             f.final_sync ? " (the last one with the guest stopped)" : ", no final SYNC");
  if (!f.iterations.empty()) {
    out << fmt("  %-9s %10s %9s %9s %9s %9s %12s %8s\n", "iteration", "pages", "normal", "zero",
               "xbzrle", "lz4", "bytes", "packets");
    PageCounts total;
    uint64_t bytes = 0, packets = 0;
    for (const auto& it : f.iterations) {
      std::string name = std::to_string(it.iteration);
      if (it.final_pass) name += " final";
      if (!it.synced) name += " (cut)";
      out << fmt("  %-9s ", name.c_str()) << kinds(it.pages)
          << fmt(" %12llu %8llu\n", ull(it.bytes), ull(it.packets));
      add(total, it.pages);
      bytes += it.bytes;
      packets += it.packets;
    }
    out << fmt("  %-9s ", "total") << kinds(total)
        << fmt(" %12llu %8llu\n", ull(bytes), ull(packets));
  }

  size_t decoded = 0;
  for (const auto& r : info.records) decoded += r.decoded;
  out << fmt("\ndevices:   %u (%zu decoded), %llu bytes of DEVICE and VMDESC bodies\n", f.devices,
             decoded, ull(f.device_bytes));
  print_vmdesc_line(out, info, "VMDESC at");
  out << "\n";
  if (!info.records.empty()) {
    out << fmt("  %-10s %8s %4s  %-32s %4s %4s  %s\n", "offset", "bytes", "id", "section", "inst",
               "ver", "contents");
    for (const Record& r : info.records) {
      out << fmt("  0x%08llx %8llu %4u  %-32s %4u %4u  %s\n", ull(r.offset), ull(r.end - r.offset),
                 r.section_id, r.idstr.c_str(), r.instance_id, r.version_id,
                 r.decoded ? "decoded" : "not decoded");
    }
  }

  out << "\ncompletion: ";
  if (f.complete) {
    out << fmt("COMPLETE: %llu pages sent, as the records say\n", ull(f.complete_counts.total()));
  } else {
    out << "not reached\n";
  }
  out << "verify:    ";
  if (f.hashes) {
    out << fmt("HASHES for %zu block%s: ", f.recorded_hashes.size(),
               f.recorded_hashes.size() == 1 ? "" : "s");
    if (f.hashes_match) {
      out << "the reconstructed RAM matches them\n";
    } else {
      out << "MISMATCH:";
      for (size_t i = 0; i < f.recorded_hashes.size() && i < f.image_hashes.size(); ++i) {
        if (f.recorded_hashes[i] != f.image_hashes[i] && i < f.blocks.size()) {
          out << " '" << f.blocks[i].name << "'";
        }
      }
      out << "\n";
    }
  } else if (f.done) {
    out << "no hashes in the stream (written without verify)\n";
  } else {
    out << (f.verify_announced ? "announced, hashes not reached\n" : "not announced\n");
  }
  if (f.done) {
    out << fmt("done:      DONE result %u", f.done_result);
    if (!f.done_message.empty()) out << ": " << f.done_message;
    out << "\n";
  }
  if (info.error) {
    out << "result:    stopped at ";
    if (!info.error->file.empty()) out << info.error->file << " ";
    out << fmt("offset 0x%llx: ", ull(info.error->offset)) << info.error->message << "\n";
  } else {
    out << "result:    complete\n";
  }
}

}  // namespace

void print_summary(std::ostream& out, const std::string& file_name, const StreamInfo& info) {
  if (info.ferry) {
    print_ferry_summary(out, file_name, info);
    return;
  }
  out << "file:      " << file_name << " (" << info.file_size << " bytes)\n";
  out << "format:    " << info.format << " migration stream, version " << info.version << "\n";
  out << "machine:   " << (info.machine.empty() ? "(unknown)" : info.machine) << "\n";
  print_vmdesc_line(out, info, "present at");
  out << "\n\nrecords (" << info.records.size() << "):\n";
  out << fmt("  %-10s %10s  %-14s %4s  %-32s %4s %4s  %s\n", "offset", "bytes", "type", "id",
             "section", "inst", "ver", "contents");
  uint64_t starts = 0, parts = 0, ends = 0, fulls = 0, commands = 0, ram_sections = 0;
  uint64_t devices = 0, decoded = 0;
  RamSectionCounts ram;
  for (const Record& r : info.records) {
    const bool complete = r.end >= r.offset && r.end != 0;
    std::string bytes = complete ? std::to_string(r.end - r.offset) : "?";
    std::string id, inst, ver, name;
    if (is_section(r.type)) {
      id = std::to_string(r.section_id);
      name = r.idstr;
      if (r.type == RecordType::kSectionStart || r.type == RecordType::kSectionFull) {
        inst = std::to_string(r.instance_id);
        ver = std::to_string(r.version_id);
      }
    }
    out << fmt("  0x%08llx %10s  %-14s %4s  %-32s %4s %4s  ", ull(r.offset), bytes.c_str(),
               record_type_name(r.type), id.c_str(), name.c_str(), inst.c_str(), ver.c_str())
        << contents(r, info) << "\n";
    switch (r.type) {
      case RecordType::kSectionStart: ++starts; break;
      case RecordType::kSectionPart: ++parts; break;
      case RecordType::kSectionEnd: ++ends; break;
      case RecordType::kSectionFull: ++fulls; break;
      case RecordType::kCommand: ++commands; break;
      default: break;
    }
    if (is_section(r.type)) {
      if (r.is_ram) {
        ++ram_sections;
        ram.zero += r.ram.zero;
        ram.normal += r.ram.normal;
        ram.xbzrle += r.ram.xbzrle;
        ram.named += r.ram.named;
        ram.continued += r.ram.continued;
      } else {
        ++devices;
        decoded += r.decoded;
      }
    }
  }

  out << fmt("\nsections: %llu (start %llu, part %llu, end %llu, full %llu), commands: %llu\n",
             ull(starts + parts + ends + fulls), ull(starts), ull(parts), ull(ends), ull(fulls),
             ull(commands));
  out << fmt("RAM blocks: %zu, %llu bytes\n", info.ram.blocks().size(), ull(info.ram.total_bytes()));
  if (!info.ram.blocks().empty()) {
    out << fmt("  %-36s %12s %10s %8s %8s %8s\n", "name", "bytes", "size", "zero", "normal",
               "xbzrle");
    for (const auto& b : info.ram.blocks()) {
      out << fmt("  %-36s %12llu %10s %8llu %8llu %8llu\n", b->name().c_str(), ull(b->size()),
                 fmt("0x%llx", ull(b->size())).c_str(), ull(b->counts.zero), ull(b->counts.normal),
                 ull(b->counts.xbzrle));
    }
  }
  out << fmt("page records: zero=%llu normal=%llu xbzrle=%llu (named=%llu continue=%llu) in %llu "
             "RAM sections\n",
             ull(ram.zero), ull(ram.normal), ull(ram.xbzrle), ull(ram.named), ull(ram.continued),
             ull(ram_sections));
  out << fmt("device sections: %llu (%llu decoded)\n", ull(devices), ull(decoded));
  if (info.error) {
    out << fmt("result:    stopped at offset 0x%llx: ", ull(info.error->offset)) << info.error->message
        << "\n";
  } else {
    out << "result:    complete\n";
  }
}

}  // namespace ferry::stream
