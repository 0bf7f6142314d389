// BER primitives for the BER visitors: identifier octets of the tags ferry_vmstate.asn1 uses,
// writers (indefinite-length constructed values, minimal INTEGERs) and a bounds-checked reader
// that keeps a fixed stack of open constructed values (definite or indefinite length).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "engine/vmstate/errors.h"

namespace ferry::vmstate::ber {

// Tags as (class | constructed | number) packed: identifier octets for numbers < 31, and the
// special two-octet form for the section tag.
struct Tag {
  uint8_t cls;   // 0 universal, 1 application, 2 context, 3 private
  bool constructed;
  uint32_t number;
  bool operator==(const Tag&) const = default;
};

inline constexpr Tag kBoolean{0, false, 1};
inline constexpr Tag kInteger{0, false, 2};
inline constexpr Tag kOctetString{0, false, 4};
inline constexpr Tag kUtf8String{0, false, 12};
inline constexpr Tag kSequence{0, true, 16};
inline constexpr Tag kSubsection{1, true, 2};  // [APPLICATION 2]
inline constexpr Tag kList{1, true, 3};        // [APPLICATION 3]
inline constexpr Tag kArray{1, true, 4};       // [APPLICATION 4]
inline constexpr Tag kUnused{1, false, 5};     // [APPLICATION 5] INTEGER
inline constexpr Tag kMarked{1, true, 6};      // [APPLICATION 6]
inline constexpr Tag kSection{1, true, 70};    // [APPLICATION 70]
inline constexpr uint32_t kFormatVersion = 1;

// Open constructed values the reader accepts (a walker level takes up to three: Field, List or
// Array, element); deeper input is Errc::kDepthLimit.
inline constexpr int kMaxBerDepth = 128;

// The first four bytes of every BER section: 7F 46 ([APPLICATION 70] constructed), 80
// (indefinite length), 02 (the formatVersion INTEGER).
inline constexpr uint8_t kSectionPrefix[4] = {0x7f, 0x46, 0x80, 0x02};

// "INTEGER", "[APPLICATION 3] constructed", ... for messages.
std::string tag_name(const Tag& t);

class Writer {
 public:
  explicit Writer(std::vector<uint8_t>& out) : out_(out) {}
  void open(const Tag& t);  // identifier + 0x80
  void close();             // 00 00
  void put_unsigned(const Tag& t, uint64_t v);
  void put_signed(const Tag& t, int64_t v);
  void put_bool(bool v);
  void put_bytes(const Tag& t, const uint8_t* data, size_t len);
  void put_string(std::string_view s) {
    put_bytes(kUtf8String, reinterpret_cast<const uint8_t*>(s.data()), s.size());
  }
  size_t size() const { return out_.size(); }

 private:
  void put_tag(const Tag& t);
  void put_length(size_t len);
  std::vector<uint8_t>& out_;
};

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> data) : data_(data) {}

  size_t offset() const { return pos_; }
  int depth() const { return depth_; }

  // True when the innermost open constructed value has no more content (00 00 next for an
  // indefinite one, its end reached for a definite one). At depth 0: end of data.
  bool at_end() const;
  // Reads the next identifier + length without consuming it.
  Status peek(Tag& t) const;
  // Reads a primitive value with tag `t`; `content` points into the data.
  Status get_primitive(const Tag& t, std::span<const uint8_t>& content, const char* what);
  // Enters a constructed value with tag `t`.
  Status open(const Tag& t, const char* what);
  // Leaves the innermost constructed value; it must have no content left.
  Status close(const char* what);

  Status get_unsigned(const Tag& t, uint64_t max, uint64_t& v, const char* what);
  Status get_signed(const Tag& t, int64_t min, int64_t max, int64_t& v, const char* what);
  Status get_bool(bool& v, const char* what);
  Status get_string(std::string_view& s, const char* what);

 private:
  struct Header {
    Tag tag;
    bool indefinite;
    size_t length;       // definite only
    size_t header_size;  // identifier + length octets
  };
  Status read_header(size_t at, Header& h) const;
  size_t limit() const;  // end of the innermost definite value, or the data size
  Status expect(const Tag& t, Header& h, const char* what);

  struct Frame {
    size_t end;  // definite: end offset; indefinite: unused
    bool indefinite;
  };
  std::span<const uint8_t> data_;
  size_t pos_ = 0;
  Frame frames_[kMaxBerDepth];
  int depth_ = 0;
};

}  // namespace ferry::vmstate::ber
