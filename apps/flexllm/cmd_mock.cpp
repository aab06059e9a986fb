// `flexllm mock`: the mock LLM server in the foreground until Ctrl-C / SIGTERM.
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <memory>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>

#include "commands.hpp"
#include "flexllm/mock/server.hpp"
#include "mock_options.hpp"

namespace flexllm::cli {
namespace {

// Each connection is a descriptor: lift the soft limit as far as the hard one allows.
void raise_fd_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

mock::Range parse_range_flag(const std::string& text, const char* flag) {
  try {
    return mock::Range::parse(text);
  } catch (const std::invalid_argument& e) {
    throw CLI::ValidationError(flag, e.what());
  }
}

int run_mock(MockOptions& o) {
  mock::MockConfig cfg;
  try {
    cfg = mock_config(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flexllm mock: %s\nRun 'flexllm mock --help' for usage.\n", e.what());
    return kExitBadInput;
  }
  raise_fd_limit();
  // The server thread inherits this mask, so the signals reach sigwait() below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  std::unique_ptr<mock::MockServer> server;
  try {
    server = std::make_unique<mock::MockServer>(cfg);
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "%s: %s\n", e.what(), e.code().message().c_str());
    return kExitFailure;
  }
  std::printf("%s\n", server->base_url().c_str());
  std::fflush(stdout);
  std::fprintf(stderr,
               "flexllm mock: OpenAI-compatible API at %s (POST /chat/completions, GET /models; "
               "stats at /mock/stats). Ctrl-C stops.\n",
               server->base_url().c_str());
  int sig = 0;
  sigwait(&stop_signals, &sig);
  server->stop();
  mock::MockStats st = server->stats(false);
  std::fprintf(stderr, "flexllm mock: stopped after %llu chat requests (max %llu in flight)\n",
               static_cast<unsigned long long>(st.requests),
               static_cast<unsigned long long>(st.max_in_flight));
  return kExitOk;
}

}  // namespace

mock::MockConfig mock_config(MockOptions& o) {
  mock::MockConfig cfg = o.config;
  cfg.models = split_list(o.models);
  cfg.latency_ms = parse_range_flag(o.latency, "--latency");
  cfg.response_tokens = parse_range_flag(o.response_len, "--response-len");
  cfg.reasoning_tokens = parse_range_flag(o.reasoning_len, "--reasoning-len");
  cfg.thinking = o.thinking == "field"  ? mock::ThinkingMode::field
                 : o.thinking == "tags" ? mock::ThinkingMode::tags
                                        : mock::ThinkingMode::none;
  cfg.fault_draws =
      o.fault_draws == "even" ? mock::FaultDraws::even : mock::FaultDraws::independent;
  cfg.retry_after = std::chrono::milliseconds(static_cast<int64_t>(o.retry_after_s * 1000));
  cfg.validate();
  return cfg;
}

void add_mock_options(CLI::App* cmd, MockOptions& o) {
  mock::MockConfig& c = o.config;
  cmd->add_option("--host", c.host, "Address to bind")->capture_default_str();
  cmd->add_option("--port", c.port, "Port to listen on; 0 picks a free one")->capture_default_str();
  cmd->add_option("--seed", c.seed, "Seed for content, latencies and faults")
      ->capture_default_str();
  cmd->add_option("--model", o.models, "Model name(s) for /v1/models, comma-separated")
      ->capture_default_str();
  cmd->add_option("--latency", o.latency, "Latency to the reply in ms: N or A-B")
      ->capture_default_str();
  cmd->add_option("--token-rate", c.token_rate, "Stream pacing in tokens/s (0 = no pacing)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--response-len", o.response_len, "Answer length in tokens: N or A-B")
      ->capture_default_str();
  cmd->add_option("--reasoning-len", o.reasoning_len, "Reasoning length in tokens: N or A-B")
      ->capture_default_str();
  cmd->add_flag("--echo", c.echo, "Answer with the last user message");
  cmd->add_option("--thinking", o.thinking,
                  "Reasoning output: none, field (reasoning_content) or tags (<think>)")
      ->check(CLI::IsMember({"none", "field", "tags"}))
      ->capture_default_str();
  auto rate = [&](const char* name, double& field, const char* what) {
    cmd->add_option(name, field, what)->check(CLI::Range(0.0, 1.0))->capture_default_str();
  };
  rate("--error-rate", c.faults.http_error, "Share of requests answered with --error-status");
  cmd->add_option("--error-status", c.error_status, "HTTP status of --error-rate replies")
      ->check(CLI::Range(400, 599))
      ->capture_default_str();
  rate("--rate-429", c.faults.rate_429, "Share answered with 429 + Retry-After");
  rate("--drop-rate", c.faults.drop, "Share whose connection is closed without a reply");
  rate("--hang-rate", c.faults.hang, "Share never answered");
  rate("--malformed-rate", c.faults.malformed, "Share answered with invalid JSON");
  rate("--truncate-rate", c.faults.truncate, "Share cut off half-way (streams: no [DONE])");
  cmd->add_option(
         "--fault-draws", o.fault_draws,
         "Fault draws: independent (each request on its own: runs of faults, as in "
         "real life) or even (rates hold within a few requests; no runs below a 0.38 rate)")
      ->check(CLI::IsMember({"independent", "even"}))
      ->capture_default_str();
  cmd->add_option("--retry-after", o.retry_after_s, "Retry-After hint of injected 429s, seconds")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--max-qps", c.max_qps, "Answer 429 above this many requests/s (0 = off)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--qps-burst", c.qps_burst, "Burst allowance for --max-qps (default: 1 s worth)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--log", c.log_file, "Append a JSONL line per chat request to FILE");
}

Runner add_mock_command(CLI::App& app) {
  auto o = std::make_shared<MockOptions>();
  o->config.port = 8000;  // a fixed default for the command; the library's default is ephemeral
  CLI::App* cmd = app.add_subcommand("mock", "Run a mock OpenAI-compatible LLM server");
  cmd->footer(R"(The first line on stdout is the server's base URL (use --port 0 for a free port).

Examples:
  flexllm mock --port 8000                         # fast server for local development
  flexllm mock --port 0 --latency 200-800 --token-rate 50
  flexllm mock --thinking tags --response-len 5-10 # <think>…</think> answers
  flexllm mock --error-rate 0.05 --rate-429 0.05 --drop-rate 0.01 --seed 7
  flexllm mock --max-qps 20 --log requests.jsonl   # 429 above 20 req/s; log every request

Each request's fault is drawn on its own, so faults come in runs as real servers' do (a retry
can fail again); --fault-draws even spreads them so that each rate holds within a few requests
over any window and no kind below a 0.38 rate hits two requests in a row (exact counts).
GET /mock/stats[?arrivals=1] reports requests by outcome and the most in flight; POST /mock/reset
clears them.)");
  add_mock_options(cmd, *o);
  return [o] { return run_mock(*o); };
}

}  // namespace flexllm::cli
