// LLMClient: the public face of one endpoint. Builds requests on the caller's thread, hands them
// to the engine (ClientCore) and turns outcomes into values, futures and streams.
#include "flexllm/client.hpp"

#include <cstdlib>
#include <future>
#include <mutex>
#include <stdexcept>

#include <fmt/format.h>

#include "client/stream_channel.hpp"
#include "engine/client_core.hpp"

namespace flexllm {
namespace {

using detail::CacheFront;
using detail::CacheKey;
using detail::ClientCore;
using detail::Clock;
using detail::Job;

std::exception_ptr to_exception(const Error& error) {
  try {
    error.rethrow();
  } catch (...) {
    return std::current_exception();
  }
}

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

void not_on_io_thread(ClientCore& core) {
  if (core.loop().in_loop_thread())
    throw std::logic_error(
        "flexllm: a blocking call was made on the I/O thread (from a callback); use the async "
        "form instead");
}

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
          base_url.empty() ? "is empty (e.g. https://api.openai.com/v1)"
                           : "must start with http:// or https:// (got '" + base_url + "')");
  require(concurrency_limit >= 1, "concurrency_limit", "must be at least 1");
  require(!max_qps || *max_qps > 0, "max_qps", "must be positive (leave it unset for no limit)");
  require(timeout.count() > 0, "timeout", "must be positive");
  require(connect_timeout.count() > 0, "connect_timeout", "must be positive");
  require(stream_idle_timeout.count() > 0, "stream_idle_timeout", "must be positive");
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

ChatResult LLMClient::chat_completions(const json& messages, const RequestOptions& options) {
  not_on_io_thread(*core_);
  return chat_completions_async(messages, options).get();
}

std::future<ChatResult> LLMClient::chat_completions_async(const json& messages,
                                                          const RequestOptions& options) {
  const auto start = Clock::now();
  auto [url, body] = core_->chat_request(messages, options, /*stream=*/false);
  CacheFront* cache = core_->cache();
  CacheKey key{};
  bool lead = false;
  if (cache) {
    key = core_->cache_key(messages, options);
    // skip_cache asks for a fresh answer, return_raw for the reply the cache does not keep: both
    // go upstream, and their answer refreshes the entry.
    if (!options.skip_cache && !options.return_raw) {
      auto deliver = [endpoint = core_->endpoint_name(), start](ChatResult r) {
        r.endpoint = endpoint;
        r.latency = Clock::now() - start;
        return r;
      };
      if (auto hit = cache->get(key)) {
        std::promise<ChatResult> done;
        done.set_value(deliver(std::move(*hit)));
        return done.get_future();
      }
      auto waiting = std::make_shared<std::promise<ChatResult>>();
      auto future = waiting->get_future();
      if (cache->join(key, [waiting, deliver](const ChatResult* r, const Error* e) {
            if (r) {
              waiting->set_value(deliver(*r));
            } else {
              waiting->set_exception(to_exception(*e));
            }
          }))
        return future;
      lead = true;
    }
  }
  auto job = std::make_unique<PromiseJob>(Job::Mode::chat, std::move(url), std::move(body));
  apply_options(*job, options);
  if (cache) {
    job->cache = cache;
    job->cache_key = key;
    job->cache_lead = lead;
  }
  auto future = job->promise.get_future();
  core_->submit(std::move(job));
  return future;
}

ChatStream LLMClient::chat_completions_stream(const json& messages, const RequestOptions& options) {
  const auto start = Clock::now();
  auto [url, body] = core_->chat_request(messages, options, /*stream=*/true);
  auto channel = std::make_shared<detail::StreamChannel>();
  CacheFront* cache = core_->cache();
  CacheKey key{};
  if (cache) {
    // Streams do not coalesce (each caller wants its tokens as they come); a hit replays.
    key = core_->cache_key(messages, options);
    if (!options.skip_cache && !options.return_raw) {
      if (auto hit = cache->get(key)) {
        hit->endpoint = core_->endpoint_name();
        hit->latency = Clock::now() - start;
        std::vector<StreamEvent> events = replay_events(*hit);
        channel->push(events);
        channel->finish(std::move(*hit));
        return ChatStream(std::move(channel));
      }
    }
  }
  auto job = std::make_unique<StreamJob>(std::move(url), std::move(body), channel);
  apply_options(*job, options);
  if (cache) {
    job->cache = cache;
    job->cache_key = key;
  }
  job->id = core_->new_id();
  channel->set_cancel([core = core_.get(), id = job->id] { core->cancel(id); });
  core_->submit(std::move(job));
  return ChatStream(std::move(channel));
}

ChatResult LLMClient::chat_completions_stream(
    const json& messages, const std::function<void(const StreamEvent&)>& on_event,
    const RequestOptions& options) {
  not_on_io_thread(*core_);
  ChatStream stream = chat_completions_stream(messages, options);
  for (const StreamEvent& ev : stream) on_event(ev);
  return stream.result();
}

std::vector<std::string> LLMClient::model_list() {
  not_on_io_thread(*core_);
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
