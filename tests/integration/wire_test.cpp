// The client against servers that send exactly the bytes a test wants (tests/support/
// scripted_server.hpp; a scripted HTTP/2 server for the HTTPS path): the bounds on a reply's head
// and body, a stream's deadlines and what keeps it alive, and replies that are not quite right.
// Each case runs over the native HTTP/1.1 transport and, where libcurl reads the reply itself
// and only the client's own checks are at stake, over libcurl too.
#include <algorithm>
#include <chrono>

#include "client_support.hpp"
#include "h2_test_server.hpp"
#include "scripted_server.hpp"

namespace flexllm::test {
namespace {

using Clock = std::chrono::steady_clock;

ClientConfig wire_config(const ScriptedServer& server, Transport transport = Transport::native,
                         ClientConfig c = {}) {
  c.base_url = server.base_url();
  c.model = "m";
  c.api_key = "sk-wire-test-key";
  c.proxy = "";
  c.transport = transport;
  c.retry_delay = 1ms;
  c.max_retry_delay = 5ms;
  return c;
}

const char* name(Transport t) {
  return t == Transport::curl ? "curl" : "native";
}

constexpr std::string_view kCompletion =
    R"({"choices":[{"index":0,"message":{"role":"assistant","content":"fine"},)"
    R"("finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}})";

// A whole 200 reply with `body`, after the status line `status_line` and `headers` (each with
// its CRLF).
std::string reply(std::string_view body, std::string_view headers = "",
                  std::string_view status_line = "HTTP/1.1 200 OK") {
  return std::string(status_line) + "\r\nContent-Type: application/json\r\n" +
         std::string(headers) + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
         std::string(body);
}

// The head of a stream whose body runs until the connection closes.
const std::string kStreamHead =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";

std::string chunk_event(std::string_view content) {
  return R"(data: {"choices":[{"index":0,"delta":{"content":")" + std::string(content) +
         "\"}}]}\n\n";
}
const std::string kStreamEnd =
    R"(data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})"
    "\n\ndata: [DONE]\n\n";

std::string what(const Error& e) {
  return e.what();
}
bool has(const Error& e, std::string_view text) {
  return what(e).find(text) != std::string::npos;
}

// ---- The reply's head (native HTTP/1.1: libcurl has limits of its own, docs/transport.md) ----

TEST(WireHead, AtMostAHundredHeaderFields) {
  std::string fields;
  for (int i = 0; i < 99; ++i) fields += "X-Filler-" + std::to_string(i) + ": v\r\n";
  {
    // 99 + Content-Type + Content-Length: just past the bound.
    ScriptedServer server(ScriptedReply().send(reply(kCompletion, fields)));
    LLMClient client(wire_config(server, Transport::native, {.retry_times = 2}));
    Error e = error_of([&] { client.chat_completions(user("x")); });
    EXPECT_EQ(e.kind(), ErrorKind::connection);
    EXPECT_TRUE(e.retryable());
    EXPECT_TRUE(has(e, "bad HTTP reply from 127.0.0.1:" + std::to_string(server.port()) +
                           ": more than 100 header fields"))
        << what(e);
    EXPECT_EQ(server.requests(), 3u) << "a broken reply is worth retrying, as any";
  }
  fields.resize(fields.rfind("X-Filler-98"));
  ScriptedServer server(ScriptedReply().send(reply(kCompletion, fields)));
  LLMClient client(wire_config(server, Transport::native, {.retry_times = 0}));
  EXPECT_EQ(client.chat_completions(user("x")).content, "fine") << "100 fields are fine";
}

TEST(WireHead, AtMost64KiBOfHeaders) {
  // Two fields of 40 KiB: each is under the line limit, together they are past the head's.
  const std::string big = "X-Big-1: " + std::string(40 << 10, 'a') +
                          "\r\nX-Big-2: " + std::string(40 << 10, 'b') + "\r\n";
  ScriptedServer server(ScriptedReply().send(reply(kCompletion, big)));
  LLMClient client(wire_config(server, Transport::native, {.retry_times = 1}));
  Error e = error_of([&] { client.chat_completions(user("x")); });
  EXPECT_EQ(e.kind(), ErrorKind::connection);
  EXPECT_TRUE(has(e, "reply head larger than 64 KiB")) << what(e);
  EXPECT_EQ(server.requests(), 2u);
}

TEST(WireHead, StatusCodeIsThreeDigits) {
  for (const char* status_line : {"HTTP/1.1 2000 OK", "HTTP/1.1 -20 OK", "HTTP/1.1 20 OK",
                                  "HTTP/1.1 600 OK", "HTTP/1.x 200 OK"}) {
    SCOPED_TRACE(status_line);
    ScriptedServer server(ScriptedReply().send(reply(kCompletion, "", status_line)));
    LLMClient client(wire_config(server, Transport::native, {.retry_times = 1}));
    Error e = error_of([&] { client.chat_completions(user("x")); });
    EXPECT_EQ(e.kind(), ErrorKind::connection);
    EXPECT_TRUE(has(e, "malformed status")) << what(e);
    EXPECT_TRUE(has(e, status_line)) << "the line is quoted: " << what(e);
    EXPECT_EQ(server.requests(), 2u);
  }
}

TEST(WireHead, OneContentLengthOnly) {
  for (auto [lengths, why] :
       {std::pair{"Content-Length: 4\r\nContent-Length: 4\r\n", "repeated Content-Length"},
        {"Content-Length: 4\r\nContent-Length: 9\r\n",
         "conflicting Content-Length values (4 and 9)"}}) {
    SCOPED_TRACE(why);
    ScriptedServer server(
        ScriptedReply().send(std::string("HTTP/1.1 200 OK\r\n") + lengths + "\r\nfine?????"));
    LLMClient client(wire_config(server, Transport::native, {.retry_times = 1}));
    Error e = error_of([&] { client.chat_completions(user("x")); });
    EXPECT_EQ(e.kind(), ErrorKind::connection);
    EXPECT_TRUE(has(e, why)) << what(e);
    EXPECT_EQ(server.requests(), 2u);
  }
}

TEST(WireHead, ChunkSizesAreHexAndBounded) {
  const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (const char* size : {"0x10", "1FFFFFFFFFFFFFFFF", "0000000000000000a", "-1", "g"}) {
    SCOPED_TRACE(size);
    ScriptedServer server(ScriptedReply().send(head + size + "\r\n0123456789abcdef\r\n0\r\n\r\n"));
    LLMClient client(wire_config(server, Transport::native, {.retry_times = 1}));
    Error e = error_of([&] { client.chat_completions(user("x")); });
    EXPECT_EQ(e.kind(), ErrorKind::connection);
    EXPECT_TRUE(has(e, std::string("invalid chunk size \"") + size + "\"")) << what(e);
    EXPECT_EQ(server.requests(), 2u);
  }
}

// ---- Body bounds (every transport: the client counts what it is handed) ----

TEST(WireBody, AnnouncedBodyPast64MiBFailsBeforeItIsRead) {
  for (Transport t : {Transport::native, Transport::curl}) {
    SCOPED_TRACE(name(t));
    // The head promises 100 MiB, then nothing comes: the client must not wait for it.
    ScriptedServer server(ScriptedReply()
                              .send("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                    "Content-Length: 104857600\r\n\r\n{")
                              .then_hold());
    LLMClient client(wire_config(server, t, {.timeout = 20s, .retry_times = 2}));
    const auto start = Clock::now();
    Error e = error_of([&] { client.chat_completions(user("x")); });
    EXPECT_LT(Clock::now() - start, 10s);
    EXPECT_EQ(e.kind(), ErrorKind::parse);
    EXPECT_FALSE(e.retryable()) << "it would come back as large";
    EXPECT_TRUE(has(e,
                    "announces 104857600 bytes (Content-Length), more than the 64 MiB a "
                    "reply may have"))
        << what(e);
    EXPECT_EQ(server.requests(), 1u);
  }
}

TEST(WireBody, BodyPast64MiBFails) {
  const std::string mib(1 << 20, ' ');
  for (Transport t : {Transport::native, Transport::curl}) {
    SCOPED_TRACE(name(t));
    // No length given (the body runs to the close): counted as it comes.
    ScriptedServer server(ScriptedReply()
                              .send("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{")
                              .send_repeated(mib, 65));
    LLMClient client(wire_config(server, t, {.retry_times = 2}));
    Error e = error_of([&] { client.chat_completions(user("x")); });
    EXPECT_EQ(e.kind(), ErrorKind::parse);
    EXPECT_FALSE(e.retryable());
    EXPECT_TRUE(has(e, "reply from " + server.base_url() + " is larger than 64 MiB")) << what(e);
    EXPECT_EQ(server.requests(), 1u);
  }
}

TEST(WireBody, StreamPast256MiBFails) {
  // Comments only, 1 KiB lines: a stream that never ends, as cheap to decode as any.
  std::string mib;
  while (mib.size() < (1 << 20)) mib += ": " + std::string(1021, 'k') + "\n";
  mib.resize(1 << 20);
  mib.back() = '\n';
  for (Transport t : {Transport::native, Transport::curl}) {
    SCOPED_TRACE(name(t));
    ScriptedServer server(ScriptedReply().send(kStreamHead).send_repeated(mib, 257));
    LLMClient client(wire_config(server, t, {.retry_times = 2}));
    Error e = error_of([&] { client.chat_completions_stream(user("x")).result(); });
    EXPECT_EQ(e.kind(), ErrorKind::parse);
    EXPECT_FALSE(e.retryable());
    EXPECT_TRUE(has(e, "stream from " + server.base_url() + " went past 256 MiB")) << what(e);
    EXPECT_EQ(server.requests(), 1u);
  }
  // Announced: fails at the head.
  ScriptedServer server(ScriptedReply()
                            .send("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                  "Content-Length: 300000000\r\n\r\n")
                            .then_hold());
  LLMClient client(wire_config(server, Transport::native, {.retry_times = 2}));
  Error e = error_of([&] { client.chat_completions_stream(user("x")).result(); });
  EXPECT_EQ(e.kind(), ErrorKind::parse);
  EXPECT_TRUE(has(e, "more than the 256 MiB a stream may have")) << what(e);
  EXPECT_EQ(server.requests(), 1u);
}

// ---- Stream deadlines ----

TEST(WireStream, StreamTimeoutBoundsTheWholeStream) {
  for (Transport t : {Transport::native, Transport::curl}) {
    SCOPED_TRACE(name(t));
    // A token every 20 ms for 10 s: never idle, never done in time.
    ScriptedServer server(ScriptedReply()
                              .send(kStreamHead)
                              .send_repeated(chunk_event("t"), 500, 20ms)
                              .send(kStreamEnd));
    LLMClient client(wire_config(
        server, t, {.stream_idle_timeout = 5s, .stream_timeout = 400ms, .retry_times = 2}));
    const auto start = Clock::now();
    ChatStream stream = client.chat_completions_stream(user("x"));
    int tokens = 0;
    Error e = error_of([&] {
      while (auto ev = stream.next())
        if (ev->kind == StreamEvent::content) ++tokens;
    });
    const auto took = Clock::now() - start;
    EXPECT_EQ(e.kind(), ErrorKind::timeout);
    EXPECT_EQ(what(e),
              "stream from " + server.base_url() + " did not end within 0.4 s (stream_timeout)");
    EXPECT_GT(tokens, 0);
    EXPECT_GE(took, 400ms);
    EXPECT_LT(took, 5s);
    EXPECT_EQ(server.requests(), 1u) << "events were delivered: no retry";
  }
  // A stream that ends in time is not affected.
  ScriptedServer server(ScriptedReply().send(kStreamHead + chunk_event("ok") + kStreamEnd));
  LLMClient client(wire_config(server, Transport::native, {.stream_timeout = 5s}));
  EXPECT_EQ(client.chat_completions_stream(user("x")).result().content, "ok");
}

TEST(WireStream, StreamTimeoutIsValidated) {
  ScriptedServer server(ScriptedReply().send(reply(kCompletion)));
  for (auto bad : {0ms, -5ms}) {
    try {
      LLMClient client(wire_config(server, Transport::native, {.stream_timeout = bad}));
      ADD_FAILURE() << "accepted " << bad.count();
    } catch (const InvalidRequestError& e) {
      EXPECT_EQ(what(e),
                "ClientConfig.stream_timeout: must be positive (leave it unset for no limit)");
    }
  }
}

TEST(WireStream, KeepAlivesDoNotHoldADeadStreamOpen) {
  for (Transport t : {Transport::native, Transport::curl}) {
    SCOPED_TRACE(name(t));
    // One token, then only comments, blank lines and an event without data, every 50 ms.
    ScriptedServer server(ScriptedReply()
                              .send(kStreamHead + chunk_event("a"))
                              .send_repeated(": keep-alive\n\n\nevent: ping\n\n", 200, 50ms)
                              .then_hold());
    LLMClient client(
        wire_config(server, t, {.timeout = 5s, .stream_idle_timeout = 400ms, .retry_times = 2}));
    const auto start = Clock::now();
    ChatStream stream = client.chat_completions_stream(user("x"));
    std::string content;
    Error e = error_of([&] {
      while (auto ev = stream.next())
        if (ev->kind == StreamEvent::content) content += ev->text;
    });
    const auto took = Clock::now() - start;
    EXPECT_EQ(e.kind(), ErrorKind::timeout);
    EXPECT_EQ(what(e), "stream from " + server.base_url() +
                           " was silent for 0.4 s (stream_idle_timeout; comments and "
                           "keep-alives are not data)");
    EXPECT_EQ(content, "a");
    EXPECT_LT(took, 5s) << "the keep-alives went on for 10 s";
    EXPECT_EQ(server.requests(), 1u);
  }
}

TEST(WireStream, DataEventsKeepAStreamAlive) {
  // Slower than the idle timeout in all, but a data event comes well within it each time.
  ScriptedServer server(
      ScriptedReply().send(kStreamHead).send_repeated(chunk_event("t"), 12, 50ms).send(kStreamEnd));
  LLMClient client(wire_config(server, Transport::native, {.stream_idle_timeout = 400ms}));
  EXPECT_EQ(client.chat_completions_stream(user("x")).result().content, std::string(12, 't'));
}

// ---- Replies that are not quite right ----

const std::string kBadUtf8Completion =
    "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"caf\xC3 "
    "ok \xE2\x82\","
    "\"reasoning_content\":\"th\xFFnk\",\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
    "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"K\xF6ln\\\"}\"}}]},"
    "\"finish_reason\":\"tool_calls\"}]}";
const std::string kReplacement = "\xEF\xBF\xBD";

TEST(WireReply, InvalidUtf8IsRepairedAndNotRetried) {
  for (Transport t : {Transport::native, Transport::curl}) {
    SCOPED_TRACE(name(t));
    ScriptedServer server(ScriptedReply().send(reply(kBadUtf8Completion)));
    LLMClient client(wire_config(server, t, {.retry_times = 3}));
    ChatResult r = client.chat_completions(user("x"));
    EXPECT_EQ(r.content, "caf" + kReplacement + " ok " + kReplacement);
    EXPECT_EQ(r.reasoning, "th" + kReplacement + "nk");
    ASSERT_EQ(r.tool_calls.size(), 1u);
    EXPECT_EQ(r.tool_calls[0].arguments, "{\"city\":\"K" + kReplacement + "ln\"}");
    EXPECT_EQ(r.attempts, 1);
    EXPECT_EQ(server.requests(), 1u);
    EXPECT_NO_THROW(json(r.content).dump()) << "writable to JSON (a batch's output file)";
  }
}

TEST(WireReply, InvalidUtf8InAStreamIsRepairedAndNotRetried) {
  for (Transport t : {Transport::native, Transport::curl}) {
    SCOPED_TRACE(name(t));
    ScriptedServer server(ScriptedReply().send(
        kStreamHead + "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning\":\"\xC3\"}}]}\n\n" +
        chunk_event("ab\xE2\x82") +
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\","
        "\"function\":{\"name\":\"f\",\"arguments\":\"\x80\"}}]}}]}\n\n" +
        kStreamEnd));
    LLMClient client(wire_config(server, t, {.retry_times = 3}));
    ChatStream stream = client.chat_completions_stream(user("x"));
    std::string content, thinking;
    while (auto ev = stream.next()) {
      if (ev->kind == StreamEvent::content) content += ev->text;
      if (ev->kind == StreamEvent::thinking) thinking += ev->text;
    }
    EXPECT_EQ(content, "ab" + kReplacement);
    EXPECT_EQ(thinking, kReplacement);
    ChatResult r = stream.result();
    ASSERT_EQ(r.tool_calls.size(), 1u);
    EXPECT_EQ(r.tool_calls[0].arguments, kReplacement);
    EXPECT_EQ(server.requests(), 1u);
  }
}

// Some servers ignore stream:true and answer with the whole completion.
TEST(WireReply, APlainJsonReplyAnswersAStream) {
  const std::string completion =
      R"({"choices":[{"index":0,"message":{"role":"assistant","content":"whole answer",)"
      R"("reasoning_content":"thought first","tool_calls":[{"id":"c1","type":"function",)"
      R"("function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]},)"
      R"("finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":7,)"
      R"("total_tokens":12}})";
  for (Transport t : {Transport::native, Transport::curl}) {
    for (std::string_view type : {"application/json", "text/plain"}) {
      SCOPED_TRACE(std::string(name(t)) + ", " + std::string(type));
      ScriptedServer server(ScriptedReply().send(
          "HTTP/1.1 200 OK\r\nContent-Type: " + std::string(type) +
          "\r\nContent-Length: " + std::to_string(completion.size()) + "\r\n\r\n" + completion));
      LLMClient client(wire_config(server, t, {.retry_times = 3}));
      ChatStream stream = client.chat_completions_stream(user("x"));
      std::vector<StreamEvent> events;
      while (auto ev = stream.next()) events.push_back(*ev);
      ASSERT_EQ(events.size(), 5u);
      EXPECT_EQ(events[0].kind, StreamEvent::thinking);
      EXPECT_EQ(events[0].text, "thought first");
      EXPECT_EQ(events[1].kind, StreamEvent::content);
      EXPECT_EQ(events[1].text, "whole answer");
      EXPECT_EQ(events[2].kind, StreamEvent::tool_call);
      EXPECT_EQ(events[2].tool->name, "get_weather");
      EXPECT_EQ(events[2].tool->arguments, R"({"city":"Oslo"})");
      EXPECT_EQ(events[3].kind, StreamEvent::usage);
      EXPECT_EQ(events[3].usage_info, (Usage{5, 7, 12}));
      EXPECT_EQ(events[4].kind, StreamEvent::done);
      ASSERT_TRUE(events[4].result);
      EXPECT_EQ(events[4].result->content, "whole answer");
      EXPECT_EQ(events[4].result->finish_reason, "tool_calls");
      EXPECT_EQ(server.requests(), 1u);
    }
  }
}

TEST(WireReply, AnErrorObjectAnsweringAStreamIsTheProvidersError) {
  // As for a non-streamed reply: an in-band error, retried only when its code says so.
  ScriptedServer server(
      ScriptedReply().send(reply(R"({"error":{"message":"context too long","code":400}})")));
  LLMClient client(wire_config(server, Transport::native, {.retry_times = 3}));
  Error e = error_of([&] { client.chat_completions_stream(user("x")).result(); });
  EXPECT_EQ(e.kind(), ErrorKind::provider);
  EXPECT_TRUE(has(e, "context too long")) << what(e);
  EXPECT_EQ(server.requests(), 1u);
  Error same = error_of([&] { client.chat_completions(user("x")); });
  EXPECT_EQ(same.kind(), ErrorKind::provider);
}

// ---- HTTP/2 (native HTTPS): the same bounds on a reply's head ----

class WireH2 : public ::testing::Test {
 protected:
  TempDir dir_{"flexllm_wire_test"};
  TestPki pki_{dir_.path()};

  ClientConfig config(const H2TestServer& server) {
    return {.base_url = server.base_url(),
            .api_key = "sk-wire-test-key",
            .model = "m",
            .retry_times = 1,
            .retry_delay = 1ms,
            .max_retry_delay = 5ms,
            .proxy = "",
            .ca_cert = pki_.ca.cert,
            .transport = Transport::native};
  }
};

TEST_F(WireH2, AtMostAHundredHeaderFields) {
  H2TestServerOptions options{.cert = pki_.server};
  for (int i = 0; i < 98; ++i)
    options.extra_headers.emplace_back("x-filler-" + std::to_string(i), "v");
  {
    H2TestServer server(options);  // with :status, content-type and content-length: 101
    LLMClient client(config(server));
    Error e = error_of([&] { client.chat_completions(user("x")); });
    EXPECT_EQ(e.kind(), ErrorKind::connection);
    EXPECT_TRUE(has(e, "bad HTTP/2 reply from 127.0.0.1:" + std::to_string(server.port()) +
                           ": more than 100 header fields"))
        << what(e);
    EXPECT_EQ(server.counters().streams, 2u);
  }
  options.extra_headers.pop_back();
  H2TestServer server(options);
  LLMClient client(config(server));
  EXPECT_EQ(client.chat_completions(user("x")).content, "ok");
}

TEST_F(WireH2, AtMost64KiBOfHeaders) {
  H2TestServerOptions options{.cert = pki_.server};
  // Three fields of 30 KiB (fewer bytes on the wire: the bound is on what they decode to).
  for (int i = 0; i < 3; ++i)
    options.extra_headers.emplace_back("x-big", std::string(30 << 10, 'a'));
  H2TestServer server(options);
  LLMClient client(config(server));
  Error e = error_of([&] { client.chat_completions(user("x")); });
  EXPECT_EQ(e.kind(), ErrorKind::connection);
  EXPECT_TRUE(has(e, "reply head larger than 64 KiB")) << what(e);
}

}  // namespace
}  // namespace flexllm::test
