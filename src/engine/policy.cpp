#include "engine/policy.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>

namespace flexllm::detail {
namespace {

bool parse_double(std::string_view s, double& out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size() && std::isfinite(out) && out >= 0;
}

milliseconds to_ms(double seconds) {
  return milliseconds(static_cast<int64_t>(std::ceil(seconds * 1000.0)));
}

// "Wed, 21 Oct 2015 07:28:00 GMT"
std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view s) {
  std::tm tm{};
  std::string text(s);
  const char* end = strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (!end || *end != '\0') return std::nullopt;
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

}  // namespace

std::optional<milliseconds> parse_duration(std::string_view text) {
  double plain = 0;
  if (parse_double(text, plain)) return to_ms(plain);
  // A sequence of <number><unit> with units h, m, s, ms.
  double total = 0;
  bool any = false;
  while (!text.empty()) {
    size_t i = 0;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
      ++i;
    double value = 0;
    if (!parse_double(text.substr(0, i), value)) return std::nullopt;
    text.remove_prefix(i);
    if (text.starts_with("ms")) {
      total += value / 1000.0;
      text.remove_prefix(2);
    } else if (text.starts_with("h")) {
      total += value * 3600.0;
      text.remove_prefix(1);
    } else if (text.starts_with("m")) {
      total += value * 60.0;
      text.remove_prefix(1);
    } else if (text.starts_with("s")) {
      total += value;
      text.remove_prefix(1);
    } else {
      return std::nullopt;
    }
    any = true;
  }
  if (!any) return std::nullopt;
  return to_ms(total);
}

std::optional<milliseconds> retry_hint(
    const std::vector<std::pair<std::string, std::string>>& headers,
    std::chrono::system_clock::time_point now) {
  auto find = [&](std::string_view name) -> const std::string* {
    for (const auto& [k, v] : headers)
      if (k == name) return &v;
    return nullptr;
  };
  if (const std::string* ms = find("retry-after-ms")) {
    double v = 0;
    if (parse_double(*ms, v)) return milliseconds(static_cast<int64_t>(std::ceil(v)));
  }
  if (const std::string* ra = find("retry-after")) {
    double v = 0;
    if (parse_double(*ra, v)) return to_ms(v);
    if (auto when = parse_http_date(*ra)) {
      auto wait = std::chrono::duration_cast<milliseconds>(*when - now);
      return std::max(wait, milliseconds(0));
    }
  }
  std::optional<milliseconds> best;
  for (const char* name : {"x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"}) {
    if (const std::string* v = find(name)) {
      if (auto d = parse_duration(*v); d && (!best || *d > *best)) best = d;
    }
  }
  return best;
}

milliseconds backoff_delay(int retry, milliseconds base, milliseconds cap, uint64_t random) {
  double ceiling = static_cast<double>(base.count()) * std::ldexp(1.0, std::min(retry, 30));
  ceiling = std::min(ceiling, static_cast<double>(cap.count()));
  double unit = static_cast<double>(random >> 11) * 0x1.0p-53;  // [0, 1)
  return milliseconds(static_cast<int64_t>(unit * ceiling));
}

RateController::RateController(std::optional<double> max_qps, bool adaptive, double min_qps)
    : max_(max_qps && *max_qps > 0 ? *max_qps : kUnlimited),
      min_(std::max(min_qps, 0.001)),
      adaptive_(adaptive),
      rate_(max_) {}

Clock::time_point RateController::next_start(Clock::time_point now) const {
  Clock::time_point at = now;
  if (pause_until_ > at) at = pause_until_;
  if (rate_ != kUnlimited) {
    // Tolerance absorbs timer lateness without letting requests bunch up.
    auto interval = std::chrono::duration<double>(1.0 / rate_);
    auto tolerance = std::chrono::duration_cast<Clock::duration>(
        std::min(interval * 0.5, std::chrono::duration<double>(0.005)));
    if (tat_ - tolerance > at) at = tat_ - tolerance;
  }
  return at;
}

void RateController::on_start(Clock::time_point now) {
  if (now - window_start_ >= std::chrono::seconds(1)) {
    previous_window_count_ = now - window_start_ >= std::chrono::seconds(2) ? 0 : window_count_;
    window_count_ = 0;
    window_start_ = now;
  }
  ++window_count_;
  if (rate_ == kUnlimited) return;
  auto interval =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / rate_));
  tat_ = std::max(tat_, now) + interval;
}

double RateController::observed_rate(Clock::time_point now) const {
  double frac = std::chrono::duration<double>(now - window_start_).count();
  frac = std::clamp(frac, 0.0, 1.0);
  return static_cast<double>(previous_window_count_) * (1.0 - frac) +
         static_cast<double>(window_count_);
}

void RateController::on_rate_limited(Clock::time_point now, std::optional<milliseconds> hint) {
  if (!adaptive_) return;
  double base = rate_ == kUnlimited ? std::max(observed_rate(now), 2 * min_) : rate_;
  rate_ = std::max(min_, base * 0.5);
  streak_ = 0;
  if (hint) pause_until_ = std::max(pause_until_, now + *hint);
}

void RateController::on_success() {
  if (!adaptive_ || rate_ == kUnlimited) return;
  if (++streak_ >= 10) {
    streak_ = 0;
    rate_ = std::min(max_, rate_ * 1.1);
  }
}

}  // namespace flexllm::detail
