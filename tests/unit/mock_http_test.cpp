#include <gtest/gtest.h>

#include "http.hpp"
#include "json_out.hpp"

namespace flexllm::mock::detail {
namespace {

TEST(MockHttpHead, ParsesRequestLineHeadersAndQuery) {
  auto r = parse_request_head(
      "POST /v1/chat/completions?x=1&arrivals=0 HTTP/1.1\r\nHost: a\r\ncontent-LENGTH: 12\r\n"
      "Connection: keep-alive\r\n\r\n{\"a\":1}");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.head.method, "POST");
  EXPECT_EQ(r.head.path, "/v1/chat/completions");
  EXPECT_EQ(r.head.query, "x=1&arrivals=0");
  EXPECT_EQ(r.head.content_length, 12u);
  EXPECT_TRUE(r.head.keep_alive);
  EXPECT_TRUE(r.head.http11);
  EXPECT_EQ(r.head.header_bytes, std::string_view("POST /v1/chat/completions?x=1&arrivals=0 "
                                                  "HTTP/1.1\r\nHost: a\r\ncontent-LENGTH: 12\r\n"
                                                  "Connection: keep-alive\r\n\r\n")
                                     .size());
}

TEST(MockHttpHead, IncompleteUntilBlankLine) {
  EXPECT_EQ(parse_request_head("GET / HTTP/1.1\r\nHost: a\r\n").status, ParseStatus::incomplete);
  EXPECT_EQ(parse_request_head("").status, ParseStatus::incomplete);
}

TEST(MockHttpHead, Http10ClosesUnlessKeepAlive) {
  auto a = parse_request_head("GET / HTTP/1.0\r\n\r\n");
  EXPECT_FALSE(a.head.keep_alive);
  EXPECT_FALSE(a.head.http11);
  auto b = parse_request_head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
  EXPECT_TRUE(b.head.keep_alive);
  auto c = parse_request_head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
  EXPECT_FALSE(c.head.keep_alive);
}

TEST(MockHttpHead, FlagsChunkedAndExpect) {
  auto r = parse_request_head(
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_TRUE(r.head.chunked);
  EXPECT_TRUE(r.head.expect_continue);
}

TEST(MockHttpHead, RejectsMalformedInput) {
  EXPECT_EQ(parse_request_head("GARBAGE\r\n\r\n").error_status, 400);
  EXPECT_EQ(parse_request_head("GET / HTTP/2.0\r\n\r\n").error_status, 505);
  EXPECT_EQ(parse_request_head("GET / HTTP/1.1\r\nno colon here\r\n\r\n").error_status, 400);
  EXPECT_EQ(parse_request_head("POST / HTTP/1.1\r\nContent-Length: 12x\r\n\r\n").error_status, 400);
  EXPECT_EQ(parse_request_head("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
                .error_status,
            400);
  EXPECT_EQ(parse_request_head("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n").error_status,
            501);
  EXPECT_EQ(
      parse_request_head("POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n").error_status,
      413);
  std::string huge = "GET / HTTP/1.1\r\nX: " + std::string(kMaxHeaderBytes, 'a');
  EXPECT_EQ(parse_request_head(huge).error_status, 431);
}

TEST(MockHttpChunked, DecodesWithExtensionsAndTrailers) {
  std::string body;
  std::string wire = "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
  auto r = decode_chunked(wire, body);
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(body, "hello world");
  EXPECT_EQ(wire.substr(r.consumed), "NEXT");
}

TEST(MockHttpChunked, IncompleteAndInvalid) {
  std::string body;
  EXPECT_EQ(decode_chunked("5\r\nhel", body).status, ParseStatus::incomplete);
  EXPECT_EQ(decode_chunked("5\r\nhello\r\n0\r\n", body).status, ParseStatus::incomplete);
  EXPECT_TRUE(body.empty());
  EXPECT_EQ(decode_chunked("zz\r\n", body).status, ParseStatus::error);
  EXPECT_EQ(decode_chunked("2\r\nabc\r\n", body).status, ParseStatus::error);
}

TEST(MockHttpQuery, FindsParameters) {
  EXPECT_EQ(query_param("a=1&arrivals=1", "arrivals").value(), "1");
  EXPECT_EQ(query_param("flag&b=2", "flag").value(), "");
  EXPECT_FALSE(query_param("a=1", "b").has_value());
  EXPECT_FALSE(query_param("", "a").has_value());
}

TEST(MockJsonOut, EscapesStringsAndWritesNumbers) {
  std::string out;
  append_json_string(out, "a\"b\\c\nd\te\x01 é");
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\nd\\te\\u0001 é\"");
  out.clear();
  append_uint(out, 0);
  out.push_back(',');
  append_uint(out, 18446744073709551615ull);
  EXPECT_EQ(out, "0,18446744073709551615");
}

}  // namespace
}  // namespace flexllm::mock::detail
