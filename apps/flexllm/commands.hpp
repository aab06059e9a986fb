// The `flexllm` command's subcommands. Each registers its options on the app and returns the
// function that runs it once the command line has been parsed.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace flexllm::cli {

// Exit codes (SPEC §14): 0 ok, 1 failures or usage error at run time, 2 bad input or flags.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitBadInput = 2;

using Runner = std::function<int()>;

Runner add_mock_command(CLI::App& app);

}  // namespace flexllm::cli
