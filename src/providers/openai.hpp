// The OpenAI-compatible dialect: OpenAI, DeepSeek, Qwen/DashScope, vLLM, SGLang, Ollama,
// OpenRouter, llama.cpp…. Request bodies are written by hand and replies parsed with
// simdjson: this is the hot path of every call.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "providers/provider.hpp"

namespace flexllm::detail {

class OpenAIAdapter final : public ProviderAdapter {
 public:
  std::string chat_url(const Endpoint& ep, std::string_view model, bool stream) const override;
  std::vector<std::string> headers(const Endpoint& ep) const override;
  std::string build_chat_body(const Endpoint& ep, std::string_view model, const json& messages,
                              const RequestOptions& options, bool stream) const override;
  std::optional<Error> parse_chat_response(const Endpoint& ep, std::string_view body,
                                           ChatResult& out) const override;
  std::unique_ptr<StreamDecoder> make_stream_decoder(const Endpoint& ep) const override;
  std::string error_message(std::string_view body) const override;
  std::string_view embedded_messages(std::string_view body) const override;
  std::string models_url(const Endpoint& ep) const override;
  std::variant<std::vector<std::string>, Error> parse_models(const Endpoint& ep,
                                                             std::string_view body) const override;
};

// The process-wide OpenAI-compatible adapter.
const ProviderAdapter& openai_adapter();

// Splits streamed content that starts with <think>…</think> into thinking and answer text as the
// deltas arrive, with the tags cut anywhere. The pieces it returns concatenate to exactly what
// parse_thoughts(full content) returns: the thought trimmed, the answer with the whitespace after
// </think> removed; content that does not start with <think> passes through unchanged.
class ThinkTagSplitter {
 public:
  // Routes `delta`, appending what is ready to `thinking` and `content` (thinking text always
  // precedes content text within one call). Text that might be part of a tag is held back.
  void push(std::string_view delta, std::string& thinking, std::string& content);
  // The content ended: releases whatever is held back.
  void flush(std::string& thinking, std::string& content);
  // The server reports reasoning in its own field: content is the answer, tags or not. Only
  // effective before the first content arrives.
  void pass_through();
  bool saw_think() const noexcept { return saw_think_; }

 private:
  enum class State { start, think_lead, think, after_think, answer };
  State state_ = State::start;
  bool saw_think_ = false;
  std::string hold_;     // text held back (leading whitespace, a partial tag, trailing blanks)
  std::string scratch_;  // reused buffer for held text + the next delta
};

}  // namespace flexllm::detail
