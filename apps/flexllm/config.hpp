// The command's configuration: the YAML file, the environment and the flags, and
// which endpoint they pick. Pure apart from reading the file and the environment (both also
// injectable), so the precedence rules are unit-tested.
//
// Where the file is: --config FILE (it must exist), else $FLEXLLM_CONFIG, else ./flexllm.yaml,
// else ~/.flexllm/config.yaml. One file is read, never merged with another. ./flexllm.yaml is
// found, not named: whoever controls the working directory chose it, so it is announced when used
// and skipped (saying why) when another user owns it or it is writable by group or others.
// A config file is at most kMaxConfigBytes.
//
// Precedence, field by field: flags > environment > file. A model entry of the file is picked by
// -m NAME (its name or id), else by FLEXLLM_MODEL/OPENAI_MODEL when that names an entry, else by
// `default`, else the first entry. An entry picked by -m is an explicit choice: its base_url then
// wins over the environment's (--base-url still wins over it), because `-m deepseek` means "that
// endpoint", not "that model name at whatever OPENAI_BASE_URL says".
//
// The API key follows the base_url, so that a key is only ever sent to the server it was given
// for: --api-key always wins; otherwise a base_url from the file gets its entry's api_key (write
// `api_key: ${VAR}` to take it from the environment), and a base_url from --base-url or the
// environment gets FLEXLLM_API_KEY / OPENAI_API_KEY, else the key of an entry that has no
// base_url of its own (a key written for whatever endpoint the entry runs against).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace flexllm::cli {

// A config file that cannot be used. The message names the file, line and field.
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using Warn = std::function<void(const std::string&)>;

// One endpoint of batch.endpoints (a pool).
struct EndpointEntry {
  std::string base_url;
  std::string api_key;   // "" = the picked model's key
  std::string model;     // "" = the picked model's id
  std::string provider;  // "" = the picked model's provider
  double weight = 1;
  std::optional<int> concurrency;
  std::optional<double> max_qps;
};

// One entry of `models:`.
struct ModelEntry {
  std::string id;        // the model id sent to the server (required)
  std::string name;      // what -m and `default` call it; id when absent
  std::string provider;  // auto | openai | gemini | claude; "" = auto
  std::string base_url;
  std::string api_key;
  std::optional<std::string> system;  // default system prompt for this model
  // TLS for this endpoint (paths; relative ones are relative to the config file's directory):
  // extra CAs to trust, and a client certificate and key for gateways that ask for one (mTLS).
  std::string ca_cert, client_cert, client_key;
  int line = 0;  // where the entry starts in the file (1-based)
};

// The `batch:` section: defaults of `flexllm batch` (flags override each).
struct BatchSection {
  std::optional<std::string> model;  // model entry (name or id) for batches
  std::optional<int> concurrency;
  std::optional<double> max_qps;
  std::optional<bool> adaptive;
  std::optional<bool> cache;
  std::optional<double> cache_ttl;  // seconds
  std::optional<double> timeout;    // seconds
  std::optional<int> retry_times;
  std::optional<double> retry_delay;      // seconds
  std::optional<double> flush_interval;   // seconds
  std::optional<std::string> save_input;  // full | last | none
  std::vector<EndpointEntry> endpoints;   // non-empty: batches run on a pool
  std::optional<bool> fallback;
  std::optional<std::string> load_balance;  // round_robin | weighted | random | fallback | ...
};

struct Config {
  std::string path;  // the file read; "" when none was found
  std::optional<std::string> default_model;
  std::optional<std::string> system;  // global default system prompt
  std::vector<ModelEntry> models;
  BatchSection batch;

  // The entry whose name or id is `name_or_id`, or null.
  const ModelEntry* find(const std::string& name_or_id) const;
};

// What the environment says (FLEXLLM_* first, then OPENAI_*; "" when unset).
struct EnvSettings {
  std::string base_url{};  // FLEXLLM_BASE_URL | OPENAI_BASE_URL
  std::string api_key{};   // FLEXLLM_API_KEY | OPENAI_API_KEY
  std::string model{};     // FLEXLLM_MODEL | OPENAI_MODEL
  std::string config{};    // FLEXLLM_CONFIG
  static EnvSettings from_environment();
};

// What the flags say ("" = not given).
struct FlagSettings {
  std::string base_url{};
  std::string api_key{};
  std::string model{};
};

// The endpoint the settings pick.
struct Resolved {
  std::string base_url;
  std::string api_key;
  std::string model;     // the id sent to the server
  std::string provider;  // "" = auto
  std::optional<std::string> system;
  // TLS settings that go with the base_url: the entry's when its base_url is the one used.
  std::string ca_cert, client_cert, client_key;
  const ModelEntry* entry = nullptr;  // the file's entry used, if any
  // Where base_url came from, for messages: "--base-url", "FLEXLLM_BASE_URL",
  // "/home/u/.flexllm/config.yaml (model 'qwen')".
  std::string base_url_from;
};

// The largest config file read (1 MiB): a bigger one is a ConfigError naming it, never read
// into memory.
inline constexpr size_t kMaxConfigBytes = 1 << 20;

// The file to read: `explicit_path` (--config) if given (ConfigError when missing), else
// env.config, else ./flexllm.yaml, else $HOME/.flexllm/config.yaml; "" when none exists.
// ./flexllm.yaml is skipped when another user owns it or group or others may write it; `tell`
// gets why then, or "using ./flexllm.yaml …" when it is the file picked (one line each).
std::string find_config(const std::string& explicit_path, const EnvSettings& env,
                        const Warn& tell = {});
// Why the working directory's config file `path` must not be used by the user `me` ("" when it
// may): another user owns it, or group or others may write it.
std::string untrusted_reason(const std::string& path, uid_t me);
// The text of a config file: ConfigError naming it when it cannot be read, is a directory or is
// larger than kMaxConfigBytes.
std::string read_config_file(const std::string& path);
// $HOME/.flexllm/config.yaml (where init and set-model write when no file exists yet).
std::string user_config_path();

// Parses a config file's text. Throws ConfigError ("FILE:LINE: field 'models[2].base_url': …")
// for malformed YAML or a field of the wrong type; warns (not throws) about unknown keys, naming
// file, line and the known keys. In api_key and base_url values (of models and of
// batch.endpoints, nowhere else) `${NAME}` is replaced by the environment variable NAME; an unset
// variable gives "" (so `api_key: ${OPENAI_API_KEY}` without the variable means no key).
Config parse_config(const std::string& text, const std::string& path, const Warn& warn);
// Reads and parses `path`; an empty path gives an empty Config.
Config load_config(const std::string& path, const Warn& warn);

// Applies the precedence rules above; nullopt when nothing names a base_url. Throws ConfigError
// when -m names no entry (while the file has entries) and there is no base_url to send it to
// either. An entry picked by -m whose own base_url is used gets its own api_key even when that is
// empty: the environment's key is not sent to a server it was not set for.
std::optional<Resolved> resolve_endpoint(const Config& config, const FlagSettings& flags,
                                         const EnvSettings& env);

// How to configure an endpoint: the text of the error when none is configured.
std::string no_endpoint_help();

// `set-model`: the file's text with `default:` set to `name`, everything else (comments, order,
// quoting, other keys) byte for byte as it was. Adds `default:` at the top level when missing.
std::string set_default_model(const std::string& text, const std::string& name);
// `init`: a commented template (valid YAML that parse_config accepts without warnings).
std::string config_template();

// The key shown for humans: "sk-…abcd" (first 3, last 4), "(none)" when empty, "****" if short.
std::string mask_key(const std::string& key);

}  // namespace flexllm::cli
