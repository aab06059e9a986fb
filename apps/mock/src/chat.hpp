// The mock's model: reads an OpenAI chat request and decides what the "LLM" answers. Pure (no I/O),
// deterministic from the config's seed and the request's messages.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "flexllm/mock/server.hpp"

namespace flexllm::mock::detail {

struct ToolCallPlan {
  std::string id;
  std::string name;
  std::string arguments;  // a JSON object, as text
};

// What the mock reads from a chat request body.
struct ChatRequest {
  std::string model;
  bool stream = false;
  bool include_usage = false;
  std::string last_user;             // text of the last user message (text parts joined by "\n")
  uint64_t messages_hash = 0;        // of the minified messages array
  uint32_t prompt_tokens = 0;        // ≈ bytes / 4 of all message text, + 4 per message
  bool thinking_disabled = false;    // the request switched thinking off (any OpenAI-style field)
  uint32_t max_tokens = 0;           // 0 = not given
  std::optional<ToolCallPlan> tool;  // the reply is this tool call
};

// Parses `body` (which must have simdjson::SIMDJSON_PADDING readable bytes after its end). On a
// request that is not valid returns nullopt and sets `error` to a message for the 400 reply.
std::optional<ChatRequest> parse_chat_request(simdjson::dom::parser& parser, std::string_view body,
                                              uint64_t seed, std::string& error);

// A text split into tokens: token i is text[cuts[i-1], cuts[i]) (cuts[-1] = 0).
struct TokenText {
  std::string text;
  std::vector<uint32_t> cuts;

  size_t size() const { return cuts.size(); }
  std::string_view token(size_t i) const {
    uint32_t begin = i == 0 ? 0 : cuts[i - 1];
    return std::string_view(text).substr(begin, cuts[i] - begin);
  }
  void push(std::string_view token) {
    text.append(token);
    cuts.push_back(static_cast<uint32_t>(text.size()));
  }
  void truncate(size_t tokens) {
    if (tokens >= cuts.size()) return;
    text.resize(tokens == 0 ? 0 : cuts[tokens - 1]);
    cuts.resize(tokens);
  }
};

struct ChatReply {
  TokenText reasoning;  // reasoning_content (ThinkingMode::field)
  TokenText content;    // the answer; with ThinkingMode::tags it starts with <think>…</think>
  std::optional<ToolCallPlan> tool;
  std::string_view finish_reason = "stop";
  uint32_t prompt_tokens = 0;
  uint32_t completion_tokens = 0;
  uint32_t reasoning_tokens = 0;
};

ChatReply plan_reply(const ChatRequest& request, const MockConfig& config);

// Deterministic 64-bit mixing (splitmix64), shared by every seeded decision of the mock.
inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A small seeded generator (splitmix64 stream).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() { return mix64(state_++ * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull); }
  uint32_t in(Range r) {  // uniform in [r.min, r.max]
    if (r.max <= r.min) return r.min;
    return r.min + static_cast<uint32_t>(next() % (uint64_t{r.max} - r.min + 1));
  }

 private:
  uint64_t state_;
};

}  // namespace flexllm::mock::detail
