// The pool's balancer (SPEC §8): strategies, health with the half-open probe, fail-over avoidance
// and distributed-batch admission. Time is a fake time point the tests advance.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "pool/balancer.hpp"

namespace flexllm::detail {
namespace {

using namespace std::chrono_literals;
using Endpoint = Balancer::Endpoint;

const Clock::time_point kT0 = Clock::time_point{} + 1000h;

Balancer make(LoadBalance strategy, std::vector<Endpoint> endpoints, int threshold = 3,
              Clock::duration recovery = 60s) {
  return Balancer(strategy, std::move(endpoints), threshold, recovery, 42);
}

void fail_times(Balancer& b, size_t i, int times, Clock::time_point now) {
  for (int k = 0; k < times; ++k) {
    b.on_start(i, now);
    b.on_failure(i, now, true);
  }
}

std::vector<int> tally(Balancer& b, int picks, Clock::time_point now = kT0) {
  std::vector<int> counts(b.size());
  for (int k = 0; k < picks; ++k) ++counts[b.pick(now)];
  return counts;
}

TEST(Balancer, RoundRobinSplitsEvenlyInTurn) {
  auto b = make(LoadBalance::round_robin, {{}, {}, {}});
  std::vector<size_t> order;
  for (int k = 0; k < 6; ++k) order.push_back(b.pick(kT0));
  EXPECT_EQ(order, (std::vector<size_t>{0, 1, 2, 0, 1, 2}));
  EXPECT_EQ(tally(b, 3000), (std::vector<int>{1000, 1000, 1000}));
}

TEST(Balancer, RoundRobinSkipsUnhealthyEndpoints) {
  auto b = make(LoadBalance::round_robin, {{}, {}, {}}, 1);
  fail_times(b, 1, 1, kT0);
  EXPECT_EQ(tally(b, 1000, kT0 + 1s), (std::vector<int>{500, 0, 500}));
}

TEST(Balancer, WeightedKeepsExactProportionsSmoothly) {
  auto b = make(LoadBalance::weighted, {{.weight = 3}, {.weight = 1}});
  std::vector<int> counts(2);
  int run = 0;
  int longest_run = 0;
  for (int k = 0; k < 4000; ++k) {
    size_t i = b.pick(kT0);
    ++counts[i];
    run = i == 0 ? run + 1 : 0;
    longest_run = std::max(longest_run, run);
  }
  EXPECT_NEAR(counts[0], 3000, 1);
  EXPECT_NEAR(counts[1], 1000, 1);
  EXPECT_LE(longest_run, 3) << "the light endpoint's turns are spread, not bunched";
}

TEST(Balancer, WeightedInterleavesLikeNginx) {
  // nginx's documented sequence for weights 5, 1, 1.
  auto b = make(LoadBalance::weighted, {{.weight = 5}, {.weight = 1}, {.weight = 1}});
  std::vector<size_t> order;
  for (int k = 0; k < 14; ++k) order.push_back(b.pick(kT0));
  EXPECT_EQ(order, (std::vector<size_t>{0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0}));
}

TEST(Balancer, WeightlessEndpointsOnlyWhenNothingElseIsEligible) {
  auto b = make(LoadBalance::weighted, {{.weight = 1}, {.weight = 0}, {.weight = -1}}, 1);
  EXPECT_EQ(tally(b, 100), (std::vector<int>{100, 0, 0}));
  fail_times(b, 0, 1, kT0);
  EXPECT_EQ(tally(b, 100, kT0 + 1s), (std::vector<int>{0, 50, 50}));
}

TEST(Balancer, RandomIsRoughlyUniformAndSeeded) {
  auto b = make(LoadBalance::random, {{}, {}, {}});
  auto counts = tally(b, 6000);
  for (int c : counts) EXPECT_NEAR(c, 2000, 200);
  auto again = make(LoadBalance::random, {{}, {}, {}});
  EXPECT_EQ(tally(again, 6000), counts) << "the same seed, the same choices";
}

TEST(Balancer, FallbackUsesTheFirstHealthyAndReturnsAfterItsProbe) {
  auto b = make(LoadBalance::fallback, {{}, {}, {}}, 3, 60s);
  EXPECT_EQ(tally(b, 10), (std::vector<int>{10, 0, 0}));
  fail_times(b, 0, 3, kT0);
  EXPECT_FALSE(b.healthy(0));
  EXPECT_EQ(tally(b, 10, kT0 + 59s), (std::vector<int>{0, 10, 0}));
  // Due for its probe: the first endpoint gets it even though the second is healthy.
  auto t = kT0 + 60s;
  EXPECT_EQ(b.pick(t), 0u);
  b.on_start(0, t);
  b.on_success(0, 200ms);
  EXPECT_TRUE(b.healthy(0));
  EXPECT_EQ(tally(b, 10, t), (std::vector<int>{10, 0, 0}));
}

TEST(Balancer, LeastBusyPrefersFreeCapacity) {
  auto b = make(LoadBalance::least_busy, {{.capacity = 4}, {.capacity = 1}});
  // Five attempts start: four fit the larger endpoint for each one on the smaller.
  std::vector<int> started(2);
  for (int k = 0; k < 5; ++k) {
    size_t i = b.pick(kT0);
    b.on_start(i, kT0);
    ++started[i];
  }
  EXPECT_EQ(started, (std::vector<int>{4, 1}));
  EXPECT_EQ(b.in_flight(0), 4);
  EXPECT_EQ(b.in_flight(1), 1);
  // The small one finishes: it is the freer (0/1 against 4/4).
  b.on_success(1, 100ms);
  EXPECT_EQ(b.pick(kT0), 1u);
  // One finishes on the large one: 3/4 against 1/1.
  b.on_start(1, kT0);
  b.on_success(0, 100ms);
  EXPECT_EQ(b.pick(kT0), 0u);
}

TEST(Balancer, LeastBusySharesAmongEquallyIdleEndpoints) {
  // pick() does not count an attempt, so picks before any start must not all land on one.
  auto b = make(LoadBalance::least_busy, {{.capacity = 2}, {.capacity = 2}, {.capacity = 2}});
  EXPECT_EQ(tally(b, 30), (std::vector<int>{10, 10, 10}));
}

TEST(Balancer, LatencyTriesUnmeasuredFirstThenPrefersTheFaster) {
  auto b = make(LoadBalance::latency, {{}, {}, {}});
  std::vector<double> latency{0.5, 0.1, 0.3};
  std::vector<size_t> tried;
  for (int k = 0; k < 3; ++k) {
    size_t i = b.pick(kT0);
    tried.push_back(i);
    b.on_start(i, kT0);
    b.on_success(i, std::chrono::duration<double>(latency[i]));
  }
  std::sort(tried.begin(), tried.end());
  EXPECT_EQ(tried, (std::vector<size_t>{0, 1, 2})) << "each endpoint measured once";
  EXPECT_EQ(tally(b, 10), (std::vector<int>{0, 10, 0}));
  // The fast one slows down: the EWMA follows and the choice moves to the next fastest.
  for (int k = 0; k < 10; ++k) {
    b.on_start(1, kT0);
    b.on_success(1, 1s);
  }
  EXPECT_GT(b.latency(1), 0.3);
  EXPECT_EQ(b.pick(kT0), 2u);
}

TEST(Balancer, LatencyIsAnEwmaWithAlphaPointTwo) {
  auto b = make(LoadBalance::latency, {{}});
  EXPECT_EQ(b.latency(0), 0);
  b.on_start(0, kT0);
  b.on_success(0, 1s);
  EXPECT_DOUBLE_EQ(b.latency(0), 1.0);  // the first sample as is
  b.on_start(0, kT0);
  b.on_success(0, 2s);
  EXPECT_DOUBLE_EQ(b.latency(0), 0.8 * 1.0 + 0.2 * 2.0);
  b.on_start(0, kT0);
  b.on_failure(0, kT0, true);
  EXPECT_DOUBLE_EQ(b.latency(0), 1.2) << "failures are not latencies";
}

TEST(Balancer, HealthCountsConsecutiveCountedFailures) {
  auto b = make(LoadBalance::round_robin, {{}, {}}, 3);
  fail_times(b, 0, 2, kT0);
  EXPECT_TRUE(b.healthy(0));
  fail_times(b, 0, 1, kT0);
  EXPECT_FALSE(b.healthy(0));
  EXPECT_TRUE(b.healthy(1));
  EXPECT_EQ(b.in_flight(0), 0);
}

TEST(Balancer, NonRetryableFailuresNeitherCountNorBreakTheStreak) {
  auto b = make(LoadBalance::round_robin, {{}}, 3);
  auto fail = [&](bool counts) {
    b.on_start(0, kT0);
    b.on_failure(0, kT0, counts);
  };
  fail(true);
  for (int k = 0; k < 10; ++k) fail(false);
  EXPECT_TRUE(b.healthy(0)) << "HTTP 400s say nothing about the endpoint";
  fail(true);
  fail(false);
  fail(true);
  EXPECT_FALSE(b.healthy(0)) << "three counted failures in a row, a 400 between them";
}

TEST(Balancer, SuccessResetsTheCount) {
  auto b = make(LoadBalance::round_robin, {{}}, 3);
  fail_times(b, 0, 2, kT0);
  b.on_start(0, kT0);
  b.on_success(0, 100ms);
  fail_times(b, 0, 2, kT0);
  EXPECT_TRUE(b.healthy(0));
  fail_times(b, 0, 1, kT0);
  EXPECT_FALSE(b.healthy(0));
}

TEST(Balancer, CancelOnlyEndsTheAttempt) {
  auto b = make(LoadBalance::round_robin, {{}}, 1);
  b.on_start(0, kT0);
  b.on_start(0, kT0);
  b.on_cancel(0);
  EXPECT_EQ(b.in_flight(0), 1);
  EXPECT_TRUE(b.healthy(0));
}

TEST(Balancer, HalfOpenLetsExactlyOneProbeThroughAfterRecoveryTime) {
  auto b = make(LoadBalance::round_robin, {{}, {}}, 1, 60s);
  fail_times(b, 0, 1, kT0);
  EXPECT_EQ(tally(b, 10, kT0 + 59s), (std::vector<int>{0, 10}));
  auto t = kT0 + 60s;
  EXPECT_EQ(b.pick(t), 0u) << "the probe";
  EXPECT_EQ(tally(b, 10, t), (std::vector<int>{0, 10})) << "reserved: nothing else goes there";
  b.on_start(0, t);
  EXPECT_EQ(tally(b, 10, t + 1s), (std::vector<int>{0, 10})) << "in flight: nothing else either";
  b.on_success(0, 1s);
  EXPECT_TRUE(b.healthy(0));
  EXPECT_EQ(tally(b, 10, t + 1s), (std::vector<int>{5, 5}));
}

TEST(Balancer, FailedProbeWaitsAnotherFullRecoveryTime) {
  auto b = make(LoadBalance::round_robin, {{}, {}}, 1, 60s);
  fail_times(b, 0, 1, kT0);
  auto t = kT0 + 60s;
  ASSERT_EQ(b.pick(t), 0u);
  b.on_start(0, t);
  b.on_failure(0, t + 5s, true);
  EXPECT_FALSE(b.healthy(0));
  EXPECT_EQ(tally(b, 10, t + 64s), (std::vector<int>{0, 10}));
  EXPECT_EQ(b.pick(t + 65s), 0u) << "the next probe, 60 s after the failed one";
}

TEST(Balancer, ProbeWithoutVerdictIsGivenAgain) {
  auto b = make(LoadBalance::round_robin, {{}, {}}, 1, 60s);
  fail_times(b, 0, 1, kT0);
  auto t = kT0 + 60s;
  // Never started (cancelled while it waited): the reservation goes back.
  ASSERT_EQ(b.pick(t), 0u);
  b.on_abandon(0);
  ASSERT_EQ(b.pick(t), 0u);
  // Started, then cancelled: due again at once.
  b.on_start(0, t);
  b.on_cancel(0);
  ASSERT_EQ(b.pick(t), 0u);
  // A non-retryable failure (HTTP 400) is no verdict either.
  b.on_start(0, t);
  b.on_failure(0, t, false);
  EXPECT_FALSE(b.healthy(0));
  EXPECT_EQ(b.pick(t), 0u);
}

TEST(Balancer, AttemptFromBeforeTheFailureSettlesTheProbeButNeverDoublesIt) {
  auto b = make(LoadBalance::round_robin, {{}, {}}, 1, 60s);
  b.on_start(0, kT0);  // a slow attempt, started while healthy
  fail_times(b, 0, 1, kT0);
  auto t = kT0 + 60s;
  ASSERT_EQ(b.pick(t), 0u);
  b.on_start(0, t);
  // The old attempt is cancelled: the probe may still be running, so no second one goes.
  b.on_cancel(0);
  EXPECT_EQ(tally(b, 10, t), (std::vector<int>{0, 10}));
  // Any success is proof of life.
  b.on_success(0, 1s);
  EXPECT_TRUE(b.healthy(0));
}

TEST(Balancer, AllUnhealthyGoesToTheOneThatFailedLongestAgo) {
  auto b = make(LoadBalance::round_robin, {{}, {}, {}}, 1, 60s);
  fail_times(b, 1, 1, kT0);
  fail_times(b, 2, 1, kT0 + 1s);
  fail_times(b, 0, 1, kT0 + 2s);
  EXPECT_EQ(tally(b, 10, kT0 + 10s), (std::vector<int>{0, 10, 0}));
  // Tried and failed again: now another failed longer ago.
  fail_times(b, 1, 1, kT0 + 11s);
  EXPECT_EQ(tally(b, 10, kT0 + 12s), (std::vector<int>{0, 0, 10}));
  // Endpoint 1's probe is due 60 s after it turned unhealthy (failing again meanwhile was no
  // probe); the next request goes to the longest-failed endpoint without a probe in flight.
  auto t = kT0 + 60s;
  EXPECT_EQ(b.pick(t), 1u);
  EXPECT_EQ(b.pick(t), 2u);
}

TEST(Balancer, AvoidsEndpointsTheRequestFailedOn) {
  auto b = make(LoadBalance::round_robin, {{}, {}, {}}, 1);
  std::vector<size_t> avoid{0};
  for (int k = 0; k < 10; ++k) EXPECT_NE(b.pick(kT0, avoid), 0u);
  avoid = {0, 1};
  for (int k = 0; k < 10; ++k) EXPECT_EQ(b.pick(kT0, avoid), 2u);
  // Everything avoided: the strategy among the healthy ones again.
  avoid = {0, 1, 2};
  std::vector<int> counts(3);
  for (int k = 0; k < 30; ++k) ++counts[b.pick(kT0, avoid)];
  EXPECT_EQ(counts, (std::vector<int>{10, 10, 10}));
  // The healthy ones all avoided: still a healthy one, never the unhealthy.
  fail_times(b, 1, 1, kT0);
  avoid = {0, 2};
  for (int k = 0; k < 10; ++k) EXPECT_NE(b.pick(kT0 + 1s, avoid), 1u);
}

TEST(Balancer, AvoidWhenNothingIsHealthyPrefersAnotherEndpoint) {
  auto b = make(LoadBalance::round_robin, {{}, {}}, 1, 60s);
  fail_times(b, 0, 1, kT0);
  fail_times(b, 1, 1, kT0 + 1s);
  std::vector<size_t> avoid{0};
  EXPECT_EQ(b.pick(kT0 + 2s, avoid), 1u);
  avoid = {0, 1};
  EXPECT_EQ(b.pick(kT0 + 2s, avoid), 0u);
}

TEST(Balancer, AcceptsHealthyDueOrTheLastResort) {
  auto b = make(LoadBalance::round_robin, {{}, {}}, 1, 60s);
  EXPECT_TRUE(b.accepts(0, kT0));
  fail_times(b, 0, 1, kT0);
  EXPECT_FALSE(b.accepts(0, kT0 + 59s));
  EXPECT_TRUE(b.accepts(1, kT0 + 59s));
  // Due: exactly one probe is pulled.
  auto t = kT0 + 60s;
  EXPECT_TRUE(b.accepts(0, t));
  b.on_start(0, t);
  EXPECT_FALSE(b.accepts(0, t));
  b.on_success(0, 1s);
  EXPECT_TRUE(b.accepts(0, t));
  // Nothing healthy: only the endpoint that failed longest ago takes work.
  fail_times(b, 1, 1, t + 1s);
  fail_times(b, 0, 1, t + 2s);
  EXPECT_TRUE(b.accepts(1, t + 3s));
  EXPECT_FALSE(b.accepts(0, t + 3s));
}

}  // namespace
}  // namespace flexllm::detail
