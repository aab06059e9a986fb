#include "client/stream_channel.hpp"

namespace flexllm {
namespace detail {

// A cached result as the events its stream would have had: reasoning, content, each tool call
// whole, usage (the `done` event follows).
std::vector<StreamEvent> replay_events(const ChatResult& r) {
  std::vector<StreamEvent> events;
  if (r.reasoning && !r.reasoning->empty())
    events.push_back({.kind = StreamEvent::thinking, .text = *r.reasoning});
  if (!r.content.empty()) events.push_back({.kind = StreamEvent::content, .text = r.content});
  for (size_t i = 0; i < r.tool_calls.size(); ++i) {
    const ToolCall& call = r.tool_calls[i];
    events.push_back(
        {.kind = StreamEvent::tool_call,
         .tool = ToolCallDelta{static_cast<int>(i), call.id, call.name, call.arguments}});
  }
  if (r.usage) events.push_back({.kind = StreamEvent::usage, .usage_info = r.usage});
  return events;
}

bool StreamChannel::push(std::vector<StreamEvent>& events) {
  {
    std::lock_guard lock(mu_);
    if (abandoned_) return false;
    for (StreamEvent& e : events) queue_.push_back(std::move(e));
  }
  cv_.notify_one();
  return true;
}

void StreamChannel::finish(ChatResult result) {
  {
    std::lock_guard lock(mu_);
    result_ = std::make_shared<const ChatResult>(std::move(result));
    StreamEvent done;
    done.kind = StreamEvent::done;
    done.result = result_;
    queue_.push_back(std::move(done));
    over_ = true;
    cancel_ = nullptr;
  }
  cv_.notify_one();
}

void StreamChannel::fail(Error error) {
  {
    std::lock_guard lock(mu_);
    error_ = std::move(error);
    over_ = true;
    cancel_ = nullptr;
  }
  cv_.notify_one();
}

std::optional<StreamEvent> StreamChannel::next() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return !queue_.empty() || over_; });
  if (!queue_.empty()) {
    StreamEvent e = std::move(queue_.front());
    queue_.pop_front();
    return e;
  }
  if (error_) {
    Error e = *error_;
    lock.unlock();
    e.rethrow();
  }
  return std::nullopt;
}

std::shared_ptr<const ChatResult> StreamChannel::result() const {
  std::lock_guard lock(mu_);
  return result_;
}

void StreamChannel::abandon() {
  // The cancel hook is called under the lock: while it is set, the request (and so its client)
  // is alive, because the request clears it under this lock before it completes.
  std::lock_guard lock(mu_);
  abandoned_ = true;
  queue_.clear();
  if (cancel_) {
    cancel_();
    cancel_ = nullptr;
  }
}

void StreamChannel::set_cancel(std::function<void()> cancel) {
  std::lock_guard lock(mu_);
  if (!over_) cancel_ = std::move(cancel);
}

}  // namespace detail

ChatStream::ChatStream(std::shared_ptr<detail::StreamChannel> channel)
    : channel_(std::move(channel)) {}
ChatStream::ChatStream(ChatStream&&) noexcept = default;
ChatStream& ChatStream::operator=(ChatStream&& other) noexcept {
  if (this != &other) {
    cancel();
    channel_ = std::move(other.channel_);
  }
  return *this;
}
ChatStream::~ChatStream() {
  cancel();
}

std::optional<StreamEvent> ChatStream::next() {
  return channel_->next();
}

ChatResult ChatStream::result() {
  while (next()) {
  }
  return *channel_->result();
}

void ChatStream::cancel() {
  if (channel_) channel_->abandon();
}

}  // namespace flexllm
