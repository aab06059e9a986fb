// LLMClientPool: one client over several endpoints — load balancing, health with a
// half-open probe, fail-over of failed attempts, and batches distributed by free capacity.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "flexllm/batch.hpp"
#include "flexllm/cache.hpp"
#include "flexllm/client.hpp"
#include "flexllm/stream.hpp"
#include "flexllm/types.hpp"

namespace flexllm {

// How a pool picks the endpoint of a request (among the healthy ones).
enum class LoadBalance {
  round_robin,  // in turn
  weighted,     // in proportion to EndpointConfig::weight (smooth weighted round robin)
  random,       // uniformly at random (seeded by PoolConfig::seed when set)
  fallback,     // the first healthy endpoint in the order given
  least_busy,   // the fewest requests in flight relative to its concurrency_limit
  latency,      // the lowest latency (exponentially weighted moving average of recent replies)
};
const char* to_string(LoadBalance strategy) noexcept;

// One endpoint of a pool. Two endpoints may share a base_url (different keys or models): they
// stay distinct.
struct EndpointConfig {
  std::string base_url{};
  std::string api_key{};
  std::string model{};
  Provider provider = Provider::automatic;
  double weight = 1;  // LoadBalance::weighted
  int concurrency_limit = 10;
  std::optional<double> max_qps{};
  std::optional<std::string> proxy{};  // as ClientConfig::proxy
};

struct PoolConfig {
  std::vector<EndpointConfig> endpoints{};
  // Existing clients as further endpoints (after `endpoints`, weight 1): each keeps its own
  // configuration (limits, rate, transport) and stays usable on its own; requests sent through
  // the pool get the pool's retries, health and cache. They must share the pool's Runtime (the
  // process-wide one unless ClientConfig::runtime says otherwise).
  std::vector<std::shared_ptr<LLMClient>> clients{};
  LoadBalance load_balance = LoadBalance::round_robin;
  // A failed attempt (retryable) is retried on another healthy endpoint; streams only before
  // their first event.
  bool fallback = true;
  // Consecutive retryable failures that make an endpoint unhealthy; after recovery_time one probe
  // request is let through (success: healthy again).
  int failure_threshold = 3;
  std::chrono::milliseconds recovery_time = std::chrono::seconds(60);
  // Everything else every endpoint shares: timeouts, retry_times and delays (retries are the
  // pool's: each one may go to another endpoint), adaptive rate, thinking style, transport,
  // cache (one for the pool), headers, runtime. Its base_url, api_key, model, provider,
  // concurrency_limit, max_qps and proxy are ignored (the endpoints have their own).
  ClientConfig defaults{};
  std::optional<uint64_t> seed{};  // LoadBalance::random

  // Throws InvalidRequestError naming the offending field.
  void validate() const;
};

struct EndpointStats {
  std::string base_url;  // as display_url() shows it: a password in the URL is never copied out
  std::string model;
  uint64_t in_flight = 0;
  uint64_t done = 0;    // requests answered
  uint64_t failed = 0;  // attempts that failed (each retry counts)
  bool healthy = true;
  double latency = 0;  // seconds, EWMA of successful replies (0 before the first)
  double rate = 0;     // the rate cap in force (requests/s; infinity when unlimited)
};

namespace detail {
class Pool;
}

class LLMClientPool : public ChatClient {
 public:
  explicit LLMClientPool(PoolConfig config);
  ~LLMClientPool() override;  // close()
  LLMClientPool(LLMClientPool&&) noexcept;
  LLMClientPool& operator=(LLMClientPool&&) noexcept;

  // As LLMClient's, over the pool's endpoints. Batches: with BatchOptions::distribute, one shared
  // queue feeds every endpoint whenever it has a free slot under its own limits (faster endpoints
  // do more); otherwise each request goes where the load_balance strategy sends it. Checkpoint,
  // cache, progress and summary work as for a client.
  using ChatClient::chat_completions_stream;
  std::future<ChatResult> chat_completions_async(const json& messages,
                                                 const RequestOptions& options = {}) override;
  ChatStream chat_completions_stream(const json& messages,
                                     const RequestOptions& options = {}) override;

  // Per endpoint, in the order configured.
  std::vector<EndpointStats> stats() const;
  ResponseCache& cache() override;
  const PoolConfig& config() const;
  void close() override;

 protected:
  std::unique_ptr<detail::BatchTarget> batch_target(bool distribute) override;
  bool on_io_thread() const override;

 private:
  std::unique_ptr<detail::Pool> pool_;
};

}  // namespace flexllm
