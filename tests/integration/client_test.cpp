// LLMClient against the in-process mock over real sockets: calls, async fan-out, streaming,
// thinking, tools, models, validation, lifetime.
#include <future>
#include <set>
#include <thread>

#include "client_support.hpp"

namespace flexllm::test {
namespace {

TEST(Client, SingleCallReturnsContentUsageAndTiming) {
  MockServer mock({.response_tokens = {5, 9}});
  LLMClient client(config_for(mock));
  ChatResult r = client.chat_completions(user("hello"));
  EXPECT_FALSE(r.content.empty());
  EXPECT_EQ(r.finish_reason, "stop");
  ASSERT_TRUE(r.usage);
  EXPECT_GE(r.usage->completion_tokens, 5);
  EXPECT_EQ(r.usage->total_tokens, r.usage->prompt_tokens + r.usage->completion_tokens);
  EXPECT_EQ(r.attempts, 1);
  EXPECT_GT(r.latency.count(), 0);
  EXPECT_EQ(r.endpoint, url_for(mock));
  EXPECT_FALSE(r.reasoning);
  EXPECT_TRUE(r.tool_calls.empty());
  EXPECT_TRUE(r.raw().is_null()) << "raw is kept only when asked";
  EXPECT_EQ(client.provider(), Provider::openai);
}

TEST(Client, ReturnRawKeepsTheProvidersJson) {
  MockServer mock;
  LLMClient client(config_for(mock));
  ChatResult r = client.chat_completions(user("raw please"), {.return_raw = true});
  EXPECT_EQ(r.raw()["object"], "chat.completion");
  EXPECT_EQ(r.raw()["choices"][0]["message"]["content"], r.content);
}

TEST(Client, RequestOptionsReachTheServer) {
  MockServer mock({.record_bodies = true});
  LLMClient client(config_for(mock));
  client.chat_completions(user("opts"), {.model = "other-model",
                                         .temperature = 0.25,
                                         .top_p = 0.5,
                                         .max_tokens = 77,
                                         .stop = std::vector<std::string>{"END"},
                                         .seed = 9,
                                         .response_format = json{{"type", "json_object"}},
                                         .extra = {{"user", "u-1"}, {"temperature", 0.75}}});
  json body = json::parse(mock.stats().arrivals.at(0).body);
  EXPECT_EQ(body["model"], "other-model");
  EXPECT_EQ(body["temperature"], 0.75) << "extra wins over the typed option";
  EXPECT_EQ(body["top_p"], 0.5);
  EXPECT_EQ(body["max_tokens"], 77);
  EXPECT_EQ(body["stop"], json::array({"END"}));
  EXPECT_EQ(body["seed"], 9);
  EXPECT_EQ(body["response_format"]["type"], "json_object");
  EXPECT_EQ(body["user"], "u-1");
  EXPECT_FALSE(body.contains("stream"));
}

TEST(Client, AsyncFanOutKeepsEveryResultWithItsRequest) {
  MockServer mock({.latency_ms = {1, 30}, .echo = true});
  LLMClient client(config_for(mock, {.concurrency_limit = 32}));
  std::vector<std::future<ChatResult>> futures;
  for (int i = 0; i < 300; ++i)
    futures.push_back(client.chat_completions_async(user("n" + std::to_string(i))));
  for (int i = 0; i < 300; ++i) EXPECT_EQ(futures[i].get().content, "n" + std::to_string(i));
  EXPECT_EQ(mock.stats(false).requests, 300u);
}

TEST(Client, ManyThreadsShareOneClient) {
  MockServer mock({.echo = true});
  LLMClient client(config_for(mock, {.concurrency_limit = 8}));
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        std::string text = "t" + std::to_string(t) + "-" + std::to_string(i);
        if (client.chat_completions(user(text)).content == text) ++ok;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 200);
}

TEST(Client, ConcurrencyLimitIsNeverExceeded) {
  MockServer mock({.latency_ms = {10, 40}});
  LLMClient client(config_for(mock, {.concurrency_limit = 7}));
  std::vector<std::future<ChatResult>> futures;
  for (int i = 0; i < 150; ++i)
    futures.push_back(client.chat_completions_async(user("c" + std::to_string(i))));
  for (auto& f : futures) f.get();
  MockStats st = mock.stats(false);
  EXPECT_EQ(st.max_in_flight, 7u) << "the limit must be reached and never passed";
}

TEST(Client, StreamYieldsTokensThenDoneWithTheAssembledResult) {
  MockServer mock({.response_tokens = {12, 12}});
  LLMClient client(config_for(mock));
  std::string whole = client.chat_completions(user("stream me")).content;
  std::string streamed;
  int content_events = 0, usage_events = 0;
  std::shared_ptr<const ChatResult> done;
  for (const StreamEvent& ev : client.chat_completions_stream(user("stream me"))) {
    if (ev.kind == StreamEvent::content) {
      streamed += ev.text;
      ++content_events;
      EXPECT_FALSE(done) << "content after done";
    } else if (ev.kind == StreamEvent::usage) {
      ++usage_events;
    } else if (ev.kind == StreamEvent::done) {
      done = ev.result;
    }
  }
  EXPECT_EQ(streamed, whole);
  EXPECT_EQ(content_events, 12);
  EXPECT_EQ(usage_events, 1);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->content, whole);
  EXPECT_EQ(done->finish_reason, "stop");
  ASSERT_TRUE(done->usage);
  EXPECT_EQ(done->usage->completion_tokens, 12);
  // The request asked for the usage chunk.
  MockServer rec({.record_bodies = true});
  LLMClient c2(config_for(rec));
  c2.chat_completions_stream(user("x")).result();
  json body = json::parse(rec.stats().arrivals.at(0).body);
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
}

TEST(Client, StreamCallbackFormRunsOnTheCallersThread) {
  MockServer mock({.response_tokens = {4, 4}});
  LLMClient client(config_for(mock));
  auto caller = std::this_thread::get_id();
  std::string text;
  ChatResult r = client.chat_completions_stream(user("cb"), [&](const StreamEvent& ev) {
    EXPECT_EQ(std::this_thread::get_id(), caller);
    if (ev.kind == StreamEvent::content) text += ev.text;
  });
  EXPECT_EQ(text, r.content);
  EXPECT_EQ(r.attempts, 1);
}

TEST(Client, AbandonedStreamIsCancelled) {
  MockServer mock({.token_rate = 20, .response_tokens = {200, 200}});
  LLMClient client(config_for(mock));
  {
    ChatStream stream = client.chat_completions_stream(user("long"));
    auto first = stream.next();
    ASSERT_TRUE(first);
  }  // dropped after the first event: the transfer is aborted, the server sees the close
  EXPECT_TRUE(mock.wait_for([](const MockStats& st) { return st.in_flight == 0; }, 5s));
}

TEST(Client, ThinkingFromReasoningContentField) {
  MockServer mock({.reasoning_tokens = {5, 5}, .thinking = mock::ThinkingMode::field});
  LLMClient client(config_for(mock));
  ChatResult r = client.chat_completions(user("think"), {.thinking = true});
  ASSERT_TRUE(r.reasoning);
  EXPECT_FALSE(r.reasoning->empty());
  EXPECT_EQ(r.content.find("<think>"), std::string::npos);
  EXPECT_EQ(r.usage->reasoning_tokens, 5);
  std::string thinking, content;
  for (const StreamEvent& ev : client.chat_completions_stream(user("think"), {.thinking = true})) {
    if (ev.kind == StreamEvent::thinking) thinking += ev.text;
    if (ev.kind == StreamEvent::content) {
      EXPECT_FALSE(thinking.empty()) << "reasoning streams before the answer";
      content += ev.text;
    }
  }
  EXPECT_EQ(thinking, *r.reasoning);
  EXPECT_EQ(content, r.content);
}

TEST(Client, ThinkingFromThinkTagsIsSplitOut) {
  MockServer mock({.reasoning_tokens = {5, 5}, .thinking = mock::ThinkingMode::tags});
  LLMClient client(config_for(mock));
  ChatResult r = client.chat_completions(user("think"), {.return_raw = true});
  ASSERT_TRUE(r.reasoning);
  EXPECT_FALSE(r.reasoning->empty());
  EXPECT_EQ(r.content.find("think>"), std::string::npos);
  EXPECT_FALSE(r.content.empty());
  Thoughts t = parse_thoughts(r.raw(), client.provider());
  EXPECT_EQ(t.thought, *r.reasoning);
  EXPECT_EQ(t.answer, r.content);
  ChatResult s = client.chat_completions_stream(user("think")).result();
  EXPECT_EQ(s.reasoning, r.reasoning);
  EXPECT_EQ(s.content, r.content);
}

TEST(Client, ThinkingOffIsSentInTheServersStyle) {
  MockServer mock(
      {.reasoning_tokens = {3, 3}, .thinking = mock::ThinkingMode::field, .record_bodies = true});
  LLMClient client(config_for(mock));  // 127.0.0.1 -> chat_template_kwargs
  ChatResult r = client.chat_completions(user("quick"), {.thinking = false});
  EXPECT_FALSE(r.reasoning) << "the mock honours enable_thinking=false";
  json body = json::parse(mock.stats().arrivals.at(0).body);
  EXPECT_EQ(body["chat_template_kwargs"]["enable_thinking"], false);
}

TEST(Client, ToolCallsAreNormalised) {
  MockServer mock;
  LLMClient client(config_for(mock));
  json tools = weather_tools();
  ChatResult r = client.chat_completions(user("weather?"), {.tools = tools});
  EXPECT_EQ(r.finish_reason, "tool_calls");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].name, "get_weather");
  EXPECT_EQ(r.tool_calls[0].type, "function");
  EXPECT_EQ(r.tool_calls[0].id.rfind("call_", 0), 0u);
  EXPECT_TRUE(json::parse(r.tool_calls[0].arguments)["city"].is_string());

  int deltas = 0;
  ChatStream stream = client.chat_completions_stream(user("weather?"), {.tools = tools});
  for (const StreamEvent& ev : stream)
    if (ev.kind == StreamEvent::tool_call) ++deltas;
  ChatResult s = stream.result();
  EXPECT_GE(deltas, 2);
  ASSERT_EQ(s.tool_calls.size(), 1u);
  EXPECT_EQ(s.tool_calls[0], r.tool_calls[0]);
}

TEST(Client, ModelListReadsTheEndpointsModels) {
  MockServer mock({.models = {"m-one", "m-two"}});
  LLMClient client(config_for(mock));
  EXPECT_EQ(client.model_list(), (std::vector<std::string>{"m-one", "m-two"}));
}

TEST(Client, InvalidMessagesFailBeforeAnyNetworkIo) {
  MockServer mock;
  LLMClient client(config_for(mock));
  const json bad[] = {json::object(), json::array(), json::array({{{"content", "no role"}}}),
                      json::array({"just a string"}), json("text")};
  for (const json& messages : bad) {
    Error e = error_of([&] { client.chat_completions(messages); });
    EXPECT_EQ(e.kind(), ErrorKind::invalid_request) << messages.dump();
    EXPECT_THROW(client.chat_completions_async(messages), InvalidRequestError);
    EXPECT_THROW(client.chat_completions_stream(messages), InvalidRequestError);
  }
  EXPECT_EQ(mock.stats(false).requests, 0u);
}

TEST(Client, BadConfigIsRejectedNamingTheField) {
  auto why = [](ClientConfig c) {
    try {
      LLMClient client(std::move(c));
    } catch (const InvalidRequestError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(why({.base_url = "localhost:8000"}).find("base_url"), std::string::npos);
  EXPECT_NE(why({.base_url = "http://x/v1", .concurrency_limit = 0}).find("concurrency_limit"),
            std::string::npos);
  EXPECT_NE(why({.base_url = "http://x/v1", .max_qps = 0.0}).find("max_qps"), std::string::npos);
  EXPECT_NE(why({.base_url = "http://x/v1", .retry_times = -1}).find("retry_times"),
            std::string::npos);
}

TEST(Client, ClosingWithWorkInFlightCancelsItPromptly) {
  MockServer mock({.faults = {.hang = 1.0}});
  std::vector<std::future<ChatResult>> futures;
  auto start = std::chrono::steady_clock::now();
  {
    LLMClient client(config_for(mock, {.concurrency_limit = 5, .timeout = 60s}));
    for (int i = 0; i < 40; ++i) futures.push_back(client.chat_completions_async(user("h")));
    ASSERT_TRUE(mock.wait_for([](const MockStats& st) { return st.requests == 5; }, 5s))
        << mock.stats(false).requests << " requests arrived";
  }  // destructor: 5 in flight, 35 queued
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  for (auto& f : futures) EXPECT_THROW(f.get(), CancelledError);
  EXPECT_TRUE(mock.wait_for([](const MockStats& st) { return st.in_flight == 0; }, 5s));
  EXPECT_EQ(mock.stats(false).requests, 5u) << "queued work must not be sent after close";
}

TEST(Client, CallsAfterCloseAreCancelled) {
  MockServer mock;
  LLMClient client(config_for(mock));
  client.close();
  client.close();  // idempotent
  EXPECT_THROW(client.chat_completions(user("late")), CancelledError);
}

TEST(Client, ClientsShareTheProcessRuntimeOrTheirOwn) {
  MockServer mock({.echo = true});
  auto runtime = std::make_shared<Runtime>();
  LLMClient a(config_for(mock, {.runtime = runtime}));
  LLMClient b(config_for(mock));
  EXPECT_EQ(a.chat_completions(user("own")).content, "own");
  EXPECT_EQ(b.chat_completions(user("shared")).content, "shared");
}

TEST(ClientTransport, ServerRestartBetweenRequestsIsInvisible) {
  auto first = std::make_unique<MockServer>(MockConfig{.echo = true});
  const uint16_t port = first->port();
  LLMClient client(config_for(*first));
  EXPECT_EQ(client.chat_completions(user("one")).content, "one");
  first.reset();  // closes the kept-alive connection under the client
  MockServer second({.port = port, .echo = true});
  ChatResult r = client.chat_completions(user("two"));
  EXPECT_EQ(r.content, "two");
  EXPECT_EQ(r.attempts, 1) << "a stale pooled connection is not a failed attempt";
  EXPECT_EQ(second.stats(false).requests, 1u);
}

TEST(ClientTransport, NativeTransportNeedsCleartextHttp) {
  EXPECT_THROW(
      LLMClient(
          {.base_url = "https://example.invalid/v1", .model = "m", .transport = Transport::native}),
      InvalidRequestError);
  MockServer mock({.echo = true});
  LLMClient curl(config_for(mock, {.transport = Transport::curl}));
  LLMClient native(config_for(mock, {.transport = Transport::native}));
  EXPECT_EQ(curl.chat_completions(user("c")).content, "c");
  EXPECT_EQ(native.chat_completions(user("n")).content, "n");
}

}  // namespace
}  // namespace flexllm::test
