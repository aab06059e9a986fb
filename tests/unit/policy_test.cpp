#include <gtest/gtest.h>

#include "engine/policy.hpp"

namespace flexllm::detail {
namespace {

using namespace std::chrono_literals;
using Headers = std::vector<std::pair<std::string, std::string>>;

TEST(RetryPolicy, RetryableStatuses) {
  for (int s : {408, 409, 429, 500, 502, 503, 504, 529}) EXPECT_TRUE(retryable_status(s)) << s;
  for (int s : {200, 400, 401, 403, 404, 413, 422, 501, 505})
    EXPECT_FALSE(retryable_status(s)) << s;
}

TEST(RetryPolicy, ParsesDurations) {
  EXPECT_EQ(parse_duration("20ms"), 20ms);
  EXPECT_EQ(parse_duration("1s"), 1000ms);
  EXPECT_EQ(parse_duration("1.5s"), 1500ms);
  EXPECT_EQ(parse_duration("6m0s"), 360000ms);
  EXPECT_EQ(parse_duration("1h2m3.5s"), 3723500ms);
  EXPECT_EQ(parse_duration("2"), 2000ms);
  EXPECT_EQ(parse_duration("0.25"), 250ms);
  for (const char* bad : {"", "s", "1x", "-1s", "1s2", "abc"})
    EXPECT_FALSE(parse_duration(bad)) << bad;
}

TEST(RetryPolicy, RetryHintPrefersMillisecondsThenRetryAfterThenResets) {
  EXPECT_EQ(retry_hint(Headers{{"retry-after", "3"}, {"retry-after-ms", "1234"}}), 1234ms);
  EXPECT_EQ(retry_hint(Headers{{"retry-after", "3"}}), 3000ms);
  EXPECT_EQ(retry_hint(Headers{{"x-ratelimit-reset-requests", "1s"},
                               {"x-ratelimit-reset-tokens", "6m0s"}}),
            360000ms);
  EXPECT_FALSE(retry_hint(Headers{}));
  EXPECT_FALSE(retry_hint(Headers{{"retry-after", "soon"}}));
  // An HTTP date: the wait until then, never negative.
  auto now = std::chrono::system_clock::from_time_t(1445412480);  // Wed, 21 Oct 2015 07:28:00 GMT
  EXPECT_EQ(retry_hint(Headers{{"retry-after", "Wed, 21 Oct 2015 07:28:30 GMT"}}, now), 30000ms);
  EXPECT_EQ(retry_hint(Headers{{"retry-after", "Wed, 21 Oct 2015 07:27:00 GMT"}}, now), 0ms);
}

TEST(RetryPolicy, FullJitterBackoffStaysUnderTheGrowingCap) {
  Jitter jitter(42);
  for (int retry = 0; retry < 12; ++retry) {
    auto cap = std::min(100ms * (1 << retry), std::chrono::milliseconds(5000));
    std::chrono::milliseconds most{0};
    for (int i = 0; i < 2000; ++i) {
      auto d = backoff_delay(retry, 100ms, 5000ms, jitter.next());
      ASSERT_GE(d, 0ms);
      ASSERT_LE(d, cap);
      most = std::max(most, d);
    }
    EXPECT_GT(most, cap * 9 / 10) << "jitter spans the whole range at retry " << retry;
  }
  EXPECT_EQ(backoff_delay(3, 100ms, 5000ms, 0), 0ms);
  EXPECT_EQ(backoff_delay(100, 100ms, 5000ms, ~0ull), 4999ms);
}

TEST(RateController, UnlimitedNeverWaits) {
  RateController rc(std::nullopt, false, 1);
  auto t = Clock::now();
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(rc.next_start(t), t);
    rc.on_start(t);
  }
  EXPECT_EQ(rc.rate(), RateController::kUnlimited);
}

TEST(RateController, SpacesStartsEvenlyAtTheCap) {
  RateController rc(50.0, false, 1);
  auto t = Clock::now();
  auto at = t;
  for (int i = 0; i < 500; ++i) {
    at = rc.next_start(at);
    rc.on_start(at);
  }
  // 500 starts at 50/s take 499 intervals of 20 ms (less the few ms of tolerance).
  double span = std::chrono::duration<double>(at - t).count();
  EXPECT_NEAR(span, 9.98, 0.01);
  // Asking early never yields a burst: the next start is ~20 ms after the previous one.
  auto next = rc.next_start(at);
  EXPECT_GE(next - at, 15ms);
}

TEST(RateController, AdaptiveHalvesPausesAndGrowsBack) {
  RateController rc(100.0, true, 10);
  auto t = Clock::now();
  rc.on_rate_limited(t, 2s);
  EXPECT_DOUBLE_EQ(rc.rate(), 50);
  EXPECT_GE(rc.next_start(t), t + 2s) << "the whole endpoint pauses for the hint";
  rc.on_rate_limited(t, std::nullopt);
  rc.on_rate_limited(t, std::nullopt);
  rc.on_rate_limited(t, std::nullopt);
  EXPECT_DOUBLE_EQ(rc.rate(), 10) << "never below min_qps";
  for (int i = 0; i < 9; ++i) rc.on_success();
  EXPECT_DOUBLE_EQ(rc.rate(), 10);
  rc.on_success();
  EXPECT_DOUBLE_EQ(rc.rate(), 11);
  for (int i = 0; i < 1000; ++i) rc.on_success();
  EXPECT_DOUBLE_EQ(rc.rate(), 100) << "never above max_qps";
}

TEST(RateController, AdaptiveWithoutACapStartsFromTheObservedRate) {
  RateController rc(std::nullopt, true, 1);
  auto t = Clock::now();
  for (int i = 0; i < 400; ++i) rc.on_start(t + std::chrono::milliseconds(i * 5));  // 200/s
  rc.on_rate_limited(t + 2s, std::nullopt);
  EXPECT_GT(rc.rate(), 50);
  EXPECT_LT(rc.rate(), 150);
}

TEST(RateController, NonAdaptiveIgnoresRateLimits) {
  RateController rc(40.0, false, 1);
  rc.on_rate_limited(Clock::now(), 5s);
  EXPECT_DOUBLE_EQ(rc.rate(), 40);
}

}  // namespace
}  // namespace flexllm::detail
