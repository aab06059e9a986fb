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
  // Whole, its end in view, it is still too large.
  EXPECT_EQ(parse_request_head(huge + "\r\n\r\n").error_status, 431);
  std::string fits = "GET / HTTP/1.1\r\nX: ";
  fits += std::string(kMaxHeaderBytes - fits.size() - 4, 'a') + "\r\n\r\n";
  EXPECT_EQ(parse_request_head(fits).status, ParseStatus::complete);
  EXPECT_EQ(
      parse_request_head("POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", 1000).error_status,
      413);
  EXPECT_EQ(parse_request_head("POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n", 1000).status,
            ParseStatus::complete);
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

TEST(MockHttpChunked, OneByteAtATimeDecodesTheSameLookingAtEachByteOnce) {
  std::string wire = "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
  const size_t end = wire.find("NEXT");
  ChunkedDecoder decoder;
  std::string body;
  size_t fed = 0;
  ChunkedResult r;
  for (; fed < wire.size(); ++fed) {
    r = decoder.feed(std::string_view(wire).substr(fed, 1), body);
    if (r.status != ParseStatus::incomplete) break;
    EXPECT_EQ(r.consumed, 1u);  // partial lines are kept by the decoder, not offered again
  }
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(fed, end - 1);  // the last byte of the blank line ends it
  EXPECT_EQ(body, "hello world");
  EXPECT_EQ(decoder.bytes_examined(), end);
}

TEST(MockHttpChunked, ManyTinyChunksInManyPiecesCostLinearWork) {
  std::string wire, expected;
  for (int i = 0; i < 20000; ++i) {
    wire += "3\r\nabc\r\n";
    expected += "abc";
  }
  wire += "0\r\n\r\n";
  ChunkedDecoder decoder;
  std::string body;
  ChunkedResult r;
  for (size_t at = 0; at < wire.size() && r.status == ParseStatus::incomplete; at += 5)
    r = decoder.feed(std::string_view(wire).substr(at, 5), body);
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(body, expected);
  EXPECT_EQ(decoder.bytes_examined(), wire.size());
}

TEST(MockHttpChunked, BoundsAreErrorsWithTheirStatus) {
  std::string body;
  // The decoded body over the cap, in small chunks or announced by one chunk's size.
  ChunkedDecoder small(10);
  std::string decoded;
  auto over = small.feed("6\r\nabcdef\r\n6\r\nabcdef\r\n", decoded);
  EXPECT_EQ(over.status, ParseStatus::error);
  EXPECT_EQ(over.error_status, 413);
  EXPECT_NE(over.error.find("10 bytes"), std::string::npos) << over.error;
  EXPECT_EQ(decode_chunked("4000001\r\n", body).error_status, 413);  // 64 MiB + 1
  EXPECT_EQ(decode_chunked("ffffffffffffffffffff\r\n", body).error_status, 413);
  // A size line that does not end, trailers that do not end.
  auto line = decode_chunked("5;" + std::string(kMaxChunkLineBytes, 'e'), body);
  EXPECT_EQ(line.status, ParseStatus::error);
  EXPECT_EQ(line.error_status, 400);
  std::string trailers = "0\r\n";
  while (trailers.size() <= kMaxHeaderBytes) trailers += "X-T: " + std::string(100, 't') + "\r\n";
  EXPECT_EQ(decode_chunked(trailers, body).error_status, 431);
  // Bare LF line ends are not CRLF.
  EXPECT_EQ(decode_chunked("5\nhello\r\n0\r\n\r\n", body).error_status, 400);
  EXPECT_TRUE(body.empty());  // a one-shot decode appends only a whole body
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
