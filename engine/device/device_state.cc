#include "engine/device/device_state.h"

#include <nlohmann/json.hpp>

#include "engine/ram/wire_format.h"
#include "engine/vmstate/binary_input.h"
#include "engine/vmstate/qemu_wire.h"
#include "engine/vmstate/vmdesc_json.h"
#include "engine/vmstate/walker.h"

namespace ferry::device {
namespace {

namespace vms = ferry::vmstate;

constexpr uint8_t kVmdescMarker = 0x06;  // QEMU_VM_VMDESCRIPTION

std::string who(const std::string& idstr, uint32_t instance) {
  return "device '" + idstr + "' instance " + std::to_string(instance);
}

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  out.push_back(static_cast<uint8_t>(v >> 24));
  out.push_back(static_cast<uint8_t>(v >> 16));
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

// Bounds-checked big-endian reads over one packet body; offsets in errors count the header.
class BeReader {
 public:
  BeReader(std::span<const uint8_t> b, uint64_t packet) : b_(b), packet_(packet) {}
  uint8_t u8(const char* what) {
    need(1, what);
    return b_[pos_++];
  }
  uint32_t be32(const char* what) {
    need(4, what);
    const uint32_t v = (uint32_t{b_[pos_]} << 24) | (uint32_t{b_[pos_ + 1]} << 16) |
                       (uint32_t{b_[pos_ + 2]} << 8) | b_[pos_ + 3];
    pos_ += 4;
    return v;
  }
  uint32_t le32(const char* what) {
    need(4, what);
    const uint32_t v = uint32_t{b_[pos_]} | (uint32_t{b_[pos_ + 1]} << 8) |
                       (uint32_t{b_[pos_ + 2]} << 16) | (uint32_t{b_[pos_ + 3]} << 24);
    pos_ += 4;
    return v;
  }
  std::string bytes(size_t n, const char* what) {
    need(n, what);
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  std::span<const uint8_t> rest() const { return b_.subspan(pos_); }
  void skip(size_t n) { pos_ += n; }
  size_t pos() const { return pos_; }
  size_t remaining() const { return b_.size() - pos_; }
  [[noreturn]] void fail(size_t at, const std::string& what) const {
    wire::fail(0, packet_, wire::kHeaderSize + at, what);
  }

 private:
  void need(size_t n, const char* what) const {
    if (b_.size() - pos_ < n) {
      fail(pos_, std::string("truncated ") + what + " (" + std::to_string(b_.size() - pos_) +
                     " bytes left, " + std::to_string(n) + " needed)");
    }
  }
  std::span<const uint8_t> b_;
  uint64_t packet_;
  size_t pos_ = 0;
};

}  // namespace

void check_devices(const std::vector<Device>& devices, const char* side) {
  std::set<std::pair<std::string, uint32_t>> seen;
  for (const Device& d : devices) {
    if (d.idstr.empty() || d.idstr.size() > 255) {
      throw MigrationError(std::string(side) + ": device idstr '" + d.idstr + "' must be 1..255 bytes");
    }
    if (!d.vmsd || !d.vmsd->name || !d.vmsd->fields) {
      throw MigrationError(std::string(side) + ": " + who(d.idstr, d.instance_id) +
                           " has no usable description (name and field table)");
    }
    if (!seen.insert({d.idstr, d.instance_id}).second) {
      throw MigrationError(std::string(side) + ": " + who(d.idstr, d.instance_id) +
                           " registered twice");
    }
  }
}

uint64_t SavedDevices::bytes() const {
  uint64_t n = vmdesc.size();
  for (const auto& s : sections) n += s.size();
  return n;
}

SavedDevices save_devices(const std::vector<Device>& devices, uint32_t page_size) {
  SavedDevices out;
  std::vector<nlohmann::ordered_json> descs;
  for (size_t i = 0; i < devices.size(); ++i) {
    const Device& d = devices[i];
    const auto section_id = static_cast<uint32_t>(i);
    std::vector<uint8_t> s;
    s.push_back(vms::kQemuVmSectionFull);
    put_be32(s, section_id);
    s.push_back(static_cast<uint8_t>(d.idstr.size()));
    s.insert(s.end(), d.idstr.begin(), d.idstr.end());
    put_be32(s, d.instance_id);
    put_be32(s, static_cast<uint32_t>(d.vmsd->version_id));
    nlohmann::ordered_json body;
    vms::Status st = vms::save_state_described(*d.vmsd, d.opaque, s, body);
    if (!st.ok()) {
      throw MigrationError("saving " + who(d.idstr, d.instance_id) + " failed: " + st.message());
    }
    s.push_back(vms::kQemuVmSectionFooter);
    put_be32(s, section_id);
    if (s.size() > wire::kMaxControlBody) {
      throw MigrationError(who(d.idstr, d.instance_id) + ": state of " + std::to_string(s.size()) +
                           " bytes exceeds the " + std::to_string(wire::kMaxControlBody) +
                           "-byte DEVICE packet limit");
    }
    out.sections.push_back(std::move(s));
    descs.push_back(vms::vmdesc_device(d.idstr, d.instance_id, body));
  }
  out.vmdesc_json = vms::vmdesc_document(page_size, descs);
  auto& v = out.vmdesc;
  const uint32_t count = static_cast<uint32_t>(devices.size());
  for (int k = 0; k < 4; ++k) v.push_back(static_cast<uint8_t>(count >> (8 * k)));
  v.push_back(kVmdescMarker);
  put_be32(v, static_cast<uint32_t>(out.vmdesc_json.size()));
  v.insert(v.end(), out.vmdesc_json.begin(), out.vmdesc_json.end());
  if (v.size() > wire::kMaxControlBody) {
    throw MigrationError("device description of " + std::to_string(v.size()) +
                         " bytes exceeds the " + std::to_string(wire::kMaxControlBody) +
                         "-byte VMDESC packet limit");
  }
  return out;
}

std::vector<uint8_t> qemu_device_stream(const SavedDevices& saved) {
  std::vector<uint8_t> f(std::begin(vms::kQemuFileMagic), std::end(vms::kQemuFileMagic));
  put_be32(f, vms::kQemuFileVersion);
  for (const auto& s : saved.sections) f.insert(f.end(), s.begin(), s.end());
  f.push_back(vms::kQemuVmEof);
  if (saved.vmdesc.size() > 4) f.insert(f.end(), saved.vmdesc.begin() + 4, saved.vmdesc.end());
  return f;
}

void DeviceLoader::load_section(std::span<const uint8_t> body, uint64_t packet) {
  BeReader r(body, packet);
  const uint8_t type = r.u8("section type");
  if (type != vms::kQemuVmSectionFull) {
    r.fail(0, "DEVICE section type " + std::to_string(type) + ", expected SECTION_FULL (4)");
  }
  const uint32_t section_id = r.be32("section id");
  const uint8_t len = r.u8("idstr length");
  const std::string idstr = r.bytes(len, "idstr");
  const uint32_t instance = r.be32("instance id");
  const uint32_t version = r.be32("version id");
  ++sections_;
  const Device* dev = nullptr;
  for (const Device& d : devices_) {
    if (d.idstr == idstr && d.instance_id == instance) {
      dev = &d;
      break;
    }
  }
  if (!dev) {
    std::string known;
    for (const Device& d : devices_) {
      known += (known.empty() ? "" : ", ") + ("'" + d.idstr + "' " + std::to_string(d.instance_id));
    }
    throw MigrationError("unknown " + who(idstr, instance) + " (version " +
                         std::to_string(version) + ") in the stream: not registered on the "
                         "destination (registered: " + (known.empty() ? "none" : known) + ")");
  }
  if (!loaded_.insert({idstr, instance}).second) {
    r.fail(0, who(idstr, instance) + " sent twice");
  }
  const vms::Description& vmsd = *dev->vmsd;
  if (version > static_cast<uint32_t>(vmsd.version_id)) {
    throw MigrationError(who(idstr, instance) + " ('" + vmsd.name + "'): stream version " +
                         std::to_string(version) + " is newer than the destination's version " +
                         std::to_string(vmsd.version_id));
  }
  if (static_cast<int64_t>(version) < vmsd.minimum_version_id) {
    throw MigrationError(who(idstr, instance) + " ('" + vmsd.name + "'): stream version " +
                         std::to_string(version) + " is older than the destination's minimum " +
                         std::to_string(vmsd.minimum_version_id));
  }
  const size_t body_at = r.pos();
  vms::BinaryInput in(r.rest());
  vms::Status st = vms::load_state(vmsd, dev->opaque, in, static_cast<int>(version));
  if (!st.ok()) {
    throw MigrationError("loading " + who(idstr, instance) + " (packet " + std::to_string(packet) +
                         ", state at offset " + std::to_string(wire::kHeaderSize + body_at) +
                         ") failed: " + st.message());
  }
  r.skip(in.offset());
  const size_t footer_at = r.pos();
  const uint8_t footer = r.u8("section footer");
  if (footer != vms::kQemuVmSectionFooter) {
    r.fail(footer_at, who(idstr, instance) + ": expected the section footer (0x7e) after its "
                      "state, found byte " + std::to_string(footer));
  }
  const uint32_t footer_id = r.be32("footer section id");
  if (footer_id != section_id) {
    r.fail(footer_at + 1, who(idstr, instance) + ": footer section id " +
                              std::to_string(footer_id) + " != section id " +
                              std::to_string(section_id));
  }
  if (r.remaining() != 0) {
    r.fail(r.pos(), std::to_string(r.remaining()) + " bytes after the section footer of " +
                        who(idstr, instance));
  }
}

void DeviceLoader::load_vmdesc(std::span<const uint8_t> body, uint64_t packet) {
  BeReader r(body, packet);
  if (have_vmdesc_) r.fail(0, "a second VMDESC");
  const uint32_t count = r.le32("device count");
  if (count != sections_) {
    r.fail(0, "VMDESC counts " + std::to_string(count) + " device sections, " +
                  std::to_string(sections_) + " arrived");
  }
  const uint8_t marker = r.u8("vmdesc marker");
  if (marker != kVmdescMarker) r.fail(4, "vmdesc marker " + std::to_string(marker) + ", expected 6");
  const uint32_t len = r.be32("vmdesc length");
  if (len != r.remaining()) {
    r.fail(5, "vmdesc length " + std::to_string(len) + " but " + std::to_string(r.remaining()) +
                  " bytes follow");
  }
  const size_t json_at = r.pos();
  std::string text = r.bytes(len, "vmdesc JSON");
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    r.fail(json_at + (e.byte > 0 ? e.byte - 1 : 0), std::string("vmdesc is not valid JSON: ") + e.what());
  }
  auto devs = doc.is_object() ? doc.find("devices") : doc.end();
  if (!doc.is_object() || devs == doc.end() || !devs->is_array() || devs->size() != count) {
    r.fail(json_at, "vmdesc does not list the " + std::to_string(count) + " device sections");
  }
  have_vmdesc_ = true;
  vmdesc_ = std::move(text);
}

void DeviceLoader::finish() const {
  std::string missing;
  for (const Device& d : devices_) {
    if (!loaded_.count({d.idstr, d.instance_id})) {
      missing += (missing.empty() ? "" : ", ") + who(d.idstr, d.instance_id);
    }
  }
  if (!missing.empty()) {
    throw MigrationError("the source sent no state for " + missing +
                         " (registered on the destination)");
  }
  if (sections_ > 0 && !have_vmdesc_) {
    throw MigrationError("device sections arrived without their VMDESC");
  }
}

}  // namespace ferry::device
