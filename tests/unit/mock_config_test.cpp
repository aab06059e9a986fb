#include <gtest/gtest.h>

#include "flexllm/mock/server.hpp"

namespace flexllm::mock {
namespace {

std::string why(const MockConfig& c) {
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(MockConfig, DefaultsAreValid) {
  EXPECT_EQ(why(MockConfig{}), "");
  // Runs of faults by default; exact counts only when a test asks for them.
  EXPECT_EQ(MockConfig{}.fault_draws, FaultDraws::independent);
}

TEST(MockConfig, InvalidFieldsAreNamed) {
  MockConfig c;
  c.faults.drop = 1.5;
  EXPECT_NE(why(c).find("faults.drop"), std::string::npos);
  c = {};
  c.faults.http_error = 0.6;
  c.faults.hang = 0.6;
  EXPECT_NE(why(c).find("add up to 1.2"), std::string::npos);
  c = {};
  c.latency_ms = {10, 5};
  EXPECT_NE(why(c).find("latency_ms"), std::string::npos);
  c = {};
  c.response_tokens = {0, 3};
  EXPECT_NE(why(c).find("response_tokens"), std::string::npos);
  c = {};
  c.models.clear();
  EXPECT_NE(why(c).find("models"), std::string::npos);
  c = {};
  c.max_qps = -1;
  EXPECT_NE(why(c).find("max_qps"), std::string::npos);
  c = {};
  c.token_rate = std::numeric_limits<double>::infinity();
  EXPECT_NE(why(c).find("token_rate"), std::string::npos);
}

TEST(MockRange, ParsesSingleValuesAndRanges) {
  EXPECT_EQ(Range::parse("250").min, 250u);
  EXPECT_EQ(Range::parse("250").max, 250u);
  Range r = Range::parse("10-20");
  EXPECT_EQ(r.min, 10u);
  EXPECT_EQ(r.max, 20u);
  for (const char* bad : {"", "-", "a", "1-", "-1", "5-3", "1-2-3", "1.5", " 1"})
    EXPECT_THROW(Range::parse(bad), std::invalid_argument) << bad;
}

TEST(MockOutcome, NamesEveryOutcome) {
  for (size_t i = 0; i < kOutcomeCount; ++i)
    EXPECT_NE(to_string(static_cast<Outcome>(i)), "unknown");
}

}  // namespace
}  // namespace flexllm::mock
