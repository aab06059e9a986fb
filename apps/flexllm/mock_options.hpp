// The mock server's knobs as command-line options: `flexllm mock`, and --mock-args of the commands
// that run against the embedded mock.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "flexllm/mock/server.hpp"

namespace flexllm::cli {

struct MockOptions {
  mock::MockConfig config;
  std::string models = "mock-model";
  std::string latency = "0";
  std::string response_len = "16-64";
  std::string reasoning_len = "16-48";
  std::string thinking = "none";
  std::string fault_draws = "independent";
  double retry_after_s = 1.0;
};

// Registers the knobs (--latency, --thinking, --error-rate, …) on `cmd`, stored into `o`.
void add_mock_options(CLI::App* cmd, MockOptions& o);
// The server configuration the parsed knobs describe. Throws std::invalid_argument (or
// CLI::ValidationError) naming the flag for a bad value.
mock::MockConfig mock_config(MockOptions& o);

}  // namespace flexllm::cli
