// The mock's fault draws as a pure function: rates, runs and reproducibility over long sequences.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "faults.hpp"

namespace flexllm::mock::detail {
namespace {

std::vector<Outcome> draws(const FaultRates& rates, FaultDraws mode, uint64_t seed, size_t n) {
  std::vector<Outcome> out;
  out.reserve(n);
  for (uint64_t seq = 1; seq <= n; ++seq) out.push_back(draw_fault(rates, mode, seed, seq));
  return out;
}

// The longest run of `kind` in a row.
size_t longest_run(const std::vector<Outcome>& seq, Outcome kind) {
  size_t run = 0, longest = 0;
  for (Outcome o : seq) {
    run = o == kind ? run + 1 : 0;
    longest = std::max(longest, run);
  }
  return longest;
}

TEST(MockFaultDraws, IndependentHoldTheRateAndComeInRuns) {
  const FaultRates rates{.http_error = 0.2};
  const size_t n = 20000;
  for (uint64_t seed : {0ull, 1ull, 7ull, 1234ull}) {
    auto seq = draws(rates, FaultDraws::independent, seed, n);
    size_t faults = 0, after_fault = 0, fault_after_fault = 0;
    for (size_t i = 0; i < n; ++i) {
      faults += seq[i] == Outcome::http_error;
      if (i > 0 && seq[i - 1] == Outcome::http_error) {
        ++after_fault;
        fault_after_fault += seq[i] == Outcome::http_error;
      }
      EXPECT_TRUE(seq[i] == Outcome::http_error || seq[i] == Outcome::ok);
    }
    // ±1.5 points is over 5 standard deviations of a binomial(20000, 0.2) share.
    EXPECT_NEAR(static_cast<double>(faults) / n, 0.2, 0.015) << "seed " << seed;
    EXPECT_GE(longest_run(seq, Outcome::http_error), 3u) << "seed " << seed;
    // Independent: a fault is no more and no less likely right after another one.
    EXPECT_NEAR(static_cast<double>(fault_after_fault) / static_cast<double>(after_fault), 0.2,
                0.03)
        << "seed " << seed;
  }
}

TEST(MockFaultDraws, EvenNeverRepeatsAKindBelow38Percent) {
  const size_t n = 20000;
  auto seq = draws({.http_error = 0.2}, FaultDraws::even, 3, n);
  EXPECT_EQ(longest_run(seq, Outcome::http_error), 1u);
  size_t faults = 0;
  for (Outcome o : seq) faults += o == Outcome::http_error;
  EXPECT_LE(std::abs(static_cast<double>(faults) - 0.2 * n), 3.0) << faults;

  // Every kind at once: still none twice in a row.
  const FaultRates all{.http_error = 0.1,
                       .rate_429 = 0.1,
                       .drop = 0.1,
                       .hang = 0.1,
                       .malformed = 0.1,
                       .truncate = 0.1};
  auto mixed = draws(all, FaultDraws::even, 3, n);
  for (Outcome kind : {Outcome::http_error, Outcome::rate_limited, Outcome::dropped, Outcome::hung,
                       Outcome::malformed, Outcome::truncated})
    EXPECT_EQ(longest_run(mixed, kind), 1u) << to_string(kind);
}

TEST(MockFaultDraws, SameSeedSameSequenceOtherSeedOther) {
  const FaultRates rates{.http_error = 0.2, .rate_429 = 0.1, .drop = 0.05};
  for (FaultDraws mode : {FaultDraws::even, FaultDraws::independent}) {
    const auto name = mode == FaultDraws::even ? "even" : "independent";
    EXPECT_EQ(draws(rates, mode, 5, 2000), draws(rates, mode, 5, 2000)) << name;
    EXPECT_NE(draws(rates, mode, 5, 2000), draws(rates, mode, 6, 2000)) << name;
  }
  EXPECT_NE(draws(rates, FaultDraws::even, 5, 2000),
            draws(rates, FaultDraws::independent, 5, 2000));
}

TEST(MockFaultDraws, NoRatesNoFaultsAndFullRateAlways) {
  for (FaultDraws mode : {FaultDraws::even, FaultDraws::independent}) {
    for (uint64_t seq = 1; seq <= 1000; ++seq) {
      EXPECT_EQ(draw_fault({}, mode, 9, seq), Outcome::ok);
      EXPECT_EQ(draw_fault({.drop = 1.0}, mode, 9, seq), Outcome::dropped);
    }
  }
}

}  // namespace
}  // namespace flexllm::mock::detail
