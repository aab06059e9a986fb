// The mock's HTTP/1.x handling over raw sockets: keep-alive, pipelining, HTTP/1.0, chunked request
// bodies, Expect: 100-continue, error statuses.
#include <gtest/gtest.h>

#include "flexllm/mock/server.hpp"
#include "http.hpp"

namespace flexllm::mock {
namespace {

using namespace flexllm::test;

std::string post(const std::string& body, const std::string& extra_headers = "") {
  return "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         "Content-Length: " +
         std::to_string(body.size()) + "\r\n" + extra_headers + "\r\n" + body;
}

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

TEST(MockHttp, PipelinedRequestsAreAnsweredInOrder) {
  MockServer mock({.latency_ms = {20, 20}, .echo = true});
  std::string got =
      raw_exchange(mock.port(), post(chat_body("first")) + post(chat_body("second")) +
                                    post(chat_body("third"), "Connection: close\r\n"));
  EXPECT_EQ(count(got, "HTTP/1.1 200 OK"), 3u);
  size_t a = got.find("\"first\""), b = got.find("\"second\""), c = got.find("\"third\"");
  ASSERT_NE(a, std::string::npos);
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_NE(got.find("Connection: close"), std::string::npos);
  EXPECT_EQ(mock.stats(false).connections_open, 0u);  // closed after the third
}

TEST(MockHttp, Http10GetsABodyThenClose) {
  MockServer mock;
  std::string body = chat_body("old");
  std::string got =
      raw_exchange(mock.port(), "POST /v1/chat/completions HTTP/1.0\r\nContent-Length: " +
                                    std::to_string(body.size()) + "\r\n\r\n" + body);
  EXPECT_EQ(got.rfind("HTTP/1.0 200 OK", 0), 0u);
  EXPECT_NE(got.find("Connection: close"), std::string::npos);
  // A stream over HTTP/1.0 is not chunked: the close ends it.
  std::string sbody = chat_body("old", true);
  std::string s =
      raw_exchange(mock.port(), "POST /v1/chat/completions HTTP/1.0\r\nContent-Length: " +
                                    std::to_string(sbody.size()) + "\r\n\r\n" + sbody);
  EXPECT_EQ(s.find("Transfer-Encoding"), std::string::npos);
  EXPECT_NE(s.find("data: [DONE]\n\n"), std::string::npos);
}

TEST(MockHttp, ChunkedRequestBodyAndExpectContinue) {
  MockServer mock({.echo = true});
  std::string body = chat_body("chunked hello");
  std::string wire = "POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  wire += "10\r\n" + body.substr(0, 16) + "\r\n";
  std::string rest = body.substr(16);
  char size[16];
  std::snprintf(size, sizeof size, "%zx", rest.size());
  wire += std::string(size) + "\r\n" + rest + "\r\n0\r\n\r\n";
  std::string got = raw_exchange(mock.port(), wire);
  EXPECT_NE(got.find("chunked hello"), std::string::npos) << got;

  // Expect: 100-continue with the body held back: the server invites it.
  std::string head =
      "POST /v1/chat/completions HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n";
  std::string invited = raw_exchange(mock.port(), head, 300ms);
  EXPECT_EQ(invited, "HTTP/1.1 100 Continue\r\n\r\n");
}

TEST(MockHttp, ErrorsAreOpenAiShapedWithTheRightStatus) {
  MockServer mock;
  auto bad = http({.url = mock.base_url() + "/chat/completions", .body = "{nope"});
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.json_body()["error"]["message"].get<std::string>().find("not valid JSON"),
            std::string::npos);
  auto empty = http({.url = mock.base_url() + "/chat/completions", .body = R"({"messages":[]})"});
  EXPECT_EQ(empty.status, 400);
  auto missing = http_get(mock.base_url() + "/nothing");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.json_body()["error"]["code"], "not_found");
  auto wrong = http_get(mock.base_url() + "/chat/completions");
  EXPECT_EQ(wrong.status, 405);
  EXPECT_EQ(mock.stats(false).count(Outcome::bad_request), 2u);
  std::string garbage = raw_exchange(mock.port(), "NONSENSE\r\n\r\n");
  EXPECT_EQ(garbage.rfind("HTTP/1.1 400", 0), 0u);
  std::string huge = raw_exchange(mock.port(), "GET / HTTP/1.1\r\nX: " + std::string(70000, 'a'));
  EXPECT_EQ(huge.rfind("HTTP/1.1 431", 0), 0u);
}

}  // namespace
}  // namespace flexllm::mock
