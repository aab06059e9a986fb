// `set-model`'s edit of the config file (every byte but the value of `default:` kept) and
// `init`'s template: see config.hpp.
#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "config.hpp"

namespace flexllm::cli {
namespace {

int line_of(const YAML::Node& n) {
  return n.Mark().line >= 0 ? n.Mark().line + 1 : 1;
}

bool is_blank(std::string_view line) {
  return line.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

bool is_comment(std::string_view line) {
  size_t i = line.find_first_not_of(" \t");
  return i != std::string_view::npos && line[i] == '#';
}

// `name` as a YAML scalar that reads back as exactly that string: plain when that is safe, else
// single-quoted, else (control characters) double-quoted with escapes.
std::string yaml_scalar(const std::string& name) {
  auto reads_back = [&](const std::string& scalar) {
    try {
      YAML::Node n = YAML::Load("k: " + scalar + "\n");
      return n.IsMap() && n.size() == 1 && n["k"].IsScalar() && n["k"].Scalar() == name;
    } catch (const YAML::Exception&) {
      return false;
    }
  };
  bool control = std::any_of(name.begin(), name.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
  static constexpr std::string_view kIndicators = "-?:,[]{}#&*!|>'\"%@`";
  bool plain = !name.empty() && !control && kIndicators.find(name[0]) == std::string_view::npos &&
               name.front() != ' ' && name.back() != ' ' && name.back() != ':' &&
               name.find(": ") == std::string::npos && name.find(" #") == std::string::npos;
  if (plain) {
    // Plain words YAML reads as something else (null, ~) must be quoted.
    YAML::Node n;
    try {
      n = YAML::Load("k: " + name + "\n");
    } catch (const YAML::Exception&) {
      plain = false;
    }
    plain = plain && n.IsMap() && n["k"].IsScalar() && n["k"].Scalar() == name;
  }
  if (plain) return name;
  if (!control) {
    std::string q = "'";
    for (char c : name) q += c == '\'' ? std::string("''") : std::string(1, c);
    q += "'";
    if (reads_back(q)) return q;
  }
  std::string q = "\"";
  for (char c : name) {
    switch (c) {
      case '"': q += "\\\""; break;
      case '\\': q += "\\\\"; break;
      case '\n': q += "\\n"; break;
      case '\t': q += "\\t"; break;
      case '\r': q += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
          q += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
        else
          q += c;
    }
  }
  return q + "\"";
}

[[noreturn]] void cannot_edit(int line, const std::string& why) {
  throw ConfigError(
      fmt::format("line {}: {}; set `default:` by editing the file by hand", line, why));
}

// The line `line` (whose `default:` key starts at column 0) with its value replaced by `value`.
std::string replace_value(std::string_view line, int lineno, const std::string& value) {
  size_t cr = (!line.empty() && line.back() == '\r') ? 1 : 0;
  std::string_view body = line.substr(0, line.size() - cr);
  size_t i = 0;
  if (!body.empty() && (body[0] == '"' || body[0] == '\'')) {  // a quoted key
    char q = body[0];
    for (i = 1; i < body.size(); ++i) {
      if (q == '"' && body[i] == '\\') {
        ++i;
      } else if (body[i] == q) {
        if (q == '\'' && i + 1 < body.size() && body[i + 1] == '\'') {
          ++i;
          continue;
        }
        break;
      }
    }
    ++i;
  } else {
    i = std::string_view("default").size();
  }
  while (i < body.size() && (body[i] == ' ' || body[i] == '\t')) ++i;
  if (i >= body.size() || body[i] != ':')
    cannot_edit(lineno, "the `default` key is not understood");
  size_t colon = i;
  size_t vstart = colon + 1;
  while (vstart < body.size() && (body[vstart] == ' ' || body[vstart] == '\t')) ++vstart;
  size_t vend = vstart;
  // Not a '\0' sentinel for "no value": a NUL byte in the value would pass for one and stay
  // behind the new value (found by fuzzing: set-model twice wrote two different files).
  const bool has_value = vstart < body.size();
  char first = has_value ? body[vstart] : '\0';
  if (first == '"' || first == '\'') {
    size_t j = vstart + 1;
    bool closed = false;
    for (; j < body.size(); ++j) {
      if (first == '"' && body[j] == '\\') {
        ++j;
      } else if (body[j] == first) {
        if (first == '\'' && j + 1 < body.size() && body[j + 1] == '\'') {
          ++j;
          continue;
        }
        closed = true;
        break;
      }
    }
    if (!closed) cannot_edit(lineno, "its quoted value continues on the next line");
    vend = j + 1;
  } else if (first == '|' || first == '>') {
    cannot_edit(lineno, "its value is a block scalar");
  } else if (first == '&' || first == '*' || first == '!' || first == '[' || first == '{') {
    cannot_edit(lineno, "its value is not a plain name");
  } else if (has_value && first != '#') {
    for (size_t j = vstart; j < body.size(); ++j) {
      if (body[j] == '#' && (body[j - 1] == ' ' || body[j - 1] == '\t')) break;
      vend = j + 1;
    }
    while (vend > vstart && (body[vend - 1] == ' ' || body[vend - 1] == '\t')) --vend;
  }
  std::string out;
  if (vend == vstart) {  // `default:` or `default:   # comment`
    out = std::string(body.substr(0, colon + 1)) + " " + value;
    if (vstart < body.size()) {
      std::string_view ws = body.substr(colon + 1, vstart - colon - 1);
      out += ws.size() > 1 ? std::string(ws) : std::string(" ");
      out += body.substr(vstart);
    }
  } else {
    out = std::string(body.substr(0, vstart)) + value + std::string(body.substr(vend));
  }
  if (cr) out += '\r';
  return out;
}

}  // namespace

namespace {

std::string edit_default(const std::string& text, const std::string& name) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(
        fmt::format("{}:{}: invalid YAML: {}", e.mark.line + 1, e.mark.column + 1, e.msg));
  }
  if (!root.IsNull() && !root.IsMap())
    throw ConfigError("the top level of the file is not a map of settings");
  if (root.IsMap() && root.Style() == YAML::EmitterStyle::Flow)
    cannot_edit(line_of(root), "the file is a flow-style map ({…})");

  // YAML ends a line at a CR too; the edit counts lines by LF. A CR not followed by LF (Mac OS 9
  // files, or a stray byte) would make the two disagree on which line is which (found by fuzzing).
  for (size_t cr = text.find('\r'); cr != std::string::npos; cr = text.find('\r', cr + 1))
    if (cr + 1 == text.size() || text[cr + 1] != '\n')
      cannot_edit(static_cast<int>(std::count(text.begin(), text.begin() + cr, '\n')) + 1,
                  "a carriage return that does not end a line");

  // The lines, each with its '\n' (the last one may have none).
  std::vector<std::string_view> lines;
  for (size_t start = 0; start < text.size();) {
    size_t nl = text.find('\n', start);
    size_t end = nl == std::string::npos ? text.size() : nl + 1;
    lines.emplace_back(text.data() + start, end - start);
    start = end;
  }
  const std::string nl = text.find("\r\n") != std::string::npos ? "\r\n" : "\n";
  const std::string value = yaml_scalar(name);

  std::set<size_t> default_lines;
  long first_key_line = -1;
  if (root.IsMap()) {
    for (auto it = root.begin(); it != root.end(); ++it) {
      const YAML::Mark mark = it->first.Mark();
      if (mark.line < 0 || static_cast<size_t>(mark.line) >= lines.size())
        cannot_edit(1, "the file's layout is not understood");
      if (mark.column != 0) cannot_edit(mark.line + 1, "its top-level keys are indented");
      if (first_key_line < 0) first_key_line = mark.line;
      if (!it->first.IsScalar() || it->first.Scalar() != "default") continue;
      const YAML::Node v = it->second;
      if (!v.IsNull() && !v.IsScalar()) cannot_edit(mark.line + 1, "its value is not a name");
      if (v.IsScalar() && v.Mark().line != mark.line)
        cannot_edit(mark.line + 1, "its value is not on the line of `default:`");
      // A plain value continued on the next (indented) line.
      if (static_cast<size_t>(mark.line) + 1 < lines.size()) {
        std::string_view next = lines[mark.line + 1];
        if (!is_blank(next) && !is_comment(next) && (next[0] == ' ' || next[0] == '\t'))
          cannot_edit(mark.line + 1, "its value continues on the next line");
      }
      default_lines.insert(static_cast<size_t>(mark.line));
    }
  }

  std::string out;
  out.reserve(text.size() + value.size() + 16);
  if (!default_lines.empty()) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (!default_lines.count(i)) {
        out += lines[i];
        continue;
      }
      std::string_view line = lines[i];
      // A byte-order mark before `default:` on the first line stays where it is (found by
      // fuzzing: set-model added `default:` after one, then could not edit its own line).
      if (i == 0 && line.starts_with("\xEF\xBB\xBF")) {
        out += line.substr(0, 3);
        line.remove_prefix(3);
      }
      bool has_nl = !line.empty() && line.back() == '\n';
      out += replace_value(has_nl ? line.substr(0, line.size() - 1) : line, static_cast<int>(i) + 1,
                           value);
      if (has_nl) out += '\n';
    }
    return out;
  }

  const std::string new_line = "default: " + value + nl;
  if (first_key_line < 0) {  // no keys: append
    out = text;
    if (!out.empty() && out.back() != '\n') out += nl;
    return out + new_line;
  }
  // Before the first key, but above the comment block directly on top of it unless that block
  // starts the file (then it is the file's header and stays first).
  size_t key = static_cast<size_t>(first_key_line);
  size_t at = key;
  while (at > 0 && is_comment(lines[at - 1])) --at;
  std::string insert = new_line;
  if (at == 0) {
    at = key;
  } else if (at < key && is_blank(lines[at - 1])) {
    insert += nl;  // keep the blank line between the new key and the comment block below
  }
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i == at) {
      std::string_view line = lines[i];
      // A byte-order mark stays the first thing in the file.
      if (i == 0 && line.substr(0, 3) == "\xEF\xBB\xBF") {
        out += line.substr(0, 3);
        out += insert;
        out += line.substr(3);
        continue;
      }
      out += insert;
    }
    out += lines[i];
  }
  return out;
}

}  // namespace

std::string set_default_model(const std::string& text, const std::string& name) {
  std::string out = edit_default(text, name);
  // Read back: YAML has layouts the line edit does not see (found by fuzzing: after a `...` or
  // `---` line a new document starts, and only the first is read, so a `default:` added at the
  // end was ignored while set-model reported success).
  YAML::Node root;
  try {
    root = YAML::Load(out);
  } catch (const YAML::Exception&) {
    root = YAML::Node();
  }
  // Every `default` key (the file may repeat it; the last one counts) now says `name`.
  bool found = false;
  if (root.IsMap()) {
    for (auto it = root.begin(); it != root.end(); ++it) {
      if (!it->first.IsScalar() || it->first.Scalar() != "default") continue;
      found = it->second.IsScalar() && it->second.Scalar() == name;
      if (!found) break;
    }
  }
  if (!found) cannot_edit(1, "the file's layout is not understood (several YAML documents?)");
  return out;
}

std::string config_template() {
  return R"(# flexllm configuration.
#
# flexllm reads one file: --config FILE, else $FLEXLLM_CONFIG, else ./flexllm.yaml, else
# ~/.flexllm/config.yaml. Flags win over the environment (FLEXLLM_BASE_URL, FLEXLLM_API_KEY,
# FLEXLLM_MODEL; OPENAI_BASE_URL, OPENAI_API_KEY, OPENAI_MODEL too), which wins over this file;
# a model picked with -m NAME uses its own base_url and api_key.
#
# `flexllm list` shows what flexllm sees; `flexllm set-model NAME` changes `default`.

# The model used when -m is not given: the name (or id) of an entry of `models`.
default: local

# The default system prompt for every model (a model's own `system` wins).
# system: You are a helpful assistant.

models:
  # A local OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama, ...).
  - name: local                       # what -m and `default` call it (the id when absent)
    id: Qwen/Qwen2.5-7B-Instruct      # the model id sent to the server (required)
    provider: openai                  # auto | openai | gemini | claude
    base_url: http://localhost:8000/v1
    # api_key: EMPTY                  # most local servers need none

  # OpenAI. ${VAR} reads the environment variable VAR (an unset one reads as empty).
  - name: gpt
    id: gpt-4o-mini
    provider: openai
    base_url: https://api.openai.com/v1
    api_key: ${OPENAI_API_KEY}
    # system: You are a concise assistant.

  # A gateway with a private CA and client certificates (paths relative to this file, or ~/).
  # - name: internal
  #   id: llama-3-70b
  #   base_url: https://llm.internal.example/v1
  #   ca_cert: certs/company-ca.pem     # trusted besides the system's CAs
  #   client_cert: certs/me.pem         # mTLS, when the gateway asks for one
  #   client_key: certs/me.key

# Defaults of `flexllm batch` (its flags win); every key is optional, shown with its default.
batch:
  # model: local                # an entry of `models` (default: the default model)
  # concurrency: 10             # requests in flight at most
  # max_qps: 50                 # requests per second at most (default: no limit)
  # adaptive: false             # halve the rate on 429 replies, grow it back on successes
  # cache: false                # cache responses (a rerun answers repeated requests from it)
  # cache_ttl: 86400            # seconds a cached response stays valid (0 = forever)
  # timeout: 120                # seconds per attempt
  # retry_times: 3              # retries after the first attempt
  # retry_delay: 1              # seconds, base of the exponential backoff
  # flush_interval: 1           # seconds between writes + fsyncs of the output file
  # save_input: full            # input kept in each output record: full | last | none
  # load_balance: weighted     # unset: the endpoints pull from one shared queue as they have
  #                             # room; or round_robin | weighted | random | fallback |
  #                             # least_busy | latency
  # fallback: true              # retry a failed request on another endpoint
  # endpoints:                  # run batches on several endpoints at once (a pool)
  #   - base_url: http://gpu1:8000/v1
  #     api_key: ${GPU_KEY}     # default: the model's key
  #     model: Qwen/Qwen2.5-7B-Instruct  # default: the model's id
  #     provider: openai        # default: the model's provider
  #     weight: 1               # for load_balance: weighted
  #     concurrency: 10
  #     max_qps: 20             # default: no limit
  #   - base_url: http://gpu2:8000/v1
)";
}

}  // namespace flexllm::cli
