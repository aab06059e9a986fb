#include "endpoint.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

#include "commands.hpp"
#include "mock_options.hpp"

namespace flexllm::cli {

void add_common_options(CLI::App* cmd, CommonOptions& o) {
  add_config_option(cmd);
  cmd->add_option("--base-url", o.flags.base_url,
                  "API base URL, e.g. https://api.openai.com/v1 (env FLEXLLM_BASE_URL)");
  cmd->add_option("--api-key", o.flags.api_key,
                  "API key; better in FLEXLLM_API_KEY or the config file (api_key: ${VAR}): a "
                  "command line is visible to other users (ps) and kept in shell history");
  cmd->add_option(
      "-m,--model", o.flags.model,
      "Model: a name or id from the config file, or the id to send (env FLEXLLM_MODEL)");
  cmd->add_option("--provider", o.provider, "Provider: auto, openai, gemini or claude")
      ->check(CLI::IsMember({"auto", "openai", "gemini", "claude"}));
  cmd->add_option("--timeout", o.timeout, "Seconds per attempt (default 120)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--retry-times", o.retry_times, "Retries after the first attempt (default 3)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--ca-cert", o.ca_cert,
                  "Extra CA certificates to trust (PEM file), besides the system's")
      ->check(CLI::ExistingFile);
  cmd->add_option("--client-cert", o.client_cert,
                  "Client certificate (PEM) for servers that ask for one (mTLS)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--client-key", o.client_key, "The client certificate's key (PEM)")
      ->check(CLI::ExistingFile);
  cmd->add_flag("--insecure", o.insecure,
                "Do not check the server's TLS certificate (warned about on every run)");
  cmd->add_flag("--mock", o.mock,
                "Run against an embedded mock server (no endpoint or key needed)");
  cmd->add_option("--mock-args", o.mock_args,
                  "The embedded mock's knobs, as 'flexllm mock' takes them, e.g. "
                  "\"--latency 100-400 --error-rate 0.1 --thinking tags\"");
}

void add_request_options(CLI::App* cmd, RequestFlags& r) {
  cmd->add_option("--system", r.system, "System prompt");
  cmd->add_option("--temperature", r.temperature, "Sampling temperature")
      ->check(CLI::Range(0.0, 2.0));
  cmd->add_option("--max-tokens", r.max_tokens, "Longest answer, in tokens")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--thinking", r.thinking,
                  "Reasoning: true, false, minimal, low, medium, high, or a token budget")
      ->check([](const std::string& v) -> std::string {
        static const char* kWords[] = {"true",    "false", "on",     "off",
                                       "minimal", "low",   "medium", "high"};
        for (const char* w : kWords)
          if (v == w) return {};
        if (!v.empty() && v.find_first_not_of("0123456789") == std::string::npos) return {};
        return "expected true, false, minimal, low, medium, high or a token budget, got '" + v +
               "'";
      });
}

RequestOptions request_options(const RequestFlags& r) {
  RequestOptions opt;
  opt.temperature = r.temperature;
  opt.max_tokens = r.max_tokens;
  if (r.thinking == "true" || r.thinking == "on") {
    opt.thinking = true;
  } else if (r.thinking == "false" || r.thinking == "off") {
    opt.thinking = false;
  } else if (!r.thinking.empty() &&
             r.thinking.find_first_not_of("0123456789") == std::string::npos) {
    opt.thinking = std::stoi(r.thinking);
  } else if (!r.thinking.empty()) {
    opt.thinking = r.thinking;
  }
  return opt;
}

Provider parse_provider(const std::string& name) {
  if (name.empty() || name == "auto") return Provider::automatic;
  if (name == "openai") return Provider::openai;
  if (name == "gemini") return Provider::gemini;
  if (name == "claude") return Provider::claude;
  throw ConfigError(
      fmt::format("unknown provider '{}' (expected auto, openai, gemini or claude)", name));
}

namespace {

// The embedded mock: quick, streams at a visible pace, and says so.
std::unique_ptr<mock::MockServer> start_mock(const std::string& args) {
  MockOptions knobs;
  knobs.config.port = 0;
  knobs.latency = "20-120";
  knobs.config.token_rate = 200;
  CLI::App parser{"--mock-args"};
  add_mock_options(&parser, knobs);
  try {
    parser.parse(args, /*program_name_included=*/false);
  } catch (const CLI::ParseError& e) {
    throw ConfigError(fmt::format("--mock-args: {}", e.what()));
  }
  try {
    return std::make_unique<mock::MockServer>(mock_config(knobs));
  } catch (const std::invalid_argument& e) {
    throw ConfigError(fmt::format("--mock-args: {}", e.what()));
  }
}

}  // namespace

Session open_session(const CommonOptions& o,
                     const std::function<void(Config&, FlagSettings&)>& adjust) {
  Session s;
  EnvSettings env = EnvSettings::from_environment();
  auto warn = [](const std::string& w) {
    std::fprintf(stderr, "flexllm: warning: %s\n", w.c_str());
  };
  auto tell = [](const std::string& m) { std::fprintf(stderr, "flexllm: %s\n", m.c_str()); };
  s.config = load_config(find_config(config_flag(), env, tell), warn);
  // Once per run: the key is already in the process list and the shell's history.
  if (!o.flags.api_key.empty())
    warn(
        "--api-key: a key on the command line is visible to other users of this host (ps) and "
        "kept in shell history; put it in FLEXLLM_API_KEY or the config file (api_key: ${VAR}) "
        "instead");
  // Every run, not once: an --insecure left in a script must not be forgotten.
  if (o.insecure)
    warn(
        "--insecure: the server's TLS certificate is not checked; anyone on the network path "
        "can read and change this traffic (--ca-cert FILE trusts a private CA instead)");
  FlagSettings flags = o.flags;
  if (adjust) adjust(s.config, flags);
  if (o.mock) {
    if (!o.flags.base_url.empty())
      throw UsageError("--mock and --base-url exclude each other: pick one endpoint");
    s.mock = start_mock(o.mock_args);
    s.endpoint.base_url = s.mock->base_url();
    s.endpoint.api_key = "";  // the mock asks for none
    s.endpoint.model = o.flags.model.empty() ? "mock-model" : o.flags.model;
    s.endpoint.base_url_from = "the embedded mock server";
    s.endpoint.system = s.config.system;
    s.endpoint.provider = o.provider;
    return s;
  }
  if (!o.mock_args.empty()) throw UsageError("--mock-args needs --mock");
  std::optional<Resolved> resolved = resolve_endpoint(s.config, flags, env);
  if (!resolved) throw UsageError(no_endpoint_help());
  s.endpoint = std::move(*resolved);
  if (!o.provider.empty()) s.endpoint.provider = o.provider;
  if (s.endpoint.model.empty()) {
    // No model named anywhere: a server that offers models (vLLM, Ollama, …) serves its first.
    std::vector<std::string> models;
    try {
      models = LLMClient(s.client_config(o)).model_list();
    } catch (const Error& e) {
      throw UsageError(fmt::format(
          "no model given and {} did not list any ({}): pass -m MODEL or set FLEXLLM_MODEL",
          display_url(s.endpoint.base_url), e.what()));
    }
    if (models.empty())
      throw UsageError(fmt::format("no model given and {} lists none: pass -m MODEL",
                                   display_url(s.endpoint.base_url)));
    s.endpoint.model = models.front();
    s.endpoint.base_url_from += ", its first model";
  }
  return s;
}

ClientConfig Session::client_config(const CommonOptions& o) const {
  ClientConfig c;
  c.base_url = endpoint.base_url;
  c.api_key = endpoint.api_key;
  c.model = endpoint.model;
  c.provider = parse_provider(endpoint.provider);
  if (o.timeout) c.timeout = std::chrono::milliseconds(static_cast<int64_t>(*o.timeout * 1000));
  if (o.retry_times) c.retry_times = *o.retry_times;
  if (mock) c.proxy = "";  // loopback: never through a proxy from the environment
  c.ca_cert = o.ca_cert.empty() ? endpoint.ca_cert : o.ca_cert;
  c.client_cert = o.client_cert.empty() ? endpoint.client_cert : o.client_cert;
  c.client_key = o.client_key.empty() ? endpoint.client_key : o.client_key;
  if (o.insecure) c.verify_tls = false;  // open_session() warned
  return c;
}

std::string Session::describe() const {
  return fmt::format("{} at {} ({})",
                     endpoint.model.empty() ? "(server default model)" : endpoint.model,
                     display_url(endpoint.base_url), endpoint.base_url_from);
}

int run_guarded(const char* command, const std::function<int()>& body) {
  try {
    return body();
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "flexllm %s: %s\n", command, e.what());
    return kExitBadInput;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "flexllm %s: %s\n", command, e.what());
    return kExitFailure;
  } catch (const InvalidRequestError& e) {
    std::fprintf(stderr, "flexllm %s: %s\n", command, e.what());
    return kExitBadInput;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flexllm %s: %s\n", command, e.what());
    return kExitFailure;
  }
}

}  // namespace flexllm::cli
