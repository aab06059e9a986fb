// Reply readers shared by the OpenAI-compatible adapter (openai.cpp) and its stream decoder
// (openai_stream.cpp): one definition each, in whichever file uses it most. Internal: not
// installed, not part of the adapter interface.
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "flexllm/errors.hpp"
#include "flexllm/types.hpp"

namespace flexllm::detail::openai {

// Parses `body` with this thread's reused DOM parser; `out` is valid until the thread's next
// parse (defined in openai.cpp).
simdjson::error_code parse_json(std::string_view body, simdjson::dom::element& out);

// An integer-valued member read leniently (int, uint clamped to INT64_MAX, or a finite double);
// nullopt when absent or not a number.
std::optional<int64_t> read_int(simdjson::simdjson_result<simdjson::dom::element> r);

// Usage normalised: total = prompt + completion when the server leaves it out (or sends 0).
std::optional<Usage> read_usage(simdjson::simdjson_result<simdjson::dom::element> r);

// A value that should be text: a string as is, anything else (an object from servers that send
// tool arguments parsed) as compact JSON.
void append_text_or_json(std::string& out, simdjson::dom::element e);

// Content as text: a string, or the text parts of an array of parts (some servers send parts).
void append_content(std::string& out, simdjson::dom::element content);

// Reasoning from the message/delta fields servers use: reasoning_content (DeepSeek, vLLM, Qwen)
// or reasoning (OpenRouter, Ollama, newer vLLM). Empty when neither has text.
std::string_view read_reasoning(simdjson::dom::object msg);

// A body for an error message: a bounded excerpt with the API key redacted, "(empty)" for none.
std::string body_excerpt(std::string_view body, const std::string& key);

// ErrorKind::parse for a garbled reply or event (retryable), carrying a body excerpt.
Error parse_error(const std::string& endpoint, const std::string& key, std::string what,
                  std::string_view body);

// ErrorKind::provider for an error reported inside a 2xx reply or a stream: {"error": {"message",
// "type", "code"}} or {"error": "text"}. Not retryable, unless its code is one the retry policy
// retries (OpenRouter forwards upstream 429/5xx this way). The API key is redacted.
Error provider_error(const std::string& endpoint, const std::string& key,
                     simdjson::dom::element err, std::string_view body);

// The in-band error member of a reply or chunk, if any.
bool find_error(simdjson::dom::object o, simdjson::dom::element& err);

// Whether content opens with a <think> block (after leading whitespace). Defined in
// openai_stream.cpp, beside the ThinkTagSplitter that shares its tag handling.
bool starts_with_think(std::string_view content) noexcept;

}  // namespace flexllm::detail::openai
