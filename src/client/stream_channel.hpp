// Hands a stream's events from the I/O thread to the consumer's thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "flexllm/errors.hpp"
#include "flexllm/stream.hpp"

namespace flexllm::detail {

class StreamChannel {
 public:
  // ---- producer (I/O thread) ----
  // Queues events; false once the consumer has gone (the request should stop).
  bool push(std::vector<StreamEvent>& events);
  void finish(ChatResult result);  // queues the `done` event
  void fail(Error error);

  // ---- consumer ----
  std::optional<StreamEvent> next();  // blocks; throws the stream's error; nullopt after done
  std::shared_ptr<const ChatResult> result() const;
  // The consumer is gone: cancels the request if it is still running.
  void abandon();
  void set_cancel(std::function<void()> cancel);

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<StreamEvent> queue_;
  std::optional<Error> error_;
  std::shared_ptr<const ChatResult> result_;
  bool over_ = false;  // finish() or fail() happened
  bool abandoned_ = false;
  std::function<void()> cancel_;  // cleared when the request is over
};

// A cached result as the events its stream would have had: reasoning, content, each tool call
// whole, usage (the `done` event follows).
std::vector<StreamEvent> replay_events(const ChatResult& r);

}  // namespace flexllm::detail
