// LLMClient: the public face of one endpoint. Builds requests on the caller's thread, hands them
// to the engine (ClientCore) and turns outcomes into values, futures and streams.
#include "flexllm/client.hpp"

#include <cstdlib>
#include <future>
#include <mutex>
#include <stdexcept>

#include <fmt/format.h>

#include "batch/target.hpp"
#include "client/cache_path.hpp"
#include "client/stream_channel.hpp"
#include "engine/client_core.hpp"

namespace flexllm {
namespace {

using detail::ClientCore;
using detail::Clock;
using detail::Job;
using detail::to_exception;

class PromiseJob final : public Job {
 public:
  using Job::Job;
  std::promise<ChatResult> promise;
  void succeed(ChatResult&& result) override { promise.set_value(std::move(result)); }
  void fail(Error&& error) override { promise.set_exception(to_exception(error)); }
};

class RawJob final : public Job {
 public:
  using Job::Job;
  std::promise<std::string> promise;
  void succeed(ChatResult&&) override {}
  void succeed_raw(std::string&& body) override { promise.set_value(std::move(body)); }
  void fail(Error&& error) override { promise.set_exception(to_exception(error)); }
};

class StreamJob final : public Job {
 public:
  StreamJob(std::string url, std::string body, std::shared_ptr<detail::StreamChannel> channel)
      : Job(Mode::stream, std::move(url), std::move(body)), channel_(std::move(channel)) {}
  void succeed(ChatResult&& result) override { channel_->finish(std::move(result)); }
  void fail(Error&& error) override { channel_->fail(std::move(error)); }
  bool deliver(std::vector<StreamEvent>& events) override { return channel_->push(events); }

 private:
  std::shared_ptr<detail::StreamChannel> channel_;
};

void require(bool ok, const char* field, const std::string& why) {
  if (!ok)
    throw InvalidRequestError(
        Error(ErrorKind::invalid_request, fmt::format("ClientConfig.{}: {}", field, why)));
}

template <class J>
void apply_options(J& job, const RequestOptions& options) {
  job.return_raw = options.return_raw;
  job.timeout = options.timeout;
  job.thinking_requested = options.thinking.has_value();
}

}  // namespace

const char* to_string(ThinkingStyle style) noexcept {
  switch (style) {
    case ThinkingStyle::automatic: return "auto";
    case ThinkingStyle::reasoning_effort: return "reasoning_effort";
    case ThinkingStyle::chat_template_kwargs: return "chat_template_kwargs";
    case ThinkingStyle::enable_thinking: return "enable_thinking";
    case ThinkingStyle::thinking_object: return "thinking_object";
  }
  return "unknown";
}

void ClientConfig::validate() const {
  require(base_url.starts_with("http://") || base_url.starts_with("https://"), "base_url",
          base_url.empty()
              ? "is empty (e.g. https://api.openai.com/v1)"
              : "must start with http:// or https:// (got '" + display_url(base_url) + "')");
  require(concurrency_limit >= 1, "concurrency_limit", "must be at least 1");
  require(!max_qps || *max_qps > 0, "max_qps", "must be positive (leave it unset for no limit)");
  require(timeout.count() > 0, "timeout", "must be positive");
  require(connect_timeout.count() > 0, "connect_timeout", "must be positive");
  require(stream_idle_timeout.count() > 0, "stream_idle_timeout", "must be positive");
  require(!stream_timeout || stream_timeout->count() > 0, "stream_timeout",
          "must be positive (leave it unset for no limit)");
  require(retry_times >= 0, "retry_times", "must not be negative");
  require(retry_delay.count() >= 0, "retry_delay", "must not be negative");
  require(max_retry_delay >= retry_delay, "max_retry_delay", "must not be below retry_delay");
  require(min_qps > 0, "min_qps", "must be positive");
}

LLMClient::LLMClient(ClientConfig config) {
  config.validate();
  auto runtime = config.runtime;
  core_ = std::make_unique<ClientCore>(std::move(config), std::move(runtime));
}

LLMClient::~LLMClient() {
  close();
}
LLMClient::LLMClient(LLMClient&&) noexcept = default;
LLMClient& LLMClient::operator=(LLMClient&& other) noexcept {
  if (this != &other) {
    close();
    core_ = std::move(other.core_);
  }
  return *this;
}

std::future<ChatResult> LLMClient::chat_completions_async(const json& messages,
                                                          const RequestOptions& options) {
  const auto start = Clock::now();
  auto [url, body] = core_->chat_request(messages, options, /*stream=*/false);
  detail::CacheTicket use{core_->cache()};
  if (use.cache) {
    use.key = core_->cache_key(messages, options);
    if (auto answered = detail::answer_from_cache(use, options, core_->endpoint_name(), start))
      return std::move(*answered);
  }
  auto job = std::make_unique<PromiseJob>(Job::Mode::chat, std::move(url), std::move(body));
  apply_options(*job, options);
  job->cache = use;
  auto future = job->promise.get_future();
  core_->submit(std::move(job));
  return future;
}

ChatStream LLMClient::chat_completions_stream(const json& messages, const RequestOptions& options) {
  const auto start = Clock::now();
  auto [url, body] = core_->chat_request(messages, options, /*stream=*/true);
  auto channel = std::make_shared<detail::StreamChannel>();
  detail::CacheTicket use{core_->cache()};
  if (use.cache) {
    use.key = core_->cache_key(messages, options);
    if (detail::replay_from_cache(use, options, core_->endpoint_name(), start, *channel))
      return ChatStream(std::move(channel));
  }
  auto job = std::make_unique<StreamJob>(std::move(url), std::move(body), channel);
  apply_options(*job, options);
  job->cache = use;
  job->id = core_->new_id();
  channel->set_cancel([core = core_.get(), id = job->id] { core->cancel(id); });
  core_->submit(std::move(job));
  return ChatStream(std::move(channel));
}

std::vector<std::string> LLMClient::model_list() {
  refuse_on_io_thread();
  const auto& adapter = core_->adapter();
  auto job = std::make_unique<RawJob>(Job::Mode::raw, adapter.models_url(core_->endpoint()), "");
  auto future = job->promise.get_future();
  core_->submit(std::move(job));
  std::string body = future.get();
  auto parsed = adapter.parse_models(core_->endpoint(), body);
  if (auto* error = std::get_if<Error>(&parsed)) error->rethrow();
  return std::get<std::vector<std::string>>(std::move(parsed));
}

Provider LLMClient::provider() const {
  return core_->endpoint().provider;
}
const ClientConfig& LLMClient::config() const {
  return core_->config();
}
double LLMClient::current_rate() const {
  return core_->current_rate();
}
void LLMClient::close() {
  if (core_) core_->close();
}
std::unique_ptr<detail::BatchTarget> LLMClient::batch_target(bool /*distribute*/) {
  return detail::client_target(*core_);
}
bool LLMClient::on_io_thread() const {
  return core_->loop().in_loop_thread();
}
ResponseCache& LLMClient::cache() {
  return core_->response_cache();
}
detail::ClientCore& LLMClient::core() {
  return *core_;
}

OpenAIClient::OpenAIClient(ClientConfig config)
    : LLMClient([&] {
        config.provider = Provider::openai;
        return std::move(config);
      }()) {}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

Runtime::Runtime() : loop_(std::make_unique<detail::Loop>()) {}
Runtime::~Runtime() = default;

std::shared_ptr<Runtime> Runtime::shared() {
  static std::mutex mu;
  static std::shared_ptr<Runtime> runtime;
  std::lock_guard lock(mu);
  if (!runtime) runtime = std::make_shared<Runtime>();
  return runtime;
}

}  // namespace flexllm
