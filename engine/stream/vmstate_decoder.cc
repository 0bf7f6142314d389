#include "engine/stream/vmstate_decoder.h"

#include <cstdio>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ferry::stream {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

// Nesting a hostile vmdesc could ask for; QEMU's real ones stay below 10.
constexpr int kMaxDepth = 64;
// Values that consume no input (size 0, empty structs) would let a vmdesc ask for unbounded
// output with a huge array_len.
constexpr uint64_t kMaxEmptyValues = 1 << 16;

enum class Kind { kGeneric, kSigned, kUnsigned, kBool, kStruct, kCapability, kNullptr };

Kind kind_of(const std::string& type) {
  static const std::pair<std::string_view, Kind> kTable[] = {
      {"uint8", Kind::kUnsigned},      {"uint16", Kind::kUnsigned},
      {"uint32", Kind::kUnsigned},     {"uint64", Kind::kUnsigned},
      {"uint32 equal", Kind::kUnsigned}, {"int8", Kind::kSigned},
      {"int16", Kind::kSigned},        {"int32", Kind::kSigned},
      {"int64", Kind::kSigned},        {"int32 equal", Kind::kSigned},
      {"int32 le", Kind::kSigned},     {"int64 equal", Kind::kSigned},
      {"uint8 equal", Kind::kSigned},  {"uint16 equal", Kind::kSigned},
      {"bool", Kind::kBool},           {"struct", Kind::kStruct},
      {"capability", Kind::kCapability}, {"nullptr", Kind::kNullptr},
  };
  for (const auto& [name, kind] : kTable) {
    if (type == name) return kind;
  }
  return Kind::kGeneric;
}

std::string hex_bytes(std::span<const uint8_t> b) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  s.reserve(b.size() * 3);
  for (size_t i = 0; i < b.size(); ++i) {
    if (i) s.push_back(' ');
    s.push_back(kDigits[b[i] >> 4]);
    s.push_back(kDigits[b[i] & 15]);
  }
  return s;
}

std::string format_int(std::span<const uint8_t> b, bool is_signed) {
  uint64_t u = 0;
  for (uint8_t c : b) u = (u << 8) | c;
  char buf[64];
  int n = std::snprintf(buf, sizeof buf, "0x%0*llx", static_cast<int>(b.size() * 2),
                        static_cast<unsigned long long>(u));
  if (is_signed && (b[0] & 0x80)) {
    const uint64_t extended = b.size() == 8 ? u : (u | (~uint64_t{0} << (8 * b.size())));
    std::snprintf(buf + n, sizeof buf - n, " (%lld)",
                  static_cast<long long>(static_cast<int64_t>(extended)));
  }
  return buf;
}

// One decoded struct. Python's analyzer keeps one key per name and turns a repeated name into a
// list; the hash index keeps that linear in the number of fields (ordered_json's own lookup is
// a linear scan, which a vmdesc with many distinct names would make quadratic).
class StructBuilder {
 public:
  StructBuilder() : obj_(out_.get_ref<ordered_json::object_t&>()) {}
  StructBuilder(const StructBuilder&) = delete;  // obj_ points into out_
  StructBuilder& operator=(const StructBuilder&) = delete;

  void accumulate(const std::string& key, ordered_json value) {
    auto [it, inserted] = index_.try_emplace(key, obj_.size());
    if (inserted) {
      obj_.emplace_back(key, std::move(value));
      return;
    }
    ordered_json& slot = (obj_.begin() + static_cast<long>(it->second))->second;
    if (slot.is_array()) {
      slot.push_back(std::move(value));
    } else {
      ordered_json list = ordered_json::array();
      list.push_back(std::move(slot));
      list.push_back(std::move(value));
      slot = std::move(list);
    }
  }

  void assign(const std::string& key, ordered_json value) {
    auto [it, inserted] = index_.try_emplace(key, obj_.size());
    if (inserted) {
      obj_.emplace_back(key, std::move(value));
    } else {
      (obj_.begin() + static_cast<long>(it->second))->second = std::move(value);
    }
  }

  ordered_json take() { return std::move(out_); }

 private:
  ordered_json out_ = ordered_json::object();
  ordered_json::object_t& obj_;  // the vector of (key, value) pairs inside out_
  std::unordered_map<std::string, size_t> index_;
};

class Decoder {
 public:
  Decoder(ByteReader& r, const std::string& where) : r_(r), where_(where) {}

  ordered_json decode_struct(const json& desc) {
    if (++depth_ > kMaxDepth) fail("vmdesc nests structs deeper than " + std::to_string(kMaxDepth));
    if (!desc.is_object()) fail("vmdesc: struct description is not an object");
    auto fields = desc.find("fields");
    if (fields == desc.end() || !fields->is_array()) fail("vmdesc: struct without \"fields\"");
    StructBuilder out;
    for (const json& f : *fields) {
      if (!f.is_object()) fail("vmdesc: field description is not an object");
      const std::string& name = string_member(f, "name");
      const std::string& type = string_member(f, "type");
      int64_t count = 1;
      bool is_array = false;
      if (auto al = f.find("array_len"); al != f.end()) {
        if (!al->is_number_integer()) fail("vmdesc: field '" + name + "' has a non-integer array_len");
        is_array = true;
        count = std::max<int64_t>(1, al->get<int64_t>());  // Python: element 0, then 1..len-1
      }
      for (int64_t i = 0; i < count; ++i) {
        path_.push_back({name, is_array ? i : -1});
        const size_t before = r_.pos();
        ordered_json v = decode_value(f, type);
        if (r_.pos() == before && ++empty_values_ > kMaxEmptyValues) {
          fail("vmdesc asks for more than " + std::to_string(kMaxEmptyValues) +
               " values that occupy no bytes");
        }
        path_.pop_back();
        out.accumulate(name, std::move(v));
      }
    }
    if (auto subs = desc.find("subsections"); subs != desc.end()) {
      if (!subs->is_array()) fail("vmdesc: \"subsections\" is not a list");
      for (const json& sub : *subs) decode_subsection(sub, out);
    }
    --depth_;
    return out.take();
  }

 private:
  struct Frame {
    std::string_view name;
    int64_t index;
  };

  void decode_subsection(const json& sub, StructBuilder& out) {
    std::string expected = "?";
    if (sub.is_object()) {
      if (auto n = sub.find("vmsd_name"); n != sub.end() && n->is_string()) expected = *n;
    }
    const uint64_t at = r_.pos();
    need(1, "subsection marker");
    const uint8_t marker = r_.u8("subsection marker");
    if (marker != kQemuVmSubsection) {
      r_.fail_at(at, prefix() + "expected subsection '" + expected + "' (byte 0x05), found " +
                         hex(marker));
    }
    need(1, "subsection name length");
    need(1 + size_t{r_.peek_u8("subsection name length")} + 4, "subsection name and version_id");
    std::string name = r_.short_string("subsection name");
    r_.be32("subsection version_id");
    if (!sub.is_object() || sub.empty()) fail("vmdesc: empty description for subsection '" + name + "'");
    if (expected != "?" && expected != name) {
      r_.fail_at(at + 2, prefix() + "found subsection '" + name + "' where the vmdesc expects '" +
                             expected + "'");
    }
    path_.push_back({name, -1});  // `name` outlives the frame
    ordered_json v = decode_struct(sub);
    path_.pop_back();
    out.assign(name, std::move(v));
  }

  ordered_json decode_value(const json& f, const std::string& type) {
    const Kind kind = kind_of(type);
    if (kind == Kind::kStruct) {
      auto s = f.find("struct");
      if (s == f.end()) fail("vmdesc: struct field without \"struct\"");
      return decode_struct(*s);
    }
    if (kind == Kind::kCapability) {
      need(1, "capability length");
      need(1 + size_t{r_.peek_u8("capability length")}, "capability name");
      const uint8_t len = r_.u8("capability length");
      return r_.string(len, "capability name");
    }
    auto sz = f.find("size");
    if (sz == f.end() || !sz->is_number_unsigned()) fail("vmdesc: field without an unsigned \"size\"");
    const uint64_t size = sz->get<uint64_t>();
    if (size > r_.remaining()) {
      fail(type + " field of " + std::to_string(size) + " bytes runs past the end of the file (" +
           std::to_string(r_.remaining()) + " bytes left)");
    }
    const uint64_t at = r_.pos();
    auto b = r_.bytes(static_cast<size_t>(size), "field");
    switch (kind) {
      case Kind::kBool:
        if (b.empty()) r_.fail_at(at, prefix() + "bool field of size 0");
        return b[0] != 0;
      case Kind::kSigned:
      case Kind::kUnsigned:
        if (b.empty() || b.size() > 8) {
          r_.fail_at(at, prefix() + type + " field of size " + std::to_string(b.size()) +
                             " (1..8 supported)");
        }
        return format_int(b, kind == Kind::kSigned);
      case Kind::kNullptr:
        if (b.size() != 1 || b[0] != '0') r_.fail_at(at, prefix() + "nullptr field is not the byte '0'");
        return "nullptr";
      default:
        return hex_bytes(b);
    }
  }

  const std::string& string_member(const json& f, const char* key) {
    auto it = f.find(key);
    if (it == f.end() || !it->is_string()) fail(std::string("vmdesc: field without a string \"") + key + "\"");
    return it->get_ref<const std::string&>();
  }

  std::string prefix() const {
    std::string p = where_;
    if (!path_.empty()) {
      p += " field '";
      for (size_t i = 0; i < path_.size(); ++i) {
        if (i) p += '.';
        p += path_[i].name;
        if (path_[i].index >= 0) p += "[" + std::to_string(path_[i].index) + "]";
      }
      p += "'";
    }
    return p + ": ";
  }

  [[noreturn]] void fail(const std::string& message) { r_.fail(prefix() + message); }

  void need(size_t n, const char* what) {
    if (n > r_.remaining()) {
      fail(std::string("truncated: expected ") + what + " (" + std::to_string(n) +
           " bytes), but the file ends after " + std::to_string(r_.remaining()));
    }
  }

  ByteReader& r_;
  const std::string& where_;
  std::vector<Frame> path_;
  int depth_ = 0;
  uint64_t empty_values_ = 0;
};

}  // namespace

ordered_json decode_vmstate(ByteReader& r, const json& desc, const std::string& where) {
  return Decoder(r, where).decode_struct(desc);
}

}  // namespace ferry::stream
