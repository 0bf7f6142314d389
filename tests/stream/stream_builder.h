// Builds small QEMU migration streams byte by byte, so each record type and each error has a
// unit test with exactly known offsets.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ferry::stream::test {

class StreamBuilder {
 public:
  std::vector<uint8_t> bytes;

  size_t size() const { return bytes.size(); }

  StreamBuilder& u8(uint8_t v) {
    bytes.push_back(v);
    return *this;
  }
  StreamBuilder& be16(uint16_t v) { return be(v, 2); }
  StreamBuilder& be32(uint32_t v) { return be(v, 4); }
  StreamBuilder& be64(uint64_t v) { return be(v, 8); }
  StreamBuilder& raw(const std::string& s) {
    bytes.insert(bytes.end(), s.begin(), s.end());
    return *this;
  }
  StreamBuilder& raw(const std::vector<uint8_t>& v) {
    bytes.insert(bytes.end(), v.begin(), v.end());
    return *this;
  }
  StreamBuilder& sstr(const std::string& s) { return u8(static_cast<uint8_t>(s.size())).raw(s); }

  StreamBuilder& header(uint32_t version = 3) { return raw("QEVM").be32(version); }
  StreamBuilder& config(const std::string& machine) {
    return u8(0x07).be32(static_cast<uint32_t>(machine.size())).raw(machine);
  }
  StreamBuilder& start(uint32_t id, const std::string& idstr, uint32_t instance, uint32_t version,
                       uint8_t type = 0x01) {
    return u8(type).be32(id).sstr(idstr).be32(instance).be32(version);
  }
  StreamBuilder& full(uint32_t id, const std::string& idstr, uint32_t instance, uint32_t version) {
    return start(id, idstr, instance, version, 0x04);
  }
  StreamBuilder& part(uint32_t id) { return u8(0x02).be32(id); }
  StreamBuilder& end(uint32_t id) { return u8(0x03).be32(id); }
  StreamBuilder& footer(uint32_t id) { return u8(0x7e).be32(id); }
  StreamBuilder& command(uint16_t cmd, const std::vector<uint8_t>& data = {}) {
    return u8(0x08).be16(cmd).be16(static_cast<uint16_t>(data.size())).raw(data);
  }
  StreamBuilder& eof() { return u8(0x00); }
  StreamBuilder& vmdesc(const std::string& json) {
    return u8(0x06).be32(static_cast<uint32_t>(json.size())).raw(json);
  }

  // RAM records. An empty block name means CONTINUE.
  StreamBuilder& mem_size(const std::vector<std::pair<std::string, uint64_t>>& blocks) {
    uint64_t total = 0;
    for (const auto& b : blocks) total += b.second;
    be64(total | 0x04);
    for (const auto& b : blocks) sstr(b.first).be64(b.second);
    return *this;
  }
  StreamBuilder& ram_zero(uint64_t offset, const std::string& block, uint8_t fill = 0) {
    return ram_head(offset, 0x02, block).u8(fill);
  }
  StreamBuilder& ram_page(uint64_t offset, const std::string& block, uint8_t pattern) {
    ram_head(offset, 0x08, block);
    for (int i = 0; i < 4096; ++i) u8(static_cast<uint8_t>(pattern + i));
    return *this;
  }
  StreamBuilder& ram_xbzrle(uint64_t offset, const std::string& block,
                            const std::vector<uint8_t>& delta) {
    return ram_head(offset, 0x40, block).u8(0x01).be16(static_cast<uint16_t>(delta.size())).raw(delta);
  }
  StreamBuilder& ram_eos() { return be64(0x10); }

 private:
  StreamBuilder& be(uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) bytes.push_back(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
  StreamBuilder& ram_head(uint64_t offset, uint64_t flag, const std::string& block) {
    be64(offset | flag | (block.empty() ? 0x20 : 0));
    if (!block.empty()) sstr(block);
    return *this;
  }
};

}  // namespace ferry::stream::test
