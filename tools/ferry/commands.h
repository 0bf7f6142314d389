// Subcommands of the ferry CLI. Each add_*_command() registers its options on the app and
// returns the function main() calls when that subcommand was chosen; it returns the exit status
// (0 ok, 1 failure; usage errors never get that far: main() exits 2 for them).
#pragma once

#include <functional>
#include <utility>

#include <CLI/CLI.hpp>

namespace ferry::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

using Runner = std::function<int()>;

std::pair<CLI::App*, Runner> add_dump_command(CLI::App& app);
// cmd_image.cc: the synthetic image written to a file.
std::pair<CLI::App*, Runner> add_image_command(CLI::App& app);
// cmd_migrate.cc: live migration of a synthetic guest image.
std::pair<CLI::App*, Runner> add_demo_command(CLI::App& app);
std::pair<CLI::App*, Runner> add_send_command(CLI::App& app);
std::pair<CLI::App*, Runner> add_recv_command(CLI::App& app);

}  // namespace ferry::cli
