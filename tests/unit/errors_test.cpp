#include <gtest/gtest.h>

#include <string>

#include "flexllm/errors.hpp"
#include "providers/openai_json.hpp"
#include "providers/provider.hpp"

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

// Secrets in what errors show: the API key, and the user info of a base URL.
namespace flexllm::detail {
namespace {

constexpr std::string_view kKey = "sk-live-SECRET-0123456789abcdef";

bool has(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

TEST(Redaction, AKeyAcrossTheExcerptCutLeavesNoPrefix) {
  // The excerpt is 512 bytes: put the key at every offset around the cut. Cut first and redacted
  // after, the key's first characters stayed (the whole key was no longer there to be found).
  for (size_t at = 470; at <= 512; ++at) {
    std::string body = std::string(at, 'a') + std::string(kKey) + std::string(100, 'b');
    std::string shown = openai::body_excerpt(body, std::string(kKey));
    EXPECT_FALSE(has(shown, kKey.substr(0, 4))) << "key at " << at << ": " << shown;
    EXPECT_LE(shown.size(), 512u + 3u);
  }
}

TEST(Redaction, ShortKeysAreRedactedToo) {
  EXPECT_EQ(redact("Incorrect API key provided: abc. Use abc?", "abc"),
            "Incorrect API key provided: [redacted]. Use [redacted]?");
  // One or two characters are placeholders ("x"), not secrets: redacting them would garble text.
  EXPECT_EQ(redact("max tokens exceeded", "x"), "max tokens exceeded");
  EXPECT_EQ(redact("max tokens exceeded", "ex"), "max tokens exceeded");
  EXPECT_EQ(redact("nothing here", ""), "nothing here");
}

TEST(Redaction, AKeyCutShortAtTheEndIsRedacted) {
  // A body that ends in the middle of the key (a reply cut short) shows none of it.
  EXPECT_EQ(redact("invalid key sk-live-SEC", kKey), "invalid key [redacted]");
  EXPECT_EQ(redact("invalid key sk-l", kKey), "invalid key [redacted]");
  // Fewer than 4 of its characters say nothing about it.
  EXPECT_EQ(redact("see sk-", kKey), "see sk-");
  EXPECT_EQ(redact(std::string(kKey) + " and " + std::string(kKey), kKey),
            "[redacted] and [redacted]");
}

TEST(Redaction, ExcerptRedactsBeforeCutting) {
  std::string body;
  for (int i = 0; i < 100; ++i) body += std::string(kKey) + " ";
  std::string shown = excerpt(body, 100, kKey);
  EXPECT_FALSE(has(shown, "sk-l")) << shown;
  EXPECT_TRUE(shown.starts_with("[redacted] [redacted]")) << shown;
  EXPECT_TRUE(shown.ends_with("\xE2\x80\xA6")) << shown;
  EXPECT_LE(shown.size(), 103u);
  // A three-character key straddling the cut.
  EXPECT_EQ(excerpt("xxxxabc", 5, "abc"), "xxxx[\xE2\x80\xA6");
  EXPECT_EQ(excerpt("abc", 512, "abc"), "[redacted]");
  // Without a key, as before.
  EXPECT_EQ(excerpt("abcdef", 3), "abc\xE2\x80\xA6");
}

TEST(ErrorText, ControlCharactersAreEscaped) {
  EXPECT_EQ(escape_controls("a\nb\r\tc"), "a\\nb\\r\\tc");
  EXPECT_EQ(escape_controls("\x1b[31mred\x07\x7f"), "\\x1b[31mred\\x07\\x7f");
  EXPECT_EQ(escape_controls("csi \xC2\x9B"
                            "2J, \xC3\xA9t\xC3\xA9"),
            "csi \\u009b2J, \xC3\xA9t\xC3\xA9");
  EXPECT_EQ(escape_controls(""), "");
}

TEST(DisplayUrl, HidesUserInfo) {
  EXPECT_EQ(display_url("https://api.openai.com/v1"), "https://api.openai.com/v1");
  EXPECT_EQ(display_url("http://u:secret@127.0.0.1:8000/v1"), "http://***@127.0.0.1:8000/v1");
  EXPECT_EQ(display_url("http://token@host/v1"), "http://***@host/v1");
  EXPECT_EQ(display_url("http://u:p@ss@host"), "http://***@host");
  // A password with '/' or '#' (not valid in a URL, but typed anyway) is hidden too.
  EXPECT_EQ(display_url("http://u:pa/ss#x@host/v1"), "http://***@host/v1");
  EXPECT_EQ(display_url("u:secret@host/v1"), "***@host/v1");
  EXPECT_EQ(display_url(""), "");
  Endpoint ep;
  ep.base_url = "http://u:secret@h/v1";
  EXPECT_EQ(ep.shown(), "http://***@h/v1");
}

TEST(ErrorBodies, AMessageBesideAStringErrorIsShown) {
  const ProviderAdapter& a = provider_adapter(Provider::openai);
  EXPECT_EQ(a.error_message(R"({"error":"SyntaxError","message":"Unexpected token } in JSON"})"),
            "SyntaxError: Unexpected token } in JSON");
  EXPECT_EQ(a.error_message(R"({"error":"Bad Request"})"), "Bad Request");
  EXPECT_EQ(a.error_message(R"({"error":"same","message":"same"})"), "same");
  EXPECT_EQ(a.error_message(R"({"error":{"message":"m","type":"t"},"message":"other"})"), "m");
  EXPECT_EQ(a.error_message("<html><body>502 Bad Gateway</body></html>"), "");

  // The same body inside a 200 reply (an in-band error).
  Endpoint ep;
  ep.base_url = "http://u:secret@127.0.0.1:1/v1";
  ep.api_key = std::string(kKey);
  ChatResult out;
  auto e =
      a.parse_chat_response(ep, R"({"error":"SyntaxError","message":"Unexpected token"})", out);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::provider);
  EXPECT_TRUE(has(e->what(), "SyntaxError: Unexpected token")) << e->what();
  EXPECT_FALSE(has(e->what(), "secret")) << e->what();
  EXPECT_EQ(e->endpoint(), "http://***@127.0.0.1:1/v1");
}

TEST(ErrorBodies, ParseErrorsShowTheBodyOnOneLineWithoutTheKey) {
  const ProviderAdapter& a = provider_adapter(Provider::openai);
  Endpoint ep;
  ep.base_url = "http://u:secret@127.0.0.1:1/v1";
  ep.api_key = std::string(kKey);
  ChatResult out;
  const std::string body = "<html>\r\n\x1b[2J" + std::string(kKey) + "\n</html>";
  auto e = a.parse_chat_response(ep, body, out);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::parse);
  const std::string what = e->what();
  EXPECT_FALSE(has(what, kKey.substr(0, 4))) << what;
  EXPECT_FALSE(has(what, "secret")) << what;
  EXPECT_FALSE(has(what, "\n")) << what;
  EXPECT_FALSE(has(what, "\x1b")) << what;
  EXPECT_TRUE(has(what, "<html>\\r\\n\\x1b[2J[redacted]\\n</html>")) << what;
}

}  // namespace
}  // namespace flexllm::detail
