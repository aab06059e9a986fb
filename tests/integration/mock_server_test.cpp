// The mock server over real sockets: response shapes, streaming, thinking, tools, stats, logs.
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "flexllm/mock/server.hpp"
#include "http.hpp"

namespace flexllm::mock {
namespace {

using namespace flexllm::test;

std::string chat_url(const MockServer& m) {
  return m.base_url() + "/chat/completions";
}

HttpResponse post_chat(const MockServer& m, const std::string& body) {
  return http({.url = chat_url(m), .body = body});
}

// Concatenates the stream's deltas; fails the test on a malformed event.
struct Assembled {
  std::string content, reasoning, finish_reason, tool_name, tool_args, tool_id;
  json usage;
  bool done = false;
  size_t events = 0;
};

Assembled assemble(const std::string& sse) {
  Assembled a;
  for (const std::string& data : sse_data(sse)) {
    ++a.events;
    if (data == "[DONE]") {
      a.done = true;
      continue;
    }
    json chunk = json::parse(data);
    EXPECT_EQ(chunk["object"], "chat.completion.chunk");
    if (chunk.contains("usage") && chunk["usage"].is_object()) a.usage = chunk["usage"];
    if (chunk["choices"].empty()) continue;
    const json& choice = chunk["choices"][0];
    const json& delta = choice["delta"];
    if (delta.contains("content") && delta["content"].is_string()) a.content += delta["content"];
    if (delta.contains("reasoning_content")) a.reasoning += delta["reasoning_content"];
    if (delta.contains("tool_calls")) {
      const json& tc = delta["tool_calls"][0];
      if (tc.contains("id")) a.tool_id = tc["id"];
      if (tc["function"].contains("name")) a.tool_name = tc["function"]["name"];
      a.tool_args += tc["function"].value("arguments", "");
    }
    if (!choice["finish_reason"].is_null()) a.finish_reason = choice["finish_reason"];
  }
  return a;
}

TEST(MockServer, ChatCompletionHasTheOpenAiShape) {
  MockServer mock({.models = {"alpha", "beta"}, .response_tokens = {3, 7}});
  auto r = post_chat(mock, chat_body("hello", false, {{"model", "gpt-test"}}));
  ASSERT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.header("content-type"), "application/json");
  json j = r.json_body();
  EXPECT_EQ(j["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_TRUE(j["created"].is_number_integer());
  EXPECT_EQ(j["model"], "gpt-test");
  ASSERT_EQ(j["choices"].size(), 1u);
  EXPECT_EQ(j["choices"][0]["index"], 0);
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_FALSE(j["choices"][0]["message"]["content"].get<std::string>().empty());
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  const json& u = j["usage"];
  EXPECT_GT(u["prompt_tokens"], 0);
  EXPECT_GE(u["completion_tokens"], 3);
  EXPECT_LE(u["completion_tokens"], 7);
  EXPECT_EQ(u["total_tokens"], u["prompt_tokens"].get<int>() + u["completion_tokens"].get<int>());

  // Without a model in the request the reply names the server's first model.
  auto bare = post_chat(mock, R"({"messages":[{"role":"user","content":"x"}]})");
  EXPECT_EQ(bare.json_body()["model"], "alpha");

  auto models = http_get(mock.base_url() + "/models");
  ASSERT_EQ(models.status, 200);
  json list = models.json_body();
  EXPECT_EQ(list["object"], "list");
  ASSERT_EQ(list["data"].size(), 2u);
  EXPECT_EQ(list["data"][0]["id"], "alpha");
  EXPECT_EQ(list["data"][1]["id"], "beta");
  EXPECT_EQ(list["data"][1]["object"], "model");
}

TEST(MockServer, StreamIsWellFramedSseMatchingTheNonStreamReply) {
  MockServer mock({.response_tokens = {20, 20}});
  auto whole = post_chat(mock, chat_body("tell me")).json_body();
  auto r =
      post_chat(mock, chat_body("tell me", true, {{"stream_options", {{"include_usage", true}}}}));
  ASSERT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.curl_code, 0);
  EXPECT_EQ(r.header("content-type"), "text/event-stream");
  EXPECT_EQ(r.header("transfer-encoding"), "chunked");
  // Every event is "data: …" followed by a blank line; nothing else is on the wire.
  size_t pos = 0, events = 0;
  while (pos < r.body.size()) {
    ASSERT_EQ(r.body.compare(pos, 6, "data: "), 0) << r.body.substr(pos, 40);
    size_t end = r.body.find("\n\n", pos);
    ASSERT_NE(end, std::string::npos);
    pos = end + 2;
    ++events;
  }
  Assembled a = assemble(r.body);
  EXPECT_EQ(events, 1u + 20 + 1 + 1 + 1);  // role, tokens, finish, usage, [DONE]
  EXPECT_TRUE(a.done);
  EXPECT_EQ(sse_data(r.body).back(), "[DONE]");
  EXPECT_EQ(a.content, whole["choices"][0]["message"]["content"]);
  EXPECT_EQ(a.finish_reason, "stop");
  EXPECT_EQ(a.usage, whole["usage"]);

  // Without include_usage there is no usage chunk and no usage key.
  auto plain = post_chat(mock, chat_body("tell me", true));
  EXPECT_EQ(plain.body.find("\"usage\""), std::string::npos);
  EXPECT_EQ(sse_data(plain.body).size(), 1u + 20 + 1 + 1);
}

TEST(MockServer, StreamTokensArePacedByTokenRate) {
  // 11 tokens at 100 tokens/s: the last token leaves 100 ms after the first.
  MockServer mock({.token_rate = 100, .response_tokens = {11, 11}});
  auto r = post_chat(mock, chat_body("pace", true));
  ASSERT_EQ(r.curl_code, 0) << r.error;
  ASSERT_GE(r.chunks.size(), 2u);
  auto spread = r.chunks.back().first - r.chunks.front().first;
  EXPECT_GE(spread.count(), 0.095) << "tokens were not paced";
  EXPECT_EQ(assemble(r.body).finish_reason, "stop");
}

TEST(MockServer, LatencyDelaysEveryReply) {
  MockServer mock({.latency_ms = {120, 160}});
  auto r = post_chat(mock, chat_body("slow"));
  ASSERT_EQ(r.status, 200);
  EXPECT_GE(r.elapsed.count(), 0.119);
  auto s = post_chat(mock, chat_body("slow stream", true));
  ASSERT_FALSE(s.chunks.empty());
  EXPECT_GE(s.chunks.front().first.count(), 0.119);  // time to first byte
}

TEST(MockServer, ThinkingAsReasoningContentField) {
  MockServer mock({.reasoning_tokens = {6, 6}, .thinking = ThinkingMode::field});
  json j = post_chat(mock, chat_body("think")).json_body();
  const json& msg = j["choices"][0]["message"];
  ASSERT_TRUE(msg["reasoning_content"].is_string());
  EXPECT_FALSE(msg["reasoning_content"].get<std::string>().empty());
  EXPECT_EQ(msg["content"].get<std::string>().find("<think>"), std::string::npos);
  EXPECT_EQ(j["usage"]["completion_tokens_details"]["reasoning_tokens"], 6);

  Assembled a = assemble(post_chat(mock, chat_body("think", true)).body);
  EXPECT_EQ(a.reasoning, msg["reasoning_content"]);
  EXPECT_EQ(a.content, msg["content"]);

  // A request that switches thinking off gets none.
  json off = post_chat(mock, chat_body("think", false,
                                       {{"chat_template_kwargs", {{"enable_thinking", false}}}}))
                 .json_body();
  EXPECT_FALSE(off["choices"][0]["message"].contains("reasoning_content"));
}

TEST(MockServer, ThinkingAsTagsInContent) {
  MockServer mock({.thinking = ThinkingMode::tags});
  json j = post_chat(mock, chat_body("think")).json_body();
  std::string content = j["choices"][0]["message"]["content"];
  EXPECT_EQ(content.rfind("<think>", 0), 0u);
  size_t close = content.find("</think>");
  ASSERT_NE(close, std::string::npos);
  EXPECT_GT(content.size(), close + 9);  // an answer follows the reasoning
  EXPECT_FALSE(j["choices"][0]["message"].contains("reasoning_content"));
  Assembled a = assemble(post_chat(mock, chat_body("think", true)).body);
  EXPECT_EQ(a.content, content);
  EXPECT_TRUE(a.reasoning.empty());
}

TEST(MockServer, ToolsGetAToolCallWhoseArgumentsMeetTheSchema) {
  MockServer mock;
  json tools = json::array(
      {{{"type", "function"},
        {"function",
         {{"name", "lookup"},
          {"parameters",
           {{"type", "object"},
            {"properties", {{"query", {{"type", "string"}}}, {"limit", {{"type", "integer"}}}}},
            {"required", {"query", "limit"}}}}}}}});
  json j = post_chat(mock, chat_body("find it", false, {{"tools", tools}})).json_body();
  const json& choice = j["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls");
  EXPECT_TRUE(choice["message"]["content"].is_null());
  const json& call = choice["message"]["tool_calls"][0];
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["function"]["name"], "lookup");
  json args = json::parse(call["function"]["arguments"].get<std::string>());
  EXPECT_TRUE(args["query"].is_string());
  EXPECT_TRUE(args["limit"].is_number_integer());

  Assembled a = assemble(post_chat(mock, chat_body("find it", true, {{"tools", tools}})).body);
  EXPECT_EQ(a.finish_reason, "tool_calls");
  EXPECT_EQ(a.tool_name, "lookup");
  EXPECT_EQ(a.tool_id, call["id"]);
  EXPECT_EQ(a.tool_args, call["function"]["arguments"]);
}

TEST(MockServer, EchoRepeatsTheLastUserMessage) {
  MockServer mock({.echo = true});
  std::string text = "Ünïcode \"quoted\"\nline two";
  json j = post_chat(mock, chat_body(text)).json_body();
  EXPECT_EQ(j["choices"][0]["message"]["content"], text);
  EXPECT_EQ(assemble(post_chat(mock, chat_body(text, true)).body).content, text);
}

TEST(MockServer, MaxTokensCutsTheAnswer) {
  MockServer mock({.response_tokens = {30, 30}});
  json j = post_chat(mock, chat_body("long", false, {{"max_tokens", 5}})).json_body();
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["completion_tokens"], 5);
}

TEST(MockServer, ContentIsDeterministicFromTheSeed) {
  MockServer a({.seed = 11}), b({.seed = 11}), c({.seed = 12});
  auto content = [](const MockServer& m, const std::string& q) {
    return post_chat(m, chat_body(q))
        .json_body()["choices"][0]["message"]["content"]
        .get<std::string>();
  };
  for (const std::string q : {"one", "two", "three"}) {
    EXPECT_EQ(content(a, q), content(b, q));
    EXPECT_EQ(content(a, q), content(a, q));  // independent of arrival order
  }
  int differing = 0;
  for (const std::string q : {"one", "two", "three"}) differing += content(a, q) != content(c, q);
  EXPECT_GE(differing, 2);
}

TEST(MockServer, StatsCountInFlightAndArrivals) {
  MockServer mock({.latency_ms = {300, 300}});
  std::vector<HttpRequest> reqs;
  for (int i = 0; i < 40; ++i)
    reqs.push_back({.url = chat_url(mock), .body = chat_body("q" + std::to_string(i))});
  auto before = std::chrono::steady_clock::now();
  auto results = http_parallel(reqs, 40, 10s);
  for (const auto& r : results) ASSERT_EQ(r.status, 200) << r.error;
  MockStats st = mock.stats();
  EXPECT_EQ(st.requests, 40u);
  EXPECT_EQ(st.count(Outcome::ok), 40u);
  EXPECT_EQ(st.max_in_flight, 40u);
  EXPECT_EQ(st.in_flight, 0u);
  ASSERT_EQ(st.arrivals.size(), 40u);
  std::set<std::string> users;
  for (size_t i = 0; i < st.arrivals.size(); ++i) {
    EXPECT_EQ(st.arrivals[i].seq, i + 1);
    EXPECT_GE(st.arrivals[i].at, before);
    if (i > 0) {
      EXPECT_GE(st.arrivals[i].at, st.arrivals[i - 1].at);
    }
    users.insert(st.arrivals[i].last_user);
  }
  EXPECT_EQ(users.size(), 40u);

  // The HTTP view of the same numbers.
  json j = http_get(mock.base_url() + "/../mock/stats?arrivals=1").json_body();
  EXPECT_EQ(j["requests"], 40);
  EXPECT_EQ(j["by_outcome"]["ok"], 40);
  EXPECT_EQ(j["max_in_flight"], 40);
  ASSERT_EQ(j["arrivals"].size(), 40u);
  EXPECT_EQ(j["arrivals"][0]["seq"], 1);
  EXPECT_TRUE(j["arrivals"][0]["t"].is_number());
  EXPECT_FALSE(http_get(mock.base_url() + "/../mock/stats").json_body().contains("arrivals"));

  ASSERT_EQ(http({.url = mock.base_url() + "/../mock/reset", .body = ""}).status, 200);
  st = mock.stats();
  EXPECT_EQ(st.requests, 0u);
  EXPECT_EQ(st.max_in_flight, 0u);
  EXPECT_TRUE(st.arrivals.empty());
  mock.reset_stats();
  EXPECT_EQ(mock.stats().requests, 0u);
}

TEST(MockServer, ArrivalsAreBoundedAndBodiesRecordedOnRequest) {
  MockServer mock({.record_bodies = true, .max_arrivals = 5});
  for (int i = 0; i < 8; ++i) post_chat(mock, chat_body("n" + std::to_string(i)));
  MockStats st = mock.stats();
  EXPECT_EQ(st.requests, 8u);
  ASSERT_EQ(st.arrivals.size(), 5u);
  EXPECT_EQ(st.arrivals_dropped, 3u);
  EXPECT_EQ(st.arrivals.front().seq, 4u);
  EXPECT_EQ(json::parse(st.arrivals.back().body)["messages"][0]["content"], "n7");
}

TEST(MockServer, LogFileHasALinePerChatRequest) {
  std::string path = ::testing::TempDir() + "mock_log_" + std::to_string(getpid()) + ".jsonl";
  std::remove(path.c_str());
  {
    MockServer mock({.latency_ms = {5, 5}, .log_file = path});
    post_chat(mock, chat_body("first"));
    post_chat(mock, chat_body("second", true));
    post_chat(mock, "{broken");
  }  // stopping flushes the log
  std::ifstream in(path);
  std::vector<json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["seq"], 1);
  EXPECT_EQ(lines[0]["outcome"], "ok");
  EXPECT_EQ(lines[0]["latency_ms"], 5);
  EXPECT_EQ(lines[0]["body"]["messages"][0]["content"], "first");
  EXPECT_EQ(lines[1]["stream"], true);
  EXPECT_EQ(lines[2]["outcome"], "bad_request");
  EXPECT_EQ(lines[2]["body"], "{broken");
  std::remove(path.c_str());
}

TEST(MockServer, UpdateChangesKnobsForLaterRequests) {
  MockServer mock;
  EXPECT_EQ(post_chat(mock, chat_body("a")).status, 200);
  mock.update({.faults = {.http_error = 1.0}});
  EXPECT_EQ(post_chat(mock, chat_body("b")).status, 500);
  mock.update({});
  EXPECT_EQ(post_chat(mock, chat_body("c")).status, 200);
  EXPECT_THROW(mock.update({.faults = {.drop = 2.0}}), std::invalid_argument);
}

TEST(MockServer, StopsCleanlyWithRequestsHeldOpen) {
  // Hung requests, slow replies and paced streams are all open when the server is destroyed:
  // it must close them and return (ASan checks nothing leaks).
  std::vector<HttpResponse> results;
  {
    auto mock = std::make_unique<MockServer>(
        MockConfig{.latency_ms = {0, 0}, .token_rate = 2, .faults = {.hang = 0.5}});
    std::vector<HttpRequest> reqs;
    for (int i = 0; i < 20; ++i)
      reqs.push_back(
          {.url = chat_url(*mock), .body = chat_body("x" + std::to_string(i), i % 2 == 0)});
    // Stop from another thread once every request has arrived.
    std::thread stopper([&] {
      EXPECT_TRUE(mock->wait_for([](const MockStats& st) { return st.requests == 20; }, 10s));
      mock->stop();
    });
    results = http_parallel(reqs, 20, 10s);
    stopper.join();
  }
  for (const auto& r : results) EXPECT_NE(r.curl_code, 28) << "a request waited for its timeout";
}

TEST(MockServer, BindFailureThrows) {
  MockServer first;
  EXPECT_THROW(MockServer({.port = first.port()}), std::system_error);
  EXPECT_THROW(MockServer({.host = "no.such.host.invalid"}), std::system_error);
}

}  // namespace
}  // namespace flexllm::mock
