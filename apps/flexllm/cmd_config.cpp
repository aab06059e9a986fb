// `flexllm list`, `flexllm set-model NAME`, `flexllm init`: the config file (config.hpp).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "commands.hpp"
#include "config.hpp"
#include "flexllm/errors.hpp"

namespace flexllm::cli {
namespace {

namespace fs = std::filesystem;

void error(const char* cmd, const std::string& message) {
  std::fprintf(stderr, "flexllm %s: %s\n", cmd, message.c_str());
}

Warn warner(const char* cmd) {
  return [cmd](const std::string& m) {
    std::fprintf(stderr, "flexllm %s: warning: %s\n", cmd, m.c_str());
  };
}

// Which working-directory config file is used, or why it is not.
Warn teller(const char* cmd) {
  return [cmd](const std::string& m) { std::fprintf(stderr, "flexllm %s: %s\n", cmd, m.c_str()); };
}

std::string errno_text() {
  return std::strerror(errno);
}

// Writes all of `text` to `fd`; false (errno set) on failure.
bool write_all(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

void fsync_dir(const std::string& file) {
  std::string dir = fs::path(file).parent_path().string();
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// Writes `text` to `tmp` (mode `mode`) and syncs it; "" or the error.
std::string write_temp(const std::string& tmp, const std::string& text, mode_t mode) {
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return fmt::format("cannot write {}: {}", tmp, errno_text());
  bool ok = ::fchmod(fd, mode) == 0 && write_all(fd, text) && ::fsync(fd) == 0;
  std::string why = ok ? "" : fmt::format("cannot write {}: {}", tmp, errno_text());
  if (::close(fd) != 0 && ok) why = fmt::format("cannot write {}: {}", tmp, errno_text());
  if (!why.empty()) ::unlink(tmp.c_str());
  return why;
}

// Replaces `path` by a file holding `text`, atomically: FILE.tmp in the same directory, fsync,
// rename. A symbolic link is followed (its target is replaced, the link stays). "" or the error.
std::string replace_file(const std::string& path, const std::string& text, mode_t mode) {
  std::error_code ec;
  std::string target = path;
  if (fs::is_symlink(path, ec)) {
    fs::path real = fs::canonical(path, ec);
    if (!ec) target = real.string();
  }
  std::string tmp = target + ".tmp";
  if (std::string why = write_temp(tmp, text, mode); !why.empty()) return why;
  if (::rename(tmp.c_str(), target.c_str()) != 0) {
    std::string why = fmt::format("cannot replace {}: {}", target, errno_text());
    ::unlink(tmp.c_str());
    return why;
  }
  fsync_dir(target);
  return "";
}

// Creates `path` holding `text` unless it exists (EEXIST), atomically. "" or the error.
std::string create_file(const std::string& path, const std::string& text, mode_t mode,
                        bool& existed) {
  existed = false;
  std::string tmp = path + ".tmp";
  if (std::string why = write_temp(tmp, text, mode); !why.empty()) return why;
  // link() fails when `path` exists: no window where another writer's file is replaced.
  int rc = ::link(tmp.c_str(), path.c_str());
  int err = errno;
  ::unlink(tmp.c_str());
  if (rc != 0) {
    existed = err == EEXIST;
    return fmt::format("cannot create {}: {}", path, std::strerror(err));
  }
  fsync_dir(path);
  return "";
}

// Missing parent directories of `path`, created with mode 0700 (the file holds keys).
std::string make_parents(const std::string& path) {
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) return "";
  std::vector<fs::path> missing;
  std::error_code ec;
  for (fs::path d = dir; !d.empty() && !fs::exists(d, ec); d = d.parent_path()) {
    missing.push_back(d);
    if (d == d.parent_path()) break;
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it)
    if (::mkdir(it->c_str(), 0700) != 0 && errno != EEXIST)
      return fmt::format("cannot create directory {}: {}", it->string(), errno_text());
  return "";
}

// The flag that repeats --config for the commands suggested after a given --config.
std::string config_arg() {
  return config_flag().empty() ? "" : fmt::format(" --config {}", config_flag());
}

// Rows of columns, left-aligned, each after its prefix (`indent` when none is given); the last
// column is not padded.
void print_table(const std::vector<std::vector<std::string>>& rows, const std::string& indent,
                 const std::vector<std::string>& prefixes = {}) {
  if (rows.empty()) return;
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& row : rows)
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  for (size_t r = 0; r < rows.size(); ++r) {
    const auto& row = rows[r];
    std::string line = r < prefixes.size() ? prefixes[r] : indent;
    for (size_t i = 0; i < row.size(); ++i)
      line += i + 1 < row.size() ? fmt::format("{:<{}}  ", row[i], width[i]) : row[i];
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::printf("%s\n", line.c_str());
  }
}

std::string or_dash(const std::string& s) {
  return s.empty() ? "-" : s;
}

int run_list() {
  const char* cmd = "list";
  EnvSettings env = EnvSettings::from_environment();
  std::string path;
  Config config;
  try {
    path = find_config(config_flag(), env, teller(cmd));
    config = load_config(path, warner(cmd));
  } catch (const ConfigError& e) {
    error(cmd, e.what());
    return kExitBadInput;
  }

  if (path.empty())
    std::printf("no config file (looked for ./flexllm.yaml and %s); 'flexllm init' creates one\n",
                user_config_path().c_str());
  else
    std::printf("config: %s\n", path.c_str());

  if (!config.models.empty()) {
    const ModelEntry* def =
        config.default_model ? config.find(*config.default_model) : &config.models.front();
    std::vector<std::vector<std::string>> rows{{"NAME", "ID", "PROVIDER", "BASE_URL", "API_KEY"}};
    std::vector<std::string> marks{"    "};
    for (const ModelEntry& m : config.models) {
      rows.push_back({m.name, m.id, m.provider.empty() ? "auto" : m.provider,
                      or_dash(display_url(m.base_url)), mask_key(m.api_key)});
      marks.push_back(&m == def ? "  * " : "    ");
    }
    std::printf("models (* = default):\n");
    print_table(rows, "    ", marks);
  } else if (!path.empty()) {
    std::printf("no models in %s (add entries under 'models:')%s\n", path.c_str(),
                config.default_model
                    ? fmt::format("; default model: {}", *config.default_model).c_str()
                    : "");
  }

  const BatchSection& b = config.batch;
  if (!b.endpoints.empty()) {
    std::printf("batch endpoints (load_balance: %s):\n",
                b.load_balance.value_or("round_robin").c_str());
    std::vector<std::vector<std::string>> rows{
        {"BASE_URL", "MODEL", "PROVIDER", "WEIGHT", "CONCURRENCY", "API_KEY"}};
    for (const EndpointEntry& e : b.endpoints)
      rows.push_back({display_url(e.base_url), or_dash(e.model),
                      e.provider.empty() ? "-" : e.provider, fmt::format("{:g}", e.weight),
                      e.concurrency ? std::to_string(*e.concurrency) : "-",
                      e.api_key.empty() ? "-" : mask_key(e.api_key)});
    print_table(rows, "    ");
  }

  if (!env.base_url.empty() || !env.api_key.empty() || !env.model.empty()) {
    std::printf("environment:\n");
    std::vector<std::vector<std::string>> rows;
    if (!env.base_url.empty())
      rows.push_back(
          {"base_url", display_url(env.base_url), "(FLEXLLM_BASE_URL or OPENAI_BASE_URL)"});
    if (!env.model.empty()) rows.push_back({"model", env.model, "(FLEXLLM_MODEL or OPENAI_MODEL)"});
    if (!env.api_key.empty())
      rows.push_back({"api_key", mask_key(env.api_key), "(FLEXLLM_API_KEY or OPENAI_API_KEY)"});
    print_table(rows, "    ");
  }

  std::optional<Resolved> r;
  try {
    r = resolve_endpoint(config, FlagSettings{}, env);
  } catch (const ConfigError& e) {
    error(cmd, e.what());
    return kExitBadInput;
  }
  if (r) {
    std::printf("without flags, requests go to: %s at %s\n    base_url from %s; api key %s\n",
                r->model.empty() ? "(no model)" : r->model.c_str(),
                display_url(r->base_url).c_str(), r->base_url_from.c_str(),
                mask_key(r->api_key).c_str());
  } else {
    std::printf("\n%s", no_endpoint_help().c_str());
  }
  return kExitOk;
}

int run_set_model(const std::string& name) {
  const char* cmd = "set-model";
  EnvSettings env = EnvSettings::from_environment();
  std::string path;
  std::string text;
  Config config;
  try {
    path = find_config(config_flag(), env, teller(cmd));
    if (path.empty()) {
      error(cmd, fmt::format("no config file (looked for ./flexllm.yaml and {}); run 'flexllm "
                             "init' to create one, then add your models to it",
                             user_config_path()));
      return kExitFailure;
    }
    text = read_config_file(path);
    config = parse_config(text, path, warner(cmd));
  } catch (const ConfigError& e) {
    error(cmd, e.what());
    return kExitBadInput;
  }
  if (!config.find(name)) {
    if (config.models.empty())
      error(cmd, fmt::format("{} has no models; add one under 'models:' first", path));
    else {
      std::string names;
      for (const ModelEntry& m : config.models) names += (names.empty() ? "" : ", ") + m.name;
      error(cmd, fmt::format("no model '{}' in {} (known: {})", name, path, names));
    }
    return kExitBadInput;
  }

  std::string edited;
  try {
    edited = set_default_model(text, name);
    Config check = parse_config(edited, path, Warn{});
    if (check.default_model != name)
      throw ConfigError("the edited file does not read back with the new default");
  } catch (const ConfigError& e) {
    error(cmd, fmt::format("cannot update {}: {}", path, e.what()));
    return kExitFailure;
  }
  if (edited != text) {
    struct stat st {};
    mode_t mode = ::stat(path.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0600;
    if (std::string why = replace_file(path, edited, mode); !why.empty()) {
      error(cmd, why);
      return kExitFailure;
    }
  }
  std::printf("default model: %s (%s)\n", name.c_str(), path.c_str());
  return kExitOk;
}

int run_init(bool force) {
  const char* cmd = "init";
  std::string path = config_flag().empty() ? user_config_path() : config_flag();
  if (path.empty()) {
    error(cmd, "HOME is not set: give the file to write with --config FILE");
    return kExitFailure;
  }
  std::error_code ec;
  if (!force && fs::exists(fs::symlink_status(path, ec))) {
    error(cmd, fmt::format("{} already exists; use --force to overwrite it", path));
    return kExitFailure;
  }
  if (fs::is_directory(path, ec)) {
    error(cmd, fmt::format("{} is a directory", path));
    return kExitFailure;
  }
  if (std::string why = make_parents(path); !why.empty()) {
    error(cmd, why);
    return kExitFailure;
  }
  std::string why;
  if (force) {
    why = replace_file(path, config_template(), 0600);
  } else {
    bool existed = false;
    why = create_file(path, config_template(), 0600, existed);
    if (existed) why = fmt::format("{} already exists; use --force to overwrite it", path);
  }
  if (!why.empty()) {
    error(cmd, why);
    return kExitFailure;
  }
  std::string flag = config_arg();
  std::printf(
      "wrote %s (mode 0600: it may hold API keys)\n"
      "Next steps:\n"
      "  1. edit it: set each model's id, base_url and api_key (api_key: ${VAR} reads the\n"
      "     environment variable VAR)\n"
      "  2. flexllm%s list              # what flexllm sees\n"
      "  3. flexllm%s set-model NAME    # the model used without -m\n"
      "  4. flexllm%s ask \"Hello\"\n",
      path.c_str(), flag.c_str(), flag.c_str(), flag.c_str());
  // Another file would be read first: say so.
  if (config_flag().empty()) {
    EnvSettings env = EnvSettings::from_environment();
    std::string used;
    try {
      used = find_config("", env);
    } catch (const ConfigError&) {
      used = env.config;
    }
    if (!used.empty() && used != path)
      std::fprintf(stderr, "flexllm init: note: flexllm reads %s first (%s)\n", used.c_str(),
                   env.config.empty() ? "./flexllm.yaml is looked for before ~/.flexllm"
                                      : "FLEXLLM_CONFIG names it");
  }
  return kExitOk;
}

}  // namespace

Runner add_list_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("list", "Show the configured models and endpoints");
  cmd->footer(R"(Shows the config file read, its models (* marks the default), the batch endpoints,
the FLEXLLM_*/OPENAI_* environment and the endpoint a command uses without flags. API keys
are shown masked.

Examples:
  flexllm list
  flexllm list --config ./team.yaml
  flexllm --config ./team.yaml list)");
  add_config_option(cmd);
  return [] { return run_list(); };
}

Runner add_set_model_command(CLI::App& app) {
  auto name = std::make_shared<std::string>();
  CLI::App* cmd =
      app.add_subcommand("set-model", "Set the default model (`default:`) of the config file");
  cmd->footer(R"(NAME is the name or id of an entry of `models:`. Only the `default:` line of the
file changes (it is added when missing); comments and everything else stay as they are.

Examples:
  flexllm set-model gpt
  flexllm set-model local --config ./flexllm.yaml)");
  cmd->add_option("NAME", *name, "Model name (or id) from the config's models")->required();
  add_config_option(cmd);
  return [name] { return run_set_model(*name); };
}

Runner add_init_command(CLI::App& app) {
  auto force = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("init", "Write a commented config file to start from");
  cmd->footer(R"(Writes ~/.flexllm/config.yaml (or the --config FILE) with example models and every
batch setting, mode 0600. An existing file is kept unless --force is given.

Examples:
  flexllm init
  flexllm init --config ./flexllm.yaml
  flexllm init --force)");
  cmd->add_flag("--force,-f", *force, "Overwrite an existing file");
  add_config_option(cmd);
  return [force] { return run_init(*force); };
}

}  // namespace flexllm::cli
