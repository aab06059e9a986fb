#include <gtest/gtest.h>

#include <string>

#include "flexllm/errors.hpp"

namespace flexllm {
namespace {

// Throws e.rethrow() and reports whether the thrown object is an `Expected`.
template <class Expected>
bool rethrows_as(const Error& e) {
  try {
    e.rethrow();
  } catch (const Expected& caught) {
    // The typed error carries everything the plain one had.
    const auto* thrown = dynamic_cast<const Error*>(&caught);
    EXPECT_TRUE(thrown);
    if (!thrown) return false;
    EXPECT_EQ(thrown->kind(), e.kind());
    EXPECT_STREQ(thrown->what(), e.what());
    EXPECT_EQ(thrown->endpoint(), e.endpoint());
    EXPECT_EQ(thrown->status(), e.status());
    EXPECT_EQ(thrown->body(), e.body());
    EXPECT_EQ(thrown->retryable(), e.retryable());
    EXPECT_EQ(thrown->retry_after(), e.retry_after());
    return true;
  } catch (...) {
    return false;
  }
  return false;
}

Error make(ErrorKind kind) {
  Error e(kind, std::string("boom: ") + to_string(kind), "http://127.0.0.1:8000/v1", 503,
          R"({"error":"x"})", true);
  e.set_retry_after(std::chrono::milliseconds(1500));
  return e;
}

TEST(Errors, RethrowRaisesTheSubclassOfItsKind) {
  EXPECT_TRUE(rethrows_as<HttpError>(make(ErrorKind::http)));
  EXPECT_TRUE(rethrows_as<RateLimitedError>(make(ErrorKind::rate_limited)));
  EXPECT_TRUE(rethrows_as<TimeoutError>(make(ErrorKind::timeout)));
  EXPECT_TRUE(rethrows_as<ConnectionError>(make(ErrorKind::connection)));
  EXPECT_TRUE(rethrows_as<ParseError>(make(ErrorKind::parse)));
  EXPECT_TRUE(rethrows_as<TruncatedError>(make(ErrorKind::truncated)));
  EXPECT_TRUE(rethrows_as<ProviderError>(make(ErrorKind::provider)));
  EXPECT_TRUE(rethrows_as<InvalidRequestError>(make(ErrorKind::invalid_request)));
  EXPECT_TRUE(rethrows_as<BudgetExceededError>(make(ErrorKind::budget_exceeded)));
  EXPECT_TRUE(rethrows_as<CancelledError>(make(ErrorKind::cancelled)));
  EXPECT_TRUE(rethrows_as<CheckpointError>(make(ErrorKind::checkpoint)));
}

TEST(Errors, EveryTypedErrorIsAnErrorAndAStdException) {
  for (ErrorKind k :
       {ErrorKind::http, ErrorKind::rate_limited, ErrorKind::timeout, ErrorKind::connection,
        ErrorKind::parse, ErrorKind::truncated, ErrorKind::provider, ErrorKind::invalid_request,
        ErrorKind::budget_exceeded, ErrorKind::cancelled, ErrorKind::checkpoint}) {
    EXPECT_TRUE(rethrows_as<Error>(make(k))) << to_string(k);
    EXPECT_TRUE(rethrows_as<std::runtime_error>(make(k))) << to_string(k);
  }
}

TEST(Errors, RateLimitedIsAnHttpError) {
  EXPECT_TRUE(rethrows_as<HttpError>(make(ErrorKind::rate_limited)));
  // …but a plain HTTP error is not a rate limit.
  EXPECT_FALSE(rethrows_as<RateLimitedError>(make(ErrorKind::http)));
  EXPECT_FALSE(rethrows_as<TimeoutError>(make(ErrorKind::connection)));
}

TEST(Errors, KeepsItsFields) {
  Error e(ErrorKind::http, "HTTP 404 from http://h/v1: model not found", "http://h/v1", 404,
          "{\"error\":{}}", false);
  EXPECT_EQ(e.kind(), ErrorKind::http);
  EXPECT_STREQ(e.what(), "HTTP 404 from http://h/v1: model not found");
  EXPECT_EQ(e.endpoint(), "http://h/v1");
  EXPECT_EQ(e.status(), 404);
  EXPECT_EQ(e.body(), "{\"error\":{}}");
  EXPECT_FALSE(e.retryable());
  EXPECT_FALSE(e.retry_after().has_value());
  e.set_retry_after(std::chrono::milliseconds(20));
  EXPECT_EQ(e.retry_after(), std::chrono::milliseconds(20));

  Error defaults(ErrorKind::cancelled, "closed");
  EXPECT_EQ(defaults.endpoint(), "");
  EXPECT_EQ(defaults.status(), 0);
  EXPECT_EQ(defaults.body(), "");
  EXPECT_FALSE(defaults.retryable());

  Error copy = e;  // a copyable value: batch items carry one
  EXPECT_STREQ(copy.what(), e.what());
  EXPECT_EQ(copy.retry_after(), e.retry_after());
}

TEST(Errors, KindNames) {
  EXPECT_STREQ(to_string(ErrorKind::http), "http");
  EXPECT_STREQ(to_string(ErrorKind::rate_limited), "rate_limited");
  EXPECT_STREQ(to_string(ErrorKind::timeout), "timeout");
  EXPECT_STREQ(to_string(ErrorKind::connection), "connection");
  EXPECT_STREQ(to_string(ErrorKind::parse), "parse");
  EXPECT_STREQ(to_string(ErrorKind::truncated), "truncated");
  EXPECT_STREQ(to_string(ErrorKind::provider), "provider");
  EXPECT_STREQ(to_string(ErrorKind::invalid_request), "invalid_request");
  EXPECT_STREQ(to_string(ErrorKind::budget_exceeded), "budget_exceeded");
  EXPECT_STREQ(to_string(ErrorKind::cancelled), "cancelled");
  EXPECT_STREQ(to_string(ErrorKind::checkpoint), "checkpoint");
}

TEST(Errors, CheckpointErrorsSayWhyAndWhichFile) {
  CheckpointError e(CheckpointError::Reason::locked, "out.jsonl is being written by pid 7",
                    "out.jsonl");
  EXPECT_EQ(e.kind(), ErrorKind::checkpoint);
  EXPECT_EQ(e.reason(), CheckpointError::Reason::locked);
  EXPECT_EQ(e.path(), "out.jsonl");
  EXPECT_FALSE(e.retryable());
  EXPECT_TRUE(rethrows_as<CheckpointError>(e));
}

}  // namespace
}  // namespace flexllm
