#include "providers/provider.hpp"
#include "core/invalid.hpp"

#include <array>
#include <string>

#include <fmt/format.h>

#include "core/utf8.hpp"
#include "providers/openai.hpp"

namespace flexllm::detail {

namespace {

struct HostPort {
  std::string host;  // lower case, no brackets
  int port = -1;     // -1 when the URL has none
};

// Just enough URL splitting to match hosts: scheme, userinfo, path, query and fragment dropped.
HostPort host_port(std::string_view url) {
  if (size_t s = url.find("://"); s != std::string_view::npos) url.remove_prefix(s + 3);
  if (size_t e = url.find_first_of("/?#"); e != std::string_view::npos) url = url.substr(0, e);
  if (size_t at = url.rfind('@'); at != std::string_view::npos) url.remove_prefix(at + 1);
  std::string_view host = url;
  std::string_view port;
  if (!url.empty() && url[0] == '[') {  // IPv6 literal
    size_t rb = url.find(']');
    host = url.substr(1, rb == std::string_view::npos ? std::string_view::npos : rb - 1);
    if (rb != std::string_view::npos && rb + 1 < url.size() && url[rb + 1] == ':')
      port = url.substr(rb + 2);
  } else if (size_t c = url.rfind(':'); c != std::string_view::npos) {
    host = url.substr(0, c);
    port = url.substr(c + 1);
  }
  HostPort out;
  out.host.reserve(host.size());
  for (char c : host) out.host.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c);
  if (!port.empty() && port.size() <= 5) {
    int v = 0;
    for (char c : port) {
      if (c < '0' || c > '9') return out;
      v = v * 10 + (c - '0');
    }
    out.port = v;
  }
  return out;
}

// The path of a URL ("" when none), without query or fragment.
std::string_view url_path(std::string_view url) {
  if (size_t s = url.find("://"); s != std::string_view::npos) url.remove_prefix(s + 3);
  size_t slash = url.find_first_of("/?#");
  if (slash == std::string_view::npos || url[slash] != '/') return {};
  url.remove_prefix(slash);
  return url.substr(0, url.find_first_of("?#"));
}

bool contains(const std::string& s, std::string_view needle) {
  return s.find(needle) != std::string::npos;
}

constexpr std::array<std::string_view, 6> kRoles = {"system",    "developer", "user",
                                                    "assistant", "tool",      "function"};

std::string at(size_t i) {
  return "messages[" + std::to_string(i) + "]";
}

}  // namespace

Provider detect_provider(std::string_view base_url) {
  const HostPort u = host_port(base_url);
  if (contains(u.host, "generativelanguage.googleapis.com") ||
      contains(u.host, "aiplatform.googleapis.com")) {
    // Google's OpenAI-compatible endpoints (…/v1beta/openai, Vertex's …/endpoints/openapi)
    // speak the OpenAI dialect.
    const std::string_view path = url_path(base_url);
    if (path.find("/openai") != std::string_view::npos ||
        path.find("/endpoints/openapi") != std::string_view::npos)
      return Provider::openai;
    return Provider::gemini;
  }
  if (contains(u.host, "anthropic.com")) return Provider::claude;
  return Provider::openai;
}

ThinkingStyle detect_thinking_style(std::string_view base_url) {
  const HostPort u = host_port(base_url);
  // Azure OpenAI speaks OpenAI's dialect, reasoning_effort included.
  if (contains(u.host, "api.openai.com") || contains(u.host, "openai.azure.com") ||
      u.port == 11434 || contains(u.host, "ollama"))
    return ThinkingStyle::reasoning_effort;
  if (contains(u.host, "dashscope") || contains(u.host, "siliconflow"))
    return ThinkingStyle::enable_thinking;
  if (contains(u.host, "deepseek") || contains(u.host, "bigmodel") || contains(u.host, "volces"))
    return ThinkingStyle::thinking_object;
  return ThinkingStyle::chat_template_kwargs;
}

const ProviderAdapter& provider_adapter(Provider provider) {
  switch (provider) {
    case Provider::openai: return openai_adapter();
    case Provider::gemini:
    case Provider::claude:
      invalid(std::string("provider ") + to_string(provider) +
              " is not supported yet; use an OpenAI-compatible endpoint (provider openai)");
    case Provider::automatic: break;
  }
  invalid("provider auto must be resolved to a concrete provider before use (detect_provider)");
}

void validate_messages(const json& messages) {
  if (!messages.is_array())
    invalid(std::string("messages must be a JSON array, got ") + messages.type_name());
  if (messages.empty()) invalid("messages must not be empty");
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    if (!m.is_object()) invalid(at(i) + " must be a JSON object, got " + m.type_name());
    auto role_it = m.find("role");
    if (role_it == m.end()) invalid(at(i) + ".role is missing");
    if (!role_it->is_string())
      invalid(at(i) + ".role must be a string, got " + role_it->type_name());
    const auto& role = role_it->get_ref<const std::string&>();
    bool known = false;
    for (std::string_view r : kRoles) known = known || role == r;
    if (!known)
      invalid(at(i) + ".role \"" + role +
              "\" is not one of system, developer, user, assistant, tool, function");

    auto content_it = m.find("content");
    const bool assistant_call =
        role == "assistant" && (m.contains("tool_calls") || m.contains("function_call"));
    if (content_it == m.end() || content_it->is_null()) {
      // Only an assistant turn that calls tools may come without content.
      if (!assistant_call)
        invalid(at(i) + ".content is " + (content_it == m.end() ? "missing" : "null") +
                " (only assistant messages with tool_calls may omit it)");
      continue;
    }
    const json& content = *content_it;
    if (content.is_string()) continue;
    if (!content.is_array())
      invalid(at(i) + ".content must be a string, an array of parts or null, got " +
              content.type_name());
    for (size_t k = 0; k < content.size(); ++k) {
      const json& part = content[k];
      const std::string where = at(i) + ".content[" + std::to_string(k) + "]";
      if (!part.is_object()) invalid(where + " must be a JSON object, got " + part.type_name());
      auto type = part.find("type");
      if (type == part.end()) invalid(where + ".type is missing");
      if (!type->is_string()) invalid(where + ".type must be a string, got " + type->type_name());
    }
  }
}

namespace {

constexpr std::string_view kRedacted = "[redacted]";
constexpr size_t kMinKey = 3;     // shorter keys are placeholders (redact())
constexpr size_t kMinPrefix = 4;  // a key's first characters redacted at a text's end

// `body` cut to at most `limit` bytes on a UTF-8 boundary; `cut` says whether anything went.
std::string_view cut_utf8(std::string_view body, size_t limit, bool& cut) {
  cut = body.size() > limit;
  if (!cut) return body;
  size_t k = limit;
  // Back up to the start of the character the cut falls in (at most 3 continuation bytes).
  for (int back = 0; k > 0 && back < 3 && (static_cast<unsigned char>(body[k]) & 0xC0) == 0x80;
       ++back)
    --k;
  return body.substr(0, k);
}

}  // namespace

std::string excerpt(std::string_view body, size_t limit, std::string_view api_key) {
  std::string redacted;
  bool cut = false;
  if (api_key.size() >= kMinKey) {
    // Only as much as can reach the cut is read: each key in it becomes a marker that may be
    // shorter, so up to limit / marker keys' worth of extra bytes, plus one key across the cut.
    const size_t reach = limit + api_key.size() * (limit / kRedacted.size() + 2);
    redacted = redact(std::string(body.substr(0, reach)), api_key);
    cut = body.size() > reach;
    body = redacted;
  }
  bool cut_here = false;
  std::string_view kept = cut_utf8(body, limit, cut_here);
  std::string out;
  out.reserve(kept.size() + 3);
  append_valid_utf8(out, kept);
  // The cut may leave a key's first characters at the end.
  if (cut_here && api_key.size() >= kMinKey) out = redact(std::move(out), api_key);
  if (cut || cut_here) out.append("\xE2\x80\xA6");  // …
  return out;
}

std::string redact(std::string text, std::string_view api_key) {
  if (api_key.size() < kMinKey) return text;
  // Resume past the marker, so the text it put in is never matched.
  for (size_t pos = text.find(api_key); pos != std::string::npos;
       pos = text.find(api_key, pos + kRedacted.size()))
    text.replace(pos, api_key.size(), kRedacted);
  for (size_t n = std::min(api_key.size() - 1, text.size()); n >= kMinPrefix; --n) {
    if (text.ends_with(api_key.substr(0, n))) {
      text.replace(text.size() - n, n, kRedacted);
      break;
    }
  }
  return text;
}

std::string escape_controls(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '\n') {
      out.append("\\n");
    } else if (c == '\r') {
      out.append("\\r");
    } else if (c == '\t') {
      out.append("\\t");
    } else if (c < 0x20 || c == 0x7F) {
      out.append(fmt::format("\\x{:02x}", c));
    } else if (c == 0xC2 && i + 1 < text.size() &&
               static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(text[i + 1]) <= 0x9F) {
      // C1 controls (U+0080..U+009F): some terminals act on them (U+009B opens a CSI sequence).
      out.append(fmt::format("\\u{:04x}", static_cast<unsigned char>(text[++i])));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

}  // namespace flexllm::detail
