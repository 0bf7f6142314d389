#include "engine/capi/options.h"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <string>

#include "engine/capi/errors.h"

namespace ferry::capi {
namespace {

// The size of the first published ferry_options. Later versions only append fields, so a
// caller compiled against an older header passes a smaller struct_size and gets defaults for
// the rest; anything smaller than this never existed.
constexpr size_t kFirstVersionSize = offsetof(ferry_options, rdma_placement) + sizeof(uint32_t);
static_assert(kFirstVersionSize == 72, "the first ferry_options is 72 bytes: never shrink it");

constexpr uint32_t kMaxChannels = 64;

ferry_options defaults() {
  ferry_options o{};
  o.struct_size = sizeof(ferry_options);
  o.channels = 1;
  o.connect_timeout_ms = 10000;
  o.handshake_timeout_ms = 5000;
  o.accept_timeout_ms = 60000;
  o.io_timeout_ms = 60000;
  o.downtime_limit_ms = 300;
  o.max_iterations = 30;
  o.bandwidth_limit_bytes_per_s = 0;
  o.zero_pages = 1;
  o.xbzrle = 0;
  o.xbzrle_cache_bytes = 256u << 20;
  o.lz4 = 0;
  o.auto_converge = 1;
  o.verify = FERRY_VERIFY_OFF;
  o.rdma_placement = 1;
  o.page_table_zero = 1;
  return o;
}

// A struct from a newer header may carry fields this library does not know: fine while they
// are zero (their default), refused otherwise, since the caller asked for something we cannot do.
void check_unknown_tail(const ferry_options* options, const char* function) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(options);
  for (size_t i = sizeof(ferry_options); i < options->struct_size; ++i) {
    require(bytes[i] == 0, function,
            "options->struct_size " + std::to_string(options->struct_size) +
                " has non-zero fields past the " + std::to_string(sizeof(ferry_options)) +
                " bytes this library (" FERRY_VERSION_STRING ") knows");
  }
}

ferry_options copy_known_fields(const ferry_options* options, Side side, const char* function) {
  ferry_options o = defaults();
  if (!options) {
    // Without options a destination takes the channel count from the source.
    if (side == Side::kDestination) o.channels = 0;
    return o;
  }
  require(options->struct_size >= kFirstVersionSize, function,
          "options->struct_size " + std::to_string(options->struct_size) + " is smaller than " +
              std::to_string(kFirstVersionSize) + " (call ferry_options_init first)");
  check_unknown_tail(options, function);
  std::memcpy(&o, options, std::min<size_t>(options->struct_size, sizeof o));
  o.struct_size = sizeof o;
  return o;
}

void check_flag(uint32_t value, const char* name, const char* function) {
  require(value <= 1, function,
          std::string("options->") + name + " is " + std::to_string(value) + ", not 0 or 1");
}

void check_values(const ferry_options& o, Side side, const char* function) {
  const uint32_t min_channels = side == Side::kSource ? 1 : 0;
  require(o.channels >= min_channels && o.channels <= kMaxChannels, function,
          "options->channels " + std::to_string(o.channels) + " is not in " +
              std::to_string(min_channels) + ".." + std::to_string(kMaxChannels) +
              (side == Side::kSource ? " for a source" : " for a destination"));
  require(o.connect_timeout_ms > 0, function, "options->connect_timeout_ms must be > 0");
  require(o.handshake_timeout_ms > 0, function, "options->handshake_timeout_ms must be > 0");
  require(o.accept_timeout_ms > 0, function, "options->accept_timeout_ms must be > 0");
  check_flag(o.zero_pages, "zero_pages", function);
  check_flag(o.xbzrle, "xbzrle", function);
  check_flag(o.lz4, "lz4", function);
  check_flag(o.auto_converge, "auto_converge", function);
  require(o.verify <= FERRY_VERIFY_FULL, function,
          "options->verify must be FERRY_VERIFY_OFF, FERRY_VERIFY_DIGEST or FERRY_VERIFY_FULL");
  check_flag(o.rdma_placement, "rdma_placement", function);
  check_flag(o.page_table_zero, "page_table_zero", function);
  check_flag(o.insecure, "insecure", function);
  require((o.psk == nullptr) == (o.psk_len == 0), function,
          "options->psk and options->psk_len must both be set or both be 0/NULL");
  require(o.psk_len == 0 || o.psk_len >= 32, function,
          "options->psk_len is " + std::to_string(o.psk_len) +
              "; a pre-shared key needs at least 32 bytes (256 bits)");
  require(!o.xbzrle || o.xbzrle_cache_bytes > 0, function,
          "options->xbzrle_cache_bytes must be > 0 with xbzrle");
}

}  // namespace

Settings read_options(const ferry_options* options, Side side, const char* function) {
  const ferry_options o = copy_known_fields(options, side, function);
  check_values(o, side, function);
  using std::chrono::milliseconds;
  Settings s;
  s.transport.channels = o.channels;
  s.transport.connect_timeout = milliseconds(o.connect_timeout_ms);
  s.transport.handshake_timeout = milliseconds(o.handshake_timeout_ms);
  s.transport.accept_timeout = milliseconds(o.accept_timeout_ms);
  s.transport.io_timeout = milliseconds(o.io_timeout_ms);
  if (o.psk) s.transport.psk.assign(o.psk, o.psk + o.psk_len);
  s.transport.insecure = o.insecure != 0;
  MigrationConfig& m = s.migration;
  m.downtime_limit = milliseconds(o.downtime_limit_ms);
  m.max_iterations = o.max_iterations;
  m.bandwidth_limit_bytes_per_s = o.bandwidth_limit_bytes_per_s;
  m.zero_pages = o.zero_pages != 0;
  m.xbzrle = o.xbzrle != 0;
  m.xbzrle_cache_bytes = static_cast<size_t>(o.xbzrle_cache_bytes);
  m.lz4 = o.lz4 != 0;
  m.auto_converge = o.auto_converge != 0;
  m.verify = o.verify != FERRY_VERIFY_OFF;
  m.verify_full = o.verify == FERRY_VERIFY_FULL;
  m.rdma_placement = o.rdma_placement != 0;
  m.zero_from_page_tables = o.page_table_zero != 0;
  return s;
}

}  // namespace ferry::capi

extern "C" void ferry_options_init(ferry_options* options) {
  if (options) *options = ferry::capi::defaults();
}
