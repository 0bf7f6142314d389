// What a stream reader learned about one migration stream, whatever its format: the record walk,
// the RAM image, the decoded device state and, if the walk stopped early, why. Readers fill it
// as they go, so a stream that fails half way still shows everything before the failure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/stream/ram_image.h"
#include "engine/stream/ram_loader.h"

namespace ferry::stream {

enum class RecordType {
  kHeader,
  kConfiguration,
  kSectionStart,
  kSectionPart,
  kSectionEnd,
  kSectionFull,
  kCommand,
  kEof,
  kVmdesc,
};
// "SECTION_START", ... as in QEMU's QEMU_VM_* names and the corpus .walk.txt files.
const char* record_type_name(RecordType t);

struct Record {
  RecordType type = RecordType::kHeader;
  uint64_t offset = 0;          // the record's first byte
  uint64_t payload_offset = 0;  // after the record / section header
  uint64_t payload_end = 0;     // sections: where the footer starts; others: == end
  uint64_t end = 0;             // after the footer (or the record)

  // Sections. idstr/instance/version come from START/FULL; PART/END repeat them from the START.
  uint32_t section_id = 0;
  std::string idstr;
  uint32_t instance_id = 0;
  uint32_t version_id = 0;
  bool is_ram = false;
  RamSectionCounts ram;  // is_ram only
  bool decoded = false;  // device payload walked with the vmdesc

  uint16_t command = 0;  // kCommand
  uint16_t command_len = 0;
  std::string command_name;  // "SWITCHOVER_START", ...
};

struct StreamError {
  uint64_t offset = 0;
  std::string message;
};

struct StreamInfo {
  std::string format;  // "QEMU", later "ferry"
  uint32_t version = 0;
  uint64_t file_size = 0;
  std::string machine;  // from the configuration record
  std::vector<Record> records;
  RamImage ram;

  // The vmdesc that decoded the devices: the stream's trailer, or one given by the caller.
  bool vmdesc_in_stream = false;
  uint64_t vmdesc_offset = 0;  // of the 0x06 byte
  uint64_t vmdesc_length = 0;  // of the JSON
  std::string vmdesc_source;   // empty: none used
  size_t vmdesc_devices = 0;

  // analyze-migration.py's -f output: "idstr (section_id)" -> fields; "ram (N)" -> section sizes.
  nlohmann::ordered_json state = nlohmann::ordered_json::object();

  std::optional<StreamError> error;
};

}  // namespace ferry::stream
