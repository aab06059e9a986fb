// The provider interface: pure translation between flexllm's unified request/result types and one
// API dialect (OpenAI-compatible now; Gemini and Claude plug in beside it). No I/O here: request
// builders and reply/stream parsers are functions of JSON and bytes, unit-tested with recorded
// payloads. The engine owns transport, retries and rate control.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "flexllm/client.hpp"
#include "flexllm/errors.hpp"
#include "flexllm/stream.hpp"
#include "flexllm/types.hpp"

namespace flexllm::detail {

// What a client talks to, fixed at construction.
struct Endpoint {
  std::string base_url;  // no trailing slash
  std::string api_key;
  std::string model;
  Provider provider = Provider::openai;                                // never automatic
  ThinkingStyle thinking_style = ThinkingStyle::chat_template_kwargs;  // never automatic

  // base_url as messages show it: without its user info (display_url).
  std::string shown() const { return display_url(base_url); }
};

// Picks the provider from a base URL.
Provider detect_provider(std::string_view base_url);
// Picks an OpenAI-compatible server's thinking style from its base URL.
ThinkingStyle detect_thinking_style(std::string_view base_url);

// A stream decoder: one per streamed request. It is fed the HTTP body's bytes as they arrive and
// appends the events they complete.
class StreamDecoder {
 public:
  virtual ~StreamDecoder() = default;
  // Appends the events completed by `bytes` to `out`. Returns an error for an in-band error
  // event (ErrorKind::provider) or an event that is not valid JSON (ErrorKind::parse); the
  // stream is over then.
  virtual std::optional<Error> feed(std::string_view bytes, std::vector<StreamEvent>& out) = 0;
  // The body ended. Returns the assembled result (content, reasoning, tool calls, usage,
  // finish_reason) or ErrorKind::truncated when the stream ended without its terminator or
  // finish_reason.
  virtual std::variant<ChatResult, Error> finish() = 0;
  // The reply's Content-Type (before its body; "" when a new response starts).
  virtual void content_type(std::string_view /*value*/) {}

  // Data-carrying events completed so far (for SSE: events with non-empty data, the terminator
  // included): what counts as a stream making progress (stream_idle_timeout). Comments, events
  // without data, blank and partial lines do not.
  uint64_t data_events() const noexcept { return data_events_; }
  // The body was one whole reply rather than a stream of events (a server that ignored
  // stream:true): feed() produced no events, and the result is what the stream should show.
  bool whole_reply() const noexcept { return whole_reply_; }

 protected:
  uint64_t data_events_ = 0;
  bool whole_reply_ = false;
};

class ProviderAdapter {
 public:
  virtual ~ProviderAdapter() = default;

  // Full URL of a chat request.
  virtual std::string chat_url(const Endpoint& ep, std::string_view model, bool stream) const = 0;
  // Authentication and dialect headers ("Name: value"), Content-Type included.
  virtual std::vector<std::string> headers(const Endpoint& ep) const = 0;
  // The request body. `model` is the effective model (option or endpoint). Throws
  // InvalidRequestError for options the dialect cannot express.
  virtual std::string build_chat_body(const Endpoint& ep, std::string_view model,
                                      const json& messages, const RequestOptions& options,
                                      bool stream) const = 0;
  // Parses a 2xx reply into `out` (content, reasoning, tool_calls, usage, finish_reason).
  // Returns ErrorKind::parse (with a body excerpt) or ErrorKind::provider (an error object
  // inside the reply) on failure.
  virtual std::optional<Error> parse_chat_response(const Endpoint& ep, std::string_view body,
                                                   ChatResult& out) const = 0;
  virtual std::unique_ptr<StreamDecoder> make_stream_decoder(const Endpoint& ep) const = 0;
  // The human-readable message inside an error reply ("" when the body has none).
  virtual std::string error_message(std::string_view body) const = 0;

  // The messages array exactly as build_chat_body() embedded it in `body`, or "" when the dialect
  // rewrites messages (callers then serialise them themselves). Saves a second serialisation.
  virtual std::string_view embedded_messages(std::string_view /*body*/) const { return {}; }

  virtual std::string models_url(const Endpoint& ep) const = 0;
  // Model ids from the models reply; ErrorKind::parse on a body that is not one.
  virtual std::variant<std::vector<std::string>, Error> parse_models(
      const Endpoint& ep, std::string_view body) const = 0;
};

// The adapter for a provider (a process-wide immutable singleton).
const ProviderAdapter& provider_adapter(Provider provider);

// Checks a messages array before any I/O: a non-empty array of objects, each with a string
// "role" (system, developer, user, assistant, tool, function) and a "content" that is a string,
// an array of parts, or null (assistant messages with tool_calls). Throws InvalidRequestError
// naming the index and field.
void validate_messages(const json& messages);

// At most `limit` bytes of `body`, cut on a UTF-8 boundary (invalid UTF-8 replaced by U+FFFD),
// "…" appended when cut: error bodies in messages stay readable and bounded. With `api_key`, the
// key is redacted (redact()) before the cut, so that a key straddling the cut is not left with
// its first characters showing.
std::string excerpt(std::string_view body, size_t limit = 512, std::string_view api_key = {});

// `text` with every occurrence of `api_key` replaced by "[redacted]", so that a key never reaches
// an error message or log, even when a server echoes it back; and with the key's first
// characters (4 or more) replaced too when the text ends with them (a body cut short in the
// middle of the key). Keys of 1 or 2 characters are left alone: they are placeholders ("x"), not
// secrets, and redacting them would garble every message.
std::string redact(std::string text, std::string_view api_key);

// `text` (valid UTF-8) on one line and harmless to a terminal: control characters (C0, DEL and C1)
// written as \n, \r, \t, \xHH or \u00HH. For server-supplied text in messages.
std::string escape_controls(std::string_view text);

}  // namespace flexllm::detail
