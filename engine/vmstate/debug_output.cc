#include "engine/vmstate/debug_output.h"

#include <cinttypes>
#include <cstdarg>
#include <cstdio>

namespace ferry::vmstate {

namespace {
void appendf(std::string& out, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void appendf(std::string& out, const char* fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0) out.append(buf, static_cast<size_t>(n) < sizeof buf ? static_cast<size_t>(n) : sizeof buf - 1);
}
constexpr int kLevels = kMaxDepth * 4;
}  // namespace

void DebugOutput::line_start(const char* name) {
  if (pending_item_) {  // the list item prefix is already on this line
    pending_item_ = false;
    return;
  }
  out_.append(static_cast<size_t>(indent_) * 2, ' ');
  if (name) {
    out_ += name;
    out_ += ": ";
  } else if (level_ > 0 && index_[level_ - 1] >= 0) {
    appendf(out_, "[%ld]: ", index_[level_ - 1]++);
  }
}

void DebugOutput::open_block() {
  out_ += "{\n";
  ++indent_;
  if (level_ < kLevels) index_[level_] = -1;
  ++level_;
}

void DebugOutput::close_block() {
  --indent_;
  --level_;
  out_.append(static_cast<size_t>(indent_) * 2, ' ');
  out_ += "}\n";
}

Status DebugOutput::start_section(SectionHeader& h) {
  appendf(out_, "section '%.*s' (section %u, instance %u, version %u) ",
          static_cast<int>(h.name.size()), h.name.data(), h.section_id, h.instance_id,
          h.version_id);
  open_block();
  return Status::Ok();
}

Status DebugOutput::end_section(const SectionHeader&) {
  close_block();
  return Status::Ok();
}

Status DebugOutput::start_struct(const char* name, const Description& d) {
  if (level_ >= kLevels) return make_error(Errc::kDepthLimit, "debug output too deep");
  line_start(name);
  appendf(out_, "struct '%s' ", d.name ? d.name : "?");
  open_block();
  return Status::Ok();
}

Status DebugOutput::end_struct(const char*, const Description&) {
  close_block();
  return Status::Ok();
}

Status DebugOutput::start_subsection(const Description&, SubsectionHeader& h) {
  out_.append(static_cast<size_t>(indent_) * 2, ' ');
  appendf(out_, "subsection '%.*s' version %u:\n", static_cast<int>(h.name.size()), h.name.data(),
          h.version_id);
  return Status::Ok();
}

Status DebugOutput::end_subsection(const Description&, const SubsectionHeader&) {
  return Status::Ok();
}

Status DebugOutput::visit_scalar(const char* name, FerryVmsKind kind, uint64_t& value) {
  line_start(name);
  if (kind == FERRY_VMS_BOOL) {
    appendf(out_, "bool = %s\n", value ? "true" : "false");
  } else if (scalar_signed(kind)) {
    appendf(out_, "%s = %" PRId64 "\n", kind_name(kind), static_cast<int64_t>(value));
  } else {
    appendf(out_, "%s = %" PRIu64 " (0x%" PRIx64 ")\n", kind_name(kind), value, value);
  }
  return Status::Ok();
}

Status DebugOutput::visit_buffer(const char* name, uint8_t* data, size_t len) {
  line_start(name);
  appendf(out_, "buffer[%zu] =", len);
  for (size_t i = 0; i < len && i < kMaxBufferBytes; ++i) appendf(out_, " %02x", data[i]);
  if (len > kMaxBufferBytes) out_ += " ...";
  out_ += '\n';
  return Status::Ok();
}

Status DebugOutput::visit_unused(const char* name, size_t len) {
  line_start(name);
  appendf(out_, "unused[%zu]\n", len);
  return Status::Ok();
}

Status DebugOutput::start_array(const char* name, uint32_t count) {
  if (level_ >= kLevels) return make_error(Errc::kDepthLimit, "debug output too deep");
  line_start(name);
  appendf(out_, "array[%u] ", count);
  open_block();
  index_[level_ - 1] = 0;
  return Status::Ok();
}

Status DebugOutput::end_array(const char*) {
  close_block();
  return Status::Ok();
}

Status DebugOutput::start_list(const char* name, ListHeader& h) {
  if (level_ >= kLevels) return make_error(Errc::kDepthLimit, "debug output too deep");
  line_start(name);
  appendf(out_, "list (%s, %u element%s) ", loop_format_name(h.format), h.count,
          h.count == 1 ? "" : "s");
  open_block();
  index_[level_ - 1] = 0;
  return Status::Ok();
}

Status DebugOutput::list_next(ListHeader& h, ListItem& item) {
  if (!item.more) return Status::Ok();
  out_.append(static_cast<size_t>(indent_) * 2, ' ');
  if (h.format == FERRY_VMS_LOOP_MARKER_FIELD) {
    appendf(out_, "[%ld] marker %u: ", index_[level_ - 1]++, item.marker);
  } else {
    appendf(out_, "[%ld]: ", index_[level_ - 1]++);
  }
  pending_item_ = true;
  return Status::Ok();
}

Status DebugOutput::end_list_item(ListHeader&, const ListItem&) { return Status::Ok(); }

Status DebugOutput::end_list(const char*, ListHeader&) {
  close_block();
  return Status::Ok();
}

}  // namespace ferry::vmstate
