// The pool's choice of endpoint and its health bookkeeping: load-balancing strategies,
// consecutive-failure health with a half-open probe, fail-over avoidance, and admission for a
// distributed batch. Pure: no I/O, no threads, the time is an argument. Called on the I/O loop
// only, so it has no locking.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "engine/policy.hpp"
#include "flexllm/pool.hpp"

namespace flexllm::detail {

// Indices (the order endpoints were configured in) are the identity of an endpoint: two endpoints
// with the same base_url stay distinct.
//
// Health: `failure_threshold` counted failures in a row make an endpoint unhealthy. Once
// `recovery_time` has passed since then (or since its last failed probe), exactly one request — the
// probe — is let through; its success makes the endpoint healthy, its failure starts a fresh
// recovery_time. Any success on an endpoint makes it healthy (an answer is an answer, even from an
// attempt that started before it turned unhealthy).
//
// Every attempt is reported: on_start when it really starts, then exactly one of on_success,
// on_failure or on_cancel. An attempt that pick() chose but that never started (cancelled while
// it waited for a slot) is reported with on_abandon instead, so a probe it was given goes back.
class Balancer {
 public:
  struct Endpoint {
    double weight = 1;  // LoadBalance::weighted; <= 0: chosen only when nothing else can be
    int capacity = 1;   // concurrency_limit, for LoadBalance::least_busy (below 1 acts as 1)
  };

  // `endpoints` must not be empty (PoolConfig::validate). A failure_threshold below 1 acts as 1.
  Balancer(LoadBalance strategy, std::vector<Endpoint> endpoints, int failure_threshold,
           Clock::duration recovery_time, uint64_t seed);

  size_t size() const { return endpoints_.size(); }

  // The endpoint for the next attempt at `now`; never fails. In order of precedence:
  // 1. an unhealthy endpoint due for its probe (so a recovered server comes back even while others
  //    are healthy): it is reserved for this one attempt;
  // 2. the strategy's choice among the healthy endpoints not in `avoid` (those this request
  //    already failed on), else among all the healthy ones;
  // 3. nothing healthy: a probe due on an avoided endpoint, else the endpoint that failed longest
  //    ago (preferring one without a probe in flight, then one not in `avoid`).
  // It does not count the attempt: on_start does, when it starts.
  size_t pick(Clock::time_point now, std::span<const size_t> avoid = {});

  // The attempt an earlier pick() chose never started: gives back the probe it may have reserved.
  void on_abandon(size_t i);
  // An attempt starts on i (chosen by pick(), or pulled by i in a distributed batch when
  // accepts(i) allowed it). Started on an unhealthy endpoint due for its probe, it is the probe.
  void on_start(size_t i, Clock::time_point now);
  // `latency`: the request's time to the answer, folded into the endpoint's EWMA.
  void on_success(size_t i, std::chrono::duration<double> latency);
  // `counts`: a retryable failure (connection, timeout, 5xx, 429), evidence against the endpoint.
  // A non-retryable one (HTTP 400…) says nothing about it: it neither counts nor breaks a streak.
  void on_failure(size_t i, Clock::time_point now, bool counts);
  // Ended without a verdict (cancelled).
  void on_cancel(size_t i);

  // For a distributed batch: whether i may take new work at `now` — it is healthy, or due for its
  // probe, or nothing is healthy and it is the endpoint pick() would fall back on.
  bool accepts(size_t i, Clock::time_point now) const;

  bool healthy(size_t i) const { return endpoints_[i].healthy; }
  int in_flight(size_t i) const { return endpoints_[i].in_flight; }
  // Seconds: EWMA of successful attempts' latencies (alpha kLatencyAlpha; the first sample is
  // taken as is), 0 before the first success.
  double latency(size_t i) const { return endpoints_[i].latency; }

  // Weight of the newest sample: about the last ten replies matter, so a slowing server is
  // noticed within a few requests without one outlier swinging the choice.
  static constexpr double kLatencyAlpha = 0.2;

 private:
  enum class Probe : uint8_t {
    none,      // no probe pending
    reserved,  // pick() handed it out; the attempt has not started yet
    running,   // the probe attempt is in flight
  };

  struct State {
    Endpoint config;
    bool healthy = true;
    int failures = 0;  // counted failures in a row
    int in_flight = 0;
    Probe probe = Probe::none;
    Clock::time_point probe_due{};     // when unhealthy: when the next probe may go
    Clock::time_point last_failure{};  // of a counted failure
    bool measured = false;
    double latency = 0;
    double current_weight = 0;  // smooth weighted round robin
  };

  static bool due(const State& e, Clock::time_point now) {
    return !e.healthy && e.probe == Probe::none && now >= e.probe_due;
  }
  // The due endpoint whose probe has waited longest, outside `avoid`; size() when none.
  size_t due_probe(Clock::time_point now, std::span<const size_t> avoid) const;
  // Where pick() goes when nothing is healthy and no probe is due (rule 3).
  size_t fallback_target(std::span<const size_t> avoid) const;
  size_t reserve_probe(size_t i);
  // The strategy's choice among candidates_ (not empty, ascending).
  size_t choose();
  size_t round_robin();
  size_t smooth_weighted();
  // Position in candidates_ of the first candidate at or after the cursor (wrapping): where round
  // robin continues, and where ties are broken so equal endpoints share the load.
  size_t rotation_start() const;
  // An attempt ended without a verdict: a probe it may have been goes back once nothing is left
  // in flight there (while something is, it may be the probe, and two probes must never overlap).
  static void end_without_verdict(State& e);

  LoadBalance strategy_;
  std::vector<State> endpoints_;
  int failure_threshold_;
  Clock::duration recovery_time_;
  std::mt19937_64 random_;
  size_t cursor_ = 0;               // round robin, and the tie-breaker of least_busy and latency
  std::vector<size_t> candidates_;  // pick()'s scratch, sized once: no allocation per pick
};

}  // namespace flexllm::detail
