#include "engine/stream/vmdesc.h"

#include <limits>

namespace ferry::stream {

std::optional<uint64_t> find_vmdesc_trailer(std::span<const uint8_t> file) {
  const uint64_t size = file.size();
  if (size < 5) return std::nullopt;
  for (uint64_t p = size - 5; p + 1 > 0; --p) {
    if (file[p] != kQemuVmDescription) continue;
    const uint64_t len = (uint64_t{file[p + 1]} << 24) | (uint64_t{file[p + 2]} << 16) |
                         (uint64_t{file[p + 3]} << 8) | file[p + 4];
    if (len == size - p - 5) return p;
  }
  return std::nullopt;
}

Vmdesc::Vmdesc(std::string_view text, uint64_t text_offset, std::string source)
    : source_(std::move(source)) {
  try {
    doc_ = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::parse_error& e) {
    error_ = std::string("vmdesc (") + source_ + ") is not valid JSON: " + e.what();
    error_offset_ = text_offset + (e.byte > 0 ? e.byte - 1 : 0);
    return;
  }
  error_offset_ = text_offset;
  index();
}

void Vmdesc::index() {
  if (!doc_.is_object()) {
    error_ = "vmdesc (" + source_ + ") is not a JSON object";
    return;
  }
  if (auto it = doc_.find("page_size"); it != doc_.end()) {
    if (!it->is_number_unsigned() || it->get<uint64_t>() < 512 || it->get<uint64_t>() > 65536 ||
        (it->get<uint64_t>() & (it->get<uint64_t>() - 1)) != 0) {
      error_ = "vmdesc (" + source_ + ") has an invalid page_size " + it->dump();
      return;
    }
    page_size_ = static_cast<uint32_t>(it->get<uint64_t>());
  }
  if (auto it = doc_.find("configuration"); it != doc_.end() && it->is_object()) {
    configuration_ = &*it;
  }
  auto devs = doc_.find("devices");
  if (devs == doc_.end() || !devs->is_array()) {
    error_ = "vmdesc (" + source_ + ") has no \"devices\" array";
    return;
  }
  for (const auto& d : *devs) {
    if (!d.is_object()) continue;
    auto name = d.find("name");
    auto inst = d.find("instance_id");
    if (name == d.end() || !name->is_string() || inst == d.end() || !inst->is_number_integer() ||
        inst->get<int64_t>() < 0 || inst->get<int64_t>() > std::numeric_limits<uint32_t>::max()) {
      continue;  // cannot be matched to a section; an error only if a section needs it
    }
    devices_[{name->get<std::string>(), static_cast<uint32_t>(inst->get<int64_t>())}] = &d;
  }
}

const nlohmann::json* Vmdesc::device(const std::string& name, uint32_t instance) const {
  auto it = devices_.find({name, instance});
  return it == devices_.end() ? nullptr : it->second;
}

}  // namespace ferry::stream
