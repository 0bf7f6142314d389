// ferry: command-line front end. Subcommands live in cmd_*.cc and are listed here.
#include <iostream>
#include <vector>

#include "tools/ferry/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"ferry: live-migration transport engine tools"};
  app.require_subcommand(1);

  std::vector<std::pair<CLI::App*, ferry::cli::Runner>> commands;
  commands.push_back(ferry::cli::add_demo_command(app));
  commands.push_back(ferry::cli::add_send_command(app));
  commands.push_back(ferry::cli::add_recv_command(app));
  commands.push_back(ferry::cli::add_dump_command(app));
  commands.push_back(ferry::cli::add_image_command(app));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help is a "parse error" with exit code 0; every real one is a usage error.
    const int code = app.exit(e);
    return code == 0 ? ferry::cli::kExitOk : ferry::cli::kExitUsage;
  }
  for (auto& [sub, run] : commands) {
    if (sub->parsed()) return run();
  }
  return ferry::cli::kExitUsage;
}
