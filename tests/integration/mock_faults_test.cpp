// Fault injection: every kind at its configured rate, seen both by a client and by the stats.
#include <curl/curl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "flexllm/mock/server.hpp"
#include "http.hpp"

namespace flexllm::mock {
namespace {

using namespace flexllm::test;

std::string chat_url(const MockServer& m) {
  return m.base_url() + "/chat/completions";
}

// What a client sees of one reply.
Outcome classify(const HttpResponse& r) {
  if (r.curl_code == CURLE_OPERATION_TIMEDOUT) return Outcome::hung;
  if (r.curl_code == CURLE_GOT_NOTHING) return Outcome::dropped;
  if (r.curl_code == CURLE_PARTIAL_FILE) return Outcome::truncated;
  if (r.curl_code != 0) ADD_FAILURE() << "unexpected transfer error: " << r.error;
  if (r.status == 500) return Outcome::http_error;
  if (r.status == 429) return Outcome::rate_limited;
  if (r.status != 200) ADD_FAILURE() << "unexpected status " << r.status;
  if (!json::accept(r.body)) return Outcome::malformed;
  return Outcome::ok;
}

void expect_rate(uint64_t observed, size_t n, double rate, const char* what) {
  const double expected = rate * static_cast<double>(n);
  EXPECT_LE(std::abs(static_cast<double>(observed) - expected), 0.03 * expected)
      << what << ": " << observed << " of " << n << ", expected " << expected << " ±3 %";
}

TEST(MockFaults, EveryKindHoldsItsRateOver6000Requests) {
  const FaultRates rates{.http_error = 0.08,
                         .rate_429 = 0.06,
                         .drop = 0.05,
                         .hang = 0.04,
                         .malformed = 0.07,
                         .truncate = 0.05};
  // Exact counts (±3 %) are what even draws are for; independent ones wander by ±6 % here.
  MockServer mock({.seed = 1234,
                   .faults = rates,
                   .fault_draws = FaultDraws::even,
                   .retry_after = std::chrono::milliseconds(250)});
  const size_t n = 6000;
  std::vector<HttpRequest> reqs(n);
  for (size_t i = 0; i < n; ++i)
    reqs[i] = {.url = chat_url(mock),
               .body = chat_body("p" + std::to_string(i)),
               .fresh_connection = true};
  // Hung requests end by the client's timeout; 200 in parallel keeps that short.
  auto results = http_parallel(reqs, 200, 400ms);

  std::array<uint64_t, kOutcomeCount> seen{};
  for (const auto& r : results) {
    Outcome o = classify(r);
    ++seen[static_cast<size_t>(o)];
    if (o == Outcome::rate_limited) {
      EXPECT_EQ(r.header("retry-after"), "1");
      EXPECT_EQ(r.header("retry-after-ms"), "250");
    }
  }
  MockStats st = mock.stats(false);
  EXPECT_EQ(st.requests, n);
  for (size_t k = 0; k < kOutcomeCount; ++k)
    EXPECT_EQ(seen[k], st.by_outcome[k]) << to_string(static_cast<Outcome>(k));
  expect_rate(st.count(Outcome::http_error), n, rates.http_error, "500");
  expect_rate(st.count(Outcome::rate_limited), n, rates.rate_429, "429");
  expect_rate(st.count(Outcome::dropped), n, rates.drop, "drop");
  expect_rate(st.count(Outcome::hung), n, rates.hang, "hang");
  expect_rate(st.count(Outcome::malformed), n, rates.malformed, "malformed");
  expect_rate(st.count(Outcome::truncated), n, rates.truncate, "truncate");
  expect_rate(st.count(Outcome::ok), n, 0.65, "ok");
  EXPECT_EQ(st.in_flight, 0u) << "a cancelled request stayed counted";
}

TEST(MockFaults, SameSeedSameFaultSequence) {
  auto sequence = [](uint64_t seed) {
    MockServer mock({.seed = seed, .faults = {.http_error = 0.3, .rate_429 = 0.3}});
    std::string s;
    for (int i = 0; i < 40; ++i)
      s += std::to_string(http({.url = chat_url(mock), .body = chat_body("x")}).status) + ",";
    return s;
  };
  EXPECT_EQ(sequence(5), sequence(5));
  EXPECT_NE(sequence(5), sequence(6));
}

// The longest run of consecutive arrivals (in their order at the server) that got `kind`.
size_t longest_run(std::vector<Arrival> arrivals, Outcome kind) {
  std::sort(arrivals.begin(), arrivals.end(),
            [](const Arrival& a, const Arrival& b) { return a.seq < b.seq; });
  size_t run = 0, longest = 0;
  for (const Arrival& a : arrivals) {
    run = a.outcome == kind ? run + 1 : 0;
    longest = std::max(longest, run);
  }
  return longest;
}

TEST(MockFaults, DefaultDrawsGiveRunsOfFailures) {
  // Independent by default: a 0.3 kind hits two arrivals in a row about 9 % of the time, so a
  // client's retry can fail again. Even draws never give it twice in a row.
  auto run = [](MockConfig config) {
    MockServer mock(std::move(config));
    const size_t n = 300;
    std::vector<HttpRequest> reqs(n, HttpRequest{.url = chat_url(mock), .body = chat_body("x")});
    uint64_t errors = 0;
    for (const auto& r : http_parallel(reqs, 8, 5s)) errors += classify(r) == Outcome::http_error;
    MockStats st = mock.stats();
    EXPECT_EQ(st.count(Outcome::http_error), errors);
    EXPECT_EQ(st.arrivals.size(), n);
    return st;
  };
  MockStats st = run({.seed = 11, .faults = {.http_error = 0.3}});
  EXPECT_GE(longest_run(st.arrivals, Outcome::http_error), 2u)
      << "no two consecutive arrivals both got http_error";
  // Binomial(300, 0.3): 90 ± 8; the bounds are over 5 standard deviations away.
  EXPECT_GT(st.count(Outcome::http_error), 45u);
  EXPECT_LT(st.count(Outcome::http_error), 135u);

  MockStats even =
      run({.seed = 11, .faults = {.http_error = 0.3}, .fault_draws = FaultDraws::even});
  EXPECT_EQ(longest_run(even.arrivals, Outcome::http_error), 1u);
  EXPECT_LE(std::abs(static_cast<double>(even.count(Outcome::http_error)) - 90), 3);
}

TEST(MockFaults, ErrorBodiesAreOpenAiShaped) {
  MockServer mock({.faults = {.http_error = 1.0}});
  auto r = http({.url = chat_url(mock), .body = chat_body("x")});
  ASSERT_EQ(r.status, 500);
  json j = r.json_body();
  EXPECT_TRUE(j["error"]["message"].is_string());
  EXPECT_EQ(j["error"]["type"], "server_error");
}

TEST(MockFaults, RateLimitRepliesCarryRetryHints) {
  MockServer mock({.faults = {.rate_429 = 1.0}, .retry_after = std::chrono::milliseconds(1500)});
  auto r = http({.url = chat_url(mock), .body = chat_body("x")});
  ASSERT_EQ(r.status, 429);
  EXPECT_EQ(r.header("retry-after"), "2");
  EXPECT_EQ(r.header("retry-after-ms"), "1500");
  EXPECT_EQ(r.header("x-ratelimit-remaining-requests"), "0");
  EXPECT_EQ(r.header("x-ratelimit-reset-requests"), "1.5s");
  EXPECT_FALSE(r.header("x-ratelimit-limit-requests").empty());
  EXPECT_EQ(r.json_body()["error"]["code"], "rate_limit_exceeded");
}

TEST(MockFaults, TruncatedStreamHasNoFinishReasonNorDone) {
  MockServer mock({.response_tokens = {10, 10}, .faults = {.truncate = 1.0}});
  auto r = http({.url = chat_url(mock), .body = chat_body("x", true)});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.curl_code, CURLE_PARTIAL_FILE) << "the chunked body must end without its terminator";
  auto events = sse_data(r.body);
  ASSERT_GE(events.size(), 2u);  // the role event and some tokens arrived
  for (const auto& e : events) {
    ASSERT_NE(e, "[DONE]");
    EXPECT_TRUE(json::parse(e)["choices"][0]["finish_reason"].is_null());
  }
  // Non-stream: fewer bytes than Content-Length promised.
  auto whole = http({.url = chat_url(mock), .body = chat_body("x")});
  EXPECT_EQ(whole.curl_code, CURLE_PARTIAL_FILE);
  EXPECT_EQ(mock.stats(false).count(Outcome::truncated), 2u);
}

TEST(MockFaults, MalformedStreamHasAnInvalidEvent) {
  MockServer mock({.faults = {.malformed = 1.0}});
  auto r = http({.url = chat_url(mock), .body = chat_body("x", true)});
  ASSERT_EQ(r.curl_code, 0);
  auto events = sse_data(r.body);
  ASSERT_GE(events.size(), 2u);
  EXPECT_TRUE(json::accept(events[0]));
  EXPECT_FALSE(json::accept(events[1]));
  auto whole = http({.url = chat_url(mock), .body = chat_body("x")});
  EXPECT_EQ(whole.status, 200);
  EXPECT_FALSE(json::accept(whole.body));
}

TEST(MockFaults, DroppedAndHungConnections) {
  MockServer mock({.faults = {.drop = 1.0}});
  auto dropped = http({.url = chat_url(mock), .body = chat_body("x"), .fresh_connection = true});
  EXPECT_EQ(dropped.curl_code, CURLE_GOT_NOTHING) << dropped.error;

  mock.update({.faults = {.hang = 1.0}});
  auto hung = http({.url = chat_url(mock), .body = chat_body("x")}, 300ms);
  EXPECT_EQ(hung.curl_code, CURLE_OPERATION_TIMEDOUT);
  // The client gave up and closed: the server lets go of the request.
  EXPECT_TRUE(mock.wait_for([](const MockStats& st) { return st.in_flight == 0; }, 5s));
  EXPECT_EQ(mock.stats(false).count(Outcome::hung), 1u);
}

TEST(MockFaults, MaxQpsAnswers429AboveTheRate) {
  // A burst of 5, then 50/s: 300 back-to-back requests mostly bounce.
  MockServer mock({.max_qps = 50, .qps_burst = 5});
  auto start = std::chrono::steady_clock::now();
  uint64_t ok = 0, limited = 0;
  long max_retry_ms = 0;
  for (int i = 0; i < 300; ++i) {
    auto r = http({.url = chat_url(mock), .body = chat_body("q")});
    if (r.status == 200) {
      ++ok;
    } else {
      ASSERT_EQ(r.status, 429);
      ++limited;
      max_retry_ms = std::max(max_retry_ms, std::stol(r.header("retry-after-ms")));
      EXPECT_EQ(r.header("x-ratelimit-limit-requests"), "3000");
    }
  }
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(ok, 5u);
  EXPECT_LE(static_cast<double>(ok), 5 + elapsed * 50 + 1) << "more passed than the bucket allows";
  EXPECT_GT(limited, 0u);
  EXPECT_LE(max_retry_ms, 20);  // one token at 50/s is 20 ms away at most
  MockStats st = mock.stats(false);
  EXPECT_EQ(st.count(Outcome::qps_limited), limited);
  EXPECT_EQ(st.count(Outcome::ok), ok);
}

}  // namespace
}  // namespace flexllm::mock
