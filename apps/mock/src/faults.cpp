#include "faults.hpp"

#include <utility>

#include "chat.hpp"

namespace flexllm::mock::detail {
namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;  // 2^64 / golden ratio

// A uniform value in [0, 1) from the top 53 bits.
double unit(uint64_t x) {
  return static_cast<double>(x >> 11) * 0x1.0p-53;
}

}  // namespace

Outcome draw_fault(const FaultRates& rates, FaultDraws draws, uint64_t seed, uint64_t seq) {
  double u;
  if (draws == FaultDraws::even) {
    // Golden-ratio steps from a seeded offset walk the unit interval evenly (a Weyl sequence).
    u = unit(mix64(seed ^ 0xFA017ull) + seq * kGolden);
  } else {
    // Each draw hashed on its own; a key of its own keeps it apart from the seeded latencies.
    u = unit(mix64(mix64(seed ^ 0x1DE9Dull) ^ mix64(seq)));
  }
  const std::pair<double, Outcome> kinds[] = {
      {rates.http_error, Outcome::http_error}, {rates.rate_429, Outcome::rate_limited},
      {rates.drop, Outcome::dropped},          {rates.hang, Outcome::hung},
      {rates.malformed, Outcome::malformed},   {rates.truncate, Outcome::truncated}};
  double edge = 0;
  for (const auto& [rate, outcome] : kinds) {
    edge += rate;
    if (u < edge) return outcome;
  }
  return Outcome::ok;
}

}  // namespace flexllm::mock::detail
