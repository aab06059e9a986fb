#include <cstdio>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "commands.hpp"
#include "flexllm/version.hpp"

namespace flexllm::cli {

std::string& config_flag() {
  static std::string path;
  return path;
}

void add_config_option(CLI::App* cmd) {
  cmd->add_option("--config", config_flag(),
                  "Config file (default: ./flexllm.yaml, else ~/.flexllm/config.yaml)");
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find_first_of(", ", start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace flexllm::cli

int main(int argc, char** argv) {
  using namespace flexllm::cli;
  CLI::App app{"flexllm: a high-performance client for OpenAI-compatible, Gemini and Claude APIs",
               "flexllm"};
  app.set_version_flag("--version", fmt::format("flexllm {}", flexllm::version()));
  app.require_subcommand(1);
  add_config_option(&app);
  app.footer("Run 'flexllm COMMAND --help' for a command's options and examples.");

  std::vector<std::pair<CLI::App*, Runner>> commands;
  auto add = [&](Runner (*adder)(CLI::App&)) {
    size_t before = app.get_subcommands({}).size();
    Runner run = adder(app);
    commands.emplace_back(app.get_subcommands({})[before], std::move(run));
  };
  add(add_ask_command);
  add(add_chat_command);
  add(add_batch_command);
  add(add_models_command);
  add(add_list_command);
  add(add_set_model_command);
  add(add_test_command);
  add(add_init_command);
  add(add_mock_command);

  // CLI11 would only say "a subcommand is required" for a mistyped command: name it instead.
  int first = 1;  // the first word that is not a global option
  while (first < argc) {
    std::string_view a = argv[first];
    if (a == "--config" && first + 1 < argc) {
      first += 2;
    } else if (a.starts_with("--config=")) {
      first += 1;
    } else {
      break;
    }
  }
  if (first < argc && argv[first][0] != '-') {
    std::string names;
    bool known = false;
    for (const auto& [cmd, run] : commands) {
      known = known || cmd->get_name() == argv[first];
      names += (names.empty() ? "" : ", ") + cmd->get_name();
    }
    if (!known) {
      std::fprintf(
          stderr, "flexllm: unknown command '%s' (commands: %s)\nRun 'flexllm --help' for usage.\n",
          argv[first], names.c_str());
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
