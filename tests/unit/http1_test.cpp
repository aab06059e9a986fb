// The native transport's HTTP/1.x response parser, on bytes.
#include <gtest/gtest.h>

#include <random>

#include "transport/http1.hpp"

namespace flexllm::detail {
namespace {

using R = ResponseParser::Result;

struct Collect : ResponseParser::Sink {
  int status = 0;
  std::vector<std::string> headers;
  std::string body;
  size_t stop_after = SIZE_MAX;  // on_body returns false once the body is this long
  bool refuse_headers = false;   // on_header returns false
  void on_status(int s) override { status = s; }
  bool on_header(std::string_view line) override {
    headers.emplace_back(line);
    return !refuse_headers;
  }
  bool on_body(std::string_view bytes) override {
    body.append(bytes);
    return body.size() < stop_after;
  }
};

// Feeds `wire` in pieces cut at `cuts`; returns the final result and what is left unconsumed.
R feed_in_pieces(ResponseParser& p, Collect& sink, std::string_view wire, std::vector<size_t> cuts,
                 std::string* rest = nullptr) {
  cuts.push_back(wire.size());
  size_t at = 0;
  R r = R::need_more;
  for (size_t cut : cuts) {
    std::string_view piece = wire.substr(at, cut - at);
    at = cut;
    r = p.feed(piece, sink);
    if (r != R::need_more) {
      if (rest) *rest = std::string(piece) + std::string(wire.substr(at));
      return r;
    }
  }
  return r;
}

TEST(Http1Parser, ContentLengthReply) {
  ResponseParser p;
  Collect c;
  std::string_view wire =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello";
  EXPECT_EQ(feed_in_pieces(p, c, wire, {}), R::done);
  EXPECT_EQ(c.status, 200);
  EXPECT_EQ(c.body, "hello");
  EXPECT_TRUE(p.keep_alive());
  ASSERT_EQ(c.headers.size(), 2u);
  EXPECT_EQ(c.headers[0], "Content-Type: application/json");
}

TEST(Http1Parser, EveryCutPositionGivesTheSameResult) {
  const std::string wire =
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nretry-after-ms: 5\r\n\r\n"
      "7;ext=1\r\ndata: a\r\n0b\r\n\ndata: bcd\n\r\n0\r\nX-Trailer: t\r\n\r\n";
  for (size_t a = 0; a <= wire.size(); ++a) {
    ResponseParser p;
    Collect c;
    ASSERT_EQ(feed_in_pieces(p, c, wire, {a}), R::done) << "cut at " << a << ": " << p.error();
    EXPECT_EQ(c.status, 200);
    EXPECT_EQ(c.body, "data: a\ndata: bcd\n") << a;
    EXPECT_EQ(c.headers.size(), 2u) << a;
  }
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    std::vector<size_t> cuts;
    for (size_t i = 1; i < wire.size(); ++i)
      if (rng() % 4 == 0) cuts.push_back(i);
    ResponseParser p;
    Collect c;
    ASSERT_EQ(feed_in_pieces(p, c, wire, cuts), R::done);
    EXPECT_EQ(c.body, "data: a\ndata: bcd\n");
  }
}

TEST(Http1Parser, StopsAtTheEndOfOneReply) {
  ResponseParser p;
  Collect c;
  std::string rest;
  EXPECT_EQ(feed_in_pieces(p, c, "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\n", {}, &rest),
            R::done);
  EXPECT_EQ(c.status, 204);
  EXPECT_EQ(rest, "HTTP/1.1 200 OK\r\n") << "the next bytes are left alone";
}

TEST(Http1Parser, ConnectionCloseAndHttp10) {
  {
    ResponseParser p;
    Collect c;
    EXPECT_EQ(feed_in_pieces(
                  p, c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", {}),
              R::done);
    EXPECT_FALSE(p.keep_alive());
  }
  {
    // No length: the body runs until the server closes.
    ResponseParser p;
    Collect c;
    EXPECT_EQ(feed_in_pieces(p, c, "HTTP/1.0 200 OK\r\n\r\nuntil close", {}), R::need_more);
    EXPECT_EQ(p.at_eof(c), R::done);
    EXPECT_EQ(c.body, "until close");
    EXPECT_FALSE(p.keep_alive());
  }
  {
    ResponseParser p;
    Collect c;
    EXPECT_EQ(
        feed_in_pieces(
            p, c, "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", {}),
        R::done);
    EXPECT_TRUE(p.keep_alive());
  }
}

TEST(Http1Parser, TruncationAndEmptyRepliesAreErrors) {
  ResponseParser nothing;
  Collect c;
  EXPECT_EQ(nothing.at_eof(c), R::error);
  EXPECT_FALSE(nothing.started());

  ResponseParser cut;
  std::string_view wire = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf";
  EXPECT_EQ(cut.feed(wire, c), R::need_more);
  EXPECT_TRUE(cut.started());
  EXPECT_TRUE(cut.in_body());
  EXPECT_EQ(cut.at_eof(c), R::error);
  EXPECT_NE(cut.error().find("middle"), std::string::npos);

  ResponseParser chunks;
  std::string_view unfinished =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
  EXPECT_EQ(chunks.feed(unfinished, c), R::need_more);
  EXPECT_EQ(chunks.at_eof(c), R::error) << "no terminating chunk";
}

TEST(Http1Parser, MalformedRepliesAreRejected) {
  for (std::string_view bad :
       {"HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n", "garbage\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n"}) {
    ResponseParser p;
    Collect c;
    std::string_view data = bad;
    EXPECT_EQ(p.feed(data, c), R::error) << bad;
    EXPECT_FALSE(p.error().empty());
  }
}

TEST(Http1Parser, SinkCanStopTheBody) {
  ResponseParser p;
  Collect c;
  c.stop_after = 3;
  std::string_view wire = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789";
  EXPECT_EQ(p.feed(wire, c), R::stopped);
}

TEST(Http1Parser, OverlongHeaderLineIsAnError) {
  ResponseParser p;
  Collect c;
  std::string line = "HTTP/1.1 200 OK\r\nX: " + std::string(70 * 1024, 'a');
  std::string_view data = line;
  EXPECT_EQ(p.feed(data, c), R::error);
}

// The reply as a whole in one piece: the result, with the parser's error when there is one.
R feed_whole(ResponseParser& p, Collect& c, const std::string& wire) {
  std::string_view data = wire;
  return p.feed(data, c);
}

TEST(Http1Parser, StatusLineIsHttp1xAndThreeDigits) {
  for (const char* bad :
       {"HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 -20 OK\r\n\r\n", "HTTP/1.1 +20 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 099 Low\r\n\r\n", "HTTP/1.1 600 High\r\n\r\n",
        "HTTP/1.x 200 OK\r\n\r\n", "HTTP/1.1 2 0 OK\r\n\r\n", "HTTP/1.1 200OK\r\n\r\n",
        "HTTP/1.1  200 OK\r\n\r\n"}) {
    ResponseParser p;
    Collect c;
    EXPECT_EQ(feed_whole(p, c, bad), R::error) << bad;
    EXPECT_TRUE(p.error().starts_with("malformed status")) << bad << ": " << p.error();
    EXPECT_EQ(c.status, 0) << bad;
  }
  for (auto [good, status] : {std::pair{"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", 200},
                              {"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n", 404},
                              {"HTTP/1.1 599 x y z\r\nContent-Length: 0\r\n\r\n", 599}}) {
    ResponseParser p;
    Collect c;
    EXPECT_EQ(feed_whole(p, c, good), R::done) << good << ": " << p.error();
    EXPECT_EQ(c.status, status);
  }
}

TEST(Http1Parser, StatusLineInTheErrorIsPrintable) {
  ResponseParser p;
  Collect c;
  EXPECT_EQ(feed_whole(p, c,
                       "HTTP/1.1 2\x01\xFF"
                       "0 OK\r\n\r\n"),
            R::error);
  EXPECT_EQ(p.error(), "malformed status code in \"HTTP/1.1 2??0 OK\"");
}

std::string headers_reply(size_t fields, size_t value_size = 1) {
  std::string wire = "HTTP/1.1 200 OK\r\n";
  for (size_t i = 0; i < fields; ++i)
    wire += "X-" + std::to_string(i) + ": " + std::string(value_size, 'v') + "\r\n";
  return wire + "Content-Length: 2\r\n\r\nok";
}

TEST(Http1Parser, AtMostAHundredHeaderFields) {
  {
    ResponseParser p;
    Collect c;
    EXPECT_EQ(feed_whole(p, c, headers_reply(kMaxHeaderFields - 1)), R::done) << p.error();
    EXPECT_EQ(c.headers.size(), kMaxHeaderFields);
  }
  ResponseParser p;
  Collect c;
  EXPECT_EQ(feed_whole(p, c, headers_reply(kMaxHeaderFields)), R::error);
  EXPECT_EQ(p.error(), "more than 100 header fields");
  EXPECT_EQ(c.status, 0) << "no status is reported for a head that was refused";

  // Interim heads and trailers count: an endless series of them is bounded too.
  std::string interim;
  for (int i = 0; i < 60; ++i) interim += "HTTP/1.1 100 Continue\r\nX-A: 1\r\nX-B: 2\r\n\r\n";
  ResponseParser q;
  EXPECT_EQ(feed_whole(q, c, interim), R::error);
  EXPECT_EQ(q.error(), "more than 100 header fields");
  std::string trailers = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n";
  for (int i = 0; i < 101; ++i) trailers += "T: x\r\n";
  ResponseParser t;
  EXPECT_EQ(feed_whole(t, c, trailers), R::error);
  EXPECT_EQ(t.error(), "more than 100 header fields");
}

TEST(Http1Parser, AtMost64KiBOfHead) {
  // Each line is under the line limit; together they are not.
  ResponseParser p;
  Collect c;
  EXPECT_EQ(feed_whole(p, c, headers_reply(2, 40 * 1024)), R::error);
  EXPECT_EQ(p.error(), "reply head larger than 64 KiB");
  ResponseParser q;
  EXPECT_EQ(feed_whole(q, c, headers_reply(2, 30 * 1024)), R::done) << q.error();
}

TEST(Http1Parser, OneContentLengthOnly) {
  for (auto [wire, why] :
       {std::pair{"Content-Length: 2\r\nContent-Length: 2", "repeated Content-Length"},
        {"Content-Length: 2\r\ncontent-length: 3", "conflicting Content-Length values (2 and 3)"},
        {"Content-Length: 2, 2", "invalid Content-Length \"2, 2\""},
        {"Content-Length: 99999999999999999999999",
         "invalid Content-Length \"99999999999999999999999\""},
        {"Content-Length: -1", "invalid Content-Length \"-1\""},
        {"Content-Length: +2", "invalid Content-Length \"+2\""},
        {"Content-Length:", "invalid Content-Length \"\""}}) {
    ResponseParser p;
    Collect c;
    EXPECT_EQ(feed_whole(p, c, std::string("HTTP/1.1 200 OK\r\n") + wire + "\r\n\r\nok"), R::error)
        << wire;
    EXPECT_EQ(p.error(), why);
  }
  ResponseParser p;
  Collect c;
  EXPECT_EQ(feed_whole(p, c, "HTTP/1.1 200 OK\r\nContent-Length: 2 \t\r\n\r\nok"), R::done)
      << "whitespace around a value is not part of it: " << p.error();
  EXPECT_EQ(c.body, "ok");
}

TEST(Http1Parser, ChunkSizesAreOneToSixteenHexDigits) {
  const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (const char* bad : {"0x5", " 5", "5x", "-5", "+5", "", ";ext", "00000000000000005",
                          "10000000000000000", "5 5"}) {
    ResponseParser p;
    Collect c;
    EXPECT_EQ(feed_whole(p, c, head + bad + "\r\nhello\r\n0\r\n\r\n"), R::error) << bad;
    EXPECT_TRUE(p.error().starts_with("invalid chunk size")) << bad << ": " << p.error();
    EXPECT_EQ(c.body, "") << bad;
  }
  for (const char* good : {"5", "0005", "5 ", "5;name=value", "5 ; ext", "0000000000000005"}) {
    ResponseParser p;
    Collect c;
    EXPECT_EQ(feed_whole(p, c, head + good + "\r\nhello\r\n0\r\n\r\n"), R::done)
        << good << ": " << p.error();
    EXPECT_EQ(c.body, "hello") << good;
  }
  // The largest size there is, then the server closes: an unfinished body, not a wrap-around.
  ResponseParser p;
  Collect c;
  EXPECT_EQ(feed_whole(p, c, head + "FFFFFFFFFFFFFFFF\r\nabc"), R::need_more) << p.error();
  EXPECT_EQ(c.body, "abc");
  EXPECT_EQ(p.at_eof(c), R::error);
}

TEST(Http1Parser, SinkCanStopAtAHeader) {
  ResponseParser p;
  Collect c;
  c.refuse_headers = true;
  EXPECT_EQ(feed_whole(p, c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), R::stopped);
  EXPECT_EQ(c.body, "");
}

TEST(Http1Target, ResolvesHttpUrlsOnly) {
  auto t = resolve_http1_target("http://127.0.0.1:8123/v1");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->key, "127.0.0.1:8123");
  auto d = resolve_http1_target("http://localhost/v1");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->key, "localhost");
  EXPECT_TRUE(resolve_http1_target("http://[::1]:9000"));
  EXPECT_FALSE(resolve_http1_target("https://127.0.0.1/v1"));
  EXPECT_FALSE(resolve_http1_target("http://user:pw@127.0.0.1/v1")) << "credentials go to curl";
  EXPECT_FALSE(resolve_http1_target("http://no-such-host.invalid/v1"));
  EXPECT_EQ(url_request_target("http://h:1/v1/chat/completions"), "/v1/chat/completions");
  EXPECT_EQ(url_request_target("http://h:1/v1/models?x=1#f"), "/v1/models?x=1");
  EXPECT_EQ(url_request_target("http://h:1"), "/");
}

}  // namespace
}  // namespace flexllm::detail
