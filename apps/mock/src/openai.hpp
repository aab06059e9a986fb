// OpenAI chat-completions wire format for the mock: whole responses, SSE stream events, errors.
#pragma once

#include <string>
#include <string_view>

#include "chat.hpp"

namespace flexllm::mock::detail {

struct ReplyIdentity {
  std::string id;     // "chatcmpl-mock-…"
  std::string model;  // echoed from the request, or the server's first model
  int64_t created = 0;
};

std::string render_completion(const ReplyIdentity& ident, const ChatReply& reply);
// The same response cut inside a string: syntactically invalid JSON (fault injection).
std::string render_malformed_completion(const ReplyIdentity& ident);

// A stream is a fixed sequence of events; the server paces the token events.
class StreamRenderer {
 public:
  StreamRenderer(const ReplyIdentity& ident, const ChatReply& reply, bool include_usage);
  size_t event_count() const { return 1 + token_events() + 1 + (include_usage_ ? 1 : 0) + 1; }
  // Events [1, 1 + token_events()) carry tokens; they are the ones that are paced.
  size_t token_events() const;
  void append_event(std::string& out, size_t i) const;  // "data: …\n\n"
  static void append_malformed_event(std::string& out);

 private:
  void open_chunk(std::string& out) const;
  void close_chunk(std::string& out, std::string_view finish_reason) const;
  size_t tool_pieces() const;

  const ChatReply& reply_;
  bool include_usage_;
  std::string prefix_;  // `data: {"id":…,"choices":[{"index":0,"delta":`
};

std::string render_error(std::string_view message, std::string_view type, std::string_view code);
std::string render_models(const std::vector<std::string>& models);

}  // namespace flexllm::mock::detail
