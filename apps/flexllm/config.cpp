// The command's configuration: see config.hpp.
#include "config.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <span>
#include <sstream>
#include <string_view>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

namespace flexllm::cli {
namespace {

namespace fs = std::filesystem;

using Keys = std::span<const std::string_view>;

constexpr std::string_view kTopKeys[] = {"default", "system", "models", "batch"};
constexpr std::string_view kModelKeys[] = {"id",       "name",        "provider",
                                           "base_url", "api_key",     "system",
                                           "ca_cert",  "client_cert", "client_key"};
constexpr std::string_view kBatchKeys[] = {
    "model",      "concurrency", "max_qps",     "adaptive",    "cache",
    "cache_ttl",  "timeout",     "retry_times", "retry_delay", "flush_interval",
    "save_input", "endpoints",   "fallback",    "load_balance"};
constexpr std::string_view kEndpointKeys[] = {"base_url", "api_key",     "model",  "provider",
                                              "weight",   "concurrency", "max_qps"};
constexpr std::string_view kProviders[] = {"auto", "openai", "gemini", "claude"};
constexpr std::string_view kSaveInput[] = {"full", "last", "none"};
constexpr std::string_view kLoadBalance[] = {"round_robin", "weighted",   "random",
                                             "fallback",    "least_busy", "latency"};

std::string join(Keys keys) {
  std::string out;
  for (std::string_view k : keys) {
    if (!out.empty()) out += ", ";
    out += k;
  }
  return out;
}

bool contains(Keys keys, std::string_view k) {
  return std::find(keys.begin(), keys.end(), k) != keys.end();
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The known key closest to `k` when it is plausibly a typo of it, else "".
std::string_view closest(Keys keys, std::string_view k) {
  std::string_view best;
  size_t best_d = std::max<size_t>(1, k.size() / 3) + 1;
  for (std::string_view known : keys) {
    size_t d = edit_distance(k, known);
    if (d < best_d) {
      best_d = d;
      best = known;
    }
  }
  return best;
}

// A value shown back to the user in a message: short and on one line.
std::string shown(const std::string& s) {
  std::string out;
  for (char c : s) out += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  if (out.size() > 40) out = out.substr(0, 37) + "...";
  return out;
}

const char* kind_of(const YAML::Node& n) {
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a map";
  if (n.IsNull()) return "nothing";
  return "a value";
}

// ${NAME} -> the environment variable's value ("" when unset). Anything else stays verbatim.
std::string expand_env(const std::string& s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    size_t start = s.find("${", i);
    if (start == std::string::npos) break;
    size_t end = s.find('}', start + 2);
    if (end == std::string::npos) break;
    std::string name = s.substr(start + 2, end - start - 2);
    bool valid = !name.empty() && !std::isdigit(static_cast<unsigned char>(name[0])) &&
                 std::all_of(name.begin(), name.end(), [](char c) {
                   return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
                 });
    out.append(s, i, start - i);
    if (valid) {
      const char* v = std::getenv(name.c_str());
      if (v) out += v;
    } else {
      out.append(s, start, end + 1 - start);
    }
    i = end + 1;
  }
  out.append(s, i, std::string::npos);
  return out;
}

// The parse of one file: its label for messages and where warnings go.
class Parser {
 public:
  Parser(const std::string& path, const Warn& warn)
      : label_(path.empty() ? "config" : path), path_(path), warn_(warn) {}

  const std::string& label() const { return label_; }

  // A path written in the file: `~/` is the home directory, a relative one is relative to the
  // file's own directory (not to wherever the command runs).
  std::string file_path(const std::string& written) const {
    if (written.starts_with("~/")) {
      const char* home = std::getenv("HOME");
      return std::string(home ? home : "") + written.substr(1);
    }
    if (written.starts_with('/') || path_.empty()) return written;
    return (fs::path(path_).parent_path() / written).string();
  }

  [[noreturn]] void fail(int line, const std::string& field, const std::string& what) const {
    throw ConfigError(fmt::format("{}:{}: {}: {}", label_, line, field, what));
  }

  void warn(int line, const std::string& what) const {
    if (warn_) warn_(fmt::format("{}:{}: {}", label_, line, what));
  }

  // Calls `fn(key, key_line, value, value_line)` for each entry of the map `node` (`where` is
  // "batch", "models[1]", …), warning about keys not in `known` and about repeated keys.
  template <typename Fn>
  void each_key(const YAML::Node& node, const std::string& where, Keys known, Fn&& fn) const {
    std::set<std::string> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      const YAML::Node key = it->first;
      const YAML::Node value = it->second;
      int key_line = line_of(key, 1);
      // A null value's mark is the next token's: report the key's line instead.
      int value_line = value.IsNull() ? key_line : line_of(value, key_line);
      if (!key.IsScalar())
        fail(key_line, where.empty() ? "the top level" : where,
             fmt::format("expected a key (one of {}), got {}", join(known), kind_of(key)));
      const std::string& k = key.Scalar();
      std::string in = where.empty() ? "at the top level" : "in " + where;
      if (!contains(known, k)) {
        std::string_view guess = closest(known, k);
        warn(key_line,
             fmt::format("unknown key '{}' {} (known: {}); ignored{}", shown(k), in, join(known),
                         guess.empty() ? "" : fmt::format(" (did you mean '{}'?)", guess)));
        continue;
      }
      if (!seen.insert(k).second)
        warn(key_line, fmt::format("key '{}' given twice {}; the last one is used", k, in));
      fn(k, key_line, value, value_line);
    }
  }

  static int line_of(const YAML::Node& n, int fallback) {
    int line = n.Mark().line;
    return line >= 0 ? line + 1 : fallback;
  }

  // The typed readers: nullopt for an empty value (`key:` or `key: ~`), which means "not set".
  std::optional<std::string> string(const YAML::Node& v, int line, const std::string& field) const {
    if (v.IsNull()) return std::nullopt;
    if (!v.IsScalar()) fail(line, field, fmt::format("expected a string, got {}", kind_of(v)));
    return v.Scalar();
  }

  std::optional<std::string> one_of(const YAML::Node& v, int line, const std::string& field,
                                    Keys allowed) const {
    std::optional<std::string> s = string(v, line, field);
    if (s && !contains(allowed, *s))
      fail(line, field, fmt::format("expected one of {}, got '{}'", join(allowed), shown(*s)));
    return s;
  }

  std::optional<int> integer(const YAML::Node& v, int line, const std::string& field,
                             int min) const {
    const char* expected = min >= 1 ? "a positive integer" : "a non-negative integer";
    if (v.IsNull()) return std::nullopt;
    if (!v.IsScalar()) fail(line, field, fmt::format("expected {}, got {}", expected, kind_of(v)));
    const std::string& s = v.Scalar();
    int value = 0;
    const char* first = s.data() + (!s.empty() && s[0] == '+' ? 1 : 0);
    auto [end, ec] = std::from_chars(first, s.data() + s.size(), value);
    if (ec != std::errc{} || end != s.data() + s.size() || s.empty() || value < min)
      fail(line, field, fmt::format("expected {}, got '{}'", expected, shown(s)));
    return value;
  }

  // A number; `positive`: > 0, else >= 0.
  std::optional<double> number(const YAML::Node& v, int line, const std::string& field,
                               bool positive, const char* unit = "") const {
    std::string expected =
        fmt::format("expected a {} number{}", positive ? "positive" : "non-negative", unit);
    if (v.IsNull()) return std::nullopt;
    if (!v.IsScalar()) fail(line, field, fmt::format("{}, got {}", expected, kind_of(v)));
    const std::string& s = v.Scalar();
    double value = 0;
    auto [end, ec] =
        std::from_chars(s.data() + (!s.empty() && s[0] == '+' ? 1 : 0), s.data() + s.size(), value);
    if (ec != std::errc{} || end != s.data() + s.size() || s.empty() || !std::isfinite(value) ||
        (positive ? !(value > 0) : !(value >= 0)))
      fail(line, field, fmt::format("{}, got '{}'", expected, shown(s)));
    return value;
  }

  std::optional<bool> boolean(const YAML::Node& v, int line, const std::string& field) const {
    if (v.IsNull()) return std::nullopt;
    bool value = false;
    if (!v.IsScalar() || !YAML::convert<bool>::decode(v, value))
      fail(line, field,
           fmt::format("expected true or false, got {}",
                       v.IsScalar() ? fmt::format("'{}'", shown(v.Scalar())) : kind_of(v)));
    return value;
  }

  // A sequence (or nothing), each element a map.
  template <typename Fn>
  void each_map(const YAML::Node& v, int line, const std::string& field, Keys keys, Fn&& fn) const {
    if (v.IsNull()) return;
    if (!v.IsSequence())
      fail(line, field,
           fmt::format("expected a list of entries with {}, got {}", join(keys), kind_of(v)));
    for (size_t i = 0; i < v.size(); ++i) {
      YAML::Node item = v[i];
      std::string item_field = fmt::format("{}[{}]", field, i);
      int item_line = line_of(item, line);
      if (!item.IsMap())
        fail(item_line, item_field,
             fmt::format("expected an entry with {}, got {}", join(keys), kind_of(item)));
      fn(item, item_line, item_field);
    }
  }

 private:
  std::string label_;
  std::string path_;
  const Warn& warn_;
};

ModelEntry parse_model(const Parser& p, const YAML::Node& node, int line,
                       const std::string& field) {
  ModelEntry m;
  m.line = line;
  bool has_name = false;
  p.each_key(node, field, kModelKeys,
             [&](const std::string& k, int, const YAML::Node& v, int vline) {
               std::string f = field + "." + k;
               if (k == "id") {
                 m.id = p.string(v, vline, f).value_or("");
               } else if (k == "name") {
                 std::optional<std::string> name = p.string(v, vline, f);
                 has_name = name && !name->empty();
                 m.name = name.value_or("");
               } else if (k == "provider") {
                 m.provider = p.one_of(v, vline, f, kProviders).value_or("");
                 if (m.provider == "auto") m.provider.clear();
               } else if (k == "base_url") {
                 m.base_url = expand_env(p.string(v, vline, f).value_or(""));
               } else if (k == "api_key") {
                 m.api_key = expand_env(p.string(v, vline, f).value_or(""));
               } else if (k == "system") {
                 m.system = p.string(v, vline, f);
               } else if (k == "ca_cert" || k == "client_cert" || k == "client_key") {
                 std::string path = p.string(v, vline, f).value_or("");
                 (k == "ca_cert"       ? m.ca_cert
                  : k == "client_cert" ? m.client_cert
                                       : m.client_key) = path.empty() ? path : p.file_path(path);
               }
             });
  if (m.id.empty()) p.fail(line, field, "'id' is required (the model id sent to the server)");
  if (!has_name) m.name = m.id;
  return m;
}

EndpointEntry parse_endpoint(const Parser& p, const YAML::Node& node, int line,
                             const std::string& field) {
  EndpointEntry e;
  p.each_key(node, field, kEndpointKeys,
             [&](const std::string& k, int, const YAML::Node& v, int vline) {
               std::string f = field + "." + k;
               if (k == "base_url") {
                 e.base_url = expand_env(p.string(v, vline, f).value_or(""));
               } else if (k == "api_key") {
                 e.api_key = expand_env(p.string(v, vline, f).value_or(""));
               } else if (k == "model") {
                 e.model = p.string(v, vline, f).value_or("");
               } else if (k == "provider") {
                 e.provider = p.one_of(v, vline, f, kProviders).value_or("");
                 if (e.provider == "auto") e.provider.clear();
               } else if (k == "weight") {
                 e.weight = p.number(v, vline, f, false).value_or(1);
               } else if (k == "concurrency") {
                 e.concurrency = p.integer(v, vline, f, 1);
               } else if (k == "max_qps") {
                 e.max_qps = p.number(v, vline, f, true, " (requests/s)");
               }
             });
  if (e.base_url.empty())
    p.fail(line, field, "'base_url' is required (the endpoint's URL, e.g. http://host:8000/v1)");
  return e;
}

BatchSection parse_batch(const Parser& p, const YAML::Node& node, int line, int& model_line) {
  BatchSection b;
  if (node.IsNull()) return b;
  if (!node.IsMap())
    p.fail(line, "batch",
           fmt::format("expected a map with {}, got {}", join(kBatchKeys), kind_of(node)));
  p.each_key(node, "batch", kBatchKeys,
             [&](const std::string& k, int, const YAML::Node& v, int vline) {
               std::string f = "batch." + k;
               const char* seconds = " (seconds)";
               if (k == "model") {
                 b.model = p.string(v, vline, f);
                 model_line = vline;
               } else if (k == "concurrency")
                 b.concurrency = p.integer(v, vline, f, 1);
               else if (k == "max_qps")
                 b.max_qps = p.number(v, vline, f, true, " (requests/s)");
               else if (k == "adaptive")
                 b.adaptive = p.boolean(v, vline, f);
               else if (k == "cache")
                 b.cache = p.boolean(v, vline, f);
               else if (k == "cache_ttl")
                 b.cache_ttl = p.number(v, vline, f, false, seconds);
               else if (k == "timeout")
                 b.timeout = p.number(v, vline, f, false, seconds);
               else if (k == "retry_times")
                 b.retry_times = p.integer(v, vline, f, 0);
               else if (k == "retry_delay")
                 b.retry_delay = p.number(v, vline, f, false, seconds);
               else if (k == "flush_interval")
                 b.flush_interval = p.number(v, vline, f, false, seconds);
               else if (k == "save_input")
                 b.save_input = p.one_of(v, vline, f, kSaveInput);
               else if (k == "fallback")
                 b.fallback = p.boolean(v, vline, f);
               else if (k == "load_balance")
                 b.load_balance = p.one_of(v, vline, f, kLoadBalance);
               else if (k == "endpoints")
                 p.each_map(v, vline, f, kEndpointKeys,
                            [&](const YAML::Node& item, int iline, const std::string& ifield) {
                              b.endpoints.push_back(parse_endpoint(p, item, iline, ifield));
                            });
             });
  return b;
}

std::string known_names(const Config& c) {
  std::string out;
  for (const ModelEntry& m : c.models) out += (out.empty() ? "" : ", ") + m.name;
  return out;
}

}  // namespace

const ModelEntry* Config::find(const std::string& name_or_id) const {
  for (const ModelEntry& m : models)
    if (m.name == name_or_id) return &m;
  for (const ModelEntry& m : models)
    if (m.id == name_or_id) return &m;
  return nullptr;
}

EnvSettings EnvSettings::from_environment() {
  auto first = [](const char* a, const char* b) {
    for (const char* name : {a, b}) {
      if (!name) continue;
      const char* v = std::getenv(name);
      if (v && *v) return std::string(v);
    }
    return std::string();
  };
  EnvSettings e;
  e.base_url = first("FLEXLLM_BASE_URL", "OPENAI_BASE_URL");
  e.api_key = first("FLEXLLM_API_KEY", "OPENAI_API_KEY");
  e.model = first("FLEXLLM_MODEL", "OPENAI_MODEL");
  e.config = first("FLEXLLM_CONFIG", nullptr);
  return e;
}

std::string user_config_path() {
  std::string home;
  if (const char* h = std::getenv("HOME"); h && *h) {
    home = h;
  } else {
    passwd pw{};
    passwd* found = nullptr;
    char buf[4096];
    if (getpwuid_r(getuid(), &pw, buf, sizeof buf, &found) == 0 && found && found->pw_dir)
      home = found->pw_dir;
  }
  if (home.empty()) return "";
  if (home.back() == '/') home.pop_back();
  return home + "/.flexllm/config.yaml";
}

std::string untrusted_reason(const std::string& path, uid_t me) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};  // gone: reading it fails with its own error
  if (st.st_uid != me) {
    passwd pw{};
    passwd* found = nullptr;
    char buf[4096];
    std::string owner = getpwuid_r(st.st_uid, &pw, buf, sizeof buf, &found) == 0 && found
                            ? fmt::format("{} (uid {})", found->pw_name, st.st_uid)
                            : fmt::format("uid {}", st.st_uid);
    return fmt::format("it is owned by another user, {}", owner);
  }
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return fmt::format("it is writable by {} (mode {:04o})",
                       (st.st_mode & S_IWGRP) && (st.st_mode & S_IWOTH) ? "group and others"
                       : (st.st_mode & S_IWGRP)                         ? "its group"
                                                                        : "others",
                       st.st_mode & 07777);
  return {};
}

std::string find_config(const std::string& explicit_path, const EnvSettings& env,
                        const Warn& tell) {
  std::error_code ec;
  if (!explicit_path.empty()) {
    if (!fs::exists(explicit_path, ec))
      throw ConfigError(fmt::format("config file {} does not exist", explicit_path));
    return explicit_path;
  }
  if (!env.config.empty()) {
    if (!fs::exists(env.config, ec))
      throw ConfigError(
          fmt::format("config file {} does not exist (named by FLEXLLM_CONFIG)", env.config));
    return env.config;
  }
  if (fs::exists("flexllm.yaml", ec)) {
    constexpr const char* kLocal = "./flexllm.yaml";
    std::string why = untrusted_reason(kLocal, ::geteuid());
    if (why.empty()) {
      if (tell) tell(fmt::format("using {} (the config file in the working directory)", kLocal));
      return kLocal;
    }
    if (tell)
      tell(fmt::format(
          "warning: ignoring {}: {}; whoever can change it could send your requests and keys to "
          "a server of theirs (chmod go-w flexllm.yaml, or pass --config {} to use it anyway)",
          kLocal, why, kLocal));
  }
  std::string user = user_config_path();
  if (!user.empty() && fs::exists(user, ec)) return user;
  return "";
}

Config parse_config(const std::string& text, const std::string& path, const Warn& warn) {
  Parser p(path, warn);
  Config c;
  c.path = path;
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(fmt::format("{}:{}:{}: invalid YAML: {}", p.label(), e.mark.line + 1,
                                  e.mark.column + 1, e.msg));
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("{}: invalid YAML: {}", p.label(), e.what()));
  }
  if (root.IsNull()) return c;
  if (!root.IsMap())
    throw ConfigError(fmt::format("{}:{}: expected a map with {} at the top level, got {}",
                                  p.label(), Parser::line_of(root, 1), join(kTopKeys),
                                  kind_of(root)));
  int default_line = 0;
  int batch_model_line = 0;
  try {
    p.each_key(root, "", kTopKeys, [&](const std::string& k, int, const YAML::Node& v, int vline) {
      if (k == "default") {
        c.default_model = p.string(v, vline, k);
        default_line = vline;
      } else if (k == "system") {
        c.system = p.string(v, vline, k);
      } else if (k == "models") {
        c.models.clear();
        p.each_map(v, vline, "models", kModelKeys,
                   [&](const YAML::Node& item, int iline, const std::string& ifield) {
                     c.models.push_back(parse_model(p, item, iline, ifield));
                   });
      } else if (k == "batch") {
        c.batch = parse_batch(p, v, vline, batch_model_line);
      }
    });
  } catch (const YAML::Exception& e) {  // not expected: the readers check types first
    throw ConfigError(fmt::format("{}: {}", p.label(), e.what()));
  }
  for (size_t i = 0; i < c.models.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (c.models[i].name == c.models[j].name)
        p.warn(c.models[i].line,
               fmt::format("models[{}]: name '{}' is also models[{}]'s (line {}); -m {} picks "
                           "models[{}]",
                           i, c.models[i].name, j, c.models[j].line, c.models[i].name, j));
  if (c.default_model && c.default_model->empty()) c.default_model.reset();
  if (c.batch.model && c.batch.model->empty()) c.batch.model.reset();
  if (c.default_model && !c.models.empty() && !c.find(*c.default_model))
    p.fail(default_line, "default",
           fmt::format("'{}' names no entry of models (known: {})", shown(*c.default_model),
                       known_names(c)));
  if (c.batch.model && !c.models.empty() && !c.find(*c.batch.model))
    p.warn(batch_model_line,
           fmt::format("batch.model: '{}' names no entry of models (known: {}); batches send it "
                       "as the model id to the default model's endpoint",
                       shown(*c.batch.model), known_names(c)));
  return c;
}

std::string read_config_file(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec))
    throw ConfigError(fmt::format("config file {} is a directory", path));
  auto fail = [&](int err) {
    return ConfigError(fmt::format("cannot read config file {}: {}", path, std::strerror(err)));
  };
  auto too_big = [&](const std::string& size) {
    return ConfigError(
        fmt::format("config file {} is {}; a config file may be at most 1 MiB "
                    "({} bytes): is it the right file?",
                    path, size, kMaxConfigBytes));
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw fail(errno);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
      static_cast<uint64_t>(st.st_size) > kMaxConfigBytes)
    throw too_big(fmt::format("{} bytes", st.st_size));
  // Read to one byte past the limit whatever stat said: a pipe or device has no size.
  std::string text;
  char buf[65536];
  while (text.size() <= kMaxConfigBytes) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw fail(errno);
    if (n == 0) return text;
    text.append(buf, static_cast<size_t>(n));
  }
  throw too_big("over 1 MiB");
}

Config load_config(const std::string& path, const Warn& warn) {
  if (path.empty()) return Config{};
  return parse_config(read_config_file(path), path, warn);
}

std::optional<Resolved> resolve_endpoint(const Config& config, const FlagSettings& flags,
                                         const EnvSettings& env) {
  const ModelEntry* entry = nullptr;
  bool chosen_by_flag = false;  // -m named this entry: its endpoint beats the environment's
  bool model_is_entry = false;  // the model sent is entry->id
  std::string model;
  if (!flags.model.empty()) {
    entry = config.find(flags.model);
    chosen_by_flag = entry != nullptr;
    model = entry ? entry->id : flags.model;
  } else if (!env.model.empty()) {
    entry = config.find(env.model);
    model = entry ? entry->id : env.model;
  }
  model_is_entry = entry != nullptr;
  if (!entry) {  // the default entry gives the endpoint (and the model when none was named)
    if (config.default_model)
      entry = config.find(*config.default_model);
    else if (!config.models.empty())
      entry = &config.models.front();
    if (model.empty()) {
      model = entry ? entry->id : config.default_model.value_or("");
      model_is_entry = entry != nullptr;
    }
  }

  Resolved r;
  r.entry = entry;
  r.model = model;
  auto from_file = [&] {
    return fmt::format("{} (model '{}')", config.path.empty() ? "config" : config.path,
                       entry->name);
  };
  auto env_name = [&] {
    for (const char* name : {"FLEXLLM_BASE_URL", "OPENAI_BASE_URL"}) {
      const char* v = std::getenv(name);
      if (v && *v) return std::string(v) == env.base_url ? std::string(name) : std::string();
    }
    return std::string();
  };
  bool url_from_entry = false;
  if (!flags.base_url.empty()) {
    r.base_url = flags.base_url;
    r.base_url_from = "--base-url";
  } else if (chosen_by_flag && !entry->base_url.empty()) {
    r.base_url = entry->base_url;
    r.base_url_from = from_file();
    url_from_entry = true;
  } else if (!env.base_url.empty()) {
    r.base_url = env.base_url;
    std::string name = env_name();
    r.base_url_from = name.empty() ? "FLEXLLM_BASE_URL or OPENAI_BASE_URL" : name;
  } else if (entry && !entry->base_url.empty()) {
    r.base_url = entry->base_url;
    r.base_url_from = from_file();
    url_from_entry = true;
  }

  // A key goes only to the base_url that came from the same place (config.hpp): never the
  // environment's OpenAI key to the DeepSeek entry of the file, never the file's key to a URL
  // given on the command line or in the environment.
  if (!flags.api_key.empty())
    r.api_key = flags.api_key;
  else if (url_from_entry)
    r.api_key = entry->api_key;
  else if (!env.api_key.empty() || !entry || !entry->base_url.empty())
    r.api_key = env.api_key;
  else
    r.api_key = entry->api_key;  // an entry without a base_url: its key is for any endpoint

  if (entry) r.provider = entry->provider;
  if (url_from_entry) {  // like the key: an entry's TLS identity is for its own base_url only
    r.ca_cert = entry->ca_cert;
    r.client_cert = entry->client_cert;
    r.client_key = entry->client_key;
  }
  if (model_is_entry && entry->system)
    r.system = entry->system;
  else
    r.system = config.system;

  if (r.base_url.empty()) {
    if (!flags.model.empty() && !chosen_by_flag && !config.models.empty())
      throw ConfigError(fmt::format(
          "model '{}' is not in {} (known: {}) and no base URL is set for it (--base-url or "
          "FLEXLLM_BASE_URL)",
          flags.model, config.path.empty() ? "the config" : config.path, known_names(config)));
    return std::nullopt;
  }
  return r;
}

std::string no_endpoint_help() {
  return "no LLM endpoint is configured. Give one in any of these ways:\n"
         "  flags:        --base-url URL -m MODEL, with the key in FLEXLLM_API_KEY\n"
         "                (--api-key KEY works too, but other users see it in ps, and shell\n"
         "                history keeps it)\n"
         "  environment:  FLEXLLM_BASE_URL, FLEXLLM_API_KEY, FLEXLLM_MODEL\n"
         "                (OPENAI_BASE_URL, OPENAI_API_KEY, OPENAI_MODEL are read too)\n"
         "  config file:  run 'flexllm init', then edit ~/.flexllm/config.yaml\n"
         "                (or ./flexllm.yaml, or --config FILE, or $FLEXLLM_CONFIG)\n"
         "  to try flexllm without a server: --mock (an embedded mock LLM server)\n";
}

std::string mask_key(const std::string& key) {
  if (key.empty()) return "(none)";
  if (key.size() < 12) return "****";
  return key.substr(0, 3) + "\u2026" + key.substr(key.size() - 4);
}

}  // namespace flexllm::cli
