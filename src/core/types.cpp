#include "flexllm/types.hpp"

#include <atomic>
#include <mutex>
#include <string_view>
#include <utility>

#include "core/text.hpp"

namespace flexllm {

namespace {

using detail::is_space;
using detail::kThinkClose;
using detail::kThinkOpen;
using detail::trim;
using detail::trim_left;

// The member `key` of `j`, or nullptr when `j` is not an object or has no such member. Raw
// replies come from servers: never index them with operator[] (asserts on a missing key).
const json* member(const json& j, std::string_view key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

const std::string* string_member(const json& j, std::string_view key) {
  const json* v = member(j, key);
  return v && v->is_string() ? v->get_ptr<const std::string*>() : nullptr;
}

const json* first_element(const json* arr) {
  return arr && arr->is_array() && !arr->empty() ? &(*arr)[0] : nullptr;
}

// Text of an OpenAI message's content: a string, or the text parts of an array of parts.
std::string content_text(const json* content) {
  if (!content) return {};
  if (content->is_string()) return content->get<std::string>();
  std::string out;
  if (content->is_array()) {
    for (const json& part : *content) {
      const std::string* type = string_member(part, "type");
      const std::string* text = string_member(part, "text");
      if (text && (!type || *type == "text")) out += *text;
    }
  }
  return out;
}

Thoughts openai_thoughts(const json& raw) {
  // A full reply, or just its message object.
  const json* msg = &raw;
  if (const json* choice = first_element(member(raw, "choices"))) {
    msg = member(*choice, "message");
    if (!msg) msg = member(*choice, "delta");
    if (!msg) return {};
  }
  std::string content = content_text(member(*msg, "content"));
  for (std::string_view field : {"reasoning_content", "reasoning"}) {
    const std::string* r = string_member(*msg, field);
    if (r && !r->empty()) return Thoughts{*r, std::move(content)};
  }
  return parse_thoughts(std::string_view(content));
}

Thoughts gemini_thoughts(const json& raw) {
  Thoughts out;
  const json* candidate = first_element(member(raw, "candidates"));
  const json* content = candidate ? member(*candidate, "content") : nullptr;
  const json* parts = content ? member(*content, "parts") : nullptr;
  if (!parts || !parts->is_array()) return out;
  for (const json& part : *parts) {
    const std::string* text = string_member(part, "text");
    if (!text) continue;  // functionCall, inlineData, …
    const json* thought = member(part, "thought");
    bool is_thought = thought && thought->is_boolean() && thought->get<bool>();
    (is_thought ? out.thought : out.answer) += *text;
  }
  return out;
}

Thoughts claude_thoughts(const json& raw) {
  Thoughts out;
  const json* content = member(raw, "content");
  if (!content || !content->is_array()) return out;
  for (const json& block : *content) {
    const std::string* type = string_member(block, "type");
    if (!type) continue;
    if (*type == "thinking") {
      if (const std::string* t = string_member(block, "thinking")) {
        // Separate thinking blocks are separate passages (interleaved thinking around tools).
        if (!out.thought.empty()) out.thought += '\n';
        out.thought += *t;
      }
    } else if (*type == "text") {
      // Text blocks split one answer (e.g. around citations): join them as they are.
      if (const std::string* t = string_member(block, "text")) out.answer += *t;
    }
    // redacted_thinking is encrypted: nothing readable to return.
  }
  return out;
}

}  // namespace

const char* to_string(Provider provider) noexcept {
  switch (provider) {
    case Provider::automatic: return "auto";
    case Provider::openai: return "openai";
    case Provider::gemini: return "gemini";
    case Provider::claude: return "claude";
  }
  return "unknown";
}

// The raw reply is kept as text and parsed by nlohmann only when asked for: most callers never
// look at it, and a parse costs ~30 µs per KB. The parse runs once (std::call_once), so copies
// of a result that share the cache may call raw() from different threads.
struct detail::RawRef::Cache {
  std::atomic<int> refs{1};
  std::string text;
  std::once_flag once;
  json value;
};

detail::RawRef::RawRef(std::string text) : cache_(new Cache) {
  cache_->text = std::move(text);
}

detail::RawRef::RawRef(const RawRef& other) noexcept : cache_(other.cache_) {
  if (cache_) cache_->refs.fetch_add(1, std::memory_order_relaxed);
}

detail::RawRef::~RawRef() {
  if (cache_ && cache_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete cache_;
}

const json& ChatResult::raw() const {
  static const json kNull;
  if (!raw_.get()) return kNull;
  detail::RawRef::Cache& cache = *raw_.get();
  std::call_once(cache.once, [&cache] {
    cache.value = json::parse(cache.text, nullptr, /*allow_exceptions=*/false);
    // A reply that is not JSON (should not reach a result) is still shown, as a string.
    if (cache.value.is_discarded()) cache.value = std::move(cache.text);
    std::string().swap(cache.text);  // the parsed value is all that is needed from now on
  });
  return cache.value;
}

void ChatResult::set_raw(std::string body) {
  // A fresh cache: copies made before keep the raw reply they had.
  raw_ = detail::RawRef(std::move(body));
}

Thoughts parse_thoughts(std::string_view content) {
  std::string_view rest = trim_left(content);
  if (rest.substr(0, kThinkOpen.size()) != kThinkOpen) return Thoughts{{}, std::string(content)};
  rest.remove_prefix(kThinkOpen.size());
  size_t close = rest.find(kThinkClose);
  if (close == std::string_view::npos) {
    // Unclosed: the reply was cut (max_tokens) while the model was still thinking.
    return Thoughts{std::string(trim(rest)), {}};
  }
  return Thoughts{std::string(trim(rest.substr(0, close))),
                  std::string(trim_left(rest.substr(close + kThinkClose.size())))};
}

Thoughts parse_thoughts(const json& raw, Provider provider) {
  if (provider == Provider::automatic) {
    // Guess the dialect from the shape of the reply.
    if (member(raw, "candidates")) {
      provider = Provider::gemini;
    } else if (const std::string* t = string_member(raw, "type"); t && *t == "message") {
      provider = Provider::claude;
    } else {
      provider = Provider::openai;
    }
  }
  switch (provider) {
    case Provider::gemini: return gemini_thoughts(raw);
    case Provider::claude: return claude_thoughts(raw);
    default: return openai_thoughts(raw);
  }
}

}  // namespace flexllm
