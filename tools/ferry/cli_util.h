// Small text helpers of the ferry CLI: byte sizes ("2G", "512M", "4K") and their display.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ferry::cli {

// "4096", "4K", "512M", "2G", "1T" (binary multiples; "KiB"/"KB"/"k" spellings accepted, case
// does not matter). Throws std::invalid_argument whose what() says what is wrong with the text
// (empty, not a number, unknown suffix, too large).
uint64_t parse_size(std::string_view text);

// "2 GiB", "512 MiB", "1.5 KiB", "17 B": the largest binary unit, up to one decimal.
std::string format_size(uint64_t bytes);

// Mebibytes with one decimal ("1234.5").
std::string format_mib(double bytes);

}  // namespace ferry::cli
