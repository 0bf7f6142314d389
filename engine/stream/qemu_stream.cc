#include "engine/stream/qemu_stream.h"

#include <cstdio>
#include <map>
#include <memory>
#include <unordered_map>

#include "engine/stream/byte_reader.h"
#include "engine/stream/ram_loader.h"
#include "engine/stream/vmdesc.h"
#include "engine/stream/vmstate_decoder.h"

namespace ferry::stream {
namespace {

// QEMU's MIG_CMD_* and the argument length each must have (-1: variable).
struct CommandInfo {
  const char* name;
  int len;
};
constexpr CommandInfo kCommands[] = {
    {"INVALID", -2},           {"OPEN_RETURN_PATH", 0}, {"PING", 4},
    {"POSTCOPY_ADVISE", -1},   {"POSTCOPY_LISTEN", 0},  {"POSTCOPY_RUN", 0},
    {"POSTCOPY_RAM_DISCARD", -1}, {"POSTCOPY_RESUME", 0}, {"PACKAGED", 4},
    {"RECV_BITMAP", -1},       {"ENABLE_COLO", 0},      {"SWITCHOVER_START", 0},
};
constexpr uint16_t kCmdPackaged = 8;

std::string section_key(const std::string& idstr, uint32_t section_id) {
  return idstr + " (" + std::to_string(section_id) + ")";
}

std::string describe(const Record& rec) {
  return "section '" + rec.idstr + "' (id " + std::to_string(rec.section_id) + ", instance " +
         std::to_string(rec.instance_id) + ")";
}

std::string size_string(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(v));
  return buf;
}

class QemuReader {
 public:
  QemuReader(std::span<const uint8_t> file, const ReadOptions& options, StreamInfo& info)
      : file_(file), r_(file), options_(options), info_(info) {}

  void run() {
    try {
      read_header();
      setup_vmdesc();
      read_records();
    } catch (const ParseError& e) {
      info_.error = StreamError{e.offset(), e.message()};
    } catch (const std::bad_alloc&) {
      info_.error = StreamError{r_.pos(), "out of memory"};
    } catch (const std::exception& e) {
      // Not expected (every input check throws ParseError), but never let it escape a reader.
      info_.error = StreamError{r_.pos(), std::string("internal error: ") + e.what()};
    }
  }

 private:
  struct OpenSection {
    std::string idstr;
    uint32_t instance_id;
    uint32_t version_id;
    bool is_ram;
  };

  void read_header() {
    r_.need(8, "stream header (magic and version)");
    Record rec;
    rec.type = RecordType::kHeader;
    r_.be32("magic");
    info_.version = r_.be32("stream version");
    if (info_.version != kQemuVersion) {
      r_.fail_at(4, "unsupported QEMU stream version " + std::to_string(info_.version) +
                        " (expected 3)");
    }
    rec.payload_offset = rec.payload_end = rec.end = r_.pos();
    info_.records.push_back(rec);
  }

  void setup_vmdesc() {
    trailer_ = find_vmdesc_trailer(file_);
    if (trailer_) {
      info_.vmdesc_in_stream = true;
      info_.vmdesc_offset = *trailer_;
      info_.vmdesc_length = file_.size() - *trailer_ - 5;
    }
    if (options_.vmdesc_json) {
      vmdesc_.emplace(*options_.vmdesc_json, 0, options_.vmdesc_source);
    } else if (trailer_) {
      auto text = file_.subspan(*trailer_ + 5);
      vmdesc_.emplace(std::string_view(reinterpret_cast<const char*>(text.data()), text.size()),
                      *trailer_ + 5, "trailer at " + hex(*trailer_));
    }
    uint32_t page_size = 4096;
    if (vmdesc_) {
      info_.vmdesc_source = options_.vmdesc_json ? options_.vmdesc_source : "the stream";
      info_.vmdesc_devices = vmdesc_->device_count();
      if (vmdesc_->ok()) page_size = vmdesc_->page_size();
    }
    ram_ = std::make_unique<RamLoader>(info_.ram, page_size, options_.max_ram_bytes);
  }

  void read_records() {
    bool first = true;
    for (;;) {
      const uint64_t at = r_.pos();
      if (r_.at_end()) r_.fail("truncated: the stream ends without an EOF record");
      const uint8_t type = r_.u8("record type");
      switch (type) {
        case qemu_vm::kEof:
          read_eof(at);
          return;
        case qemu_vm::kSectionStart:
          read_section_start(at, RecordType::kSectionStart);
          break;
        case qemu_vm::kSectionFull:
          read_section_start(at, RecordType::kSectionFull);
          break;
        case qemu_vm::kSectionPart:
          read_section_part(at, RecordType::kSectionPart);
          break;
        case qemu_vm::kSectionEnd:
          read_section_part(at, RecordType::kSectionEnd);
          break;
        case qemu_vm::kConfiguration:
          if (!first) r_.fail_at(at, "configuration record (0x07) after the first record");
          read_configuration(at);
          break;
        case qemu_vm::kCommand:
          read_command(at);
          break;
        case qemu_vm::kSectionFooter:
          r_.fail_at(at, "section footer (0x7e) outside a section");
        case qemu_vm::kVmDescription:
          r_.fail_at(at, "VMDESCRIPTION record (0x06) before the EOF record");
        case qemu_vm::kSubsection:
          r_.fail_at(at, "subsection (0x05) outside a device section");
        default:
          r_.fail_at(at, "unknown section type " + hex(type));
      }
      first = false;
    }
  }

  void read_configuration(uint64_t at) {
    Record rec;
    rec.type = RecordType::kConfiguration;
    rec.offset = at;
    rec.payload_offset = r_.pos();
    const uint32_t len = r_.be32("machine type length");
    info_.machine = r_.string(len, "machine type name");
    // QEMU's configuration vmstate may carry subsections (capabilities, uuid, ...) that only the
    // vmdesc can size; 0x05 is never a record type, so it cannot be confused with the next one.
    while (!r_.at_end() && r_.peek_u8("") == qemu_vm::kSubsection) {
      const uint64_t sub_at = r_.pos();
      r_.u8("subsection marker");
      std::string name = r_.short_string("configuration subsection name");
      r_.be32("configuration subsection version_id");
      const nlohmann::json* desc = config_subsection(name);
      if (desc == nullptr) {
        r_.fail_at(sub_at, "configuration subsection '" + name +
                               "' cannot be skipped without a vmdesc that describes it");
      }
      decode_vmstate(r_, *desc, "configuration subsection '" + name + "'");
    }
    rec.payload_end = rec.end = r_.pos();
    info_.records.push_back(rec);
  }

  const nlohmann::json* config_subsection(const std::string& name) const {
    if (!vmdesc_ || !vmdesc_->ok() || vmdesc_->configuration() == nullptr) return nullptr;
    auto subs = vmdesc_->configuration()->find("subsections");
    if (subs == vmdesc_->configuration()->end() || !subs->is_array()) return nullptr;
    for (const auto& s : *subs) {
      if (!s.is_object()) continue;
      auto n = s.find("vmsd_name");
      if (n != s.end() && n->is_string() && *n == name) return &s;
    }
    return nullptr;
  }

  void read_section_start(uint64_t at, RecordType type) {
    Record rec;
    rec.type = type;
    rec.offset = at;
    rec.section_id = r_.be32("section id");
    rec.idstr = r_.short_string("section idstr");
    rec.instance_id = r_.be32("section instance id");
    rec.version_id = r_.be32("section version id");
    // analyze-migration.py keys sections by (idstr, instance): only ("ram", 0) is RAM.
    rec.is_ram = rec.idstr == "ram" && rec.instance_id == 0;
    if (rec.is_ram && rec.version_id != 4) {
      r_.fail_at(at, "RAM section version " + std::to_string(rec.version_id) + " (expected 4)");
    }
    sections_[rec.section_id] = {rec.idstr, rec.instance_id, rec.version_id, rec.is_ram};
    read_payload_and_footer(std::move(rec));
  }

  void read_section_part(uint64_t at, RecordType type) {
    Record rec;
    rec.type = type;
    rec.offset = at;
    rec.section_id = r_.be32("section id");
    auto it = sections_.find(rec.section_id);
    if (it == sections_.end()) {
      r_.fail_at(at, std::string(record_type_name(type)) + " for section id " +
                         std::to_string(rec.section_id) + ", which no START or FULL opened");
    }
    rec.idstr = it->second.idstr;
    rec.instance_id = it->second.instance_id;
    rec.version_id = it->second.version_id;
    rec.is_ram = it->second.is_ram;
    read_payload_and_footer(std::move(rec));
  }

  void read_payload_and_footer(Record rec) {
    rec.payload_offset = r_.pos();
    // Listed before the payload is read, so a failure inside it still shows the section.
    const size_t index = info_.records.size();
    info_.records.push_back(std::move(rec));
    Record& cur = info_.records[index];
    const std::string key = section_key(cur.idstr, cur.section_id);
    if (cur.is_ram) {
      if (!state_index_.count(key)) {
        set_state(key, {{"section sizes", nlohmann::ordered_json::object()}});
      }
      // Sizes only change with MEM_SIZE, so only then is the entry rebuilt.
      try {
        ram_->load_section(r_, cur.ram);
      } catch (...) {
        if (cur.ram.mem_size) update_ram_sizes(key);
        throw;
      }
      if (cur.ram.mem_size) update_ram_sizes(key);
    } else {
      const nlohmann::json& desc = device_desc(cur);
      auto value = decode_vmstate(r_, desc, "section '" + cur.idstr + "'");
      set_state(key, std::move(value));
      cur.decoded = true;
    }
    cur.payload_end = r_.pos();
    read_footer(cur);
  }

  void update_ram_sizes(const std::string& key) {
    nlohmann::ordered_json sizes = nlohmann::ordered_json::object();
    auto& pairs = sizes.get_ref<nlohmann::ordered_json::object_t&>();
    for (const auto& b : info_.ram.blocks()) pairs.emplace_back(b->name(), size_string(b->size()));
    set_state(key, {{"section sizes", std::move(sizes)}});
  }

  // info_.state[key] = value, but with a hash index: ordered_json looks keys up linearly, and a
  // stream can hold very many sections. Like Python's OrderedDict, a key keeps its first place.
  void set_state(const std::string& key, nlohmann::ordered_json value) {
    auto& pairs = info_.state.get_ref<nlohmann::ordered_json::object_t&>();
    auto [it, inserted] = state_index_.try_emplace(key, pairs.size());
    if (inserted) {
      pairs.emplace_back(key, std::move(value));
    } else {
      (pairs.begin() + static_cast<long>(it->second))->second = std::move(value);
    }
  }

  const nlohmann::json& device_desc(const Record& rec) {
    const uint64_t at = r_.pos();
    if (!vmdesc_) {
      r_.fail_at(at, "device " + describe(rec) +
                         ": cannot decode or skip its payload without a vmdesc (device payloads "
                         "carry no length and this stream has no VMDESCRIPTION trailer; "
                         "--vmdesc FILE can supply one)");
    }
    if (!vmdesc_->ok()) {
      r_.fail_at(at, "device " + describe(rec) + ": cannot decode or skip its payload: " +
                         vmdesc_->error() + " (at offset " + hex(vmdesc_->error_offset()) + ")");
    }
    const nlohmann::json* d = vmdesc_->device(rec.idstr, rec.instance_id);
    if (d == nullptr) {
      r_.fail_at(at, "device " + describe(rec) + ": no entry for it in the vmdesc (" +
                         vmdesc_->source() + ")");
    }
    return *d;
  }

  void read_footer(Record& rec) {
    const uint64_t at = r_.pos();
    const uint8_t b = r_.u8("section footer (0x7e)");
    if (b != qemu_vm::kSectionFooter) {
      r_.fail_at(at, "bad section footer after " + describe(rec) + ": expected 0x7e, found " +
                         hex(b) + (rec.is_ram ? "" : " (payload longer than its vmdesc says?)"));
    }
    const uint32_t id = r_.be32("section footer id");
    if (id != rec.section_id) {
      r_.fail_at(at, "bad section footer after " + describe(rec) + ": it names section id " +
                         std::to_string(id));
    }
    rec.end = r_.pos();
  }

  void read_command(uint64_t at) {
    Record rec;
    rec.type = RecordType::kCommand;
    rec.offset = at;
    rec.command = r_.be16("command");
    rec.command_len = r_.be16("command length");
    rec.payload_offset = r_.pos();
    constexpr size_t kCount = sizeof kCommands / sizeof kCommands[0];
    if (rec.command == 0 || rec.command >= kCount) {
      r_.fail_at(at, "unknown command " + std::to_string(rec.command));
    }
    const CommandInfo& ci = kCommands[rec.command];
    rec.command_name = ci.name;
    if (ci.len >= 0 && rec.command_len != ci.len) {
      r_.fail_at(at, std::string("command ") + ci.name + " with length " +
                         std::to_string(rec.command_len) + " (expected " + std::to_string(ci.len) +
                         ")");
    }
    if (rec.command == kCmdPackaged) {
      r_.fail_at(at, "command PACKAGED (postcopy package) is not supported");
    }
    r_.bytes(rec.command_len, "command data");
    rec.payload_end = rec.end = r_.pos();
    info_.records.push_back(rec);
  }

  void read_eof(uint64_t at) {
    Record rec;
    rec.type = RecordType::kEof;
    rec.offset = at;
    rec.payload_offset = rec.payload_end = rec.end = r_.pos();
    info_.records.push_back(rec);
    if (r_.at_end()) return;

    const uint64_t vd = r_.pos();
    const uint8_t b = r_.u8("vmdesc record type");
    if (b != qemu_vm::kVmDescription) {
      r_.fail_at(vd, "unexpected byte " + hex(b) +
                         " after EOF (expected the VMDESCRIPTION record 0x06 or the end of file)");
    }
    const uint32_t len = r_.be32("vmdesc length");
    if (len > r_.remaining()) {
      r_.fail_at(vd + 1, "truncated: vmdesc length " + std::to_string(len) + " but only " +
                             std::to_string(r_.remaining()) + " bytes follow");
    }
    if (len < r_.remaining()) {
      r_.fail_at(r_.pos() + len, std::to_string(r_.remaining() - len) +
                                     " unexpected bytes after the vmdesc JSON");
    }
    Record vrec;
    vrec.type = RecordType::kVmdesc;
    vrec.offset = vd;
    vrec.payload_offset = r_.pos();
    r_.bytes(len, "vmdesc JSON");
    vrec.payload_end = vrec.end = r_.pos();
    info_.records.push_back(vrec);
    // find_vmdesc_trailer() must have found this very record (anything else means the one used
    // for the devices was not the stream's).
    if (!trailer_ || *trailer_ != vd) {
      r_.fail_at(vd, "vmdesc trailer mismatch: the record after EOF is not the one found at " +
                         (trailer_ ? hex(*trailer_) : std::string("(none)")));
    }
    if (!options_.vmdesc_json && !vmdesc_->ok()) {
      r_.fail_at(vmdesc_->error_offset(), vmdesc_->error());
    }
  }

  std::span<const uint8_t> file_;
  ByteReader r_;
  const ReadOptions& options_;
  StreamInfo& info_;
  std::optional<uint64_t> trailer_;
  std::optional<Vmdesc> vmdesc_;
  std::unique_ptr<RamLoader> ram_;
  std::map<uint32_t, OpenSection> sections_;
  std::unordered_map<std::string, size_t> state_index_;  // position of each key in info_.state
};

}  // namespace

bool is_qemu_stream(std::span<const uint8_t> file) {
  return file.size() >= 4 && file[0] == 'Q' && file[1] == 'E' && file[2] == 'V' && file[3] == 'M';
}

StreamInfo read_qemu_stream(std::span<const uint8_t> file, const ReadOptions& options) {
  StreamInfo info;
  info.format = "QEMU";
  info.file_size = file.size();
  QemuReader(file, options, info).run();
  return info;
}

}  // namespace ferry::stream
