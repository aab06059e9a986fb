// Value types shared by every part of flexllm: usage, tool calls, results, per-request options.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace flexllm {

using json = nlohmann::json;

// Which API dialect an endpoint speaks. `automatic` picks from the base URL:
// generativelanguage/aiplatform.googleapis.com -> gemini, anthropic.com -> claude, else openai.
enum class Provider { automatic, openai, gemini, claude };
const char* to_string(Provider provider) noexcept;

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t total_tokens = 0;
  std::optional<int64_t> reasoning_tokens{};  // when the provider reports them

  friend bool operator==(const Usage&, const Usage&) = default;
};

// A tool call the model asked for, normalised to OpenAI's shape whatever the provider.
struct ToolCall {
  std::string id;
  std::string type = "function";
  std::string name;
  std::string arguments;  // a JSON object as text, exactly as the model produced it

  friend bool operator==(const ToolCall&, const ToolCall&) = default;
};

// Thinking ("reasoning") control: true/false, a level ("minimal", "low", "medium", "high"), or a
// token budget. Mapped per provider and thinking style (README).
using Thinking = std::variant<bool, std::string, int>;

namespace detail {
// A result's raw reply, shared between copies of the result: one pointer wide, since results are
// held by the hundred thousand in batches (a std::shared_ptr would take two).
class RawRef {
 public:
  struct Cache;  // the text, parsed once on demand (types.cpp)
  RawRef() = default;
  explicit RawRef(std::string text);
  RawRef(const RawRef& other) noexcept;
  RawRef(RawRef&& other) noexcept : cache_(std::exchange(other.cache_, nullptr)) {}
  RawRef& operator=(RawRef other) noexcept {
    std::swap(cache_, other.cache_);
    return *this;
  }
  ~RawRef();
  Cache* get() const noexcept { return cache_; }

 private:
  Cache* cache_ = nullptr;
};
}  // namespace detail

struct ChatResult {
  std::string content;                     // the answer (think-tags removed)
  std::optional<std::string> reasoning{};  // the model's reasoning, when it returned any
  std::optional<Usage> usage{};
  std::vector<ToolCall> tool_calls{};
  std::string finish_reason;                // "stop", "length", "tool_calls", …
  bool cached = false;                      // served from the response cache
  int attempts = 0;                         // HTTP attempts made (1 = no retry)
  std::chrono::duration<double> latency{};  // from submission to the complete reply
  // Base URL of the endpoint that answered, as display_url() shows it (no user info). Points into
  // a process-lifetime table of base URLs, so it never dangles and a result carries no copy of it.
  std::string_view endpoint{};

  // The provider's raw JSON reply. Kept only when RequestOptions::return_raw is set (it costs
  // memory per result); otherwise null.
  const json& raw() const;
  void set_raw(std::string body);  // the raw reply text; parsed on first raw()

 private:
  detail::RawRef raw_;
};

// Per-request options. Unset fields leave the server's defaults.
struct RequestOptions {
  std::optional<std::string> model{};  // overrides the client's model
  std::optional<double> temperature{};
  std::optional<double> top_p{};
  std::optional<int> max_tokens{};
  std::optional<std::vector<std::string>> stop{};
  std::optional<int64_t> seed{};
  std::optional<Thinking> thinking{};
  std::optional<json> tools{};  // OpenAI-style tool definitions
  std::optional<json> tool_choice{};
  std::optional<json> response_format{};
  json extra = json::object();  // merged verbatim into the request body (wins over the above)
  bool skip_cache = false;
  bool return_raw = false;                             // keep the raw reply (ChatResult::raw())
  std::optional<std::chrono::milliseconds> timeout{};  // per attempt; the client's by default
};

// Reasoning split out of a reply: parse_thoughts(raw, provider).
struct Thoughts {
  std::string thought;
  std::string answer;
};

// Splits reasoning from the answer in a provider's raw reply: OpenAI-compatible
// `reasoning_content`/`reasoning` fields or <think>…</think> in the content.
Thoughts parse_thoughts(const json& raw, Provider provider = Provider::openai);
// Splits <think>…</think> (at the start of a text, as reasoning models emit it) from the answer.
Thoughts parse_thoughts(std::string_view content);
// Text overloads, so a std::string or a literal is never taken for a JSON value.
inline Thoughts parse_thoughts(const std::string& content) {
  return parse_thoughts(std::string_view(content));
}
inline Thoughts parse_thoughts(const char* content) {
  return parse_thoughts(std::string_view(content));
}

}  // namespace flexllm
