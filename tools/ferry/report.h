// What `ferry demo/send/recv` show: the live progress line, the summary table after a
// migration, and the SVG chart of its iterations (hand-written SVG, no library).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "ferry/migration.h"

namespace ferry::cli {

// One progress line, without a line ending. bar: a fixed-width bar for a terminal (the caller
// rewrites the line with '\r'); otherwise plain words for logs. Example (no bar):
//   "iteration 2: sent 1200 of 5000 pages, remaining 3800, 1834.2 MiB/s, wire 812.3 MiB, 1.2 s"
std::string progress_line(const Progress& p, bool bar);

// The table after a migration: times, bytes, pages by kind, XBZRLE, one row per iteration.
void print_summary(std::ostream& out, const MigrationStats& stats);

// An SVG chart of the iterations: throughput (MiB/s, bars, left axis) and remaining dirty pages
// after each iteration (line, right axis), x = iteration. Well-formed XML; the bars are the
// <rect class="bar"> in <g id="throughput">, the line is <polyline id="remaining">.
std::string render_svg(const std::vector<IterationStats>& iterations, const std::string& title);

// "1", "2", "5" x 10^k at or above v (v > 0), for axis ranges.
double nice_ceil(double v);
// XML text/attribute escaping (& < > " ').
std::string xml_escape(const std::string& s);

}  // namespace ferry::cli
