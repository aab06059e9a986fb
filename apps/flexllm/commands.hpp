// The `flexllm` command's subcommands. Each registers its options on the app and returns the
// function that runs it once the command line has been parsed.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace flexllm::cli {

// Exit codes: 0 ok, 1 failures or usage error at run time, 2 bad input (a malformed
// input line, a bad flag value, a config file that cannot be used, a missing input file).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitBadInput = 2;
// A batch's output file could not be written (disk full, file too large, I/O error).
inline constexpr int kExitOutputFailed = 3;

using Runner = std::function<int()>;

// --config FILE: accepted before the subcommand and by every subcommand that reads the config;
// both spellings set this one value ("" = the default search, see config.hpp).
std::string& config_flag();
void add_config_option(CLI::App* cmd);

// The items of a list flag ("a,b" or "a, b"): split at commas and spaces, empty items dropped.
std::vector<std::string> split_list(const std::string& s);

Runner add_ask_command(CLI::App& app);
Runner add_chat_command(CLI::App& app);
Runner add_batch_command(CLI::App& app);
Runner add_models_command(CLI::App& app);
Runner add_list_command(CLI::App& app);
Runner add_set_model_command(CLI::App& app);
Runner add_test_command(CLI::App& app);
Runner add_init_command(CLI::App& app);
Runner add_mock_command(CLI::App& app);

}  // namespace flexllm::cli
