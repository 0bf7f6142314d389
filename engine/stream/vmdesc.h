// QEMU's vmdesc: the JSON trailer (0x06, be32 length, JSON to the end of the file) that describes
// every device section's fields. Device payloads carry no length, so without it they can be
// neither decoded nor skipped; it has to be found before the sections are walked.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

namespace ferry::stream {

inline constexpr uint8_t kQemuVmDescription = 0x06;

// Offset of the 0x06 byte of a trailer whose length runs exactly to the end of the file. The
// last such position wins: the JSON itself cannot contain a raw 0x06 byte.
std::optional<uint64_t> find_vmdesc_trailer(std::span<const uint8_t> file);

class Vmdesc {
 public:
  // Parses `text`; never throws. A bad document is remembered (error()) and reported where the
  // vmdesc is first needed, so RAM can still be read from a stream whose trailer is damaged.
  // `text_offset` is where the JSON starts in the file (for messages), `source` names it.
  Vmdesc(std::string_view text, uint64_t text_offset, std::string source);

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  uint64_t error_offset() const { return error_offset_; }
  const std::string& source() const { return source_; }
  uint32_t page_size() const { return page_size_; }
  size_t device_count() const { return devices_.size(); }

  // The description of section (idstr, instance), or nullptr. Like analyze-migration.py, a
  // later entry with the same key replaces an earlier one.
  const nlohmann::json* device(const std::string& name, uint32_t instance) const;
  const nlohmann::json* configuration() const { return configuration_; }

 private:
  void index();

  nlohmann::json doc_;
  std::string source_;
  std::string error_;
  uint64_t error_offset_ = 0;
  uint32_t page_size_ = 4096;
  std::map<std::pair<std::string, uint32_t>, const nlohmann::json*> devices_;
  const nlohmann::json* configuration_ = nullptr;
};

}  // namespace ferry::stream
