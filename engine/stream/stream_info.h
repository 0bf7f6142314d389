// What a stream reader learned about one migration stream, whatever its format: the record walk,
// the RAM image, the decoded device state and, if the walk stopped early, why. Readers fill it
// as they go, so a stream that fails half way still shows everything before the failure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
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
  StreamError() = default;
  StreamError(uint64_t offset_, std::string message_, std::string file_ = {})
      : offset(offset_), message(std::move(message_)), file(std::move(file_)) {}
  uint64_t offset = 0;
  std::string message;
  // The file `offset` is in, when it is not the one given to read_stream (a ferry stream's
  // companion file of channel i > 0, ReadOptions::channel_file).
  std::string file;
};

// ferry's own stream format (engine/ram/wire_format.h): what the reader learned beyond the RAM
// image (StreamInfo::ram) and the device sections (StreamInfo::records/state).
struct FerryChannelFile {
  std::string name;  // as ReadOptions::channel_file named it; channel 0: empty (the file given)
  uint64_t size = 0;
  uint64_t packets = 0;
};

struct FerryBlock {
  std::string name;
  uint64_t size = 0;
  uint64_t page_size = 0;
};

struct FerryIteration {
  uint32_t iteration = 0;  // 0 = the bulk pass
  bool final_pass = false;  // guest stopped (SYNC with the final flag)
  bool synced = false;      // every channel reached its SYNC (else the stream stopped inside it)
  PageCounts pages;         // pages the DATA records cover, by kind
  uint64_t packets = 0;     // DATA and SYNC, every channel
  uint64_t bytes = 0;       // of those packets: headers, records and payloads
};

struct FerryStreamInfo {
  uint16_t handshake_version = 0;
  uint64_t session_id = 0;
  uint32_t channels = 0;  // from the handshake (HELLO agrees)
  std::vector<FerryChannelFile> files;  // one per channel, as far as they were opened
  // HELLO
  bool hello = false;
  uint32_t batch_pages = 0;
  uint32_t owned_payload_cap = 0;
  uint32_t hello_flags = 0;
  bool verify_announced = false;  // HELLO's verify flag: HASHES precede DONE
  std::vector<FerryBlock> blocks;
  std::vector<FerryIteration> iterations;  // complete ones (every channel reached their SYNC)
  bool final_sync = false;
  // After the final SYNC on channel 0.
  uint32_t devices = 0;            // DEVICE packets (their sections: StreamInfo::records)
  uint64_t device_bytes = 0;       // DEVICE and VMDESC bodies
  bool complete = false;           // COMPLETE read and its counts match the records
  PageCounts complete_counts;
  bool hashes = false;             // HASHES read
  std::vector<uint64_t> recorded_hashes;  // per block, from HASHES
  std::vector<uint64_t> image_hashes;     // per block, of the reconstructed RAM (page_digest.h)
  bool hashes_match = false;
  bool done = false;
  uint8_t done_result = 0;
  std::string done_message;
};

struct StreamInfo {
  std::string format;  // "QEMU" or "ferry"
  uint32_t version = 0;  // QEMU: the stream version (3); ferry: the wire version
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

  std::optional<FerryStreamInfo> ferry;  // format "ferry" only

  std::optional<StreamError> error;
};

}  // namespace ferry::stream
