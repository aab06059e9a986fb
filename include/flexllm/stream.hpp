// Token streaming: events, and the blocking range a caller iterates.
#pragma once

#include <iterator>
#include <memory>
#include <optional>
#include <string>

#include "flexllm/detail/pull_iterator.hpp"
#include "flexllm/types.hpp"

namespace flexllm {

namespace detail {
class StreamChannel;
}

// A piece of a tool call as it streams: the first piece of a call carries its id and name.
struct ToolCallDelta {
  int index = 0;
  std::string id;
  std::string name;
  std::string arguments;  // the next fragment of the arguments text
};

struct StreamEvent {
  enum Kind { thinking, content, tool_call, usage, done };
  Kind kind = content;
  std::string text{};                          // thinking / content: the new text
  std::optional<ToolCallDelta> tool{};         // tool_call
  std::optional<Usage> usage_info{};           // usage
  std::shared_ptr<const ChatResult> result{};  // done: the assembled result (finish_reason set)
};

// The events of one streamed completion, in order. Iterating blocks until the next event;
// a failed stream throws its flexllm::Error (typed: rethrow()) from the iteration. Retries and
// fail-over happen only before the first event. Destroying an unfinished stream cancels it.
class ChatStream {
 public:
  explicit ChatStream(std::shared_ptr<detail::StreamChannel> channel);
  ChatStream(ChatStream&&) noexcept;
  ChatStream& operator=(ChatStream&&) noexcept;
  ~ChatStream();

  // The next event, or nullopt after `done`. Throws the stream's error.
  std::optional<StreamEvent> next();
  // Drains the stream and returns the assembled result. Throws the stream's error.
  ChatResult result();
  void cancel();

  using iterator = detail::PullIterator<ChatStream, StreamEvent>;
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  std::shared_ptr<detail::StreamChannel> channel_;
};

}  // namespace flexllm
