// The retry policy and the rate controller: pure functions of their inputs and the
// time, unit-tested without sockets. One source of truth for both.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.hpp"

namespace flexllm::detail {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// "20ms", "1s", "1.5s", "6m0s", "1h2m3.5s" (OpenAI's x-ratelimit-reset-*), or plain seconds.
std::optional<milliseconds> parse_duration(std::string_view text);

// The server's wait hint from response headers (names lower-case): retry-after-ms, else
// retry-after (seconds or an HTTP date), else the largest x-ratelimit-reset-requests/-tokens.
std::optional<milliseconds> retry_hint(
    const std::vector<std::pair<std::string, std::string>>& headers,
    std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

// Full-jitter exponential backoff for retry number `retry` (0 = the first retry): uniform in
// [0, min(cap, base * 2^retry)], drawn from `random` (any 64-bit value).
milliseconds backoff_delay(int retry, milliseconds base, milliseconds cap, uint64_t random);

// A small fast generator for jitter (xorshift64*), one per loop thread.
class Jitter {
 public:
  explicit Jitter(uint64_t seed) : state_(seed ? seed : 0x9E3779B97F4A7C15ull) {}
  uint64_t next() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545F4914F6CDD1Dull;
  }

 private:
  uint64_t state_;
};

// Admission by rate for one endpoint: a smooth limiter (GCRA: requests start at least 1/rate
// apart, with a few milliseconds of tolerance for timer lateness, so no bursts above the cap),
// plus adaptive mode: ×0.5 (not below min_qps) on a rate-limit reply and an endpoint-wide pause
// until the server's hint; ×1.1 (up to max_qps) after 10 successes in a row.
class RateController {
 public:
  static constexpr double kUnlimited = std::numeric_limits<double>::infinity();

  RateController(std::optional<double> max_qps, bool adaptive, double min_qps);

  // The earliest moment the next request may start (`now` when it may start now).
  Clock::time_point next_start(Clock::time_point now) const;
  void on_start(Clock::time_point now);
  void on_rate_limited(Clock::time_point now, std::optional<milliseconds> hint);
  void on_success();
  double rate() const { return rate_; }  // current requests/s cap; kUnlimited when none

 private:
  double observed_rate(Clock::time_point now) const;

  double max_;
  double min_;
  bool adaptive_;
  double rate_;
  Clock::time_point tat_{};  // theoretical arrival time of the next request
  Clock::time_point pause_until_{};
  int streak_ = 0;
  // Starts per one-second window, for the first cut when no max_qps is set.
  Clock::time_point window_start_{};
  uint64_t window_count_ = 0;
  uint64_t previous_window_count_ = 0;
};

}  // namespace flexllm::detail
