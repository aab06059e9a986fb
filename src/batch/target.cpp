#include "batch/target.hpp"

#include "engine/client_core.hpp"

namespace flexllm::detail {
namespace {

// One batch request: its outcome goes back to the runner instead of a promise.
class BatchJob final : public Job {
 public:
  BatchJob(std::string url, std::string body, std::shared_ptr<BatchInbox> inbox, BatchOutcome seed)
      : Job(Mode::chat, std::move(url), std::move(body)),
        inbox_(std::move(inbox)),
        outcome_(std::move(seed)) {}
  void succeed(ChatResult&& result) override {
    outcome_.result = std::move(result);
    if (outcome_.input_len) outcome_.body = std::move(body);
    inbox_->put(std::move(outcome_));
  }
  void fail(Error&& error) override {
    outcome_.error = std::move(error);
    outcome_.attempts = attempts();
    outcome_.latency = Clock::now() - submitted();
    if (outcome_.input_len) outcome_.body = std::move(body);
    inbox_->put(std::move(outcome_));
  }
  int stop_level() const override { return inbox_->stop_level.load(std::memory_order_relaxed); }
  void on_retry() override { inbox_->retries.fetch_add(1, std::memory_order_relaxed); }

 private:
  std::shared_ptr<BatchInbox> inbox_;
  BatchOutcome outcome_;
};

class ClientTarget final : public BatchTarget {
 public:
  explicit ClientTarget(ClientCore& core) : core_(core) {}
  int concurrency() const override { return core_.config().concurrency_limit; }
  void check_chat(const json& messages, const RequestOptions& options) const override {
    core_.check_chat(messages, options);
  }
  std::pair<std::string, std::string> chat_request(const json& messages,
                                                   const RequestOptions& options) const override {
    return core_.chat_request(messages, options, /*stream=*/false, /*checked=*/true);
  }
  std::string_view embedded_messages(std::string_view body) const override {
    return core_.adapter().embedded_messages(body);
  }
  CacheFront* cache() override { return core_.cache(); }
  CacheKey cache_key(const json& messages, const RequestOptions& options) const override {
    return core_.cache_key(messages, options);
  }
  std::string_view endpoint_name() const override { return core_.endpoint_name(); }
  double current_rate() const override { return core_.current_rate(); }
  void send(std::pair<std::string, std::string> request, const json& /*messages*/,
            const RequestOptions& options, BatchOutcome seed, std::shared_ptr<BatchInbox> inbox,
            CacheTicket ticket) override {
    auto job = std::make_unique<BatchJob>(std::move(request.first), std::move(request.second),
                                          std::move(inbox), std::move(seed));
    job->cache = ticket;
    job->timeout = options.timeout;
    job->thinking_requested = options.thinking.has_value();
    core_.submit(std::move(job));
  }
  void sweep() override { core_.sweep_stopped(); }

 private:
  ClientCore& core_;
};

}  // namespace

void BatchInbox::put(BatchOutcome outcome) {
  {
    std::lock_guard lock(mu);
    completed.push_back(std::move(outcome));
  }
  cv.notify_one();
}

std::unique_ptr<BatchTarget> client_target(ClientCore& core) {
  return std::make_unique<ClientTarget>(core);
}

}  // namespace flexllm::detail
