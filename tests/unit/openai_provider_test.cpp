#include "providers/openai.hpp"
#include "test_data.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/utf8.hpp"
#include "providers/provider.hpp"

namespace flexllm::detail {
namespace {

std::string read_file(const std::string& name) {
  return test::read_test_file(name);
}

const ProviderAdapter& adapter() {
  return provider_adapter(Provider::openai);
}

Endpoint endpoint(ThinkingStyle style = ThinkingStyle::chat_template_kwargs,
                  std::string base_url = "http://127.0.0.1:8000/v1") {
  Endpoint ep;
  ep.base_url = std::move(base_url);
  ep.api_key = "sk-test-SECRET-0123456789";
  ep.model = "m";
  ep.provider = Provider::openai;
  ep.thinking_style = style;
  return ep;
}

const json kMessages = json::array({{{"role", "user"}, {"content", "hi"}}});

json body_of(const Endpoint& ep, const RequestOptions& o, bool stream = false,
             std::string_view model = "m") {
  std::string text = adapter().build_chat_body(ep, model, kMessages, o, stream);
  return json::parse(text);  // throws (failing the test) when the body is not valid JSON
}

// ------------------------------------------------------------------------------------------------
// URLs and headers

TEST(OpenAIRequest, UrlsAndHeaders) {
  Endpoint ep = endpoint();
  EXPECT_EQ(adapter().chat_url(ep, "m", false), "http://127.0.0.1:8000/v1/chat/completions");
  EXPECT_EQ(adapter().chat_url(ep, "m", true), "http://127.0.0.1:8000/v1/chat/completions");
  EXPECT_EQ(adapter().models_url(ep), "http://127.0.0.1:8000/v1/models");
  ep.base_url += "/";
  EXPECT_EQ(adapter().chat_url(ep, "m", false), "http://127.0.0.1:8000/v1/chat/completions");

  auto h = adapter().headers(endpoint());
  EXPECT_EQ(h, (std::vector<std::string>{"Content-Type: application/json",
                                         "Authorization: Bearer sk-test-SECRET-0123456789"}));
  Endpoint no_key = endpoint();
  no_key.api_key.clear();
  EXPECT_EQ(adapter().headers(no_key),
            (std::vector<std::string>{"Content-Type: application/json"}));
}

// ------------------------------------------------------------------------------------------------
// Request bodies

TEST(OpenAIRequest, MinimalBody) {
  std::string text = adapter().build_chat_body(endpoint(), "gpt-x", kMessages, {}, false);
  EXPECT_EQ(text, R"({"model":"gpt-x","messages":[{"content":"hi","role":"user"}]})");
}

TEST(OpenAIRequest, EveryOption) {
  RequestOptions o;
  o.temperature = 0.7;
  o.top_p = 0.95;
  o.max_tokens = 256;
  o.stop = std::vector<std::string>{"\n\n", "END\"quote\\"};
  o.seed = -9007199254740993LL;
  o.tools = json::parse(R"([{"type":"function","function":{"name":"f","parameters":{}}}])");
  o.tool_choice = "auto";
  o.response_format = json{{"type", "json_object"}};
  json b = body_of(endpoint(), o);
  EXPECT_EQ(b["model"], "m");
  EXPECT_EQ(b["messages"], kMessages);
  EXPECT_EQ(b["temperature"].get<double>(), 0.7);
  EXPECT_EQ(b["top_p"].get<double>(), 0.95);
  EXPECT_EQ(b["max_tokens"], 256);
  EXPECT_EQ(b["stop"], json::array({"\n\n", "END\"quote\\"}));
  EXPECT_EQ(b["seed"].get<int64_t>(), -9007199254740993LL);
  EXPECT_EQ(b["tools"], *o.tools);
  EXPECT_EQ(b["tool_choice"], "auto");
  EXPECT_EQ(b["response_format"], *o.response_format);
  EXPECT_FALSE(b.contains("stream"));
  EXPECT_FALSE(b.contains("stream_options"));
}

TEST(OpenAIRequest, NumbersRoundTrip) {
  for (double t : {0.0, 1.0, 0.1, 1e-7, 2.0 / 3.0, 1.5e300}) {
    RequestOptions o;
    o.temperature = t;
    EXPECT_EQ(body_of(endpoint(), o)["temperature"].get<double>(), t);
  }
}

TEST(OpenAIRequest, StreamAsksForTheUsageChunk) {
  json b = body_of(endpoint(), {}, true);
  EXPECT_EQ(b["stream"], true);
  EXPECT_EQ(b["stream_options"], json({{"include_usage", true}}));
}

TEST(OpenAIRequest, EscapesStrings) {
  std::string text =
      adapter().build_chat_body(endpoint(), "we\"ird\\model\n\x01", kMessages, {}, false);
  EXPECT_EQ(json::parse(text)["model"], "we\"ird\\model\n\x01");
}

TEST(OpenAIRequest, EmptyModelIsLeftOut) {
  EXPECT_FALSE(body_of(endpoint(), {}, false, "").contains("model"));
}

TEST(OpenAIRequest, OpenAIGetsMaxCompletionTokens) {
  RequestOptions o;
  o.max_tokens = 100;
  json b = body_of(endpoint(ThinkingStyle::reasoning_effort, "https://api.openai.com/v1"), o);
  EXPECT_EQ(b["max_completion_tokens"], 100);
  EXPECT_FALSE(b.contains("max_tokens"));
  o.extra = {{"max_tokens", 5}};  // the user's own choice of field wins
  b = body_of(endpoint(ThinkingStyle::reasoning_effort, "https://api.openai.com/v1"), o);
  EXPECT_EQ(b["max_tokens"], 5);
  EXPECT_FALSE(b.contains("max_completion_tokens"));
}

TEST(OpenAIRequest, ExtraIsMergedAndWins) {
  RequestOptions o;
  o.temperature = 0.5;
  o.extra = {{"temperature", 0.1},
             {"top_k", 20},
             {"stream_options", {{"include_usage", false}}},
             {"weird \"key\"", {1, 2}}};
  std::string text = adapter().build_chat_body(endpoint(), "m", kMessages, o, true);
  json b = json::parse(text);
  EXPECT_EQ(b["temperature"].get<double>(), 0.1);
  EXPECT_EQ(b["top_k"], 20);
  EXPECT_EQ(b["stream_options"]["include_usage"], false);
  EXPECT_EQ(b["stream"], true);
  EXPECT_EQ(b["weird \"key\""], json({1, 2}));
  // Exactly one of each key: nothing is written twice.
  EXPECT_EQ(text.find("\"temperature\""), text.rfind("\"temperature\""));
  EXPECT_EQ(text.find("\"stream_options\""), text.rfind("\"stream_options\""));
}

TEST(OpenAIRequest, RejectsWhatCannotBeSent) {
  RequestOptions o;
  o.extra = json::array({1});
  EXPECT_THROW(body_of(endpoint(), o), InvalidRequestError);
  RequestOptions nan;
  nan.temperature = std::nan("");
  EXPECT_THROW(body_of(endpoint(), nan), InvalidRequestError);
  RequestOptions inf;
  inf.top_p = std::numeric_limits<double>::infinity();
  EXPECT_THROW(body_of(endpoint(), inf), InvalidRequestError);
  json bad_utf8 = json::array({{{"role", "user"}, {"content", "caf\xC3"}}});
  try {
    adapter().build_chat_body(endpoint(), "m", bad_utf8, {}, false);
    FAIL() << "no throw";
  } catch (const InvalidRequestError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_request);
    EXPECT_NE(std::string(e.what()).find("messages"), std::string::npos) << e.what();
  }
  RequestOptions null_extra;
  null_extra.extra = nullptr;  // treated as no extra
  EXPECT_NO_THROW(body_of(endpoint(), null_extra));
}

// ------------------------------------------------------------------------------------------------
// Thinking: every style × every kind of value (SPEC §9).

struct ThinkingCase {
  ThinkingStyle style;
  Thinking thinking;
  json expected;  // the thinking fields the body must have (and no other thinking field)
};

json thinking_fields(const json& body) {
  json out = json::object();
  for (const char* k : {"reasoning_effort", "chat_template_kwargs", "enable_thinking",
                        "thinking_budget", "thinking"})
    if (body.contains(k)) out[k] = body[k];
  return out;
}

TEST(OpenAIThinking, MappingTable) {
  using S = ThinkingStyle;
  const json on_kwargs = {{"chat_template_kwargs", {{"enable_thinking", true}}}};
  const json off_kwargs = {{"chat_template_kwargs", {{"enable_thinking", false}}}};
  const json enabled = {{"thinking", {{"type", "enabled"}}}};
  const json disabled = {{"thinking", {{"type", "disabled"}}}};
  const std::vector<ThinkingCase> cases = {
      {S::reasoning_effort, true, {{"reasoning_effort", "medium"}}},
      {S::reasoning_effort, false, {{"reasoning_effort", "none"}}},
      {S::reasoning_effort, std::string("minimal"), {{"reasoning_effort", "minimal"}}},
      {S::reasoning_effort, std::string("low"), {{"reasoning_effort", "low"}}},
      {S::reasoning_effort, std::string("medium"), {{"reasoning_effort", "medium"}}},
      {S::reasoning_effort, std::string("high"), {{"reasoning_effort", "high"}}},
      {S::reasoning_effort, std::string("none"), {{"reasoning_effort", "none"}}},
      {S::reasoning_effort, 512, {{"reasoning_effort", "low"}}},
      {S::reasoning_effort, 1024, {{"reasoning_effort", "low"}}},
      {S::reasoning_effort, 1025, {{"reasoning_effort", "medium"}}},
      {S::reasoning_effort, 8192, {{"reasoning_effort", "medium"}}},
      {S::reasoning_effort, 8193, {{"reasoning_effort", "high"}}},
      {S::reasoning_effort, 0, {{"reasoning_effort", "none"}}},
      {S::reasoning_effort, -1, {{"reasoning_effort", "medium"}}},

      {S::chat_template_kwargs, true, on_kwargs},
      {S::chat_template_kwargs, false, off_kwargs},
      {S::chat_template_kwargs, std::string("low"), on_kwargs},
      {S::chat_template_kwargs, std::string("high"), on_kwargs},
      {S::chat_template_kwargs, std::string("none"), off_kwargs},
      {S::chat_template_kwargs, 4096, on_kwargs},
      {S::chat_template_kwargs, 0, off_kwargs},

      {S::enable_thinking, true, {{"enable_thinking", true}}},
      {S::enable_thinking, false, {{"enable_thinking", false}}},
      {S::enable_thinking, std::string("high"), {{"enable_thinking", true}}},
      {S::enable_thinking, std::string("none"), {{"enable_thinking", false}}},
      {S::enable_thinking, 2048, {{"enable_thinking", true}, {"thinking_budget", 2048}}},
      {S::enable_thinking, -1, {{"enable_thinking", true}}},
      {S::enable_thinking, 0, {{"enable_thinking", false}}},

      {S::thinking_object, true, enabled},
      {S::thinking_object, false, disabled},
      {S::thinking_object, std::string("medium"), enabled},
      {S::thinking_object, std::string("none"), disabled},
      {S::thinking_object, 100, enabled},
      {S::thinking_object, 0, disabled},
  };
  for (const ThinkingCase& c : cases) {
    RequestOptions o;
    o.thinking = c.thinking;
    json b = body_of(endpoint(c.style), o);
    EXPECT_EQ(thinking_fields(b), c.expected)
        << "style " << static_cast<int>(c.style) << ", thinking index " << c.thinking.index();
    EXPECT_EQ(b["messages"], kMessages);
  }
}

TEST(OpenAIThinking, NoThinkingOptionNoField) {
  for (ThinkingStyle s : {ThinkingStyle::reasoning_effort, ThinkingStyle::chat_template_kwargs,
                          ThinkingStyle::enable_thinking, ThinkingStyle::thinking_object}) {
    EXPECT_EQ(thinking_fields(body_of(endpoint(s), {})), json::object());
  }
}

TEST(OpenAIThinking, ExtraWins) {
  struct Case {
    ThinkingStyle style;
    json extra;
  };
  const std::vector<Case> cases = {
      {ThinkingStyle::reasoning_effort, {{"reasoning_effort", "high"}}},
      {ThinkingStyle::chat_template_kwargs,
       {{"chat_template_kwargs", {{"enable_thinking", false}, {"custom", 1}}}}},
      {ThinkingStyle::enable_thinking, {{"enable_thinking", false}, {"thinking_budget", 1}}},
      {ThinkingStyle::thinking_object, {{"thinking", {{"type", "auto"}}}}},
  };
  for (const Case& c : cases) {
    RequestOptions o;
    o.thinking = 2048;
    o.extra = c.extra;
    std::string text = adapter().build_chat_body(endpoint(c.style), "m", kMessages, o, false);
    json b = json::parse(text);
    EXPECT_EQ(thinking_fields(b), c.extra) << text;
    for (const auto& [k, v] : c.extra.items()) {
      EXPECT_EQ(text.find("\"" + k + "\""), text.rfind("\"" + k + "\"")) << k;
    }
  }
  // Only the key extra sets is taken from it; the others still come from the option.
  RequestOptions o;
  o.thinking = 2048;
  o.extra = {{"thinking_budget", 99}};
  json b = body_of(endpoint(ThinkingStyle::enable_thinking), o);
  EXPECT_EQ(b["enable_thinking"], true);
  EXPECT_EQ(b["thinking_budget"], 99);
}

TEST(OpenAIThinking, AutomaticStyleFollowsTheHost) {
  RequestOptions o;
  o.thinking = false;
  EXPECT_EQ(thinking_fields(
                body_of(endpoint(ThinkingStyle::automatic, "https://api.deepseek.com/v1"), o)),
            json({{"thinking", {{"type", "disabled"}}}}));
}

TEST(OpenAIThinking, UnknownLevelIsRejected) {
  for (const char* level : {"hgih", "", "HIGH"}) {
    RequestOptions o;
    o.thinking = std::string(level);
    EXPECT_THROW(body_of(endpoint(), o), InvalidRequestError) << level;
  }
}

// ------------------------------------------------------------------------------------------------
// Non-stream replies

ChatResult parse_ok(const std::string& body) {
  ChatResult r;
  auto err = adapter().parse_chat_response(endpoint(), body, r);
  EXPECT_FALSE(err) << (err ? err->what() : "");
  return r;
}

Error parse_fail(const std::string& body, const Endpoint& ep = endpoint()) {
  ChatResult r;
  auto err = adapter().parse_chat_response(ep, body, r);
  EXPECT_TRUE(err.has_value()) << body;
  return err ? *err : Error(ErrorKind::http, "none");
}

TEST(OpenAIReply, Basic) {
  ChatResult r = parse_ok(read_file("openai/chat_basic.json"));
  EXPECT_EQ(r.content, "The capital of France is Paris.");
  EXPECT_FALSE(r.reasoning);
  EXPECT_TRUE(r.tool_calls.empty());
  EXPECT_EQ(r.finish_reason, "stop");
  ASSERT_TRUE(r.usage);
  EXPECT_EQ(*r.usage, (Usage{19, 10, 29, 0}));
}

TEST(OpenAIReply, UsageTotalIsComputedWhenMissing) {
  ChatResult r = parse_ok(read_file("openai/chat_o3_reasoning_tokens.json"));
  EXPECT_EQ(r.content, "42");
  ASSERT_TRUE(r.usage);
  EXPECT_EQ(*r.usage, (Usage{25, 340, 365, 320}));
  EXPECT_FALSE(parse_ok(R"({"choices":[{"message":{"content":"x"}}]})").usage);
  EXPECT_EQ(*parse_ok(R"({"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":3.0,
            "completion_tokens":4,"total_tokens":0}})")
                 .usage,
            (Usage{3, 4, 7, std::nullopt}));
}

TEST(OpenAIReply, ReasoningContent) {
  ChatResult r = parse_ok(read_file("openai/chat_deepseek_reasoning.json"));
  EXPECT_EQ(r.content, "9.11 is smaller than 9.8.");
  EXPECT_EQ(r.reasoning, "Compare the integer parts: both 9. Then 0.11 vs 0.8: 0.8 is larger.");
  EXPECT_EQ(r.usage->reasoning_tokens, 98);
  EXPECT_EQ(r.usage->total_tokens, 138);
}

TEST(OpenAIReply, ReasoningField) {
  ChatResult r = parse_ok(read_file("openai/chat_openrouter_reasoning.json"));
  EXPECT_EQ(r.content, "Blue.");
  EXPECT_EQ(r.reasoning, "Sky color question; answer briefly.");
}

TEST(OpenAIReply, ThinkTags) {
  ChatResult r = parse_ok(read_file("openai/chat_vllm_think.json"));
  EXPECT_EQ(r.content, "Hello! How can I help you today?");
  EXPECT_EQ(r.reasoning, "The user greets me. I should greet back.");
  EXPECT_EQ(*r.usage, (Usage{12, 28, 40, std::nullopt}));
  // An empty think block is no reasoning; tags later in the text are the answer's business.
  ChatResult empty =
      parse_ok(R"({"choices":[{"message":{"content":"<think>\n\n</think>\n\nHi"}}]})");
  EXPECT_EQ(empty.content, "Hi");
  EXPECT_FALSE(empty.reasoning);
  ChatResult later = parse_ok(R"({"choices":[{"message":{"content":"a <think>b</think>"}}]})");
  EXPECT_EQ(later.content, "a <think>b</think>");
  EXPECT_FALSE(later.reasoning);
  // The server's own reasoning field wins; the content is then left as it is.
  ChatResult both = parse_ok(
      R"({"choices":[{"message":{"content":"<think>x</think>y","reasoning_content":"r"}}]})");
  EXPECT_EQ(both.reasoning, "r");
  EXPECT_EQ(both.content, "<think>x</think>y");
}

TEST(OpenAIReply, ToolCalls) {
  ChatResult r = parse_ok(read_file("openai/chat_tool_calls.json"));
  EXPECT_EQ(r.content, "");
  EXPECT_EQ(r.finish_reason, "tool_calls");
  ASSERT_EQ(r.tool_calls.size(), 2u);
  EXPECT_EQ(r.tool_calls[0], (ToolCall{"call_abc123", "function", "get_current_weather",
                                       "{\n\"location\": \"Boston, MA\"\n}"}));
  // Arguments sent as a JSON object (some servers) are turned into text.
  EXPECT_EQ(r.tool_calls[1],
            (ToolCall{"call_def456", "function", "get_time", R"({"tz":"America/New_York"})"}));
  ChatResult no_args = parse_ok(
      R"({"choices":[{"message":{"content":null,"tool_calls":[{"id":"c","function":{"name":"f"}}]}}]})");
  ASSERT_EQ(no_args.tool_calls.size(), 1u);
  EXPECT_EQ(no_args.tool_calls[0].arguments, "{}");
  EXPECT_EQ(no_args.tool_calls[0].type, "function");
}

TEST(OpenAIReply, ContentParts) {
  ChatResult r = parse_ok(
      R"({"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"image_url"},
      {"type":"text","text":"b"}]},"finish_reason":null}]})");
  EXPECT_EQ(r.content, "ab");
  EXPECT_EQ(r.finish_reason, "");
}

TEST(OpenAIReply, OverwritesThePreviousResult) {
  ChatResult r;
  r.content = "old";
  r.reasoning = "old";
  r.tool_calls.push_back({});
  r.finish_reason = "length";
  r.usage = Usage{1, 1, 2};
  ASSERT_FALSE(adapter().parse_chat_response(endpoint(),
                                             R"({"choices":[{"message":{"content":"new"}}]})", r));
  EXPECT_EQ(r.content, "new");
  EXPECT_FALSE(r.reasoning);
  EXPECT_TRUE(r.tool_calls.empty());
  EXPECT_EQ(r.finish_reason, "");
  EXPECT_FALSE(r.usage);
}

TEST(OpenAIReply, InvalidJson) {
  Error e = parse_fail(R"({"choices": [{"message": {"content": "cut)");
  EXPECT_EQ(e.kind(), ErrorKind::parse);
  EXPECT_TRUE(e.retryable());
  EXPECT_EQ(e.endpoint(), "http://127.0.0.1:8000/v1");
  std::string msg = e.what();
  EXPECT_EQ(msg.rfind("invalid JSON in reply from http://127.0.0.1:8000/v1: ", 0), 0u) << msg;
  EXPECT_NE(msg.find(R"(; body: {"choices": [{"message": {"content": "cut)"), std::string::npos)
      << msg;
  EXPECT_NE(std::string(parse_fail("").what()).find("body: (empty)"), std::string::npos);
  EXPECT_EQ(parse_fail("<html>502 Bad Gateway</html>").kind(), ErrorKind::parse);
}

TEST(OpenAIReply, LongGarbageIsExcerpted) {
  std::string body(5000, 'x');
  Error e = parse_fail(body);
  EXPECT_LT(std::string(e.what()).size(), 700u);
  EXPECT_NE(std::string(e.what()).find("\xE2\x80\xA6"), std::string::npos);  // …
  EXPECT_LE(e.body().size(), 520u);
}

TEST(OpenAIReply, ApiKeyNeverInTheMessage) {
  Endpoint ep = endpoint();
  Error e = parse_fail("Invalid key sk-test-SECRET-0123456789 <", ep);
  EXPECT_EQ(std::string(e.what()).find(ep.api_key), std::string::npos) << e.what();
  EXPECT_EQ(e.body().find(ep.api_key), std::string::npos);
  Error p = parse_fail(R"({"error":{"message":"bad key sk-test-SECRET-0123456789"}})", ep);
  EXPECT_EQ(std::string(p.what()).find(ep.api_key), std::string::npos) << p.what();
  EXPECT_EQ(p.body().find(ep.api_key), std::string::npos);
}

TEST(OpenAIReply, WrongShape) {
  Error not_object = parse_fail("[1,2]");
  EXPECT_EQ(not_object.kind(), ErrorKind::parse);
  EXPECT_NE(std::string(not_object.what()).find("is not a JSON object"), std::string::npos);
  for (const char* body : {R"({"id":"x"})", R"({"choices":[]})", R"({"choices":{}})"}) {
    Error e = parse_fail(body);
    EXPECT_EQ(e.kind(), ErrorKind::parse);
    EXPECT_NE(std::string(e.what()).find("has no choices[0]"), std::string::npos) << e.what();
  }
  Error no_message = parse_fail(R"({"choices":[{"index":0}]})");
  EXPECT_NE(std::string(no_message.what()).find("choices[0].message"), std::string::npos);
}

TEST(OpenAIReply, InBandErrors) {
  Error e = parse_fail(read_file("openai/chat_error_inband_400.json"));
  EXPECT_EQ(e.kind(), ErrorKind::provider);
  EXPECT_FALSE(e.retryable());
  EXPECT_EQ(e.endpoint(), "http://127.0.0.1:8000/v1");
  EXPECT_EQ(std::string(e.what()),
            "provider error from http://127.0.0.1:8000/v1: This model's maximum context length "
            "is 32768 tokens. (type: BadRequestError, code: 400)");
  // An upstream 5xx relayed in-band (OpenRouter) is worth retrying.
  Error relayed = parse_fail(read_file("openai/chat_error_inband.json"));
  EXPECT_EQ(relayed.kind(), ErrorKind::provider);
  EXPECT_TRUE(relayed.retryable());
  EXPECT_NE(std::string(relayed.what()).find("Provider returned error"), std::string::npos);
  Error text = parse_fail(R"({"error":"model overloaded"})");
  EXPECT_EQ(std::string(text.what()),
            "provider error from http://127.0.0.1:8000/v1: model overloaded");
  // "error": null is no error.
  EXPECT_EQ(parse_ok(R"({"error":null,"choices":[{"message":{"content":"ok"}}]})").content, "ok");
}

// ------------------------------------------------------------------------------------------------
// Streams

struct StreamRun {
  std::vector<StreamEvent> events;
  std::optional<Error> feed_error;
  std::variant<ChatResult, Error> result = Error(ErrorKind::http, "not finished");

  std::string text(StreamEvent::Kind kind) const {
    std::string s;
    for (const auto& e : events)
      if (e.kind == kind) s += e.text;
    return s;
  }
  const ChatResult& ok() const {
    if (auto* e = std::get_if<Error>(&result)) ADD_FAILURE() << e->what();
    static const ChatResult kEmpty;
    auto* r = std::get_if<ChatResult>(&result);
    return r ? *r : kEmpty;
  }
  const Error& error() const {
    static const Error kNone(ErrorKind::http, "no error");
    if (feed_error) return *feed_error;
    auto* e = std::get_if<Error>(&result);
    EXPECT_TRUE(e) << "expected an error";
    return e ? *e : kNone;
  }
};

StreamRun run_stream(const std::vector<std::string>& pieces, const Endpoint& ep = endpoint()) {
  StreamRun run;
  auto decoder = adapter().make_stream_decoder(ep);
  for (const std::string& p : pieces) {
    auto buf = std::make_unique<std::string>(p);  // dies after the call: views must not outlive it
    if (auto err = decoder->feed(*buf, run.events)) {
      run.feed_error = err;
      return run;
    }
  }
  run.result = decoder->finish();
  return run;
}

StreamRun run_file(const std::string& name) {
  return run_stream({read_file(name)});
}

std::vector<std::string> bytewise(const std::string& s) {
  std::vector<std::string> v;
  for (char c : s) v.emplace_back(1, c);
  return v;
}

bool same_events(const std::vector<StreamEvent>& a, const std::vector<StreamEvent>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].kind != b[i].kind || a[i].text != b[i].text || a[i].usage_info != b[i].usage_info ||
        a[i].tool.has_value() != b[i].tool.has_value() || a[i].result)
      return false;
    if (a[i].tool &&
        (a[i].tool->index != b[i].tool->index || a[i].tool->id != b[i].tool->id ||
         a[i].tool->name != b[i].tool->name || a[i].tool->arguments != b[i].tool->arguments))
      return false;
  }
  return true;
}

TEST(OpenAIStream, Basic) {
  StreamRun run = run_file("openai/stream_basic.sse");
  std::vector<std::string> texts;
  for (const auto& e : run.events) {
    EXPECT_NE(e.kind, StreamEvent::done);  // the engine emits done, not the decoder
    if (e.kind == StreamEvent::content) texts.push_back(e.text);
  }
  EXPECT_EQ(texts, (std::vector<std::string>{"Hello", "!", " How", " can I help",
                                             " you today? \xE2\x9C\x93"}));
  ASSERT_EQ(run.events.back().kind, StreamEvent::usage);
  EXPECT_EQ(run.events.back().usage_info, (Usage{9, 5, 14, 0}));
  const ChatResult& r = run.ok();
  EXPECT_EQ(r.content, "Hello! How can I help you today? \xE2\x9C\x93");
  EXPECT_FALSE(r.reasoning);
  EXPECT_EQ(r.finish_reason, "stop");
  EXPECT_EQ(r.usage, (Usage{9, 5, 14, 0}));
  EXPECT_TRUE(r.tool_calls.empty());
}

TEST(OpenAIStream, SameEventsAndResultHoweverTheBytesArrive) {
  for (const char* name :
       {"openai/stream_basic.sse", "openai/stream_crlf.sse", "openai/stream_cr.sse",
        "openai/stream_tool_calls.sse", "openai/stream_deepseek_reasoning.sse",
        "openai/stream_think_tags.sse"}) {
    SCOPED_TRACE(name);
    const std::string body = read_file(name);
    StreamRun whole = run_stream({body});
    const ChatResult want = whole.ok();
    StreamRun bytes = run_stream(bytewise(body));
    EXPECT_TRUE(same_events(bytes.events, whole.events));
    EXPECT_EQ(bytes.ok().content, want.content);
    std::mt19937 rng(7);
    for (int round = 0; round < 50; ++round) {
      std::vector<std::string> pieces;
      for (size_t pos = 0; pos < body.size();) {
        size_t n = std::uniform_int_distribution<size_t>(1, 64)(rng);
        pieces.push_back(body.substr(pos, n));
        pos += n;
      }
      StreamRun run = run_stream(pieces);
      ASSERT_TRUE(same_events(run.events, whole.events)) << "round " << round;
      const ChatResult& r = run.ok();
      EXPECT_EQ(r.content, want.content);
      EXPECT_EQ(r.reasoning, want.reasoning);
      EXPECT_EQ(r.tool_calls, want.tool_calls);
      EXPECT_EQ(r.usage, want.usage);
      EXPECT_EQ(r.finish_reason, want.finish_reason);
    }
  }
}

TEST(OpenAIStream, FramingDoesNotMatter) {
  StreamRun lf = run_file("openai/stream_basic.sse");
  EXPECT_TRUE(same_events(run_file("openai/stream_crlf.sse").events, lf.events));
  EXPECT_TRUE(same_events(run_file("openai/stream_cr.sse").events, lf.events));
}

TEST(OpenAIStream, ToolCallsAreAssembledByIndex) {
  StreamRun run = run_file("openai/stream_tool_calls.sse");
  std::vector<ToolCallDelta> deltas;
  for (const auto& e : run.events)
    if (e.kind == StreamEvent::tool_call) deltas.push_back(*e.tool);
  ASSERT_EQ(deltas.size(), 8u);
  EXPECT_EQ(deltas[0].index, 0);
  EXPECT_EQ(deltas[0].id, "call_DdmO9pD3xa9XTPNJ32zg2hcA");
  EXPECT_EQ(deltas[0].name, "get_weather");
  EXPECT_EQ(deltas[0].arguments, "");
  EXPECT_EQ(deltas[1].id, "");  // later pieces carry only argument fragments
  EXPECT_EQ(deltas[1].name, "");
  EXPECT_EQ(deltas[1].arguments, "{\"");
  EXPECT_EQ(deltas[6].index, 1);
  EXPECT_EQ(deltas[6].name, "get_time");
  const ChatResult& r = run.ok();
  EXPECT_EQ(r.finish_reason, "tool_calls");
  ASSERT_EQ(r.tool_calls.size(), 2u);
  EXPECT_EQ(r.tool_calls[0], (ToolCall{"call_DdmO9pD3xa9XTPNJ32zg2hcA", "function", "get_weather",
                                       R"({"location":"Paris, France"})"}));
  EXPECT_EQ(r.tool_calls[1], (ToolCall{"call_Xk2", "function", "get_time", R"({"tz":"CET"})"}));
  EXPECT_EQ(r.usage, (Usage{60, 33, 93, std::nullopt}));
  EXPECT_EQ(r.content, "");
}

TEST(OpenAIStream, ToolCallOddities) {
  // Whole calls without an index, arguments as an object, the name repeated on every piece,
  // out-of-order indices.
  StreamRun run = run_stream(
      {R"(data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"b","function":{"name":"g","arguments":"{\"y\":"}}]}}]})"
       "\n\n"
       R"(data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"name":"g","arguments":"2}"}}]}}]})"
       "\n\n"
       R"(data: {"choices":[{"index":0,"delta":{"tool_calls":[{"id":"a","function":{"name":"f","arguments":{"x":1}}}]}}]})"
       "\n\n"
       R"(data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]})"
       "\n\n"
       "data: [DONE]\n\n"});
  const ChatResult& r = run.ok();
  ASSERT_EQ(r.tool_calls.size(), 2u);
  EXPECT_EQ(r.tool_calls[0], (ToolCall{"a", "function", "f", R"({"x":1})"}));
  EXPECT_EQ(r.tool_calls[1], (ToolCall{"b", "function", "g", R"({"y":2})"}));
}

TEST(OpenAIStream, ReasoningContentDeltas) {
  StreamRun run = run_file("openai/stream_deepseek_reasoning.sse");
  std::vector<std::pair<StreamEvent::Kind, std::string>> seq;
  for (const auto& e : run.events)
    if (e.kind == StreamEvent::thinking || e.kind == StreamEvent::content)
      seq.emplace_back(e.kind, e.text);
  using P = std::pair<StreamEvent::Kind, std::string>;
  EXPECT_EQ(seq, (std::vector<P>{{StreamEvent::thinking, "Okay"},
                                 {StreamEvent::thinking, ", the user"},
                                 {StreamEvent::thinking, " asks 1+1."},
                                 {StreamEvent::content, "1 + 1"},
                                 {StreamEvent::content, " = 2."}}));
  const ChatResult& r = run.ok();
  EXPECT_EQ(r.reasoning, "Okay, the user asks 1+1.");
  EXPECT_EQ(r.content, "1 + 1 = 2.");
  EXPECT_EQ(r.usage, (Usage{10, 20, 30, 14}));
}

TEST(OpenAIStream, ThinkTagsInContent) {
  StreamRun run = run_file("openai/stream_think_tags.sse");
  const ChatResult& r = run.ok();
  EXPECT_EQ(r.reasoning, "Let me think about </this.");
  EXPECT_EQ(r.content, "The answer is 4.");
  EXPECT_EQ(run.text(StreamEvent::thinking), *r.reasoning);
  EXPECT_EQ(run.text(StreamEvent::content), r.content);
  // Thinking events all come before the first content event.
  bool content_seen = false;
  for (const auto& e : run.events) {
    if (e.kind == StreamEvent::content) content_seen = true;
    if (e.kind == StreamEvent::thinking) {
      EXPECT_FALSE(content_seen);
    }
  }
  // The stream and the non-stream reading of the same content agree.
  Thoughts t = parse_thoughts(
      std::string_view("<think>\nLet me think about </this.\n\n</think>\n\nThe answer is 4."));
  EXPECT_EQ(t.thought, *r.reasoning);
  EXPECT_EQ(t.answer, r.content);
}

TEST(OpenAIStream, HeldBackTextIsReleasedAtTheEnd) {
  StreamRun run =
      run_stream({R"(data: {"choices":[{"index":0,"delta":{"content":"<thi"}}]})"
                  "\n\n"
                  R"(data: {"choices":[{"index":0,"delta":{},"finish_reason":"length"}]})"
                  "\n\n"});
  EXPECT_EQ(run.text(StreamEvent::content), "<thi");
  EXPECT_EQ(run.ok().content, "<thi");
  EXPECT_EQ(run.ok().finish_reason, "length");
}

TEST(OpenAIStream, InBandErrorEvent) {
  StreamRun run = run_file("openai/stream_error.sse");
  const Error& e = run.error();
  EXPECT_TRUE(run.feed_error.has_value());
  EXPECT_EQ(e.kind(), ErrorKind::provider);
  EXPECT_NE(std::string(e.what()).find("The server had an error"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("type: server_error"), std::string::npos) << e.what();
  EXPECT_EQ(run.text(StreamEvent::content), "Par");  // what came before the error was delivered
}

TEST(OpenAIStream, TypedErrorEvent) {
  StreamRun text = run_stream({"event: error\ndata: upstream overloaded\n\n"});
  EXPECT_EQ(text.error().kind(), ErrorKind::provider);
  EXPECT_NE(std::string(text.error().what()).find("upstream overloaded"), std::string::npos);
  StreamRun obj = run_stream({"event: error\ndata: {\"message\":\"quota\",\"code\":429}\n\n"});
  EXPECT_EQ(obj.error().kind(), ErrorKind::provider);
  EXPECT_TRUE(obj.error().retryable());
  EXPECT_NE(std::string(obj.error().what()).find("quota"), std::string::npos);
}

TEST(OpenAIStream, ErrorsStick) {
  auto decoder = adapter().make_stream_decoder(endpoint());
  std::vector<StreamEvent> out;
  auto err = decoder->feed("data: {oops}\n\n", out);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->kind(), ErrorKind::parse);
  EXPECT_TRUE(err->retryable());
  EXPECT_NE(std::string(err->what()).find("invalid JSON in stream from http://127.0.0.1:8000/v1"),
            std::string::npos)
      << err->what();
  EXPECT_NE(std::string(err->what()).find("body: {oops}"), std::string::npos) << err->what();
  auto again = decoder->feed("data: [DONE]\n\n", out);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->kind(), ErrorKind::parse);
  auto fin = decoder->finish();
  ASSERT_TRUE(std::holds_alternative<Error>(fin));
  EXPECT_EQ(std::get<Error>(fin).kind(), ErrorKind::parse);
}

TEST(OpenAIStream, NotAnObject) {
  StreamRun run = run_stream({"data: [1,2]\n\n"});
  EXPECT_EQ(run.error().kind(), ErrorKind::parse);
}

TEST(OpenAIStream, ApiKeyNeverInTheMessage) {
  Endpoint ep = endpoint();
  StreamRun run = run_stream({"data: {sk-test-SECRET-0123456789\n\n"}, ep);
  EXPECT_EQ(std::string(run.error().what()).find(ep.api_key), std::string::npos);
  EXPECT_EQ(run.error().body().find(ep.api_key), std::string::npos);
}

TEST(OpenAIStream, Truncated) {
  StreamRun run = run_file("openai/stream_truncated.sse");
  EXPECT_FALSE(run.feed_error);
  const Error& e = run.error();
  EXPECT_EQ(e.kind(), ErrorKind::truncated);
  EXPECT_EQ(e.endpoint(), "http://127.0.0.1:8000/v1");
  EXPECT_NE(std::string(e.what()).find("ended before [DONE]/finish_reason"), std::string::npos)
      << e.what();
  EXPECT_EQ(run.text(StreamEvent::content), "Hello! How");
  StreamRun empty = run_stream({});
  EXPECT_EQ(empty.error().kind(), ErrorKind::truncated);
}

TEST(OpenAIStream, FinishReasonWithoutDoneIsComplete) {
  std::string body = read_file("openai/stream_basic.sse");
  const std::string done = "data: [DONE]\n\n";
  ASSERT_EQ(body.substr(body.size() - done.size()), done);
  body.resize(body.size() - done.size());
  StreamRun run = run_stream({body});
  EXPECT_EQ(run.ok().content, "Hello! How can I help you today? \xE2\x9C\x93");
  EXPECT_EQ(run.ok().finish_reason, "stop");
}

TEST(OpenAIStream, DoneWithoutFinishReasonIsComplete) {
  StreamRun run = run_stream({R"(data: {"choices":[{"index":0,"delta":{"content":"x"}}]})"
                              "\n\ndata: [DONE]\n\n"
                              R"(data: {"choices":[{"index":0,"delta":{"content":"ignored"}}]})"
                              "\n\n"});
  EXPECT_EQ(run.ok().content, "x");
  EXPECT_EQ(run.ok().finish_reason, "");
}

TEST(OpenAIStream, OtherChoicesAreIgnored) {
  StreamRun run = run_stream({R"(data: {"choices":[{"index":1,"delta":{"content":"B"}},)"
                              R"({"index":0,"delta":{"content":"A"},"finish_reason":"stop"}]})"
                              "\n\n"});
  EXPECT_EQ(run.ok().content, "A");
}

TEST(OpenAIStream, OversizedEventIsAnError) {
  auto decoder = adapter().make_stream_decoder(endpoint());
  std::vector<StreamEvent> out;
  std::string big = "data: \"" + std::string((16u << 20) + 10, 'a');
  auto err = decoder->feed(big, out);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->kind(), ErrorKind::parse);
  EXPECT_NE(std::string(err->what()).find("16 MiB"), std::string::npos) << err->what();
}

TEST(OpenAIStream, OnlyEventsWithDataAreProgress) {
  auto decoder = adapter().make_stream_decoder(endpoint());
  std::vector<StreamEvent> out;
  for (const char* quiet : {": keep-alive\n\n", "\n\n\n", "event: ping\n\n", "id: 7\nretry: 5\n\n",
                            "data:\n\n", "data:  \n\n", "data: {\"choices\":[]"}) {
    EXPECT_FALSE(decoder->feed(quiet, out));
    EXPECT_EQ(decoder->data_events(), 0u) << quiet;
  }
  EXPECT_FALSE(decoder->feed("}\n\n", out));  // completes the partial event above
  EXPECT_EQ(decoder->data_events(), 1u);
  EXPECT_FALSE(decoder->feed("data: [DONE]\n\n", out));
  EXPECT_EQ(decoder->data_events(), 2u) << "the terminator counts";
  EXPECT_FALSE(decoder->whole_reply());
}

// Some servers ignore stream:true and send the whole completion as one JSON object.
TEST(OpenAIStream, APlainJsonReplyIsReadAsTheReply) {
  const std::string body = read_file("openai/chat_basic.json");
  for (size_t piece : {body.size(), size_t{1}, size_t{7}}) {
    auto decoder = adapter().make_stream_decoder(endpoint());
    std::vector<StreamEvent> out;
    EXPECT_FALSE(decoder->feed("\r\n ", out));  // blank so far: undecided
    for (size_t at = 0; at < body.size(); at += piece)
      ASSERT_FALSE(decoder->feed(body.substr(at, piece), out)) << piece;
    EXPECT_TRUE(out.empty()) << "nothing streams: the engine replays the result";
    EXPECT_TRUE(decoder->whole_reply());
    EXPECT_GT(decoder->data_events(), 0u) << "its bytes are progress";
    auto fin = decoder->finish();
    ASSERT_TRUE(std::holds_alternative<ChatResult>(fin)) << std::get<Error>(fin).what();
    const ChatResult& r = std::get<ChatResult>(fin);
    EXPECT_EQ(r.content, "The capital of France is Paris.");
    EXPECT_EQ(r.finish_reason, "stop");
    EXPECT_EQ(r.usage, (Usage{19, 10, 29, 0}));
  }
  // Tool calls and reasoning come through as from a non-streamed reply.
  StreamRun tools = run_stream({read_file("openai/chat_tool_calls.json")});
  ASSERT_EQ(tools.ok().tool_calls.size(), 2u);
  EXPECT_EQ(tools.ok().tool_calls[1].name, "get_time");
  EXPECT_EQ(tools.ok().tool_calls[1].arguments, R"({"tz":"America/New_York"})");
  // An error object with a 2xx status is the provider's in-band error, as without stream:true.
  StreamRun error = run_stream({R"({"error":{"message":"model overloaded","code":503}})"});
  EXPECT_FALSE(error.feed_error);
  EXPECT_EQ(error.error().kind(), ErrorKind::provider);
  EXPECT_TRUE(error.error().retryable());
  EXPECT_NE(std::string(error.error().what()).find("model overloaded"), std::string::npos);
  // Cut short: a parse error naming the body (retryable), not a truncated stream.
  StreamRun cut = run_stream({body.substr(0, body.size() / 2)});
  EXPECT_EQ(cut.error().kind(), ErrorKind::parse);
  EXPECT_TRUE(cut.error().retryable());
  // Not an object: the reply's own parse error.
  StreamRun array = run_stream({"[1, 2]"});
  EXPECT_EQ(array.error().kind(), ErrorKind::parse);
  EXPECT_NE(std::string(array.error().what()).find("not a JSON object"), std::string::npos)
      << array.error().what();
}

TEST(OpenAIStream, JsonContentTypeDecidesWhatSniffingCannot) {
  // With Content-Type application/json a body that SSE would ignore is read as the reply (and
  // fails as one), while SSE labelled as JSON by a careless server still streams.
  auto as_json = adapter().make_stream_decoder(endpoint());
  std::vector<StreamEvent> out;
  as_json->content_type("Application/JSON; charset=utf-8");
  EXPECT_FALSE(as_json->feed("\"just a string\"", out));
  EXPECT_TRUE(as_json->whole_reply());
  auto fin = as_json->finish();
  ASSERT_TRUE(std::holds_alternative<Error>(fin));
  EXPECT_EQ(std::get<Error>(fin).kind(), ErrorKind::parse);

  auto sse = adapter().make_stream_decoder(endpoint());
  sse->content_type("application/json");
  EXPECT_FALSE(sse->feed(read_file("openai/stream_basic.sse"), out));
  EXPECT_FALSE(sse->whole_reply());
  EXPECT_EQ(std::get<ChatResult>(sse->finish()).content,
            "Hello! How can I help you today? \xE2\x9C\x93");

  auto plain = adapter().make_stream_decoder(endpoint());
  plain->content_type("text/event-stream");
  EXPECT_FALSE(plain->feed("\"just a string\"\n\n", out));
  EXPECT_FALSE(plain->whole_reply()) << "without the header, such a body is (meaningless) SSE";
}

TEST(OpenAIStream, JsonReplyAnsweringAStreamIsBounded) {
  auto decoder = adapter().make_stream_decoder(endpoint());
  std::vector<StreamEvent> out;
  const std::string mib(1 << 20, ' ');
  ASSERT_FALSE(decoder->feed("{\"choices\":", out));
  std::optional<Error> err;
  for (int i = 0; i < 65 && !err; ++i) err = decoder->feed(mib, out);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->kind(), ErrorKind::parse);
  EXPECT_FALSE(err->retryable());
  EXPECT_NE(std::string(err->what()).find("larger than 64 MiB"), std::string::npos) << err->what();
}

// ------------------------------------------------------------------------------------------------
// Invalid UTF-8 in an answer: kept, each bad sequence as U+FFFD (never an error, never retried)

TEST(Utf8, EachIllFormedSequenceBecomesOneReplacement) {
  auto repaired = [](std::string_view s) {
    std::string out;
    append_valid_utf8(out, s);
    return out;
  };
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(repaired("plain \xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"),
            "plain \xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
  EXPECT_EQ(repaired("a\xFF"
                     "b"),
            "a" + r + "b");
  EXPECT_EQ(repaired("\xE2\x82"
                     "b"),
            r + "b")
      << "a cut character is one replacement";
  EXPECT_EQ(repaired("\xF0\x9F\x98"), r);
  EXPECT_EQ(repaired("\xF0\x9F\x98\xF0\x9F\x98\x80"), r + "\xF0\x9F\x98\x80");
  EXPECT_EQ(repaired("\xED\xA0\x80"), r + r + r) << "a surrogate is not a character at all";
  EXPECT_EQ(repaired("\xC0\xAF"), r + r) << "overlong";
  EXPECT_EQ(repaired("\xF4\x90\x80\x80"), r + r + r + r) << "above U+10FFFF";
  EXPECT_EQ(repaired("\x80\x80"), r + r);
  EXPECT_EQ(repaired("\xC3"), r);
}

TEST(OpenAIReply, InvalidUtf8IsRepairedNotAnError) {
  const std::string body =
      "{\"choices\":[{\"message\":{\"content\":\"caf\xC3 cr\xE8me \xF0\x9F\x98\","
      "\"reasoning_content\":\"hm\xFF\",\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
      "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"city\\\":\\\"K\xF6ln\\\"}\"}}]},"
      "\"finish_reason\":\"stop\"}]}";
  ChatResult r = parse_ok(body);
  EXPECT_EQ(r.content, "caf\xEF\xBF\xBD cr\xEF\xBF\xBDme \xEF\xBF\xBD");
  EXPECT_EQ(r.reasoning, "hm\xEF\xBF\xBD");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].arguments, "{\"city\":\"K\xEF\xBF\xBDln\"}");
  EXPECT_EQ(r.finish_reason, "stop");
  EXPECT_NO_THROW(json(r.content).dump());
  // Bad bytes outside a string are still a broken reply.
  EXPECT_EQ(parse_fail("{\"choices\":\xFF}").kind(), ErrorKind::parse);
}

TEST(OpenAIReply, LoneSurrogateEscapesAreRepairedNotAnError) {
  // A string cut between the halves of a UTF-16 pair, then escaped (JSON.stringify does that).
  auto content = [](const std::string& escaped) {
    return parse_ok("{\"choices\":[{\"message\":{\"content\":\"" + escaped + "\"}}]}").content;
  };
  EXPECT_EQ(content("a\\ud83d b"), "a\xEF\xBF\xBD b");
  EXPECT_EQ(content("\\uDC00\\uD83D"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(content("\\ud83d\\ud83d\\ude00"), "\xEF\xBF\xBD\xF0\x9F\x98\x80");
  EXPECT_EQ(content("\\ud83d\\ude00 \\u00e9"), "\xF0\x9F\x98\x80 \xC3\xA9") << "valid: unchanged";
  EXPECT_EQ(content("\\\\ud83d"), "\\ud83d") << "an escaped backslash, then text";
  EXPECT_EQ(content("\\ud83d\xC3"), "\xEF\xBF\xBD\xEF\xBF\xBD") << "both kinds at once";
  EXPECT_EQ(parse_fail("{\"choices\":[{\"message\":{\"content\":\"\\x\"}}]}").kind(),
            ErrorKind::parse)
      << "other bad escapes are still broken replies";
}

TEST(OpenAIStream, InvalidUtf8IsRepairedNotAnError) {
  StreamRun run = run_stream(
      {"data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"\xC3\"}}]}\n\n"
       "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ab\xE2\x82\"}}]}\n\n"
       "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\","
       "\"function\":{\"name\":\"f\",\"arguments\":\"\x80\"}}]},\"finish_reason\":\"stop\"}]}\n\n"
       "data: [DONE]\n\n"});
  EXPECT_FALSE(run.feed_error);
  EXPECT_EQ(run.text(StreamEvent::thinking), "\xEF\xBF\xBD");
  EXPECT_EQ(run.text(StreamEvent::content), "ab\xEF\xBF\xBD");
  EXPECT_EQ(run.ok().content, "ab\xEF\xBF\xBD");
  ASSERT_EQ(run.ok().tool_calls.size(), 1u);
  EXPECT_EQ(run.ok().tool_calls[0].arguments, "\xEF\xBF\xBD");
}

// ------------------------------------------------------------------------------------------------
// The <think> splitter on its own: every cut of every content gives parse_thoughts' answer.

TEST(ThinkTagSplitter, AgreesWithParseThoughtsAtEveryCut) {
  const std::vector<std::string> contents = {
      "<think>\nabc\n</think>\n\nanswer",
      "  <think>x</think>y",
      "<think></think>",
      "<think>unclosed  \n",
      "<think>a</thi",
      "<think>a </think",
      "Hello",
      " ",
      "",
      "<thinking>no</thinking>",
      "<thin",
      "\n<think>\n  lots   \n\n</think>  \n  ok  ",
      "<think>x</think>y</think>z",
      "<think>a<</think>b",
      "<think>a</</think>b",
      "<think>a<think>b</think>c",
      "<think>\n\n",
      "x<think>y</think>",
      "<think>line1\n\nline2 </ think> still thinking\n</think>\n\nfinal\n\nanswer\n",
  };
  auto run = [](const std::vector<std::string_view>& pieces) {
    ThinkTagSplitter s;
    std::string thinking, content;
    for (std::string_view p : pieces) s.push(p, thinking, content);
    s.flush(thinking, content);
    return Thoughts{thinking, content};
  };
  for (const std::string& c : contents) {
    SCOPED_TRACE(c);
    const Thoughts want = parse_thoughts(std::string_view(c));
    const std::string_view v = c;
    for (size_t i = 0; i <= c.size(); ++i) {
      for (size_t j = i; j <= c.size(); ++j) {
        Thoughts got = run({v.substr(0, i), v.substr(i, j - i), v.substr(j)});
        ASSERT_EQ(got.thought, want.thought) << "cuts " << i << "," << j;
        ASSERT_EQ(got.answer, want.answer) << "cuts " << i << "," << j;
      }
    }
    std::vector<std::string_view> bytes;
    for (size_t i = 0; i < c.size(); ++i) bytes.push_back(v.substr(i, 1));
    Thoughts got = run(bytes);
    EXPECT_EQ(got.thought, want.thought);
    EXPECT_EQ(got.answer, want.answer);
  }
}

TEST(ThinkTagSplitter, PassThroughWhenTheServerSplitsReasoning) {
  ThinkTagSplitter s;
  s.pass_through();
  std::string thinking, content;
  s.push("<think>x</think>y", thinking, content);
  s.flush(thinking, content);
  EXPECT_EQ(thinking, "");
  EXPECT_EQ(content, "<think>x</think>y");
  EXPECT_FALSE(s.saw_think());
}

// ------------------------------------------------------------------------------------------------
// Error bodies and models

TEST(OpenAIErrorMessage, Shapes) {
  const auto& a = adapter();
  EXPECT_EQ(
      a.error_message(
          R"({"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}})"),
      "Incorrect API key provided");
  EXPECT_EQ(a.error_message(R"({"error":"model 'x' not found"})"), "model 'x' not found");
  EXPECT_EQ(a.error_message(R"({"code":"InvalidParameter","message":"Range of max_tokens"})"),
            "Range of max_tokens");
  EXPECT_EQ(a.error_message(R"({"detail":"Not Found"})"), "Not Found");
  EXPECT_EQ(
      a.error_message(
          R"({"detail":[{"loc":["body","messages"],"msg":"field required","type":"missing"},{"msg":"bad"}]})"),
      "field required; bad");
  EXPECT_EQ(
      a.error_message(
          R"({"object":"error","message":"vLLM says no","type":"BadRequestError","code":400})"),
      "vLLM says no");
  EXPECT_EQ(a.error_message("<html>502</html>"), "");
  EXPECT_EQ(a.error_message(""), "");
  EXPECT_EQ(a.error_message(R"({"ok":true})"), "");
  EXPECT_EQ(a.error_message("[1]"), "");
}

TEST(OpenAIModels, Ids) {
  auto r = adapter().parse_models(endpoint(), read_file("openai/models.json"));
  ASSERT_TRUE(std::holds_alternative<std::vector<std::string>>(r));
  EXPECT_EQ(std::get<std::vector<std::string>>(r),
            (std::vector<std::string>{"gpt-4o-mini", "o3-mini"}));
  auto bare = adapter().parse_models(endpoint(), R"([{"id":"a"},"b"])");
  EXPECT_EQ(std::get<std::vector<std::string>>(bare), (std::vector<std::string>{"a", "b"}));
  auto bad = adapter().parse_models(endpoint(), "{\"data\":");
  ASSERT_TRUE(std::holds_alternative<Error>(bad));
  EXPECT_EQ(std::get<Error>(bad).kind(), ErrorKind::parse);
  auto shape = adapter().parse_models(endpoint(), R"({"models":1})");
  ASSERT_TRUE(std::holds_alternative<Error>(shape));
  EXPECT_NE(std::string(std::get<Error>(shape).what()).find("no data array"), std::string::npos);
  auto inband = adapter().parse_models(endpoint(), R"({"error":{"message":"no"}})");
  ASSERT_TRUE(std::holds_alternative<Error>(inband));
  EXPECT_EQ(std::get<Error>(inband).kind(), ErrorKind::provider);
}

// ------------------------------------------------------------------------------------------------
// provider.hpp helpers

TEST(DetectProvider, Table) {
  const std::vector<std::pair<const char*, Provider>> cases = {
      {"https://api.openai.com/v1", Provider::openai},
      {"https://generativelanguage.googleapis.com/v1beta", Provider::gemini},
      {"https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/l", Provider::gemini},
      {"https://aiplatform.googleapis.com/v1", Provider::gemini},
      // Google's OpenAI-compatible endpoints.
      {"https://generativelanguage.googleapis.com/v1beta/openai", Provider::openai},
      {"https://aiplatform.googleapis.com/v1/projects/p/locations/global/endpoints/openapi",
       Provider::openai},
      {"https://api.anthropic.com/v1", Provider::claude},
      {"HTTPS://API.ANTHROPIC.COM/v1", Provider::claude},
      {"http://localhost:8000/v1", Provider::openai},
      {"https://openrouter.ai/api/v1", Provider::openai},
      // Only the host decides, not the path or query.
      {"http://proxy.local/anthropic.com/v1", Provider::openai},
      {"", Provider::openai},
  };
  for (const auto& [url, want] : cases) {
    EXPECT_EQ(detect_provider(url), want) << url;
  }
}

TEST(DetectThinkingStyle, Table) {
  using S = ThinkingStyle;
  const std::vector<std::pair<const char*, S>> cases = {
      {"https://api.openai.com/v1", S::reasoning_effort},
      {"https://my-res.openai.azure.com/openai/v1", S::reasoning_effort},
      {"http://localhost:11434/v1", S::reasoning_effort},
      {"http://127.0.0.1:11434/v1", S::reasoning_effort},
      {"http://[::1]:11434/v1", S::reasoning_effort},
      {"http://ollama.internal:8080/v1", S::reasoning_effort},
      {"https://dashscope.aliyuncs.com/compatible-mode/v1", S::enable_thinking},
      {"https://dashscope-intl.aliyuncs.com/compatible-mode/v1", S::enable_thinking},
      {"https://api.siliconflow.cn/v1", S::enable_thinking},
      {"https://api.deepseek.com", S::thinking_object},
      {"https://open.bigmodel.cn/api/paas/v4", S::thinking_object},
      {"https://ark.cn-beijing.volces.com/api/v3", S::thinking_object},
      {"http://localhost:8000/v1", S::chat_template_kwargs},
      {"http://user:pw@10.0.0.5:30000/v1", S::chat_template_kwargs},
      {"http://localhost:114340/v1", S::chat_template_kwargs},
      {"http://gpu-box/v1?x=api.openai.com", S::chat_template_kwargs},
  };
  for (const auto& [url, want] : cases) {
    EXPECT_EQ(static_cast<int>(detect_thinking_style(url)), static_cast<int>(want)) << url;
  }
}

TEST(ProviderAdapter, OnlyOpenAIForNow) {
  EXPECT_EQ(&provider_adapter(Provider::openai), &openai_adapter());
  try {
    provider_adapter(Provider::gemini);
    FAIL();
  } catch (const InvalidRequestError& e) {
    EXPECT_NE(std::string(e.what()).find("provider gemini is not supported yet"),
              std::string::npos);
  }
  EXPECT_THROW(provider_adapter(Provider::claude), InvalidRequestError);
  EXPECT_THROW(provider_adapter(Provider::automatic), InvalidRequestError);
}

std::string validation_error(const json& messages) {
  try {
    validate_messages(messages);
  } catch (const InvalidRequestError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_request);
    return e.what();
  }
  return "";
}

TEST(ValidateMessages, Accepts) {
  EXPECT_EQ(validation_error(json::parse(R"([
    {"role":"system","content":"s"},
    {"role":"developer","content":"d"},
    {"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"data:"}}]},
    {"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},
    {"role":"assistant","tool_calls":[]},
    {"role":"tool","tool_call_id":"c","content":"42"},
    {"role":"function","name":"f","content":"1"},
    {"role":"assistant","content":"ok","extra_field":1}
  ])")),
            "");
}

TEST(ValidateMessages, NamesTheProblem) {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {R"({"role":"user"})", "messages must be a JSON array, got object"},
      {R"("hi")", "messages must be a JSON array, got string"},
      {"null", "messages must be a JSON array, got null"},
      {"[]", "messages must not be empty"},
      {R"([{"role":"user","content":"a"},"b"])", "messages[1] must be a JSON object, got string"},
      {R"([{"role":"user","content":"a"},{"role":"user","content":"b"},{"content":"c"}])",
       "messages[2].role is missing"},
      {R"([{"role":1,"content":"a"}])", "messages[0].role must be a string, got number"},
      {R"([{"role":"robot","content":"a"}])",
       "messages[0].role \"robot\" is not one of system, developer, user, assistant, tool, "
       "function"},
      {R"([{"role":"user"}])", "messages[0].content is missing"},
      {R"([{"role":"user","content":null}])", "messages[0].content is null"},
      {R"([{"role":"assistant","content":null}])", "messages[0].content is null"},
      {R"([{"role":"user","content":5}])",
       "messages[0].content must be a string, an array of parts or null, got number"},
      {R"([{"role":"user","content":["x"]}])",
       "messages[0].content[0] must be a JSON object, got string"},
      {R"([{"role":"user","content":[{"type":"text","text":"a"},{"text":"b"}]}])",
       "messages[0].content[1].type is missing"},
      {R"([{"role":"user","content":[{"type":3}]}])",
       "messages[0].content[0].type must be a string, got number"},
  };
  for (const auto& [input, want] : cases) {
    std::string got = validation_error(json::parse(input));
    EXPECT_EQ(got.rfind(want, 0), 0u) << input << " -> " << got;
  }
}

TEST(Excerpt, ShortBodiesAreKept) {
  EXPECT_EQ(excerpt("abc"), "abc");
  EXPECT_EQ(excerpt(""), "");
  EXPECT_EQ(excerpt(std::string(512, 'a')), std::string(512, 'a'));
}

TEST(Excerpt, CutsOnACharacterBoundary) {
  EXPECT_EQ(excerpt(std::string(513, 'a')), std::string(512, 'a') + "\xE2\x80\xA6");
  // "é" is 2 bytes, "€" 3, "😀" 4: never cut one in half, whatever the limit.
  const std::string text = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z";  // aé€😀z
  const std::vector<std::string> want = {
      "",
      "a",
      "a",
      "a\xC3\xA9",
      "a\xC3\xA9",
      "a\xC3\xA9",
      "a\xC3\xA9\xE2\x82\xAC",
      "a\xC3\xA9\xE2\x82\xAC",
      "a\xC3\xA9\xE2\x82\xAC",
      "a\xC3\xA9\xE2\x82\xAC",
  };
  for (size_t limit = 0; limit < want.size(); ++limit) {
    EXPECT_EQ(excerpt(text, limit), want[limit] + "\xE2\x80\xA6") << limit;
  }
  EXPECT_EQ(excerpt(text, text.size() - 1), "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xE2\x80\xA6");
  EXPECT_EQ(excerpt(text, text.size()), text);
}

TEST(Excerpt, InvalidUtf8IsReplaced) {
  // Error messages end up in JSON files and logs: they must be valid UTF-8.
  EXPECT_EQ(excerpt("a\xFF"
                    "b"),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(excerpt("\xC3"), "\xEF\xBF\xBD");                                  // truncated sequence
  EXPECT_EQ(excerpt("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate
  EXPECT_EQ(excerpt("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");                  // overlong
  EXPECT_NO_THROW(json(excerpt("x\x80\x81\xFEy")).dump());
}

}  // namespace
}  // namespace flexllm::detail
