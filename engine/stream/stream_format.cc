#include "engine/stream/stream_format.h"

#include "engine/stream/ferry_stream.h"
#include "engine/stream/qemu_stream.h"

namespace ferry::stream {
namespace {

constexpr StreamFormat kFormats[] = {
    {"QEMU", is_qemu_stream, read_qemu_stream},
    // ferry's stream files start with the session handshake (transports/handshake.h).
    {"ferry", is_ferry_stream, read_ferry_stream},
};

}  // namespace

const char* record_type_name(RecordType t) {
  switch (t) {
    case RecordType::kHeader: return "HEADER";
    case RecordType::kConfiguration: return "CONFIGURATION";
    case RecordType::kSectionStart: return "SECTION_START";
    case RecordType::kSectionPart: return "SECTION_PART";
    case RecordType::kSectionEnd: return "SECTION_END";
    case RecordType::kSectionFull: return "SECTION_FULL";
    case RecordType::kCommand: return "COMMAND";
    case RecordType::kEof: return "EOF";
    case RecordType::kVmdesc: return "VMDESCRIPTION";
  }
  return "?";
}

StreamInfo read_stream(std::span<const uint8_t> file, const ReadOptions& options) {
  for (const auto& f : kFormats) {
    if (f.probe(file)) return f.read(file, options);
  }
  StreamInfo info;
  info.file_size = file.size();
  if (file.size() < 4) {
    info.error = StreamError{0, "not a QEMU or ferry stream: the file is " +
                                    std::to_string(file.size()) +
                                    " bytes, too short for a magic number"};
  } else {
    const uint32_t magic = (uint32_t{file[0]} << 24) | (uint32_t{file[1]} << 16) |
                           (uint32_t{file[2]} << 8) | file[3];
    info.error = StreamError{0, "not a QEMU or ferry stream (magic " + hex(magic) + ", expected " +
                                    hex(kQemuMagic) + " 'QEVM' or 0x46525943 'FRYC')"};
  }
  return info;
}

}  // namespace ferry::stream
