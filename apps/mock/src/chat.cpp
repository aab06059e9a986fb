#include "chat.hpp"

#include <xxhash.h>

#include <algorithm>

#include "json_out.hpp"

namespace flexllm::mock::detail {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;

constexpr std::string_view kWords[] = {
    "the",     "model",    "answers", "with",   "a",        "short",   "clear",    "reply",
    "about",   "data",     "and",     "its",    "results",  "because", "every",    "request",
    "needs",   "careful",  "review",  "of",     "growth",   "margins", "costs",    "stayed",
    "flat",    "while",    "revenue", "rose",   "in",       "europe",  "driven",   "by",
    "strong",  "demand",   "for",     "new",    "products", "so",      "the",      "team",
    "expects", "steady",   "gains",   "next",   "quarter",  "despite", "risks",    "from",
    "supply",  "chains",   "pricing", "limits", "which",    "remain",  "under",    "watch",
    "overall", "progress", "looks",   "good",   "enough",   "to",      "continue", "today"};

void push_words(TokenText& out, Rng& rng, uint32_t n) {
  for (uint32_t i = 0; i < n; ++i) {
    std::string_view word = kWords[rng.next() % std::size(kWords)];
    std::string token;
    if (i > 0) token.push_back(' ');
    token.append(word);
    if (i == 0) token[0] = static_cast<char>(token[0] - 'a' + 'A');
    if (i + 1 == n) token.push_back('.');
    out.push(token);
  }
}

// Text of a message's content: a string, or the text parts of an array of parts.
std::string message_text(element content) {
  std::string_view s;
  if (content.get_string().get(s) == simdjson::SUCCESS) return std::string(s);
  std::string out;
  array parts;
  if (content.get_array().get(parts) != simdjson::SUCCESS) return out;
  for (element part : parts) {
    std::string_view type, text;
    if (part["type"].get_string().get(type) == simdjson::SUCCESS && type == "text" &&
        part["text"].get_string().get(text) == simdjson::SUCCESS) {
      if (!out.empty()) out.push_back('\n');
      out.append(text);
    }
  }
  return out;
}

// Writes a JSON value that satisfies `schema` (required fields only, first enum value, …).
void append_value_for(std::string& out, element schema, std::string_view name, int depth) {
  element v;
  array values;
  if (schema["const"].get(v) == simdjson::SUCCESS) {
    out.append(simdjson::minify(v));
    return;
  }
  if (schema["enum"].get_array().get(values) == simdjson::SUCCESS && values.size() > 0) {
    out.append(simdjson::minify(values.at(0).value_unsafe()));
    return;
  }
  std::string_view type;
  if (schema["type"].get_string().get(type) != simdjson::SUCCESS) {
    array types;  // ["string", "null"]: the first non-null type
    if (schema["type"].get_array().get(types) == simdjson::SUCCESS) {
      for (element t : types) {
        std::string_view tv;
        if (t.get_string().get(tv) == simdjson::SUCCESS && tv != "null") {
          type = tv;
          break;
        }
      }
    }
    if (type.empty()) {
      object props;
      type =
          schema["properties"].get_object().get(props) == simdjson::SUCCESS ? "object" : "string";
    }
  }
  if (type == "object" && depth < 8) {
    out.push_back('{');
    array required;
    object props;
    bool first = true;
    if (schema["required"].get_array().get(required) == simdjson::SUCCESS) {
      bool have_props = schema["properties"].get_object().get(props) == simdjson::SUCCESS;
      for (element r : required) {
        std::string_view key;
        if (r.get_string().get(key) != simdjson::SUCCESS) continue;
        if (!first) out.push_back(',');
        first = false;
        append_json_string(out, key);
        out.push_back(':');
        element sub;
        if (have_props && props[key].get(sub) == simdjson::SUCCESS) {
          append_value_for(out, sub, key, depth + 1);
        } else {
          append_json_string(out, "mock");
        }
      }
    }
    out.push_back('}');
  } else if (type == "array") {
    uint64_t min_items = 0;
    element items;
    if (schema["minItems"].get_uint64().get(min_items) == simdjson::SUCCESS && min_items > 0 &&
        schema["items"].get(items) == simdjson::SUCCESS && depth < 8) {
      out.push_back('[');
      for (uint64_t i = 0; i < std::min<uint64_t>(min_items, 16); ++i) {
        if (i > 0) out.push_back(',');
        append_value_for(out, items, name, depth + 1);
      }
      out.push_back(']');
    } else {
      out.append("[]");
    }
  } else if (type == "integer") {
    out.append("1");
  } else if (type == "number") {
    out.append("1.5");
  } else if (type == "boolean") {
    out.append("true");
  } else if (type == "null") {
    out.append("null");
  } else {
    std::string s = "mock";
    if (!name.empty()) {
      s.push_back('-');
      s.append(name);
    }
    append_json_string(out, s);
  }
}

// For fields that may be absent: a missing or mistyped one leaves the default in place.
void optional_field(simdjson::error_code) {}

bool thinking_switched_off(object req) {
  bool b = true;
  std::string_view s;
  if (req.at_pointer("/chat_template_kwargs/enable_thinking").get_bool().get(b) ==
          simdjson::SUCCESS &&
      !b)
    return true;
  if (req["enable_thinking"].get_bool().get(b) == simdjson::SUCCESS && !b) return true;
  if (req["reasoning_effort"].get_string().get(s) == simdjson::SUCCESS && s == "none") return true;
  if (req.at_pointer("/thinking/type").get_string().get(s) == simdjson::SUCCESS && s == "disabled")
    return true;
  return false;
}

std::optional<ToolCallPlan> plan_tool_call(object req, std::string_view last_role, uint64_t seed,
                                           uint64_t messages_hash) {
  array tools;
  if (req["tools"].get_array().get(tools) != simdjson::SUCCESS || tools.size() == 0) return {};
  if (last_role == "tool") return {};  // the conversation already has the tool's answer
  std::string_view choice, wanted;
  if (req["tool_choice"].get_string().get(choice) == simdjson::SUCCESS && choice == "none")
    return {};
  optional_field(req.at_pointer("/tool_choice/function/name").get_string().get(wanted));
  for (element tool : tools) {
    std::string_view name;
    if (tool.at_pointer("/function/name").get_string().get(name) != simdjson::SUCCESS) continue;
    if (!wanted.empty() && name != wanted) continue;
    ToolCallPlan plan;
    plan.name = std::string(name);
    element params;
    if (tool.at_pointer("/function/parameters").get(params) == simdjson::SUCCESS) {
      append_value_for(plan.arguments, params, "", 0);
      if (plan.arguments.empty() || plan.arguments.front() != '{') plan.arguments = "{}";
    } else {
      plan.arguments = "{}";
    }
    static constexpr char kAlnum[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    Rng rng(mix64(seed ^ messages_hash ^ 0x7001));
    plan.id = "call_";
    for (int i = 0; i < 24; ++i) plan.id.push_back(kAlnum[rng.next() % (sizeof kAlnum - 1)]);
    return plan;
  }
  return {};
}

}  // namespace

std::optional<ChatRequest> parse_chat_request(simdjson::dom::parser& parser, std::string_view body,
                                              uint64_t seed, std::string& error) {
  element doc;
  if (auto err = parser.parse(body.data(), body.size(), false).get(doc); err) {
    error = std::string("request body is not valid JSON: ") + simdjson::error_message(err);
    return std::nullopt;
  }
  object req;
  if (doc.get_object().get(req) != simdjson::SUCCESS) {
    error = "request body must be a JSON object";
    return std::nullopt;
  }
  element messages_el;
  array messages;
  if (req["messages"].get(messages_el) != simdjson::SUCCESS ||
      messages_el.get_array().get(messages) != simdjson::SUCCESS || messages.size() == 0) {
    error = "'messages' must be a non-empty array";
    return std::nullopt;
  }
  ChatRequest out;
  std::string_view last_role;
  size_t text_bytes = 0;
  size_t i = 0;
  for (element m : messages) {
    std::string_view role;
    if (m["role"].get_string().get(role) != simdjson::SUCCESS) {
      error = "messages[" + std::to_string(i) + "].role is missing or not a string";
      return std::nullopt;
    }
    element content;
    std::string text;
    if (m["content"].get(content) == simdjson::SUCCESS) text = message_text(content);
    text_bytes += text.size();
    if (role == "user") out.last_user = std::move(text);
    last_role = role;
    ++i;
  }
  out.prompt_tokens = static_cast<uint32_t>(std::max<size_t>(1, (text_bytes + 3) / 4 + 4 * i));
  std::string minified = simdjson::minify(messages_el);
  out.messages_hash = XXH3_64bits(minified.data(), minified.size());

  std::string_view model;
  if (req["model"].get_string().get(model) == simdjson::SUCCESS) out.model = std::string(model);
  optional_field(req["stream"].get_bool().get(out.stream));
  optional_field(req.at_pointer("/stream_options/include_usage").get_bool().get(out.include_usage));
  uint64_t max_tokens = 0;
  if (req["max_completion_tokens"].get_uint64().get(max_tokens) == simdjson::SUCCESS ||
      req["max_tokens"].get_uint64().get(max_tokens) == simdjson::SUCCESS)
    out.max_tokens = static_cast<uint32_t>(std::min<uint64_t>(max_tokens, UINT32_MAX));
  out.thinking_disabled = thinking_switched_off(req);
  out.tool = plan_tool_call(req, last_role, seed, out.messages_hash);
  return out;
}

ChatReply plan_reply(const ChatRequest& request, const MockConfig& config) {
  ChatReply reply;
  reply.prompt_tokens = request.prompt_tokens;
  Rng rng(mix64(config.seed ^ mix64(request.messages_hash)));

  TokenText reasoning;
  if (config.thinking != ThinkingMode::none && !request.thinking_disabled)
    push_words(reasoning, rng, std::max<uint32_t>(1, rng.in(config.reasoning_tokens)));

  TokenText answer;
  if (request.tool) {
    reply.tool = request.tool;
    reply.finish_reason = "tool_calls";
  } else if (config.echo) {
    std::string_view text = request.last_user;
    while (!text.empty()) {  // a token per word, each keeping its leading space
      size_t next = text.find(' ', 1);
      answer.push(text.substr(0, next));
      text.remove_prefix(next == std::string_view::npos ? text.size() : next);
    }
  } else {
    push_words(answer, rng, std::max<uint32_t>(1, rng.in(config.response_tokens)));
  }

  if (request.max_tokens > 0 && reasoning.size() + answer.size() > request.max_tokens) {
    reasoning.truncate(request.max_tokens);
    answer.truncate(request.max_tokens - reasoning.size());
    reply.finish_reason = "length";
  }
  reply.reasoning_tokens = static_cast<uint32_t>(reasoning.size());
  uint32_t tool_tokens =
      reply.tool ? static_cast<uint32_t>(std::max<size_t>(1, reply.tool->arguments.size() / 4)) : 0;
  reply.completion_tokens = static_cast<uint32_t>(reasoning.size() + answer.size()) + tool_tokens;

  if (config.thinking == ThinkingMode::tags && reasoning.size() > 0) {
    reply.content.push("<think>\n");
    for (size_t t = 0; t < reasoning.size(); ++t) reply.content.push(reasoning.token(t));
    reply.content.push("\n</think>\n\n");
    for (size_t t = 0; t < answer.size(); ++t) reply.content.push(answer.token(t));
  } else {
    reply.reasoning = std::move(reasoning);
    reply.content = std::move(answer);
  }
  return reply;
}

}  // namespace flexllm::mock::detail
