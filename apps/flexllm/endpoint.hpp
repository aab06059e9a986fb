// What ask, chat, batch, models and test share: the endpoint flags, the request flags, and the
// session they open — the configured endpoint (config.hpp's precedence) or, with --mock, a mock
// server inside the process.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "config.hpp"
#include "flexllm/flexllm.hpp"
#include "flexllm/mock/server.hpp"

namespace flexllm::cli {

// A command that cannot run as asked (no endpoint, a flag that makes no sense here): exit 1.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct CommonOptions {
  FlagSettings flags;             // --base-url, --api-key, -m
  std::string provider;           // --provider ("" = the config's, else auto)
  std::optional<double> timeout;  // --timeout, seconds per attempt
  std::optional<int> retry_times;
  bool mock = false;      // --mock: the embedded mock server
  std::string mock_args;  // --mock-args: its knobs, as `flexllm mock` takes them
  // TLS: --ca-cert, --client-cert, --client-key (over the config entry's), --insecure.
  std::string ca_cert, client_cert, client_key;
  bool insecure = false;
};

struct RequestFlags {
  std::string system;  // --system
  std::optional<double> temperature;
  std::optional<int> max_tokens;
  std::string thinking;  // --thinking: "" = not given
};

void add_common_options(CLI::App* cmd, CommonOptions& o);
void add_request_options(CLI::App* cmd, RequestFlags& r);

// The request options the flags ask for (thinking parsed: true/false/on/off, a level, a budget).
RequestOptions request_options(const RequestFlags& r);

// A command's endpoint, open: the config it came from and, with --mock, the mock serving it.
struct Session {
  Config config;
  Resolved endpoint;
  std::unique_ptr<mock::MockServer> mock;  // --mock

  // The client configuration of the endpoint with the common flags applied (timeout, retries).
  ClientConfig client_config(const CommonOptions& o) const;
  // "mock-model at http://127.0.0.1:41234/v1 (embedded mock)" — never the key.
  std::string describe() const;
};

// Loads the config (warnings on stderr), resolves the endpoint, starts the mock for --mock.
// Throws ConfigError (exit 2) for a config file that cannot be used, UsageError (exit 1) when no
// endpoint is configured (its text says how to configure one).
// `adjust` (batch) may change the loaded config and the flags before the endpoint is resolved.
Session open_session(const CommonOptions& o,
                     const std::function<void(Config&, FlagSettings&)>& adjust = {});

// Provider by name: auto | openai | gemini | claude (ConfigError otherwise).
Provider parse_provider(const std::string& name);

// Runs a command body, mapping what escapes it to the exit codes with the error on
// stderr prefixed "flexllm <command>: ".
int run_guarded(const char* command, const std::function<int()>& body);

}  // namespace flexllm::cli

namespace flexllm::cli {

// One answer on stdout: streamed as it comes (reasoning on stderr, so stdout holds the answer
// alone), or in one piece with stream = false. Ends with a newline. Throws the call's Error; when
// `interrupt` becomes true while it streams, the stream is abandoned at the next event and an
// Error of kind `cancelled` is thrown.
ChatResult print_answer(ChatClient& client, const json& messages, const RequestOptions& options,
                        bool stream, const std::atomic<bool>* interrupt = nullptr);

// The messages of one turn: a system message (when `system` is set) and the user's text.
json first_messages(const std::optional<std::string>& system, const std::string& user);

}  // namespace flexllm::cli
