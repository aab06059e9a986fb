// The mock's HTTP/1.x handling over raw sockets: keep-alive, pipelining, HTTP/1.0, chunked request
// bodies, Expect: 100-continue, error statuses, and the bounds on what a client can make it hold
// or wait for (sizes, timeouts, parse work).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

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

std::string hex(size_t n) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%zx", n);
  return buf;
}

// One TCP connection to the mock that sends exactly the bytes a test gives.
class RawConn {
 public:
  explicit RawConn(uint16_t port, int sndbuf = 0) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (sndbuf > 0) setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      throw std::runtime_error("RawConn: connect failed");
  }
  ~RawConn() { close(fd_); }
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;

  // False when the server has closed.
  bool send_all(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  // Sends as much of `bytes` as the connection takes until it has taken nothing for `stuck`;
  // returns how much it took.
  size_t send_until_stuck(std::string_view bytes, std::chrono::milliseconds stuck) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      pollfd p{fd_, POLLOUT, 0};
      if (poll(&p, 1, static_cast<int>(stuck.count())) <= 0 || !(p.revents & POLLOUT)) break;
      ssize_t n = send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    return sent;
  }
  // Reads for at most `wait`; false once the server has closed.
  bool read_some(std::chrono::milliseconds wait) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(wait.count())) <= 0) return true;
    char buf[65536];
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return false;
    got.append(buf, static_cast<size_t>(n));
    return true;
  }
  // Reads until the server closes (true) or `limit` passes (false).
  bool read_until_close(std::chrono::milliseconds limit = 10s) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end)
      if (!read_some(100ms)) return true;
    return false;
  }
  // Reads until `needle` has arrived `times` times in all, or `limit` passes. Each byte is
  // searched once (replies of megabytes come in 64 KiB reads).
  bool read_until(const std::string& needle, size_t times = 1,
                  std::chrono::milliseconds limit = 10s) {
    const auto end = std::chrono::steady_clock::now() + limit;
    size_t n = 0, from = 0;
    for (;;) {
      for (size_t p = got.find(needle, from); p != std::string::npos; p = got.find(needle, from)) {
        ++n;
        from = p + 1;
      }
      if (n >= times) return true;
      if (got.size() >= needle.size()) from = std::max(from, got.size() - needle.size() + 1);
      if (std::chrono::steady_clock::now() >= end || !read_some(100ms)) return false;
    }
  }
  int fd() const { return fd_; }

  std::string got;

 private:
  int fd_ = -1;
};

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

TEST(MockHttpBounds, HeadOver64KiBIsRefusedEvenWhenItArrivesWhole) {
  MockServer mock;
  // The head's end is in the first read, past the limit: still 431, and the connection closes.
  std::string head = "GET /health HTTP/1.1\r\nX: " + std::string(70000, 'a') + "\r\n\r\n";
  std::string got = raw_exchange(mock.port(), head + "GET /health HTTP/1.1\r\n\r\n", 2s);
  EXPECT_EQ(got.rfind("HTTP/1.1 431", 0), 0u) << got.substr(0, 200);
  EXPECT_EQ(count(got, "HTTP/1.1"), 1u);
  EXPECT_NE(got.find("Connection: close"), std::string::npos);
}

TEST(MockHttpBounds, BodiesOverTheCapAre413ChunkedOrNot) {
  MockServer mock({.echo = true, .max_body_bytes = 1000});
  std::string big = chat_body(std::string(1200, 'b'));
  std::string by_length = raw_exchange(mock.port(), post(big), 2s);
  EXPECT_EQ(by_length.rfind("HTTP/1.1 413", 0), 0u) << by_length.substr(0, 200);

  // Chunked: the cap counts decoded bytes, in whatever chunks they come.
  std::string wire = "POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (size_t at = 0; at < big.size(); at += 300) {
    std::string part = big.substr(at, 300);
    wire += hex(part.size()) + "\r\n" + part + "\r\n";
  }
  wire += "0\r\n\r\n";
  std::string chunked = raw_exchange(mock.port(), wire, 2s);
  EXPECT_EQ(chunked.rfind("HTTP/1.1 413", 0), 0u) << chunked.substr(0, 200);
  EXPECT_NE(chunked.find("Connection: close"), std::string::npos);

  // A chunk that announces more than the cap is refused before its bytes come.
  MockServer dflt;
  std::string announced = raw_exchange(
      dflt.port(),
      "POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5000000\r\nab", 2s);
  EXPECT_EQ(announced.rfind("HTTP/1.1 413", 0), 0u) << announced.substr(0, 200);

  // Within the cap, the same body chunked is answered.
  MockServer roomy({.echo = true, .max_body_bytes = 2000});
  RawConn ok(roomy.port());
  ASSERT_TRUE(ok.send_all(wire));
  EXPECT_TRUE(ok.read_until(std::string(1200, 'b')));
  EXPECT_EQ(ok.got.rfind("HTTP/1.1 200", 0), 0u) << ok.got.substr(0, 200);
}

TEST(MockHttpBounds, ChunkSizeLinesAndTrailersAreBounded) {
  MockServer mock;
  const std::string head =
      "POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  // A size line that never ends (an endless extension) is not buffered: 400 and close.
  RawConn endless(mock.port());
  ASSERT_TRUE(endless.send_all(head + "5;" + std::string(100000, 'e')));
  EXPECT_TRUE(endless.read_until_close());
  EXPECT_EQ(endless.got.rfind("HTTP/1.1 400", 0), 0u) << endless.got.substr(0, 200);

  // Trailers are header fields: 64 KiB at most.
  RawConn trailers(mock.port());
  ASSERT_TRUE(trailers.send_all(head + "0\r\n"));
  std::string trailer = "X-T: " + std::string(1000, 't') + "\r\n";
  for (int i = 0; i < 80 && trailers.send_all(trailer); ++i) {
  }
  EXPECT_TRUE(trailers.read_until_close());
  EXPECT_EQ(trailers.got.rfind("HTTP/1.1 431", 0), 0u) << trailers.got.substr(0, 200);
}

// The kernel's buffers on both ends of a loopback connection hold at most this many bytes.
size_t socket_buffers(int client_fd) {
  size_t rmem_max = 6 << 20;
  std::ifstream f("/proc/sys/net/ipv4/tcp_rmem");
  size_t lo = 0, dflt = 0;
  f >> lo >> dflt >> rmem_max;
  int sndbuf = 0;
  socklen_t len = sizeof sndbuf;
  getsockopt(client_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len);
  return rmem_max + static_cast<size_t>(sndbuf);
}

TEST(MockHttpBounds, BytesPipelinedBehindAPendingReplyAreNotBuffered) {
  // The first request waits a minute for its reply; the client keeps sending. The server stops
  // reading (the client's sends block) instead of holding what comes.
  MockServer mock({.latency_ms = {60000, 60000}});
  RawConn c(mock.port(), 64 << 10);
  ASSERT_TRUE(c.send_all(post(chat_body("slow"))));
  ASSERT_TRUE(mock.wait_for([](const MockStats& st) { return st.in_flight == 1; }, 5s));
  const size_t bound = socket_buffers(c.fd()) + (1 << 20);
  const std::string flood(bound + (16 << 20), 'x');
  size_t taken = c.send_until_stuck(flood, 500ms);
  EXPECT_LT(taken, bound) << "the server took " << taken << " bytes";
  EXPECT_LE(mock.stats(false).max_buffered_bytes, (64u << 10) + 1024);

  // Behind a request that is never answered, further bytes are read and dropped (so the close
  // of the connection is seen), not kept.
  MockServer hang({.faults = {.hang = 1.0}});
  {
    RawConn h(hang.port());
    ASSERT_TRUE(h.send_all(post(chat_body("held"))));
    ASSERT_TRUE(h.send_all(std::string(8 << 20, 'x')));
  }
  ASSERT_TRUE(hang.wait_for([](const MockStats& st) { return st.connections_open == 0; }, 10s));
  EXPECT_LE(hang.stats(false).max_buffered_bytes, (64u << 10) + 1024);
  EXPECT_EQ(hang.stats(false).in_flight, 0u);
}

TEST(MockHttpBounds, PipelinedRequestsStopWhileTheirRepliesAreNotRead) {
  // Each reply is ~60 KB; 200 requests come in one read. The server answers until about 1 MiB
  // of replies is waiting to be sent, and goes on as the client reads them.
  auto name = [](int i) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%040d", i);
    return std::string(buf);
  };
  std::vector<std::string> models;
  for (int i = 0; i < 1000; ++i) models.push_back(name(i));
  MockServer mock({.models = models});
  std::string one = "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n";
  std::string burst;
  for (int i = 0; i < 200; ++i) burst += one;
  RawConn c(mock.port());
  ASSERT_TRUE(c.send_all(burst));
  ASSERT_TRUE(c.read_until("HTTP/1.1 200 OK", 200, 30s)) << count(c.got, "HTTP/1.1 200 OK");
  // The last reply's end: the whole of each arrived.
  ASSERT_TRUE(c.read_until("\"" + name(999) + "\"", 200, 30s));
  MockStats st = mock.stats(false);
  EXPECT_EQ(st.other_requests, 200u);
  EXPECT_LE(st.max_buffered_bytes, (64u << 10) + (1u << 20) + 70000) << st.max_buffered_bytes;
}

TEST(MockHttpBounds, AHeadThatTricklesInIsCutAtTheHeaderTimeout) {
  MockServer mock({.header_timeout = 300ms});
  RawConn c(mock.port());
  // A keep-alive connection with nothing of a next request is not cut...
  ASSERT_TRUE(c.send_all("GET /health HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(c.read_until("{\"status\":\"ok\"}"));
  pollfd p{c.fd(), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 900), 0) << "closed while idle";
  // ...but a head that keeps trickling in is, however often its bytes come: 408, then the close.
  const std::string head = "GET /health HTTP/1.1\r\nX-Slow: " + std::string(400, 's');
  size_t sent = 0;
  bool closed = false;
  for (; sent < head.size() && !closed; ++sent) {
    if (!c.send_all(head.substr(sent, 1))) break;
    closed = !c.read_some(25ms);  // paces the trickle: one byte per 25 ms at most
  }
  closed = closed || c.read_until_close(5s);
  EXPECT_TRUE(closed);
  EXPECT_LT(sent, head.size()) << "the whole head went in (10 s) without the server closing";
  EXPECT_NE(c.got.find("HTTP/1.1 408 Request Timeout"), std::string::npos) << c.got;
  EXPECT_NE(c.got.find("Connection: close"), std::string::npos);
}

TEST(MockHttpBounds, AStalledBodyIsCutAtTheBodyTimeout) {
  MockServer mock({.echo = true, .body_timeout = 300ms});
  std::string body = chat_body("stalled");
  // Content-Length: part of the body, then nothing.
  RawConn c(mock.port());
  ASSERT_TRUE(c.send_all(post(body).substr(0, post(body).size() - 10)));
  EXPECT_TRUE(c.read_until_close(5s));
  EXPECT_EQ(c.got.rfind("HTTP/1.1 408", 0), 0u) << c.got;
  // Chunked: a chunk half sent, then nothing.
  RawConn d(mock.port());
  ASSERT_TRUE(
      d.send_all("POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" +
                 hex(body.size()) + "\r\n" + body.substr(0, 10)));
  EXPECT_TRUE(d.read_until_close(5s));
  EXPECT_EQ(d.got.rfind("HTTP/1.1 408", 0), 0u) << d.got;

  // A body that keeps coming, each piece well within the timeout, is read to its end however
  // long it takes in all.
  MockServer patient({.echo = true, .body_timeout = 1000ms});
  RawConn e(patient.port());
  std::string wire = post(chat_body(std::string(40, 'p')));
  size_t head_end = wire.find("\r\n\r\n") + 4;
  ASSERT_TRUE(e.send_all(wire.substr(0, head_end)));
  for (size_t at = head_end; at < wire.size(); ++at) {
    ASSERT_TRUE(e.send_all(wire.substr(at, 1)));
    ASSERT_TRUE(e.read_some(at % 3 == 0 ? 50ms : 0ms));  // ~1.6 s in all
  }
  EXPECT_TRUE(e.read_until(std::string(40, 'p')));
  EXPECT_EQ(e.got.rfind("HTTP/1.1 200", 0), 0u) << e.got;
}

TEST(MockHttpBounds, AChunkedBodyInTinyPiecesIsParsedInLinearWork) {
  MockServer mock({.echo = true});
  std::string body = chat_body(std::string(200000, 'c'));
  RawConn c(mock.port());
  std::string head = "POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  ASSERT_TRUE(c.send_all(head));
  size_t sent = head.size();
  // 7-byte chunks, each sent in two pieces (a size line split from its data): ~57 000 sends.
  for (size_t at = 0; at < body.size(); at += 7) {
    std::string part = body.substr(at, 7);
    std::string framed = hex(part.size()) + "\r\n" + part + "\r\n";
    ASSERT_TRUE(c.send_all(framed.substr(0, 2)));
    ASSERT_TRUE(c.send_all(framed.substr(2)));
    sent += framed.size();
  }
  ASSERT_TRUE(c.send_all("0\r\n\r\n"));
  sent += 5;
  ASSERT_TRUE(c.read_until(std::string(200000, 'c'), 1, 30s));
  EXPECT_EQ(c.got.rfind("HTTP/1.1 200", 0), 0u);
  // However the pieces were grouped into reads, each byte was looked at a bounded number of times.
  MockStats st = mock.stats(false);
  EXPECT_LE(st.bytes_parsed, 3 * sent) << "sent " << sent;
}

}  // namespace
}  // namespace flexllm::mock
