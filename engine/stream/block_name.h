// File names for RAM blocks. QEMU block names look like "pc.ram", "/rom@etc/acpi/tables" or
// "0000:00:02.0/vga.vram", so they cannot be used as file names as they are. The mapping:
//   - A-Z a-z 0-9 and . - @ : + stay as they are;
//   - '/' becomes '_';
//   - every other byte (including '_' and '%') becomes %XX (two upper-case hex digits);
//   - a leading '.' becomes %2E (no hidden files, no "." or ".."); the empty name is "%".
// It is injective ('_' and '%' only ever come from the rules above), so two blocks never share
// a file, and reversible by hand.  "/rom@etc/acpi/tables" -> "_rom@etc_acpi_tables".
#pragma once

#include <string>
#include <string_view>

namespace ferry::stream {

std::string block_file_name(std::string_view block_name);  // without the ".bin" suffix

}  // namespace ferry::stream
