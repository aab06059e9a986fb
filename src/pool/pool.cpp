#include "pool/pool.hpp"
#include "core/invalid.hpp"

#include <algorithm>
#include <cmath>
#include <future>
#include <limits>
#include <random>

#include <fmt/format.h>

#include "cache/cache_key.hpp"

namespace flexllm::detail {
namespace {

// One attempt of a pool request on one endpoint: the endpoint's engine runs it (admission,
// rate, timeouts) without retrying; its outcome goes back to the pool.
class AttemptJob final : public Job {
 public:
  AttemptJob(Pool& pool, PoolRequest& request, size_t endpoint, std::string url, std::string body)
      : Job(request.mode, std::move(url), std::move(body)),
        pool_(pool),
        request_(request),
        endpoint_(endpoint) {}
  void succeed(ChatResult&& result) override {
    pool_.attempt_done(&request_, endpoint_, &result, nullptr);
  }
  void fail(Error&& error) override { pool_.attempt_done(&request_, endpoint_, nullptr, &error); }
  bool deliver(std::vector<StreamEvent>& events) override {
    request_.events_delivered = true;
    return request_.deliver(events);
  }
  int stop_level() const override { return request_.stop_level(); }

 private:
  Pool& pool_;
  PoolRequest& request_;
  size_t endpoint_;
};

ClientConfig endpoint_config(const PoolConfig& pool, const EndpointConfig& ep,
                             std::shared_ptr<Runtime> runtime) {
  ClientConfig c = pool.defaults;
  c.base_url = ep.base_url;
  c.api_key = ep.api_key;
  c.model = ep.model;
  c.provider = ep.provider;
  c.concurrency_limit = ep.concurrency_limit;
  c.max_qps = ep.max_qps;
  c.proxy = ep.proxy;
  c.cache = ResponseCacheConfig::disabled();  // the pool has one, in front of every endpoint
  c.runtime = std::move(runtime);             // one loop: the shared queue is loop-thread state
  return c;
}

std::vector<Balancer::Endpoint> balancer_endpoints(const PoolConfig& config) {
  std::vector<Balancer::Endpoint> out;
  for (const EndpointConfig& ep : config.endpoints)
    out.push_back({.weight = ep.weight, .capacity = ep.concurrency_limit});
  for (const auto& client : config.clients)
    out.push_back({.weight = 1, .capacity = client->config().concurrency_limit});
  return out;
}

}  // namespace

Pool::Pool(PoolConfig config)
    : config_(std::move(config)),
      balancer_((config_.validate(), config_.load_balance), balancer_endpoints(config_),
                config_.failure_threshold,
                std::chrono::duration_cast<Clock::duration>(config_.recovery_time),
                config_.seed.value_or(std::random_device{}())),
      jitter_(std::random_device{}() * 0x9E3779B97F4A7C15ull + 1) {
  runtime_ = config_.defaults.runtime ? config_.defaults.runtime : Runtime::shared();
  counters_ = std::make_unique<Counters[]>(config_.endpoints.size() + config_.clients.size());
  for (size_t i = 0; i < config_.endpoints.size(); ++i) {
    ClientConfig c = endpoint_config(config_, config_.endpoints[i], runtime_);
    try {
      c.validate();
    } catch (const Error& e) {
      invalid(fmt::format("PoolConfig.endpoints[{}]: {}", i, e.what()));
    }
    owned_.push_back(std::make_unique<ClientCore>(std::move(c), runtime_));
    cores_.push_back(owned_.back().get());
  }
  for (size_t i = 0; i < config_.clients.size(); ++i) {
    ClientCore& core = config_.clients[i]->core();
    if (&core.loop() != &runtime_->loop())
      invalid(fmt::format(
          "PoolConfig.clients[{}]: runs on another Runtime than the pool (give them the same "
          "ClientConfig::runtime as PoolConfig.defaults.runtime)",
          i));
    clients_.push_back(config_.clients[i]);
    cores_.push_back(&core);
  }
  std::vector<std::string> names;
  for (ClientCore* core : cores_) {
    total_concurrency_ += core->config().concurrency_limit;
    const Endpoint& ep = core->endpoint();
    const Endpoint& first = cores_.front()->endpoint();
    if (ep.provider != first.provider || ep.model != first.model ||
        ep.thinking_style != first.thinking_style)
      replicas_ = false;
    names.push_back(ep.base_url + "#" + ep.model);
  }
  std::sort(names.begin(), names.end());
  identity_ = "pool:" + fmt::format("{}", fmt::join(names, ","));
  cache_ = std::make_unique<ResponseCache>(config_.defaults.cache);
  set_feeders(true);
}

// A client's engine may be running requests of its own: its feeder changes on the loop thread.
void Pool::set_feeders(bool on) {
  std::promise<void> done;
  loop().post([&] {
    for (size_t i = 0; i < cores_.size(); ++i)
      cores_[i]->set_feeder(on ? ClientCore::Feeder([this, i] { return feed(i); })
                               : ClientCore::Feeder());
    done.set_value();
  });
  done.get_future().wait();
}

Pool::~Pool() {
  close();
}

void Pool::check_chat(const json& messages, const RequestOptions& options) const {
  cores_.front()->check_chat(messages, options);
}

std::pair<std::string, std::string> Pool::chat_request(const json& messages,
                                                       const RequestOptions& options, bool stream,
                                                       bool checked) const {
  return cores_.front()->chat_request(messages, options, stream, checked);
}

CacheKey Pool::cache_key(const json& messages, const RequestOptions& options) const {
  const Endpoint& first = cores_.front()->endpoint();
  return detail::cache_key(first.provider, identity_, options.model ? *options.model : first.model,
                           messages, options);
}

double Pool::current_rate() const {
  double sum = 0;
  for (const ClientCore* core : cores_) sum += core->current_rate();
  return sum;
}

void Pool::hold() {
  std::lock_guard lock(outstanding_mu_);
  ++outstanding_;
}

void Pool::release() {
  std::lock_guard lock(outstanding_mu_);
  if (--outstanding_ == 0) outstanding_cv_.notify_all();
}

void Pool::submit(std::unique_ptr<PoolRequest> request) {
  hold();
  if (request->id == 0) request->id = new_id();
  request->submitted = Clock::now();
  PoolRequest* r = request.release();
  loop().post([this, r] { admit(r); });
}

void Pool::admit(PoolRequest* r) {
  live_.emplace(r->id, std::unique_ptr<PoolRequest>(r));
  if (closed()) {
    Error e(ErrorKind::cancelled, "pool closed");
    return finish(r, nullptr, &e);
  }
  if (r->shared) {
    shared_.push_back(r);
    poke_all();
  } else {
    attempt(r);
  }
}

std::unique_ptr<Job> Pool::make_attempt(PoolRequest* r, size_t endpoint) {
  ClientCore& core = *cores_[endpoint];
  const bool stream = r->mode == Job::Mode::stream;
  std::string url, body;
  if (replicas_ || endpoint == 0 || !r->messages) {
    url = core.adapter().chat_url(
        core.endpoint(), r->options->model ? *r->options->model : core.endpoint().model, stream);
    body = r->body;
  } else {
    std::tie(url, body) = core.chat_request(*r->messages, *r->options, stream, /*checked=*/true);
  }
  auto job = std::make_unique<AttemptJob>(*this, *r, endpoint, std::move(url), std::move(body));
  job->max_retries = 0;  // the pool retries, on whichever endpoint is best then
  job->return_raw = r->options->return_raw;
  job->timeout = r->options->timeout;
  job->thinking_requested = r->options->thinking.has_value();
  job->id = core.new_id();
  ++r->attempts;
  r->endpoint = endpoint;
  r->attempt_job = job->id;
  r->attempt_start = Clock::now();
  balancer_.on_start(endpoint, r->attempt_start);
  counters_[endpoint].in_flight.fetch_add(1, std::memory_order_relaxed);
  return job;
}

void Pool::attempt(PoolRequest* r) {
  const size_t i = balancer_.pick(Clock::now(), config_.fallback ? std::span<const size_t>(r->tried)
                                                                 : std::span<const size_t>());
  std::unique_ptr<Job> job;
  try {
    job = make_attempt(r, i);
  } catch (const Error& e) {  // this endpoint's dialect cannot express the request
    balancer_.on_abandon(i);
    Error copy = e;
    return finish(r, nullptr, &copy);
  }
  cores_[i]->submit(std::move(job));
}

// A free slot of `endpoint` takes the first shared request it may serve: with fail-over, one it
// has not failed already when another endpoint could take that one.
std::unique_ptr<Job> Pool::feed(size_t endpoint) {
  // Requests of a stopped batch leave the queue unsent.
  while (!shared_.empty() && shared_.front()->stop_level() > 0) {
    PoolRequest* r = shared_.front();
    shared_.pop_front();
    Error e(ErrorKind::cancelled, "not sent: the batch was stopped");
    finish(r, nullptr, &e);
  }
  if (shared_.empty() || closed() || !balancer_.accepts(endpoint, Clock::now())) return nullptr;
  auto pick = shared_.begin();
  if (config_.fallback) {
    const auto end = shared_.begin() + static_cast<ptrdiff_t>(std::min<size_t>(shared_.size(), 64));
    auto fresh = std::find_if(shared_.begin(), end, [&](PoolRequest* r) {
      return std::find(r->tried.begin(), r->tried.end(), endpoint) == r->tried.end();
    });
    if (fresh != end) pick = fresh;
  }
  PoolRequest* r = *pick;
  shared_.erase(pick);
  try {
    return make_attempt(r, endpoint);
  } catch (const Error& e) {
    Error copy = e;
    finish(r, nullptr, &copy);
    return nullptr;
  }
}

void Pool::poke_all() {
  for (ClientCore* core : cores_) core->poke();
}

void Pool::attempt_done(PoolRequest* r, size_t endpoint, ChatResult* result, Error* error) {
  const auto now = Clock::now();
  counters_[endpoint].in_flight.fetch_sub(1, std::memory_order_relaxed);
  r->attempt_job = 0;
  if (result) {
    balancer_.on_success(endpoint, now - r->attempt_start);
    counters_[endpoint].done.fetch_add(1, std::memory_order_relaxed);
    publish(endpoint);
    result->attempts = r->attempts;
    result->latency = now - r->submitted;
    finish(r, result, nullptr);
    if (!shared_.empty()) poke_all();
    return;
  }
  if (error->kind() == ErrorKind::cancelled) {
    balancer_.on_cancel(endpoint);
    publish(endpoint);
    return finish(r, nullptr, error);
  }
  counters_[endpoint].failed.fetch_add(1, std::memory_order_relaxed);
  balancer_.on_failure(endpoint, now, error->retryable());
  publish(endpoint);
  const ClientConfig& d = config_.defaults;
  const bool again = error->retryable() && !closed() && r->attempts <= d.retry_times &&
                     !(r->mode == Job::Mode::stream && r->events_delivered);
  if (!again) return finish(r, nullptr, error);
  if (r->stop_level() > 0) {  // a stopped batch sends nothing more: the rerun will
    Error e(ErrorKind::cancelled,
            fmt::format("not retried: the batch was stopped ({})", error->what()));
    return finish(r, nullptr, &e);
  }
  r->on_retry();
  if (config_.fallback && std::find(r->tried.begin(), r->tried.end(), endpoint) == r->tried.end())
    r->tried.push_back(endpoint);
  // Another healthy endpoint takes it at once; the same one (or none better) after the backoff
  // (or the server's hint).
  bool elsewhere = false;
  if (config_.fallback)
    for (size_t i = 0; i < cores_.size() && !elsewhere; ++i)
      elsewhere =
          balancer_.healthy(i) && std::find(r->tried.begin(), r->tried.end(), i) == r->tried.end();
  std::chrono::milliseconds delay{0};
  if (!elsewhere) {
    delay = error->retry_after()
                ? std::min(*error->retry_after(), d.max_retry_delay)
                : backoff_delay(r->attempts - 1, d.retry_delay, d.max_retry_delay, jitter_.next());
  }
  auto go = [this, r] {
    r->retry_timer = 0;
    if (closed()) {
      Error e(ErrorKind::cancelled, "pool closed");
      return finish(r, nullptr, &e);
    }
    if (r->shared) {
      shared_.push_front(r);  // a retry goes before new work
      poke_all();
    } else {
      attempt(r);
    }
  };
  if (delay.count() == 0) return go();
  r->retry_timer = loop().add_timer(now + delay, go);
}

void Pool::finish(PoolRequest* r, ChatResult* result, Error* error) {
  r->ticket.settle(result, error);
  if (result) {
    r->succeed(std::move(*result));
  } else {
    r->fail(std::move(*error));
  }
  live_.erase(r->id);
  release();
}

void Pool::publish(size_t i) {
  counters_[i].healthy.store(balancer_.healthy(i), std::memory_order_relaxed);
  counters_[i].latency.store(balancer_.latency(i), std::memory_order_relaxed);
}

void Pool::cancel(uint64_t request_id) {
  hold();
  loop().post([this, request_id] {
    auto it = live_.find(request_id);
    if (it != live_.end()) {
      PoolRequest* r = it->second.get();
      if (r->attempt_job) {
        cores_[r->endpoint]->cancel(r->attempt_job);  // its failure finishes the request
      } else {
        if (r->retry_timer) loop().cancel_timer(r->retry_timer);
        std::erase(shared_, r);
        Error e(ErrorKind::cancelled, "request cancelled");
        finish(r, nullptr, &e);
      }
    }
    release();
  });
}

void Pool::sweep_stopped() {
  hold();
  loop().post([this] {
    std::vector<PoolRequest*> waiting;
    for (auto& [id, r] : live_) {
      const int level = r->stop_level();
      if (level == 0) continue;
      if (!r->attempt_job) {
        waiting.push_back(r.get());
      } else if (level >= 2) {
        cores_[r->endpoint]->cancel(r->attempt_job);  // its failure finishes the request
      }
    }
    for (PoolRequest* r : waiting) {
      if (r->retry_timer) loop().cancel_timer(r->retry_timer);
      std::erase(shared_, r);
      Error e(ErrorKind::cancelled, "not finished: the batch was stopped");
      finish(r, nullptr, &e);
    }
    // Attempts still queued in an endpoint's engine (not started) end there.
    for (ClientCore* core : cores_) core->sweep_stopped();
    release();
  });
}

void Pool::close() {
  if (!closed_.exchange(true)) {
    if (loop().in_loop_thread())
      throw std::logic_error("flexllm: a pool cannot be closed from its I/O thread");
    // Requests waiting in the pool (shared queue, retry timers) fail here; those in an endpoint's
    // engine fail when the endpoints close below.
    // Requests waiting in the pool (shared queue, retry timers) fail here; attempts in flight are
    // cancelled on their endpoints (a client given to the pool stays open for its own calls).
    hold();
    loop().post([this] {
      std::vector<PoolRequest*> waiting;
      for (auto& [id, r] : live_) {
        if (r->attempt_job) {
          cores_[r->endpoint]->cancel(r->attempt_job);
        } else {
          waiting.push_back(r.get());
        }
      }
      shared_.clear();
      for (PoolRequest* r : waiting) {
        if (r->retry_timer) loop().cancel_timer(r->retry_timer);
        Error e(ErrorKind::cancelled, "pool closed");
        finish(r, nullptr, &e);
      }
      release();
    });
    for (auto& core : owned_) core->close();
    {
      std::unique_lock lock(outstanding_mu_);
      outstanding_cv_.wait(lock, [this] { return outstanding_ == 0; });
    }
    set_feeders(false);  // nothing may call back into a pool that is going away
  }
  std::unique_lock lock(outstanding_mu_);
  outstanding_cv_.wait(lock, [this] { return outstanding_ == 0; });
}

std::vector<EndpointStats> Pool::stats() const {
  std::vector<EndpointStats> out;
  for (size_t i = 0; i < cores_.size(); ++i) {
    const Counters& c = counters_[i];
    out.push_back({.base_url = display_url(cores_[i]->endpoint().base_url),
                   .model = cores_[i]->endpoint().model,
                   .in_flight = c.in_flight.load(std::memory_order_relaxed),
                   .done = c.done.load(std::memory_order_relaxed),
                   .failed = c.failed.load(std::memory_order_relaxed),
                   .healthy = c.healthy.load(std::memory_order_relaxed),
                   .latency = c.latency.load(std::memory_order_relaxed),
                   .rate = cores_[i]->current_rate()});
  }
  return out;
}

namespace {

class PoolTarget final : public BatchTarget {
 public:
  PoolTarget(Pool& pool, bool distribute) : pool_(pool), distribute_(distribute) {}
  int concurrency() const override { return pool_.concurrency(); }
  void check_chat(const json& messages, const RequestOptions& options) const override {
    pool_.check_chat(messages, options);
  }
  std::pair<std::string, std::string> chat_request(const json& messages,
                                                   const RequestOptions& options) const override {
    return pool_.chat_request(messages, options, /*stream=*/false, /*checked=*/true);
  }
  std::string_view embedded_messages(std::string_view body) const override {
    return pool_.core(0).adapter().embedded_messages(body);
  }
  CacheFront* cache() override { return pool_.cache(); }
  CacheKey cache_key(const json& messages, const RequestOptions& options) const override {
    return pool_.cache_key(messages, options);
  }
  std::string_view endpoint_name() const override { return {}; }
  double current_rate() const override { return pool_.current_rate(); }
  std::string summary_lines() const override {
    std::string out;
    for (const EndpointStats& s : pool_.stats())
      out +=
          fmt::format("  {} ({}): {} done, {} failed attempts, {}, latency {:.3f} s\n", s.base_url,
                      s.model, s.done, s.failed, s.healthy ? "healthy" : "unhealthy", s.latency);
    return out;
  }
  void send(std::pair<std::string, std::string> request, const json& messages,
            const RequestOptions& options, BatchOutcome seed, std::shared_ptr<BatchInbox> inbox,
            CacheTicket ticket) override {
    if (!options_ || &options != last_options_) {  // a batch passes the same options each time
      options_ = std::make_shared<const RequestOptions>(options);
      last_options_ = &options;
    }
    auto r = std::make_unique<BatchRequest>(std::move(seed), std::move(inbox));
    r->body = std::move(request.second);
    if (pool_.needs_messages()) r->messages = messages;
    r->options = options_;
    r->shared = distribute_;
    r->ticket = ticket;
    pool_.submit(std::move(r));
  }
  void sweep() override { pool_.sweep_stopped(); }

 private:
  // A batch request's outcome goes to the runner's inbox.
  struct BatchRequest final : PoolRequest {
    BatchRequest(BatchOutcome seed, std::shared_ptr<BatchInbox> inbox)
        : outcome(std::move(seed)), inbox(std::move(inbox)) {}
    void succeed(ChatResult&& result) override {
      outcome.result = std::move(result);
      if (outcome.input_len) outcome.body = std::move(body);
      inbox->put(std::move(outcome));
    }
    void fail(Error&& error) override {
      outcome.error = std::move(error);
      outcome.attempts = attempts;
      outcome.latency = Clock::now() - submitted;
      if (outcome.input_len) outcome.body = std::move(body);
      inbox->put(std::move(outcome));
    }
    int stop_level() const override { return inbox->stop_level.load(std::memory_order_relaxed); }
    void on_retry() override { inbox->retries.fetch_add(1, std::memory_order_relaxed); }
    BatchOutcome outcome;
    std::shared_ptr<BatchInbox> inbox;
  };

  Pool& pool_;
  bool distribute_;
  std::shared_ptr<const RequestOptions> options_;
  const RequestOptions* last_options_ = nullptr;
};

}  // namespace

std::unique_ptr<BatchTarget> pool_target(Pool& pool, bool distribute) {
  return std::make_unique<PoolTarget>(pool, distribute);
}

}  // namespace flexllm::detail
