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

}  // namespace

void print_summary(std::ostream& out, const std::string& file_name, const StreamInfo& info) {
  out << "file:      " << file_name << " (" << info.file_size << " bytes)\n";
  out << "format:    " << info.format << " migration stream, version " << info.version << "\n";
  out << "machine:   " << (info.machine.empty() ? "(unknown)" : info.machine) << "\n";
  if (info.vmdesc_in_stream) {
    out << fmt("vmdesc:    present at 0x%llx (%llu bytes of JSON)", ull(info.vmdesc_offset),
               ull(info.vmdesc_length));
  } else {
    out << "vmdesc:    absent";
  }
  if (!info.vmdesc_source.empty()) {
    out << fmt("; %zu device descriptions used from %s", info.vmdesc_devices,
               info.vmdesc_source.c_str());
  }
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
