// What a client's errors and results show of what it was given and what servers sent: error
// bodies read honestly (an "error" name with its "message", an excerpt of an HTML page or plain
// text: bounded, on one line, without the key), and never the API key or the user info of a base
// URL. Against a raw-socket server that sends exactly the bytes a test wants, and the mock.
#include "client_support.hpp"
#include "scripted_server.hpp"

namespace flexllm::test {
namespace {

constexpr std::string_view kKey = "sk-live-SECRET-0123456789abcdef";
constexpr std::string_view kPassword = "hunter2secret";

bool has(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

// An HTTP reply with `status` and `body`, closing the connection.
ScriptedReply reply(int status, const std::string& body,
                    const std::string& type = "application/json") {
  return ScriptedReply().send("HTTP/1.1 " + std::to_string(status) + " Whatever\r\nContent-Type: " +
                              type + "\r\nContent-Length: " + std::to_string(body.size()) +
                              "\r\nConnection: close\r\n\r\n" + body);
}

// The error of one chat call to `server` (no retries), with `key` as the API key.
Error error_from(const ScriptedServer& server, std::string_view key = kKey) {
  ClientConfig c;
  c.base_url = server.base_url();
  c.api_key = std::string(key);
  c.model = "m";
  c.retry_times = 0;
  c.proxy = "";
  if (env("FLEXLLM_TEST_TRANSPORT") == "curl") c.transport = Transport::curl;
  LLMClient client(c);
  return error_of([&] { client.chat_completions(user("hi")); });
}

TEST(ClientErrorBodies, AStringErrorIsShownWithItsMessage) {
  // Express's body-parser, and servers built like it.
  ScriptedServer server(reply(
      400, R"({"error":"SyntaxError","message":"Unexpected token } in JSON at position 7"})"));
  Error e = error_from(server);
  EXPECT_EQ(e.kind(), ErrorKind::http);
  EXPECT_EQ(e.status(), 400);
  EXPECT_TRUE(has(e.what(), "HTTP 400 from " + server.base_url() +
                                ": SyntaxError: Unexpected token } in JSON at position 7"))
      << e.what();
}

TEST(ClientErrorBodies, AnHtmlPageFromAProxyIsABoundedExcerptOnOneLine) {
  const std::string page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n\x1b[2J" +
                           std::string(100000, 'x') + "</html>\r\n";
  ScriptedServer server(reply(502, page, "text/html"));
  Error e = error_from(server);
  const std::string what = e.what();
  EXPECT_EQ(e.status(), 502);
  EXPECT_TRUE(has(what, "HTTP 502 from " + server.base_url() +
                            ": <html>\\r\\n<head><title>502 Bad Gateway</title></head>\\r\\n"
                            "\\x1b[2Jxxx"))
      << what;
  for (char c : {'\r', '\n', '\x1b'}) EXPECT_FALSE(has(what, std::string(1, c))) << what;
  EXPECT_LT(what.size(), 600u);
  EXPECT_TRUE(what.ends_with("\xE2\x80\xA6")) << what;  // cut, and says so
  EXPECT_LE(e.body().size(), 4096u + 3u);
}

TEST(ClientErrorBodies, PlainTextAndAnEmptyBodyAreShown) {
  ScriptedServer text(
      reply(503, "upstream connect error or disconnect/reset before headers", "text/plain"));
  Error e = error_from(text);
  EXPECT_TRUE(has(e.what(), ": upstream connect error or disconnect/reset before headers"))
      << e.what();
  ScriptedServer empty(reply(500, ""));
  e = error_from(empty);
  EXPECT_EQ(std::string(e.what()), "HTTP 500 from " + empty.base_url() + ": (empty body)");
}

TEST(ClientErrorBodies, AKeyAcrossTheExcerptCutShowsNoneOfItself) {
  // An unparseable body is shown as its first 300 bytes; the key straddles that cut. Cut first,
  // the key lost its tail and the redaction no longer found it: its first characters showed.
  for (size_t at : {280u, 290u, 296u}) {
    ScriptedServer server(
        reply(401, std::string(at, '.') + std::string(kKey) + " is not valid", "text/plain"));
    Error e = error_from(server);
    EXPECT_FALSE(has(e.what(), kKey.substr(0, 4))) << at << ": " << e.what();
    EXPECT_FALSE(has(e.body(), kKey.substr(0, 4))) << at << ": " << e.body();
    EXPECT_TRUE(has(e.body(), "[redacted] is not valid")) << e.body();
  }
}

TEST(ClientErrorBodies, AShortKeyEchoedBackIsRedacted) {
  ScriptedServer server(reply(
      401, R"({"error":{"message":"Incorrect API key provided: abc.","code":"invalid_api_key"}})"));
  Error e = error_from(server, "abc");
  EXPECT_FALSE(has(e.what(), "abc")) << e.what();
  EXPECT_TRUE(has(e.what(), "Incorrect API key provided: [redacted].")) << e.what();
  EXPECT_FALSE(has(e.body(), "abc")) << e.body();
}

// http://user:password@host/v1: libcurl carries the user info (the native transport does not take
// such URLs), and nothing shows it: errors (message and endpoint) and results name the endpoint
// as http://***@host/v1.
std::string with_user_info(const std::string& base_url) {
  return "http://user:" + std::string(kPassword) + "@" + base_url.substr(7);
}

TEST(ClientSecrets, TheUserInfoOfABaseUrlIsNeverShown) {
  MockConfig mc;
  mc.faults.http_error = 1;
  mc.error_status = 400;
  MockServer failing(mc);
  MockConfig mm;
  mm.faults.malformed = 1;
  MockServer malformed(mm);
  MockServer fine;
  auto config = [](const MockServer& m) {
    ClientConfig c;
    c.base_url = with_user_info(m.base_url());
    c.api_key = std::string(kKey);
    c.model = "mock-model";
    c.retry_times = 0;
    c.proxy = "";
    return c;
  };
  const std::string shown = "http://***@127.0.0.1:";

  LLMClient ok(config(fine));
  ChatResult r = ok.chat_completions(user("hi"));
  EXPECT_EQ(r.endpoint, "http://***@127.0.0.1:" + std::to_string(fine.port()) + "/v1");
  EXPECT_EQ(fine.stats().requests, 1u) << "the URL with user info is the one used";

  std::vector<Error> errors;
  LLMClient bad(config(failing));
  errors.push_back(error_of([&] { bad.chat_completions(user("hi")); }));
  LLMClient garbled(config(malformed));
  errors.push_back(error_of([&] { garbled.chat_completions(user("hi")); }));
  ClientConfig refused = config(fine);
  refused.base_url = "http://user:" + std::string(kPassword) + "@127.0.0.1:1/v1";
  LLMClient nowhere(refused);
  errors.push_back(error_of([&] { nowhere.chat_completions(user("hi")); }));
  ClientConfig invalid = config(fine);
  invalid.base_url = "ftp://user:" + std::string(kPassword) + "@127.0.0.1/v1";
  errors.push_back(error_of([&] { LLMClient client(invalid); }));
  ASSERT_EQ(errors.size(), 4u);
  EXPECT_EQ(errors[0].kind(), ErrorKind::http);
  EXPECT_EQ(errors[1].kind(), ErrorKind::parse);
  EXPECT_EQ(errors[2].kind(), ErrorKind::connection);
  EXPECT_EQ(errors[3].kind(), ErrorKind::invalid_request);
  for (const Error& e : errors) {
    EXPECT_FALSE(has(e.what(), kPassword)) << e.what();
    EXPECT_FALSE(has(e.endpoint(), kPassword)) << e.endpoint();
    EXPECT_FALSE(has(e.body(), kPassword)) << e.body();
    EXPECT_TRUE(has(e.what(), "***@127.0.0.1")) << e.what();
  }
  EXPECT_TRUE(errors[0].endpoint().starts_with(shown)) << errors[0].endpoint();

  // A pool's per-endpoint statistics name the endpoint the same way.
  PoolConfig pc;
  pc.endpoints.push_back({.base_url = with_user_info(fine.base_url()), .model = "mock-model"});
  pc.defaults.proxy = "";
  LLMClientPool pool(pc);
  pool.chat_completions(user("hi"));
  ASSERT_EQ(pool.stats().size(), 1u);
  EXPECT_EQ(pool.stats()[0].base_url,
            "http://***@127.0.0.1:" + std::to_string(fine.port()) + "/v1");
}

}  // namespace
}  // namespace flexllm::test
