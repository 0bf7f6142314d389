#include "engine/vmstate/ber.h"

#include <cstdio>
#include <string>

namespace ferry::vmstate::ber {

std::string tag_name(const Tag& t) {
  if (t.cls == 0) {
    switch (t.number) {
      case 0: return "end-of-contents";
      case 1: return "BOOLEAN";
      case 2: return "INTEGER";
      case 4: return t.constructed ? "OCTET STRING (constructed)" : "OCTET STRING";
      case 12: return "UTF8String";
      case 16: return "SEQUENCE";
      default: break;
    }
  }
  static const char* const kClass[] = {"UNIVERSAL", "APPLICATION", "CONTEXT", "PRIVATE"};
  char buf[64];
  std::snprintf(buf, sizeof buf, "[%s %u]%s", kClass[t.cls & 3], t.number,
                t.constructed ? " constructed" : "");
  return buf;
}

// ---- Writer

void Writer::put_tag(const Tag& t) {
  uint8_t first = static_cast<uint8_t>((t.cls << 6) | (t.constructed ? 0x20 : 0));
  if (t.number < 31) {
    out_.push_back(static_cast<uint8_t>(first | t.number));
    return;
  }
  out_.push_back(static_cast<uint8_t>(first | 0x1f));
  uint8_t tmp[5];
  int n = 0;
  uint32_t v = t.number;
  do {
    tmp[n++] = static_cast<uint8_t>(v & 0x7f);
    v >>= 7;
  } while (v);
  while (n-- > 0) out_.push_back(static_cast<uint8_t>(tmp[n] | (n ? 0x80 : 0)));
}

void Writer::put_length(size_t len) {
  if (len < 0x80) {
    out_.push_back(static_cast<uint8_t>(len));
    return;
  }
  uint8_t tmp[8];
  int n = 0;
  while (len) {
    tmp[n++] = static_cast<uint8_t>(len);
    len >>= 8;
  }
  out_.push_back(static_cast<uint8_t>(0x80 | n));
  while (n-- > 0) out_.push_back(tmp[n]);
}

void Writer::open(const Tag& t) {
  put_tag(t);
  out_.push_back(0x80);
}

void Writer::close() {
  out_.push_back(0);
  out_.push_back(0);
}

void Writer::put_unsigned(const Tag& t, uint64_t v) {
  uint8_t tmp[9];
  int n = 0;
  do {
    tmp[n++] = static_cast<uint8_t>(v);
    v >>= 8;
  } while (v);
  if (tmp[n - 1] & 0x80) tmp[n++] = 0;  // keep it positive
  put_tag(t);
  put_length(static_cast<size_t>(n));
  while (n-- > 0) out_.push_back(tmp[n]);
}

void Writer::put_signed(const Tag& t, int64_t s) {
  const uint64_t v = static_cast<uint64_t>(s);
  int n = 8;
  // Drop leading octets that are pure sign extension of the next one.
  while (n > 1) {
    const uint8_t top = static_cast<uint8_t>(v >> (8 * (n - 1)));
    const uint8_t next_bit = static_cast<uint8_t>(v >> (8 * (n - 2) + 7)) & 1;
    if ((top == 0x00 && next_bit == 0) || (top == 0xff && next_bit == 1)) {
      --n;
    } else {
      break;
    }
  }
  put_tag(t);
  put_length(static_cast<size_t>(n));
  for (int i = n; i-- > 0;) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void Writer::put_bool(bool v) {
  put_tag(kBoolean);
  out_.push_back(1);
  out_.push_back(v ? 0xff : 0x00);
}

void Writer::put_bytes(const Tag& t, const uint8_t* data, size_t len) {
  put_tag(t);
  put_length(len);
  out_.insert(out_.end(), data, data + len);
}

// ---- Reader

size_t Reader::limit() const {
  for (int i = depth_; i-- > 0;) {
    if (!frames_[i].indefinite) return frames_[i].end;
  }
  return data_.size();
}

bool Reader::at_end() const {
  if (depth_ == 0) return pos_ >= data_.size();
  const Frame& f = frames_[depth_ - 1];
  if (!f.indefinite) return pos_ >= f.end;
  const size_t lim = limit();
  return lim - pos_ >= 2 && data_[pos_] == 0 && data_[pos_ + 1] == 0;
}

Status Reader::read_header(size_t at, Header& h) const {
  const size_t lim = limit();
  size_t p = at;
  if (p >= lim) {
    return make_error(Errc::kTruncated, "truncated BER: no identifier at offset %zu", at);
  }
  const uint8_t b = data_[p++];
  h.tag.cls = b >> 6;
  h.tag.constructed = (b & 0x20) != 0;
  h.tag.number = b & 0x1f;
  if (h.tag.number == 0x1f) {
    uint32_t n = 0;
    for (int i = 0;; ++i) {
      if (p >= lim) {
        return make_error(Errc::kTruncated, "truncated BER tag at offset %zu", at);
      }
      const uint8_t c = data_[p++];
      if (i == 0 && c == 0x80) {
        return make_error(Errc::kBadTag, "non-minimal BER tag at offset %zu", at);
      }
      if (i >= 4) return make_error(Errc::kBadTag, "BER tag number too large at offset %zu", at);
      n = (n << 7) | (c & 0x7f);
      if (!(c & 0x80)) break;
    }
    h.tag.number = n;
  }
  if (p >= lim) {
    return make_error(Errc::kTruncated, "truncated BER: no length at offset %zu", p);
  }
  const size_t len_at = p;
  const uint8_t l = data_[p++];
  h.indefinite = false;
  h.length = 0;
  if (l == 0x80) {
    if (!h.tag.constructed) {
      return make_error(Errc::kBadLength, "indefinite length on a primitive %s at offset %zu",
                        tag_name(h.tag).c_str(), at);
    }
    h.indefinite = true;
  } else if (l < 0x80) {
    h.length = l;
  } else {
    const size_t n = l & 0x7f;
    if (l == 0xff || n > 8) {
      return make_error(Errc::kBadLength, "BER length with %zu octets at offset %zu", n, len_at);
    }
    if (lim - p < n) {
      return make_error(Errc::kTruncated, "truncated BER length at offset %zu", len_at);
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v = (v << 8) | data_[p++];
    h.length = static_cast<size_t>(v);
  }
  h.header_size = p - at;
  if (!h.indefinite && h.length > lim - p) {
    return make_error(Errc::kBadLength,
                      "BER length %zu at offset %zu exceeds the %zu bytes available", h.length,
                      len_at, lim - p);
  }
  return Status::Ok();
}

Status Reader::peek(Tag& t) const {
  Header h;
  FERRY_VMS_TRY(read_header(pos_, h));
  t = h.tag;
  return Status::Ok();
}

Status Reader::expect(const Tag& t, Header& h, const char* what) {
  if (at_end()) {
    return make_error(Errc::kBadTag, "expected %s (%s) at offset %zu, found the end of the %s",
                      tag_name(t).c_str(), what, pos_,
                      depth_ ? "enclosing value" : "data");
  }
  FERRY_VMS_TRY(read_header(pos_, h));
  if (!(h.tag == t)) {
    return make_error(Errc::kBadTag, "expected %s (%s) at offset %zu, found %s",
                      tag_name(t).c_str(), what, pos_, tag_name(h.tag).c_str());
  }
  return Status::Ok();
}

Status Reader::get_primitive(const Tag& t, std::span<const uint8_t>& content, const char* what) {
  Header h;
  FERRY_VMS_TRY(expect(t, h, what));
  content = data_.subspan(pos_ + h.header_size, h.length);
  pos_ += h.header_size + h.length;
  return Status::Ok();
}

Status Reader::open(const Tag& t, const char* what) {
  if (depth_ >= kMaxBerDepth) {
    return make_error(Errc::kDepthLimit, "BER nesting deeper than %d at offset %zu (%s)",
                      kMaxBerDepth, pos_, what);
  }
  Header h;
  FERRY_VMS_TRY(expect(t, h, what));
  pos_ += h.header_size;
  frames_[depth_++] = Frame{h.indefinite ? 0 : pos_ + h.length, h.indefinite};
  return Status::Ok();
}

Status Reader::close(const char* what) {
  if (depth_ == 0) return make_error(Errc::kBadDescription, "BER close without open");
  const Frame f = frames_[depth_ - 1];
  if (f.indefinite) {
    if (!at_end()) {
      Tag t{};
      Status st = peek(t);
      if (!st.ok()) return st;
      return make_error(Errc::kBadTag, "expected the end of %s at offset %zu, found %s", what,
                        pos_, tag_name(t).c_str());
    }
    pos_ += 2;
  } else if (pos_ != f.end) {
    return make_error(Errc::kBadLength, "%zu unread bytes at the end of %s at offset %zu",
                      f.end - pos_, what, pos_);
  }
  --depth_;
  return Status::Ok();
}

Status Reader::get_unsigned(const Tag& t, uint64_t max, uint64_t& v, const char* what) {
  const size_t at = pos_;
  std::span<const uint8_t> c;
  FERRY_VMS_TRY(get_primitive(t, c, what));
  if (c.empty() || c.size() > 9) {
    return make_error(Errc::kBadLength, "INTEGER of %zu octets at offset %zu (%s)", c.size(), at,
                      what);
  }
  if (c[0] & 0x80) {
    return make_error(Errc::kOutOfRange, "negative INTEGER at offset %zu for unsigned %s", at, what);
  }
  if (c.size() == 9 && c[0] != 0) {
    return make_error(Errc::kOutOfRange, "INTEGER at offset %zu does not fit 64 bits (%s)", at,
                      what);
  }
  uint64_t x = 0;
  for (uint8_t b : c) x = (x << 8) | b;
  if (x > max) {
    return make_error(Errc::kOutOfRange, "INTEGER %llu at offset %zu exceeds %llu (%s)",
                      static_cast<unsigned long long>(x), at, static_cast<unsigned long long>(max),
                      what);
  }
  v = x;
  return Status::Ok();
}

Status Reader::get_signed(const Tag& t, int64_t min, int64_t max, int64_t& v, const char* what) {
  const size_t at = pos_;
  std::span<const uint8_t> c;
  FERRY_VMS_TRY(get_primitive(t, c, what));
  if (c.empty() || c.size() > 8) {
    return make_error(c.size() > 8 ? Errc::kOutOfRange : Errc::kBadLength,
                      "INTEGER of %zu octets at offset %zu (%s)", c.size(), at, what);
  }
  uint64_t x = (c[0] & 0x80) ? ~uint64_t{0} : 0;
  for (uint8_t b : c) x = (x << 8) | b;
  const auto s = static_cast<int64_t>(x);
  if (s < min || s > max) {
    return make_error(Errc::kOutOfRange, "INTEGER %lld at offset %zu is outside %lld..%lld (%s)",
                      static_cast<long long>(s), at, static_cast<long long>(min),
                      static_cast<long long>(max), what);
  }
  v = s;
  return Status::Ok();
}

Status Reader::get_bool(bool& v, const char* what) {
  const size_t at = pos_;
  std::span<const uint8_t> c;
  FERRY_VMS_TRY(get_primitive(kBoolean, c, what));
  if (c.size() != 1) {
    return make_error(Errc::kBadLength, "BOOLEAN of %zu octets at offset %zu (%s)", c.size(), at,
                      what);
  }
  v = c[0] != 0;
  return Status::Ok();
}

Status Reader::get_string(std::string_view& s, const char* what) {
  std::span<const uint8_t> c;
  FERRY_VMS_TRY(get_primitive(kUtf8String, c, what));
  s = std::string_view(reinterpret_cast<const char*>(c.data()), c.size());
  return Status::Ok();
}

}  // namespace ferry::vmstate::ber
