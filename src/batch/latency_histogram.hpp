// Latency percentiles in constant memory: log-spaced buckets 1 % apart from 0.1 ms to ~10 h, so a
// batch of 10^8 items keeps 2 000 counters, and each percentile is within 1 % of the exact one.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

namespace flexllm::detail {

class LatencyHistogram {
 public:
  void add(double seconds) {
    ++counts_[bucket(seconds)];
    ++total_;
  }
  uint64_t count() const { return total_; }
  // The smallest latency below which a share `p` (0..1] of the samples fall (0 when empty).
  double percentile(double p) const {
    if (total_ == 0) return 0;
    const auto want = static_cast<uint64_t>(std::ceil(p * static_cast<double>(total_)));
    uint64_t seen = 0;
    for (size_t b = 0; b < kBuckets; ++b) {
      seen += counts_[b];
      if (seen >= want && seen > 0) return upper(b);
    }
    return upper(kBuckets - 1);
  }

 private:
  static constexpr size_t kBuckets = 2000;
  static constexpr double kMin = 1e-4;     // 0.1 ms
  static constexpr double kGrowth = 1.01;  // 1 % per bucket

  static size_t bucket(double s) {
    if (!(s > kMin)) return 0;
    auto b = static_cast<size_t>(std::log(s / kMin) / std::log(kGrowth)) + 1;
    return b < kBuckets ? b : kBuckets - 1;
  }
  static double upper(size_t b) { return kMin * std::pow(kGrowth, static_cast<double>(b)); }

  std::array<uint64_t, kBuckets> counts_{};
  uint64_t total_ = 0;
};

}  // namespace flexllm::detail
