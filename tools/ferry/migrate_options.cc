#include "tools/ferry/migrate_options.h"

#include <cmath>
#include <stdexcept>

#include "tools/ferry/cli_util.h"
#include "tools/ferry/psk_file.h"

namespace ferry::cli {

CLI::Validator size_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        try {
          parse_size(s);
          return "";
        } catch (const std::invalid_argument& e) {
          return e.what();
        }
      },
      "SIZE");
}

CLI::Validator page_size_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        try {
          const uint64_t v = parse_size(s);
          if (v == 4096 || v == (uint64_t{2} << 20)) return "";
        } catch (const std::invalid_argument&) {
        }
        return "page size '" + s + "' is not 4K or 2M";
      },
      "4K|2M");
}

std::string MigrateOptions::resolve() {
  try {
    size = parse_size(size_text);
    page_size = static_cast<size_t>(parse_size(page_size_text));
    hot_set = hot_set_text.empty() ? 0 : parse_size(hot_set_text);
    bandwidth = parse_size(bandwidth_text);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  if (!parse_image_content(content_text, content)) {
    return "--content " + content_text + " is not mix, zero or random";
  }
  if (size == 0) return "--size must be more than 0";
  if (size % page_size != 0) {
    return "--size " + size_text + " is not a multiple of the page size " + format_size(page_size);
  }
  if (size / page_size > (uint64_t{1} << 32)) return "--size " + size_text + " is too large";
  if (!(dirty_rate_mib >= 0) || std::isinf(dirty_rate_mib)) return "--dirty-rate must be >= 0";
  if (tls.enabled() && (tls.cert_file.empty() || tls.key_file.empty() || tls.ca_file.empty())) {
    return "--tls-cert, --tls-key and --tls-ca go together: give all three or none";
  }
  if (!psk_file.empty()) return read_psk_file(psk_file, &psk);
  return "";
}

MigrationConfig MigrateOptions::engine_config() const {
  MigrationConfig c;
  c.zero_pages = zero;
  c.zero_from_page_tables = page_table_zero;
  c.xbzrle = xbzrle;
  c.lz4 = lz4;
  c.downtime_limit = std::chrono::milliseconds(downtime_ms);
  c.max_iterations = max_iterations;
  c.bandwidth_limit_bytes_per_s = bandwidth;
  c.auto_converge = auto_converge;
  c.verify = verify != "off";
  c.verify_full = verify == "full";
  // The XBZRLE cache never needs to be larger than the image.
  c.xbzrle_cache_bytes = std::min<size_t>(c.xbzrle_cache_bytes, std::max<size_t>(size, 1 << 20));
  return c;
}

transport::Options MigrateOptions::transport_options(uint32_t n) const {
  transport::Options t;
  t.channels = n;
  t.connect_timeout = std::chrono::milliseconds(static_cast<int64_t>(connect_timeout_s * 1000));
  t.accept_timeout = std::chrono::milliseconds(static_cast<int64_t>(accept_timeout_s * 1000));
  // A peer that stops moving bytes for this long has gone: end instead of hanging.
  t.io_timeout = std::chrono::seconds(60);
  t.psk = psk;
  t.insecure = insecure;
  t.tls = tls;
  return t;
}

std::vector<RamBlock> MigrateOptions::blocks(void* host, bool fresh_destination) const {
  RamBlock b;
  b.name = "pc.ram";
  b.host = host;
  b.size = size;
  b.page_size = page_size;
  b.known_zero = fresh_destination;
  return {b};
}

namespace {
// --NAME / --no-NAME as two plain flags: CLI11's "!--no-NAME" negation prints "{false}" in the
// help, which reads like a value to type.
void add_on_off(CLI::App* sub, const std::string& name, bool& value, const std::string& what) {
  const std::string dflt = value ? " (default)" : "";
  const std::string dflt_off = value ? "" : " (default)";
  sub->add_flag_callback("--" + name, [&value] { value = true; }, what + ": on" + dflt);
  sub->add_flag_callback("--no-" + name, [&value] { value = false; }, what + ": off" + dflt_off);
}
}  // namespace

void add_migrate_options(CLI::App* sub, MigrateOptions& o, unsigned sets) {
  if (sets & kImageOptions) {
    sub->add_option("--size", o.size_text,
                    "guest memory image size (e.g. 2G, 512M); both sides must use the same")
        ->check(size_validator())
        ->capture_default_str();
    sub->add_option("--page-size", o.page_size_text, "RAM block page size: 4K or 2M")
        ->check(page_size_validator())
        ->capture_default_str();
    sub->add_option("--seed", o.seed, "seed of the synthetic image and of the writer")
        ->capture_default_str();
    sub->add_option("--content", o.content_text,
                    "what the image holds: mix (about half zero pages, text-like and random "
                    "pages), zero (all zero pages) or random (every page random)")
        ->check(CLI::IsMember({"mix", "zero", "random"}))
        ->capture_default_str();
  }
  if (sets & kSourceOptions) {
    sub->add_option("--dirty-rate", o.dirty_rate_mib,
                    "MiB/s of pages the guest writer dirties while precopy runs (0: idle guest)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    sub->add_option("--hot-set", o.hot_set_text,
                    "size of the working set the writer writes into (default: a quarter of the "
                    "image, at most 512M)")
        ->check(size_validator());
    sub->add_option("--channels", o.channels, "data channels (connections)")
        ->check(CLI::Range(1, 64))
        ->capture_default_str();
    add_on_off(sub, "xbzrle", o.xbzrle, "XBZRLE deltas for resent pages");
    add_on_off(sub, "zero", o.zero, "zero-page detection");
    add_on_off(sub, "page-table-zero", o.page_table_zero,
               "send pages the page tables show unpopulated as zero without reading them "
               "(off: read every page, as QEMU does)");
    add_on_off(sub, "lz4", o.lz4, "LZ4-compress normal pages");
    sub->add_option("--downtime-ms", o.downtime_ms, "downtime limit that ends precopy")
        ->check(CLI::Range(1, 3600000))
        ->capture_default_str();
    sub->add_option("--max-iterations", o.max_iterations,
                    "iterations before the guest is stopped anyway")
        ->check(CLI::Range(1, 100000))
        ->capture_default_str();
    sub->add_option("--bandwidth-limit", o.bandwidth_text,
                    "bytes per second on the wire, e.g. 100M (0: unlimited)")
        ->check(size_validator())
        ->capture_default_str();
    sub->add_option("--dirty-tracking", o.dirty_tracking,
                    "auto: kernel uffd-wp tracking when available, else the writer's own marks; "
                    "uffd-wp: fail without it; explicit: always the writer's marks")
        ->check(CLI::IsMember({"auto", "uffd-wp", "explicit"}))
        ->capture_default_str();
    add_on_off(sub, "auto-converge", o.auto_converge,
               "throttle the writer when iterations do not converge");
    sub->add_option("--verify", o.verify,
                    "digest: compare per-block digests kept as pages are sent and land (no pass "
                    "over memory after the guest stops); full: re-hash all RAM on both sides "
                    "after the final pass (also catches missed dirty pages; costs blackout); off")
        ->check(CLI::IsMember({"digest", "full", "off"}))
        ->capture_default_str();
  }
  if (sets & kAuthOptions) {
    sub->add_option("--psk-file", o.psk_file,
                    "pre-shared key both ends prove on every channel (the file's bytes, at least "
                    "32, e.g. from head -c 32 /dev/urandom; mode 0600 or stricter); required to "
                    "listen on an address that is not loopback unless --insecure")
        ->type_name("FILE");
    sub->add_flag("--insecure", o.insecure,
                  "allow listening on an address that is not loopback without --psk-file or "
                  "--tls-cert: "
                  "anyone who can reach the port can send the guest's memory");
    sub->add_option("--tls-cert", o.tls.cert_file,
                    "TLS 1.3 on every channel (tcp, unix): this end's certificate chain (PEM); "
                    "with --tls-key and --tls-ca. Both ends verify the other's certificate "
                    "against their CA; enough to listen off loopback without --psk-file")
        ->type_name("FILE");
    sub->add_option("--tls-key", o.tls.key_file, "the private key (PEM) of --tls-cert")
        ->type_name("FILE");
    sub->add_option("--tls-ca", o.tls.ca_file,
                    "CA certificate(s) (PEM) the peer's TLS certificate must verify against")
        ->type_name("FILE");
  }
  if (sets & kOutputOptions) {
    sub->add_option("--json", o.json_file, "write the migration statistics as JSON to FILE")
        ->type_name("FILE");
    sub->add_option("--report", o.report_file,
                    "write an SVG chart of throughput and remaining dirty pages per iteration")
        ->type_name("FILE");
    sub->add_flag("-q,--quiet", o.quiet, "no progress and no summary; only the result line");
  }
}

}  // namespace ferry::cli
