#include <cstdio>
#include <vector>

#include <fmt/format.h>

#include "commands.hpp"
#include "flexllm/version.hpp"

int main(int argc, char** argv) {
  using namespace flexllm::cli;
  CLI::App app{"flexllm: a high-performance client for OpenAI-compatible, Gemini and Claude APIs",
               "flexllm"};
  app.set_version_flag("--version", fmt::format("flexllm {}", flexllm::version()));
  app.require_subcommand(1);
  app.footer("Run 'flexllm COMMAND --help' for a command's options and examples.");

  std::vector<std::pair<CLI::App*, Runner>> commands;
  auto add = [&](Runner (*adder)(CLI::App&)) {
    size_t before = app.get_subcommands({}).size();
    Runner run = adder(app);
    commands.emplace_back(app.get_subcommands({})[before], std::move(run));
  };
  add(add_mock_command);

  // CLI11 would only say "a subcommand is required" for a mistyped command: name it instead.
  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const auto& [cmd, run] : commands) {
      known = known || cmd->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + cmd->get_name();
    }
    if (!known) {
      std::fprintf(
          stderr, "flexllm: unknown command '%s' (commands: %s)\nRun 'flexllm --help' for usage.\n",
          argv[1], names.c_str());
      return kExitBadInput;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::fprintf(stderr, "flexllm: %s\n", e.what());
    const CLI::App* sub = nullptr;
    for (const auto& [cmd, run] : commands)
      if (cmd->parsed()) sub = cmd;
    std::fprintf(stderr, "Run 'flexllm%s%s --help' for usage.\n", sub ? " " : "",
                 sub ? sub->get_name().c_str() : "");
    return kExitBadInput;
  }
  for (auto& [cmd, run] : commands)
    if (cmd->parsed()) return run();
  return kExitBadInput;
}
