#include "tools/ferry/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "tools/ferry/cli_util.h"

namespace ferry::cli {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string u64(uint64_t v) { return std::to_string(v); }

std::string iteration_label(uint32_t iteration, bool final_pass) {
  if (final_pass) return "final";
  if (iteration == 0) return "bulk";
  return "iteration " + std::to_string(iteration);
}

// Axis labels: "0", "250", "1.5k", "2M".
std::string short_number(double v) {
  if (v >= 1e6) return fmt(v >= 1e7 ? "%.0fM" : "%.1fM", v / 1e6);
  if (v >= 1e4) return fmt("%.0fk", v / 1e3);
  if (v >= 1e3) return fmt("%.1fk", v / 1e3);
  if (v == std::floor(v)) return fmt("%.0f", v);
  return fmt("%.2g", v);
}

}  // namespace

std::string progress_line(const Progress& p, bool bar) {
  const uint64_t todo = p.pages_dirty_this_iteration;
  const uint64_t sent = std::min(p.pages_sent_this_iteration, todo);
  const uint64_t remaining = todo - sent;
  const std::string label = iteration_label(p.iteration, p.final_pass);
  std::string s;
  if (bar) {
    // Fits an 80-column terminal.
    constexpr int kWidth = 16;
    const double frac = todo ? static_cast<double>(sent) / static_cast<double>(todo) : 1.0;
    const int filled = static_cast<int>(frac * kWidth + 0.5);
    s = "[" + std::string(static_cast<size_t>(filled), '#') +
        std::string(static_cast<size_t>(kWidth - filled), '.') + "] ";
    const std::string shortl = p.final_pass || p.iteration == 0 ? label : "iter " + std::to_string(p.iteration);
    char buf[200];
    std::snprintf(buf, sizeof buf, "%-7s %3.0f%% %8llu left %7.1f MiB/s %7.0f MiB %5.1f s",
                  shortl.c_str(), frac * 100.0, static_cast<unsigned long long>(remaining),
                  p.throughput_bytes_per_s / kMiB, static_cast<double>(p.wire_bytes) / kMiB,
                  p.elapsed_seconds);
    return s + buf;
  }
  char buf[240];
  std::snprintf(buf, sizeof buf,
                "%s: sent %llu of %llu pages, remaining %llu, %.1f MiB/s, wire %.1f MiB, %.1f s",
                label.c_str(), static_cast<unsigned long long>(sent),
                static_cast<unsigned long long>(todo), static_cast<unsigned long long>(remaining),
                p.throughput_bytes_per_s / kMiB, static_cast<double>(p.wire_bytes) / kMiB,
                p.elapsed_seconds);
  return buf;
}

void print_summary(std::ostream& out, const MigrationStats& s) {
  const double mib = static_cast<double>(s.wire_bytes) / kMiB;
  const double rate = s.total_seconds > 0 ? mib / s.total_seconds : 0;
  const double ram_rate =
      s.total_seconds > 0 ? static_cast<double>(s.ram_bytes) / kMiB / s.total_seconds : 0;
  out << "status:        " << s.status << (s.error.empty() ? "" : " (" + s.error + ")") << "\n";
  out << "total time:    " << fmt("%.3f s", s.total_seconds) << "\n";
  out << "setup:         " << fmt("%.1f ms", s.setup_seconds * 1e3) << "\n";
  // The blackout is what the guest waits; downtime and verify are its parts.
  out << "blackout:      " << fmt("%.1f ms", s.blackout_seconds * 1e3)
      << "  (guest stopped .. destination may run it)\n";
  out << "downtime:      " << fmt("%.1f ms", s.downtime_seconds * 1e3)
      << "  (.. every page and device in place)\n";
  if (s.verify_seconds > 0) {
    out << "verify:        " << fmt("%.1f ms", s.verify_seconds * 1e3) << "  (in the blackout)\n";
  }
  out << "RAM:           " << format_size(s.ram_bytes) << " (" << fmt("%.1f", ram_rate)
      << " MiB/s of RAM moved)\n";
  out << "transferred:   " << fmt("%.1f MiB", mib) << " on " << s.channels << " channel(s), "
      << fmt("%.1f MiB/s", rate) << "\n";
  out << "pages:         normal " << s.pages.normal << ", zero " << s.pages.zero << ", xbzrle "
      << s.pages.xbzrle << ", lz4 " << s.pages.lz4 << " (total " << s.pages.total() << ")\n";
  if (s.zero_pages_unread) {
    out << "               " << s.zero_pages_unread
        << " of the zero pages known from the page tables, never read\n";
  }
  if (s.devices) {
    out << "devices:       " << s.devices << " device section(s), " << s.device_bytes
        << " bytes with their vmdesc, in the downtime\n";
  }
  out << "xbzrle:        " << s.xbzrle_cache_hits << " cache hits, " << s.xbzrle_cache_misses
      << " misses, " << s.xbzrle_overflows << " overflows, "
      << fmt("%.1f MiB", static_cast<double>(s.xbzrle_bytes) / kMiB) << " of deltas\n";
  if (!s.placement.empty()) {
    out << "placement:     " << s.placement;
    if (s.placed_pages) out << " (" << s.placed_pages << " pages RDMA-written into place)";
    out << "\n";
  }
  if (!s.dirty_tracking.empty()) out << "dirty tracking: " << s.dirty_tracking << "\n";
  if (!s.converged_by.empty()) out << "converged by:  " << s.converged_by << "\n";
  if (s.iterations.empty()) return;
  out << "\n";
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-10s %12s %12s %10s %9s %11s %12s %12s %8s\n", "iteration",
                "dirty pages", "pages sent", "wire MiB", "seconds", "MiB/s", "remaining",
                "exp. down ms", "throttle");
  out << buf;
  for (const IterationStats& it : s.iterations) {
    const std::string label = it.final_pass ? "final" : (it.iteration == 0 ? "bulk" : std::to_string(it.iteration));
    std::snprintf(buf, sizeof buf, "%-10s %12llu %12llu %10.1f %9.3f %11.1f %12llu %12.1f %7u%%\n",
                  label.c_str(), static_cast<unsigned long long>(it.dirty_pages),
                  static_cast<unsigned long long>(it.pages.total()),
                  static_cast<double>(it.wire_bytes) / kMiB, it.seconds,
                  it.throughput_bytes_per_s / kMiB,
                  static_cast<unsigned long long>(it.remaining_dirty_pages),
                  it.expected_downtime_s * 1e3, it.throttle_percent);
    out << buf;
  }
}

double nice_ceil(double v) {
  if (!(v > 0)) return 1;
  const double e = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    if (m * e >= v * (1 - 1e-12)) return m * e;
  }
  return 10 * e;
}

std::string xml_escape(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&apos;"; break;
      default:
        // Control characters are not allowed in XML 1.0.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') o += ' ';
        else o += c;
    }
  }
  return o;
}

std::string render_svg(const std::vector<IterationStats>& its, const std::string& title) {
  constexpr double W = 860, H = 480;
  constexpr double L = 90, R = 100, T = 60, B = 70;  // margins
  constexpr double PW = W - L - R, PH = H - T - B;
  double max_tp = 0, max_rem = 0;
  for (const auto& it : its) {
    max_tp = std::max(max_tp, it.throughput_bytes_per_s / kMiB);
    max_rem = std::max(max_rem, static_cast<double>(it.remaining_dirty_pages));
  }
  const double tp_top = nice_ceil(max_tp);
  const double rem_top = nice_ceil(max_rem);
  const size_t n = std::max<size_t>(its.size(), 1);
  const double slot = PW / static_cast<double>(n);
  auto x_center = [&](size_t i) { return L + slot * (static_cast<double>(i) + 0.5); };
  auto y_tp = [&](double v) { return T + PH - PH * v / tp_top; };
  auto y_rem = [&](double v) { return T + PH - PH * v / rem_top; };

  std::ostringstream o;
  o << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
    << "\" viewBox=\"0 0 " << W << " " << H << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
    << "<rect x=\"0\" y=\"0\" width=\"" << W << "\" height=\"" << H << "\" fill=\"white\"/>\n"
    << "<text x=\"" << W / 2 << "\" y=\"28\" text-anchor=\"middle\" font-size=\"16\">"
    << xml_escape(title) << "</text>\n";
  // Grid and axes.
  o << "<g id=\"axes\" stroke=\"#444\" fill=\"none\">\n";
  constexpr int kTicks = 5;
  for (int t = 0; t <= kTicks; ++t) {
    const double y = T + PH - PH * t / kTicks;
    o << "<line x1=\"" << L << "\" y1=\"" << y << "\" x2=\"" << L + PW << "\" y2=\"" << y
      << "\" stroke=\"#ddd\"/>\n";
  }
  o << "<line x1=\"" << L << "\" y1=\"" << T << "\" x2=\"" << L << "\" y2=\"" << T + PH << "\"/>\n"
    << "<line x1=\"" << L + PW << "\" y1=\"" << T << "\" x2=\"" << L + PW << "\" y2=\"" << T + PH
    << "\"/>\n"
    << "<line x1=\"" << L << "\" y1=\"" << T + PH << "\" x2=\"" << L + PW << "\" y2=\"" << T + PH
    << "\"/>\n</g>\n";
  o << "<g id=\"tick-labels\" fill=\"#222\">\n";
  for (int t = 0; t <= kTicks; ++t) {
    const double y = T + PH - PH * t / kTicks;
    o << "<text x=\"" << L - 8 << "\" y=\"" << y + 4 << "\" text-anchor=\"end\" fill=\"#1f5fbf\">"
      << short_number(tp_top * t / kTicks) << "</text>\n";
    o << "<text x=\"" << L + PW + 8 << "\" y=\"" << y + 4 << "\" text-anchor=\"start\" fill=\"#d0631b\">"
      << short_number(rem_top * t / kTicks) << "</text>\n";
  }
  const size_t every = std::max<size_t>(1, its.size() / 20);
  for (size_t i = 0; i < its.size(); ++i) {
    if (i % every != 0 && i + 1 != its.size()) continue;
    const auto& it = its[i];
    const std::string label = it.final_pass ? "F" : (it.iteration == 0 ? "bulk" : std::to_string(it.iteration));
    o << "<text x=\"" << x_center(i) << "\" y=\"" << T + PH + 18 << "\" text-anchor=\"middle\">"
      << label << "</text>\n";
  }
  o << "</g>\n";
  // Axis titles.
  o << "<text x=\"" << L + PW / 2 << "\" y=\"" << H - 22
    << "\" text-anchor=\"middle\">iteration (bulk = first full pass, F = final pass with the guest stopped)</text>\n"
    << "<text transform=\"translate(" << 24 << " " << T + PH / 2
    << ") rotate(-90)\" text-anchor=\"middle\" fill=\"#1f5fbf\">throughput (MiB/s)</text>\n"
    << "<text transform=\"translate(" << W - 22 << " " << T + PH / 2
    << ") rotate(90)\" text-anchor=\"middle\" fill=\"#d0631b\">remaining dirty pages</text>\n";
  // Throughput bars.
  o << "<g id=\"throughput\" fill=\"#1f5fbf\" fill-opacity=\"0.75\">\n";
  for (size_t i = 0; i < its.size(); ++i) {
    const double v = its[i].throughput_bytes_per_s / kMiB;
    const double y = y_tp(v);
    o << "<rect class=\"bar\" x=\"" << x_center(i) - slot * 0.35 << "\" y=\"" << y
      << "\" width=\"" << slot * 0.7 << "\" height=\"" << T + PH - y << "\"><title>"
      << fmt("%.1f MiB/s", v) << "</title></rect>\n";
  }
  o << "</g>\n";
  // Remaining dirty pages line.
  o << "<polyline id=\"remaining\" fill=\"none\" stroke=\"#d0631b\" stroke-width=\"2\" points=\"";
  for (size_t i = 0; i < its.size(); ++i) {
    o << (i ? " " : "") << x_center(i) << "," << y_rem(static_cast<double>(its[i].remaining_dirty_pages));
  }
  o << "\"/>\n<g id=\"remaining-points\" fill=\"#d0631b\">\n";
  for (size_t i = 0; i < its.size(); ++i) {
    o << "<circle class=\"point\" cx=\"" << x_center(i) << "\" cy=\""
      << y_rem(static_cast<double>(its[i].remaining_dirty_pages)) << "\" r=\"3.5\"><title>"
      << u64(its[i].remaining_dirty_pages) << " pages</title></circle>\n";
  }
  o << "</g>\n";
  // Legend.
  o << "<g id=\"legend\">\n"
    << "<rect x=\"" << L + 10 << "\" y=\"" << T - 22 << "\" width=\"12\" height=\"12\" fill=\"#1f5fbf\"/>\n"
    << "<text x=\"" << L + 28 << "\" y=\"" << T - 12 << "\">throughput (MiB/s, left)</text>\n"
    << "<line x1=\"" << L + 220 << "\" y1=\"" << T - 16 << "\" x2=\"" << L + 240 << "\" y2=\""
    << T - 16 << "\" stroke=\"#d0631b\" stroke-width=\"2\"/>\n"
    << "<text x=\"" << L + 246 << "\" y=\"" << T - 12
    << "\">remaining dirty pages after the iteration (right)</text>\n</g>\n";
  o << "</svg>\n";
  return o.str();
}

}  // namespace ferry::cli
