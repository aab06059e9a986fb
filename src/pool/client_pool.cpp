// LLMClientPool's calls: the same shapes as LLMClient's, over the pool engine (pool/pool.hpp).
#include <stdexcept>

#include <fmt/format.h>

#include "batch/runner.hpp"
#include "client/cache_path.hpp"
#include "core/invalid.hpp"
#include "flexllm/pool.hpp"
#include "pool/pool.hpp"

namespace flexllm {

using detail::Clock;
using detail::PoolRequest;

const char* to_string(LoadBalance strategy) noexcept {
  switch (strategy) {
    case LoadBalance::round_robin: return "round_robin";
    case LoadBalance::weighted: return "weighted";
    case LoadBalance::random: return "random";
    case LoadBalance::fallback: return "fallback";
    case LoadBalance::least_busy: return "least_busy";
    case LoadBalance::latency: return "latency";
  }
  return "unknown";
}

void PoolConfig::validate() const {
  if (endpoints.empty() && clients.empty())
    detail::invalid("PoolConfig.endpoints: give at least one endpoint (or PoolConfig.clients)");
  for (size_t i = 0; i < clients.size(); ++i)
    if (!clients[i]) detail::invalid(fmt::format("PoolConfig.clients[{}]: is null", i));
  for (size_t i = 0; i < endpoints.size(); ++i) {
    if (!(endpoints[i].weight >= 0))
      detail::invalid(fmt::format("PoolConfig.endpoints[{}].weight: must not be negative", i));
    if (endpoints[i].concurrency_limit < 1)
      detail::invalid(
          fmt::format("PoolConfig.endpoints[{}].concurrency_limit: must be at least 1", i));
  }
  if (failure_threshold < 1) detail::invalid("PoolConfig.failure_threshold: must be at least 1");
  if (recovery_time.count() < 0) detail::invalid("PoolConfig.recovery_time: must not be negative");
}

namespace {

// A single call's outcome goes to a promise.
struct PromiseRequest final : PoolRequest {
  std::promise<ChatResult> promise;
  void succeed(ChatResult&& result) override { promise.set_value(std::move(result)); }
  void fail(Error&& error) override { promise.set_exception(detail::to_exception(error)); }
};

// A stream's events and outcome go to its channel.
struct StreamRequest final : PoolRequest {
  explicit StreamRequest(std::shared_ptr<detail::StreamChannel> c) : channel(std::move(c)) {}
  void succeed(ChatResult&& result) override { channel->finish(std::move(result)); }
  void fail(Error&& error) override { channel->fail(std::move(error)); }
  bool deliver(std::vector<StreamEvent>& events) override { return channel->push(events); }
  std::shared_ptr<detail::StreamChannel> channel;
};

// Fills a pool request for `messages`: endpoint 0's body, and the messages too when endpoints
// differ.
void prepare(PoolRequest& r, detail::Pool& pool, const json& messages,
             const RequestOptions& options, bool stream) {
  r.mode = stream ? detail::Job::Mode::stream : detail::Job::Mode::chat;
  r.body = pool.chat_request(messages, options, stream).second;
  if (pool.needs_messages()) r.messages = messages;
  r.options = std::make_shared<const RequestOptions>(options);
}

}  // namespace

LLMClientPool::LLMClientPool(PoolConfig config)
    : pool_(std::make_unique<detail::Pool>(std::move(config))) {}
LLMClientPool::~LLMClientPool() {
  close();
}
LLMClientPool::LLMClientPool(LLMClientPool&&) noexcept = default;
LLMClientPool& LLMClientPool::operator=(LLMClientPool&& other) noexcept {
  if (this != &other) {
    close();
    pool_ = std::move(other.pool_);
  }
  return *this;
}

std::future<ChatResult> LLMClientPool::chat_completions_async(const json& messages,
                                                              const RequestOptions& options) {
  const auto start = Clock::now();
  auto r = std::make_unique<PromiseRequest>();
  prepare(*r, *pool_, messages, options, /*stream=*/false);
  detail::CacheTicket use{pool_->cache()};
  if (use.cache) {
    use.key = pool_->cache_key(messages, options);
    // A pool's cached answers name no endpoint: none answered this call.
    if (auto answered = detail::answer_from_cache(use, options, {}, start))
      return std::move(*answered);
  }
  r->ticket = use;
  auto future = r->promise.get_future();
  pool_->submit(std::move(r));
  return future;
}

ChatStream LLMClientPool::chat_completions_stream(const json& messages,
                                                  const RequestOptions& options) {
  const auto start = Clock::now();
  auto channel = std::make_shared<detail::StreamChannel>();
  auto r = std::make_unique<StreamRequest>(channel);
  prepare(*r, *pool_, messages, options, /*stream=*/true);
  detail::CacheTicket use{pool_->cache()};
  if (use.cache) {
    use.key = pool_->cache_key(messages, options);
    if (detail::replay_from_cache(use, options, {}, start, *channel))
      return ChatStream(std::move(channel));
  }
  r->ticket = use;
  r->id = pool_->new_id();
  channel->set_cancel([pool = pool_.get(), id = r->id] { pool->cancel(id); });
  pool_->submit(std::move(r));
  return ChatStream(std::move(channel));
}

std::unique_ptr<detail::BatchTarget> LLMClientPool::batch_target(bool distribute) {
  return detail::pool_target(*pool_, distribute);
}
bool LLMClientPool::on_io_thread() const {
  return pool_->loop().in_loop_thread();
}

std::vector<EndpointStats> LLMClientPool::stats() const {
  return pool_ ? pool_->stats() : std::vector<EndpointStats>{};
}
ResponseCache& LLMClientPool::cache() {
  return pool_->response_cache();
}
const PoolConfig& LLMClientPool::config() const {
  return pool_->config();
}
void LLMClientPool::close() {
  if (pool_) pool_->close();
}

}  // namespace flexllm
