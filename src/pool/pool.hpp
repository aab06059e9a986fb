// The engine behind LLMClientPool: one ClientCore per endpoint (admission, rate, timeouts) on one
// shared I/O loop, and above them the pool's own request state — which endpoint each attempt goes
// to (Balancer: strategy and health), fail-over and retries across endpoints, the shared queue a
// distributed batch feeds every endpoint from, the pool's response cache and per-endpoint stats.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "batch/target.hpp"
#include "engine/client_core.hpp"
#include "flexllm/pool.hpp"
#include "pool/balancer.hpp"

namespace flexllm::detail {

// One logical request of a pool, kept across its attempts (each may go to another endpoint).
// Owned by the pool from submit() until its outcome is delivered; loop thread only after submit.
// Subclasses deliver the outcome (a promise, a stream channel, a batch inbox).
struct PoolRequest {
  virtual ~PoolRequest() = default;
  // The outcome, called once on the loop thread.
  virtual void succeed(ChatResult&& result) = 0;
  virtual void fail(Error&& error) = 0;
  // Stream events as they are decoded; false once nobody wants them.
  virtual bool deliver(std::vector<StreamEvent>& /*events*/) { return true; }
  // As Job::stop_level(): 1 = start or retry nothing more, 2 = cancel even what runs.
  virtual int stop_level() const { return 0; }
  virtual void on_retry() {}  // a retry was decided (loop thread)

  Job::Mode mode = Job::Mode::chat;
  // The body as built for endpoint 0; reused by every endpoint that would build the same bytes
  // (same provider, model and thinking style: replicas). `messages` is kept only when some
  // endpoint needs its own body.
  std::string body;
  std::optional<json> messages;
  // Shared by every request of a batch (one copy, not one per request).
  std::shared_ptr<const RequestOptions> options;
  bool shared = false;  // a distributed batch's: waits in the shared queue for a free slot
  CacheTicket ticket{};

  // Pool bookkeeping.
  uint64_t id = 0;
  Clock::time_point submitted{};
  Clock::time_point attempt_start{};
  int attempts = 0;
  std::vector<size_t> tried;  // endpoints this request failed on (fail-over avoids them)
  bool events_delivered = false;
  size_t endpoint = 0;       // of the attempt in flight
  uint64_t attempt_job = 0;  // its job id (0: none in flight)
  Loop::TimerId retry_timer = 0;
};

class Pool {
 public:
  explicit Pool(PoolConfig config);
  ~Pool();  // close()

  const PoolConfig& config() const { return config_; }
  size_t size() const { return cores_.size(); }
  ClientCore& core(size_t i) { return *cores_[i]; }
  Loop& loop() { return runtime_->loop(); }
  int concurrency() const { return total_concurrency_; }

  // Caller's thread: validates messages and options (against endpoint 0) and builds endpoint 0's
  // body.
  std::pair<std::string, std::string> chat_request(const json& messages,
                                                   const RequestOptions& options, bool stream,
                                                   bool checked = false) const;
  void check_chat(const json& messages, const RequestOptions& options) const;
  // A request that may be served by any endpoint needs its messages kept: true when the
  // endpoints would not all send the same body.
  bool needs_messages() const { return !replicas_; }

  CacheFront* cache() { return cache_->enabled() ? &cache_->front() : nullptr; }
  ResponseCache& response_cache() { return *cache_; }
  // Keyed by the pool (its endpoints and models), not by the endpoint that answers: any replica's
  // answer serves.
  CacheKey cache_key(const json& messages, const RequestOptions& options) const;

  // From any thread: runs the request. After close() it fails at once with CancelledError.
  void submit(std::unique_ptr<PoolRequest> request);
  uint64_t new_id() { return next_id_.fetch_add(1, std::memory_order_relaxed); }
  // From any thread: aborts that request (a stream's consumer left).
  void cancel(uint64_t request_id);
  // From any thread: ends the requests whose stop_level() asks for it, as cancelled (see
  // ClientCore::sweep_stopped).
  void sweep_stopped();
  void close();
  bool closed() const { return closed_.load(std::memory_order_acquire); }

  std::vector<EndpointStats> stats() const;
  double current_rate() const;  // the sum of the endpoints' caps

  // ---- loop thread, from the attempts ----
  void attempt_done(PoolRequest* r, size_t endpoint, ChatResult* result, Error* error);

 private:
  void admit(PoolRequest* r);
  void attempt(PoolRequest* r);
  std::unique_ptr<Job> make_attempt(PoolRequest* r, size_t endpoint);
  std::unique_ptr<Job> feed(size_t endpoint);  // a free slot of `endpoint` pulls shared work
  void poke_all();
  void finish(PoolRequest* r, ChatResult* result, Error* error);
  void publish(size_t endpoint);  // balancer state -> the stats snapshot
  void hold();
  void release();
  void set_feeders(bool on);  // on the loop thread, waiting for it

  PoolConfig config_;
  std::shared_ptr<Runtime> runtime_;
  std::vector<ClientCore*> cores_;  // the endpoints: owned_ first, then clients' engines
  std::vector<std::unique_ptr<ClientCore>> owned_;
  std::vector<std::shared_ptr<LLMClient>> clients_;
  std::unique_ptr<ResponseCache> cache_;
  std::string identity_;  // the pool's endpoints and models, for cache keys
  bool replicas_ = true;  // every endpoint sends endpoint 0's body
  int total_concurrency_ = 0;

  std::atomic<bool> closed_{false};
  std::atomic<uint64_t> next_id_{1};
  std::mutex outstanding_mu_;
  std::condition_variable outstanding_cv_;
  uint64_t outstanding_ = 0;

  // Stats snapshot, readable from any thread.
  struct Counters {
    std::atomic<uint64_t> in_flight{0}, done{0}, failed{0};
    std::atomic<bool> healthy{true};
    std::atomic<double> latency{0};
  };
  std::unique_ptr<Counters[]> counters_;

  // Loop thread only.
  Balancer balancer_;
  Jitter jitter_;
  std::unordered_map<uint64_t, std::unique_ptr<PoolRequest>> live_;
  std::deque<PoolRequest*> shared_;  // distributed work waiting for a free slot
};

// The pool as a batch target (BatchOptions::distribute selects the shared queue).
std::unique_ptr<BatchTarget> pool_target(Pool& pool, bool distribute);

}  // namespace flexllm::detail
