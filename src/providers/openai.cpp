#include "providers/openai.hpp"
#include "core/invalid.hpp"

#include "core/json_scan.hpp"
#include "core/json_write.hpp"
#include "core/status.hpp"
#include "core/utf8.hpp"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <iterator>

#include "providers/openai_json.hpp"

namespace flexllm::detail {

namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;

// ---------------------------------------------------------------------------------------------
// Writing JSON by hand: the request body is built once per request, straight into its buffer.

// Serialises a JSON value straight into `out` (no temporary string as json::dump() would make:
// messages with inline images run to megabytes).
void append_json(std::string& out, const json& value, std::string_view what) {
  try {
    nlohmann::detail::serializer<json> s(nlohmann::detail::output_adapter<char, std::string>(out),
                                         ' ', json::error_handler_t::strict);
    s.dump(value, false, false, 0);
  } catch (const json::exception& e) {
    // The only failure: a string that is not valid UTF-8.
    invalid(fmt::format("{} cannot be sent: {}", what, e.what()));
  }
}

void append_double(std::string& out, double v, std::string_view what) {
  if (!std::isfinite(v)) invalid(fmt::format("{} must be a finite number, got {}", what, v));
  fmt::format_to(std::back_inserter(out), "{}", v);  // shortest round-trip form
}

// The request body under construction: `{"k":v,…}`; keys present in `extra` are left out here
// (extra is appended last and wins).
class BodyWriter {
 public:
  BodyWriter(std::string& out, const json& extra) : out_(out), extra_(extra) {
    has_extra_ = extra.is_object() && !extra.empty();
    out_.push_back('{');
  }
  // Starts member `key` unless `extra` sets it; returns whether the caller writes the value.
  bool key(std::string_view k) {
    if (has_extra_ && extra_.contains(k)) return false;
    if (!first_) out_.push_back(',');
    first_ = false;
    out_.push_back('"');
    out_.append(k);
    out_.append("\":");
    return true;
  }
  bool extra_has(std::string_view k) const { return has_extra_ && extra_.contains(k); }
  void finish() {
    if (has_extra_) {
      for (const auto& [k, v] : extra_.items()) {
        if (!first_) out_.push_back(',');
        first_ = false;
        append_json_string(out_, k);
        out_.push_back(':');
        append_json(out_, v, fmt::format("options.extra[\"{}\"]", k));
      }
    }
    out_.push_back('}');
  }

 private:
  std::string& out_;
  const json& extra_;
  bool has_extra_ = false;
  bool first_ = true;
};

// Thinking option, normalised: on/off, plus the level or budget the user gave.
struct ThinkingRequest {
  bool on = false;
  std::string_view level;  // "" when not given
  int budget = 0;          // > 0 when given
};

ThinkingRequest resolve_thinking(const Thinking& t) {
  ThinkingRequest r;
  if (const bool* b = std::get_if<bool>(&t)) {
    r.on = *b;
  } else if (const std::string* s = std::get_if<std::string>(&t)) {
    static constexpr std::string_view kLevels[] = {"minimal", "low", "medium", "high", "xhigh"};
    if (*s == "none") return r;
    if (std::find(std::begin(kLevels), std::end(kLevels), *s) == std::end(kLevels))
      invalid(fmt::format(
          "thinking level \"{}\" is not one of minimal, low, medium, high, xhigh, none (or use "
          "true/false or a token budget)",
          *s));
    r.on = true;
    r.level = *s;
  } else {
    const int n = std::get<int>(t);
    // 0 = off (as Gemini's thinkingBudget 0); negative = on with a budget of the model's choosing.
    r.on = n != 0;
    if (n > 0) r.budget = n;
  }
  return r;
}

std::string_view level_for_budget(int budget) {
  if (budget <= 1024) return "low";
  if (budget <= 8192) return "medium";
  return "high";
}

void append_thinking(BodyWriter& w, std::string& out, const Endpoint& ep, const Thinking& t) {
  const ThinkingRequest r = resolve_thinking(t);
  ThinkingStyle style = ep.thinking_style;
  if (style == ThinkingStyle::automatic) style = detect_thinking_style(ep.base_url);
  switch (style) {
    case ThinkingStyle::reasoning_effort: {
      if (!w.key("reasoning_effort")) return;
      std::string_view effort = !r.on              ? std::string_view("none")
                                : !r.level.empty() ? r.level
                                : r.budget > 0     ? level_for_budget(r.budget)
                                                   : std::string_view("medium");
      append_json_string(out, effort);
      return;
    }
    case ThinkingStyle::enable_thinking:
      if (w.key("enable_thinking")) out.append(r.on ? "true" : "false");
      if (r.on && r.budget > 0 && w.key("thinking_budget"))
        fmt::format_to(std::back_inserter(out), "{}", r.budget);
      return;
    case ThinkingStyle::thinking_object:
      if (w.key("thinking")) out.append(r.on ? R"({"type":"enabled"})" : R"({"type":"disabled"})");
      return;
    case ThinkingStyle::chat_template_kwargs:
    case ThinkingStyle::automatic:
      if (w.key("chat_template_kwargs"))
        out.append(r.on ? R"({"enable_thinking":true})" : R"({"enable_thinking":false})");
      return;
  }
}

// OpenAI deprecated max_tokens for max_completion_tokens, and its reasoning models (o-series,
// gpt-5) reject max_tokens outright. Other servers mostly know only max_tokens.
bool wants_max_completion_tokens(std::string_view base_url) {
  return base_url.find("api.openai.com") != std::string_view::npos ||
         base_url.find("openai.azure.com") != std::string_view::npos;
}

std::string join_url(std::string_view base, std::string_view path) {
  while (!base.empty() && base.back() == '/') base.remove_suffix(1);
  std::string url;
  url.reserve(base.size() + path.size());
  url.append(base);
  url.append(path);
  return url;
}

// ---------------------------------------------------------------------------------------------
// Reading replies with simdjson.

// One DOM parser per thread, reused: its buffers grow to the largest reply and stay, so parsing
// allocates nothing in the steady state. After an unusually large reply it is replaced, so a
// single 100 MB body does not pin that much memory per thread forever.
simdjson::dom::parser& thread_parser(size_t next_len) {
  constexpr size_t kKeepCapacity = size_t{8} << 20;
  thread_local simdjson::dom::parser parser;
  if (parser.capacity() > kKeepCapacity && next_len < kKeepCapacity)
    parser = simdjson::dom::parser();
  return parser;
}

// The value of the four hex digits (either case) at s[at], or -1.
int hex4(std::string_view s, size_t at) {
  if (at + 4 > s.size()) return -1;
  int v = 0;
  for (size_t i = at; i < at + 4; ++i) {
    const char c = s[i];
    const int d = c >= '0' && c <= '9'   ? c - '0'
                  : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                         : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

// Rewrites each escape of a UTF-16 surrogate (D800-DFFF) that is not half of a pair as the
// escape of U+FFFD (the same length).
// Backslashes only occur inside strings, so no string tracking is needed. Returns whether any
// was rewritten.
bool replace_lone_surrogates(std::string& s) {
  bool changed = false;
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    if (s[i] != '\\') continue;
    if (s[i + 1] != 'u') {
      ++i;  // an escaped character: never the start of another escape
      continue;
    }
    const int u = hex4(s, i + 2);
    if (u < 0xD800 || u > 0xDFFF) {
      i += 1;
      continue;
    }
    if (u <= 0xDBFF && i + 7 < s.size() && s[i + 6] == '\\' && s[i + 7] == 'u') {
      const int low = hex4(s, i + 8);
      if (low >= 0xDC00 && low <= 0xDFFF) {
        i += 11;  // a pair
        continue;
      }
    }
    s.replace(i + 2, 4, "fffd");
    changed = true;
    i += 5;
  }
  return changed;
}

bool get_string(element e, std::string_view& out) {
  return e.get_string().get(out) == simdjson::SUCCESS;
}

}  // namespace

// The readers declared in openai_json.hpp, shared with the stream decoder.
namespace openai {

// `parse(body)`: copies the body into the parser's reusable padded buffer (one memcpy, no
// allocation) because the caller's buffer has no guaranteed padding.
simdjson::error_code parse_json(std::string_view body, element& out) {
  simdjson::dom::parser& parser = thread_parser(body.size());
  const simdjson::error_code err = parser.parse(body.data(), body.size(), true).get(out);
  if (err != simdjson::UTF8_ERROR && err != simdjson::STRING_ERROR) return err;
  // Invalid UTF-8 (a character cut in two, text in another encoding) or a lone surrogate escape
  // (a string cut between the halves of a UTF-16 pair, then escaped): the answer is kept, each
  // bad sequence shown as U+FFFD, rather than failed and asked for again (it would come back the
  // same). simdjson validates as it parses, so valid replies pay nothing for this.
  std::string repaired;
  repaired.reserve(body.size() + 16);
  append_valid_utf8(repaired, body);
  if (!replace_lone_surrogates(repaired) && err == simdjson::STRING_ERROR) return err;
  return parser.parse(repaired.data(), repaired.size(), true).get(out);  // copied: may go
}

std::optional<int64_t> read_int(simdjson::simdjson_result<element> r) {
  element e;
  if (r.get(e) != simdjson::SUCCESS) return std::nullopt;
  int64_t i;
  if (e.get_int64().get(i) == simdjson::SUCCESS) return i;
  uint64_t u;
  if (e.get_uint64().get(u) == simdjson::SUCCESS)
    return static_cast<int64_t>(std::min<uint64_t>(u, INT64_MAX));
  double d;
  if (e.get_double().get(d) == simdjson::SUCCESS && std::isfinite(d)) {
    // Clamped like the unsigned case: converting a double out of int64's range is undefined.
    constexpr double kTwo63 = 9223372036854775808.0;
    if (d >= kTwo63) return INT64_MAX;
    if (d < -kTwo63) return INT64_MIN;
    return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

std::optional<Usage> read_usage(simdjson::simdjson_result<element> r) {
  object u;
  if (r.get_object().get(u) != simdjson::SUCCESS) return std::nullopt;
  Usage usage;
  usage.prompt_tokens = read_int(u["prompt_tokens"]).value_or(0);
  usage.completion_tokens = read_int(u["completion_tokens"]).value_or(0);
  usage.total_tokens = read_int(u["total_tokens"]).value_or(0);
  // Saturating: a server's counts may be anything up to INT64_MAX (found by fuzzing).
  if (usage.total_tokens == 0 &&
      __builtin_add_overflow(usage.prompt_tokens, usage.completion_tokens, &usage.total_tokens))
    usage.total_tokens = usage.prompt_tokens > 0 ? INT64_MAX : INT64_MIN;
  usage.reasoning_tokens = read_int(u["completion_tokens_details"]["reasoning_tokens"]);
  if (!usage.reasoning_tokens) usage.reasoning_tokens = read_int(u["reasoning_tokens"]);
  return usage;
}

void append_text_or_json(std::string& out, element e) {
  std::string_view s;
  if (get_string(e, s)) {
    out.append(s);
  } else if (!e.is_null()) {
    out.append(simdjson::minify(e));
  }
}

void append_content(std::string& out, element content) {
  std::string_view s;
  if (get_string(content, s)) {
    out.append(s);
    return;
  }
  array parts;
  if (content.get_array().get(parts) != simdjson::SUCCESS) return;
  for (element part : parts) {
    std::string_view type, text;
    if (part["text"].get_string().get(text) != simdjson::SUCCESS) continue;
    if (part["type"].get_string().get(type) == simdjson::SUCCESS && type != "text") continue;
    out.append(text);
  }
}

std::string_view read_reasoning(object msg) {
  std::string_view r;
  if (msg["reasoning_content"].get_string().get(r) == simdjson::SUCCESS && !r.empty()) return r;
  if (msg["reasoning"].get_string().get(r) == simdjson::SUCCESS && !r.empty()) return r;
  return {};
}

std::string body_excerpt(std::string_view body, const std::string& key) {
  if (body.empty()) return "(empty)";
  // Never let an API key reach an error message, even when a server echoes it back.
  return excerpt(body, 512, key);
}

Error parse_error(const std::string& endpoint, const std::string& key, std::string what,
                  std::string_view body) {
  std::string ex = body_excerpt(body, key);
  std::string message = fmt::format("{}; body: {}", what, escape_controls(ex));
  // A garbled reply is usually transient (a proxy cut it, the server hiccupped): retryable.
  return Error(ErrorKind::parse, std::move(message), endpoint, 0, std::move(ex), true);
}

Error provider_error(const std::string& endpoint, const std::string& key, element err,
                     std::string_view body) {
  std::string message;
  bool retryable = false;
  std::string_view s;
  object o;
  if (get_string(err, s)) {
    message.assign(s);
    // {"error": "SyntaxError", "message": "Unexpected token"}: the name alone says little. Read
    // with a parser of its own: `err` lives in the caller's document.
    simdjson::dom::parser parser;
    element doc;
    if (parser.parse(body.data(), body.size(), true).get(doc) == simdjson::SUCCESS &&
        doc["message"].get_string().get(s) == simdjson::SUCCESS && !s.empty() && s != message)
      message = message.empty() ? std::string(s) : fmt::format("{}: {}", message, s);
  } else if (err.get_object().get(o) == simdjson::SUCCESS) {
    if (o["message"].get_string().get(s) == simdjson::SUCCESS) message.assign(s);
    std::string detail;
    if (o["type"].get_string().get(s) == simdjson::SUCCESS && !s.empty())
      detail = fmt::format("type: {}", s);
    element code;
    if (o["code"].get(code) == simdjson::SUCCESS && !code.is_null()) {
      if (!detail.empty()) detail += ", ";
      detail += "code: ";
      append_text_or_json(detail, code);
      if (auto c = read_int(o["code"])) retryable = retryable_status(*c);
    }
    if (message.empty()) message = simdjson::minify(err);
    if (!detail.empty()) message += " (" + detail + ")";
  } else {
    message = simdjson::minify(err);
  }
  message = fmt::format("provider error from {}: {}", endpoint,
                        escape_controls(excerpt(message, 2048, key)));
  return Error(ErrorKind::provider, std::move(message), endpoint, 0, body_excerpt(body, key),
               retryable);
}

bool find_error(object o, element& err) {
  return o["error"].get(err) == simdjson::SUCCESS && !err.is_null();
}

}  // namespace openai

using openai::append_content;
using openai::append_text_or_json;
using openai::find_error;
using openai::parse_error;
using openai::parse_json;
using openai::provider_error;
using openai::read_reasoning;
using openai::read_usage;
using openai::starts_with_think;

// ---------------------------------------------------------------------------------------------
// OpenAIAdapter

std::string OpenAIAdapter::chat_url(const Endpoint& ep, std::string_view, bool) const {
  return join_url(ep.base_url, "/chat/completions");
}

std::vector<std::string> OpenAIAdapter::headers(const Endpoint& ep) const {
  std::vector<std::string> h;
  h.reserve(2);
  h.emplace_back("Content-Type: application/json");
  if (!ep.api_key.empty()) h.push_back("Authorization: Bearer " + ep.api_key);
  return h;
}

std::string OpenAIAdapter::build_chat_body(const Endpoint& ep, std::string_view model,
                                           const json& messages, const RequestOptions& o,
                                           bool stream) const {
  if (!o.extra.is_null() && !o.extra.is_object())
    invalid(fmt::format("options.extra must be a JSON object, got {}", o.extra.type_name()));
  std::string body;
  body.reserve(512);
  BodyWriter w(body, o.extra);

  // Servers serving one model (llama.cpp, some vLLM setups) accept no model; the others name
  // the missing field in their 400.
  if (!model.empty() && w.key("model")) append_json_string(body, model);
  if (w.key("messages")) append_json(body, messages, "messages");
  if (o.temperature && w.key("temperature"))
    append_double(body, *o.temperature, "options.temperature");
  if (o.top_p && w.key("top_p")) append_double(body, *o.top_p, "options.top_p");
  if (o.max_tokens && !w.extra_has("max_tokens") && !w.extra_has("max_completion_tokens") &&
      w.key(wants_max_completion_tokens(ep.base_url) ? "max_completion_tokens" : "max_tokens"))
    fmt::format_to(std::back_inserter(body), "{}", *o.max_tokens);
  if (o.stop && !o.stop->empty() && w.key("stop")) {
    body.push_back('[');
    for (size_t i = 0; i < o.stop->size(); ++i) {
      if (i > 0) body.push_back(',');
      append_json_string(body, (*o.stop)[i]);
    }
    body.push_back(']');
  }
  if (o.seed && w.key("seed")) fmt::format_to(std::back_inserter(body), "{}", *o.seed);
  if (o.tools && !o.tools->is_null() && w.key("tools"))
    append_json(body, *o.tools, "options.tools");
  if (o.tool_choice && !o.tool_choice->is_null() && w.key("tool_choice"))
    append_json(body, *o.tool_choice, "options.tool_choice");
  if (o.response_format && !o.response_format->is_null() && w.key("response_format"))
    append_json(body, *o.response_format, "options.response_format");
  if (stream) {
    if (w.key("stream")) body.append("true");
    // The usage chunk at the end of the stream: token counts (and cost) for streamed calls too.
    if (w.key("stream_options")) body.append(R"({"include_usage":true})");
  }
  if (o.thinking) append_thinking(w, body, ep, *o.thinking);
  w.finish();
  return body;
}

std::optional<Error> OpenAIAdapter::parse_chat_response(const Endpoint& ep, std::string_view body,
                                                        ChatResult& out) const {
  element doc;
  if (auto err = parse_json(body, doc); err) {
    return parse_error(
        ep.shown(), ep.api_key,
        fmt::format("invalid JSON in reply from {}: {}", ep.shown(), simdjson::error_message(err)),
        body);
  }
  object reply;
  if (doc.get_object().get(reply) != simdjson::SUCCESS)
    return parse_error(ep.shown(), ep.api_key,
                       fmt::format("reply from {} is not a JSON object", ep.shown()), body);
  element err;
  if (find_error(reply, err)) return provider_error(ep.shown(), ep.api_key, err, body);

  array choices;
  element choice;
  if (reply["choices"].get_array().get(choices) != simdjson::SUCCESS ||
      choices.at(0).get(choice) != simdjson::SUCCESS)
    return parse_error(ep.shown(), ep.api_key,
                       fmt::format("reply from {} has no choices[0]", ep.shown()), body);
  object message;
  if (choice["message"].get_object().get(message) != simdjson::SUCCESS)
    return parse_error(ep.shown(), ep.api_key,
                       fmt::format("reply from {} has no choices[0].message", ep.shown()), body);

  out.content.clear();
  element content;
  if (message["content"].get(content) == simdjson::SUCCESS) append_content(out.content, content);
  const std::string_view reasoning = read_reasoning(message);
  if (!reasoning.empty()) {
    out.reasoning = std::string(reasoning);
  } else if (starts_with_think(out.content)) {
    Thoughts t = parse_thoughts(std::string_view(out.content));
    out.content = std::move(t.answer);
    if (t.thought.empty()) {
      out.reasoning.reset();
    } else {
      out.reasoning = std::move(t.thought);
    }
  } else {
    out.reasoning.reset();
  }

  out.tool_calls.clear();
  array calls;
  if (message["tool_calls"].get_array().get(calls) == simdjson::SUCCESS) {
    out.tool_calls.reserve(calls.size());
    for (element call : calls) {
      ToolCall tc;
      std::string_view s;
      if (call["id"].get_string().get(s) == simdjson::SUCCESS) tc.id.assign(s);
      if (call["type"].get_string().get(s) == simdjson::SUCCESS && !s.empty()) tc.type.assign(s);
      object fn;
      if (call["function"].get_object().get(fn) == simdjson::SUCCESS) {
        if (fn["name"].get_string().get(s) == simdjson::SUCCESS) tc.name.assign(s);
        element args;
        if (fn["arguments"].get(args) == simdjson::SUCCESS) append_text_or_json(tc.arguments, args);
      }
      if (tc.arguments.empty()) tc.arguments = "{}";
      out.tool_calls.push_back(std::move(tc));
    }
  }

  std::string_view finish;
  if (choice["finish_reason"].get_string().get(finish) == simdjson::SUCCESS) {
    out.finish_reason.assign(finish);
  } else {
    out.finish_reason.clear();
  }
  out.usage = read_usage(reply["usage"]);
  return std::nullopt;
}

std::string OpenAIAdapter::error_message(std::string_view body) const {
  element doc;
  object o;
  if (parse_json(body, doc) != simdjson::SUCCESS || doc.get_object().get(o) != simdjson::SUCCESS)
    return {};
  std::string_view s;
  element e;
  // {"error": {"message": …}} (OpenAI and most), {"error": "…"} (some proxies, Ollama), with the
  // "message" beside it when there is one ({"error": "SyntaxError", "message": "…"}: Express).
  if (o["error"].get(e) == simdjson::SUCCESS) {
    std::string_view m;
    if (get_string(e, s)) {
      if (o["message"].get_string().get(m) != simdjson::SUCCESS || m.empty() || m == s)
        return std::string(s);
      return s.empty() ? std::string(m) : fmt::format("{}: {}", s, m);
    }
    if (e["message"].get_string().get(s) == simdjson::SUCCESS) return std::string(s);
  }
  // {"message": …} (DashScope, gateways), {"detail": …} (FastAPI servers: vLLM, SGLang).
  if (o["message"].get_string().get(s) == simdjson::SUCCESS) return std::string(s);
  if (o["detail"].get(e) == simdjson::SUCCESS) {
    if (get_string(e, s)) return std::string(s);
    array items;  // FastAPI validation errors: [{"loc": […], "msg": "…"}, …]
    if (e.get_array().get(items) == simdjson::SUCCESS) {
      std::string joined;
      for (element item : items) {
        if (item["msg"].get_string().get(s) != simdjson::SUCCESS) continue;
        if (!joined.empty()) joined += "; ";
        joined.append(s);
      }
      if (!joined.empty()) return joined;
    }
    if (!e.is_null()) return simdjson::minify(e);
  }
  return {};
}

std::string_view OpenAIAdapter::embedded_messages(std::string_view body) const {
  constexpr std::string_view kKey = R"("messages":)";
  size_t at = body.find(kKey);
  if (at == std::string_view::npos) return {};
  at += kKey.size();
  size_t end = json_value_end(body, at);
  return end == std::string_view::npos ? std::string_view() : body.substr(at, end - at);
}

std::string OpenAIAdapter::models_url(const Endpoint& ep) const {
  return join_url(ep.base_url, "/models");
}

std::variant<std::vector<std::string>, Error> OpenAIAdapter::parse_models(
    const Endpoint& ep, std::string_view body) const {
  element doc;
  if (auto err = parse_json(body, doc); err) {
    return parse_error(ep.shown(), ep.api_key,
                       fmt::format("invalid JSON in models reply from {}: {}", ep.shown(),
                                   simdjson::error_message(err)),
                       body);
  }
  element err;
  object o;
  if (doc.get_object().get(o) == simdjson::SUCCESS && find_error(o, err))
    return provider_error(ep.shown(), ep.api_key, err, body);
  array data;
  if (doc["data"].get_array().get(data) != simdjson::SUCCESS &&
      doc.get_array().get(data) != simdjson::SUCCESS)  // a bare array, from a few servers
    return parse_error(ep.shown(), ep.api_key,
                       fmt::format("models reply from {} has no data array", ep.shown()), body);
  std::vector<std::string> ids;
  ids.reserve(data.size());
  for (element m : data) {
    std::string_view id;
    if (m["id"].get_string().get(id) == simdjson::SUCCESS || get_string(m, id))
      ids.emplace_back(id);
  }
  return ids;
}

const ProviderAdapter& openai_adapter() {
  static const OpenAIAdapter adapter;
  return adapter;
}

}  // namespace flexllm::detail
