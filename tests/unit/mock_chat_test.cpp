#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "chat.hpp"
#include "openai.hpp"

namespace flexllm::mock::detail {
namespace {

using json = nlohmann::json;

class MockChat : public ::testing::Test {
 protected:
  std::optional<ChatRequest> parse(const json& body, std::string* error_out = nullptr) {
    text_ = body.is_string() ? body.get<std::string>() : body.dump();
    text_.reserve(text_.size() + simdjson::SIMDJSON_PADDING);
    std::string error;
    auto r = parse_chat_request(parser_, text_, 42, error);
    if (error_out) *error_out = error;
    return r;
  }
  static json user(const std::string& text) {
    return json::array({{{"role", "user"}, {"content", text}}});
  }
  simdjson::dom::parser parser_;
  std::string text_;
};

TEST_F(MockChat, ReadsTheFieldsItNeeds) {
  auto r =
      parse({{"model", "m1"},
             {"stream", true},
             {"stream_options", {{"include_usage", true}}},
             {"max_tokens", 7},
             {"messages",
              json::array({{{"role", "system"}, {"content", "be brief"}},
                           {{"role", "user"}, {"content", "first"}},
                           {{"role", "assistant"}, {"content", "ok"}},
                           {{"role", "user"},
                            {"content", json::array({{{"type", "text"}, {"text", "a"}},
                                                     {{"type", "image_url"}},
                                                     {{"type", "text"}, {"text", "b"}}})}}})}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->model, "m1");
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
  EXPECT_EQ(r->max_tokens, 7u);
  EXPECT_EQ(r->last_user, "a\nb");
  EXPECT_EQ(r->prompt_tokens, (8 + 5 + 2 + 3 + 3) / 4 + 4 * 4);
  EXPECT_FALSE(r->thinking_disabled);
  EXPECT_FALSE(r->tool);
}

TEST_F(MockChat, RejectsBadBodiesWithAReason) {
  std::string error;
  EXPECT_FALSE(parse(json("{not json"), &error));
  EXPECT_NE(error.find("not valid JSON"), std::string::npos);
  EXPECT_FALSE(parse(json::array(), &error));
  EXPECT_NE(error.find("JSON object"), std::string::npos);
  EXPECT_FALSE(parse({{"messages", json::array()}}, &error));
  EXPECT_NE(error.find("'messages'"), std::string::npos);
  EXPECT_FALSE(parse({{"messages", json::array({{{"content", "x"}}})}}, &error));
  EXPECT_EQ(error, "messages[0].role is missing or not a string");
}

TEST_F(MockChat, MessagesHashIgnoresOtherFieldsButNotContent) {
  auto a = parse({{"model", "x"}, {"messages", user("hello")}});
  auto b = parse({{"model", "y"}, {"stream", true}, {"messages", user("hello")}});
  auto c = parse({{"model", "x"}, {"messages", user("hello!")}});
  EXPECT_EQ(a->messages_hash, b->messages_hash);
  EXPECT_NE(a->messages_hash, c->messages_hash);
}

TEST_F(MockChat, EveryOpenAiThinkingSwitchTurnsThinkingOff) {
  const json offs[] = {{{"chat_template_kwargs", {{"enable_thinking", false}}}},
                       {{"enable_thinking", false}},
                       {{"reasoning_effort", "none"}},
                       {{"thinking", {{"type", "disabled"}}}}};
  for (const json& off : offs) {
    json body = {{"messages", user("q")}};
    body.update(off);
    EXPECT_TRUE(parse(body)->thinking_disabled) << off.dump();
  }
  json on = {{"messages", user("q")},
             {"chat_template_kwargs", {{"enable_thinking", true}}},
             {"reasoning_effort", "high"}};
  EXPECT_FALSE(parse(on)->thinking_disabled);
}

TEST_F(MockChat, ToolCallArgumentsSatisfyTheSchema) {
  json params = {
      {"type", "object"},
      {"properties",
       {{"city", {{"type", "string"}}},
        {"unit", {{"enum", {"celsius", "fahrenheit"}}}},
        {"days", {{"type", "integer"}}},
        {"ratio", {{"type", "number"}}},
        {"exact", {{"type", "boolean"}}},
        {"tags", {{"type", "array"}, {"items", {{"type", "string"}}}, {"minItems", 2}}},
        {"nullable", {{"type", {"null", "string"}}}},
        {"where",
         {{"type", "object"},
          {"properties", {{"lat", {{"type", "number"}}}}},
          {"required", {"lat"}}}},
        {"optional", {{"type", "string"}}}}},
      {"required", {"city", "unit", "days", "ratio", "exact", "tags", "nullable", "where"}}};
  auto r = parse(
      {{"messages", user("weather?")},
       {"tools", json::array({{{"type", "function"},
                               {"function", {{"name", "get_weather"}, {"parameters", params}}}},
                              {{"type", "function"}, {"function", {{"name", "other"}}}}})}});
  ASSERT_TRUE(r && r->tool);
  EXPECT_EQ(r->tool->name, "get_weather");
  EXPECT_EQ(r->tool->id.rfind("call_", 0), 0u);
  EXPECT_EQ(r->tool->id.size(), 29u);
  json args = json::parse(r->tool->arguments);
  EXPECT_TRUE(args["city"].is_string());
  EXPECT_EQ(args["unit"], "celsius");
  EXPECT_TRUE(args["days"].is_number_integer());
  EXPECT_TRUE(args["ratio"].is_number_float());
  EXPECT_TRUE(args["exact"].is_boolean());
  ASSERT_TRUE(args["tags"].is_array());
  EXPECT_EQ(args["tags"].size(), 2u);
  EXPECT_TRUE(args["nullable"].is_string());
  EXPECT_TRUE(args["where"]["lat"].is_number());
  EXPECT_FALSE(args.contains("optional"));
}

TEST_F(MockChat, ToolChoiceAndToolResultsSteerTheReply) {
  json tools = json::array({{{"type", "function"}, {"function", {{"name", "a"}}}},
                            {{"type", "function"}, {"function", {{"name", "b"}}}}});
  auto named = parse({{"messages", user("q")},
                      {"tools", tools},
                      {"tool_choice", {{"type", "function"}, {"function", {{"name", "b"}}}}}});
  ASSERT_TRUE(named->tool);
  EXPECT_EQ(named->tool->name, "b");
  EXPECT_EQ(named->tool->arguments, "{}");
  EXPECT_FALSE(parse({{"messages", user("q")}, {"tools", tools}, {"tool_choice", "none"}})->tool);
  json after_tool = json::array({{{"role", "user"}, {"content", "q"}},
                                 {{"role", "assistant"}, {"content", nullptr}},
                                 {{"role", "tool"}, {"tool_call_id", "x"}, {"content", "sunny"}}});
  EXPECT_FALSE(parse({{"messages", after_tool}, {"tools", tools}})->tool);
}

TEST_F(MockChat, ReplyLengthFollowsTheConfigAndIsDeterministic) {
  MockConfig cfg;
  cfg.response_tokens = {5, 9};
  cfg.seed = 3;
  for (int i = 0; i < 50; ++i) {
    auto req = parse({{"messages", user("q" + std::to_string(i))}});
    ChatReply reply = plan_reply(*req, cfg);
    EXPECT_GE(reply.content.size(), 5u);
    EXPECT_LE(reply.content.size(), 9u);
    EXPECT_EQ(reply.completion_tokens, reply.content.size());
    EXPECT_EQ(plan_reply(*req, cfg).content.text, reply.content.text);
    EXPECT_EQ(reply.content.text.back(), '.');
  }
  auto req = parse({{"messages", user("same")}});
  MockConfig other = cfg;
  other.seed = 4;
  EXPECT_NE(plan_reply(*req, cfg).content.text, plan_reply(*req, other).content.text);
}

TEST_F(MockChat, EchoSplitsTheUserMessageIntoTokens) {
  MockConfig cfg;
  cfg.echo = true;
  auto req = parse({{"messages", user("say  exactly this")}});
  ChatReply reply = plan_reply(*req, cfg);
  EXPECT_EQ(reply.content.text, "say  exactly this");
  ASSERT_EQ(reply.content.size(), 4u);
  EXPECT_EQ(reply.content.token(0), "say");
  EXPECT_EQ(reply.content.token(1), " ");
  EXPECT_EQ(reply.content.token(2), " exactly");
}

TEST_F(MockChat, ThinkingModesAndMaxTokens) {
  MockConfig cfg;
  cfg.response_tokens = {10, 10};
  cfg.reasoning_tokens = {4, 4};
  cfg.thinking = ThinkingMode::field;
  auto req = parse({{"messages", user("q")}});
  ChatReply field = plan_reply(*req, cfg);
  EXPECT_EQ(field.reasoning.size(), 4u);
  EXPECT_EQ(field.reasoning_tokens, 4u);
  EXPECT_EQ(field.completion_tokens, 14u);
  EXPECT_EQ(field.content.text.find("<think>"), std::string::npos);

  cfg.thinking = ThinkingMode::tags;
  ChatReply tags = plan_reply(*req, cfg);
  EXPECT_EQ(tags.reasoning.size(), 0u);
  EXPECT_EQ(tags.content.text.rfind("<think>\n" + field.reasoning.text + "\n</think>\n\n", 0), 0u);
  EXPECT_EQ(tags.reasoning_tokens, 4u);

  auto capped = parse({{"messages", user("q")}, {"max_tokens", 6}});
  ChatReply cut = plan_reply(*capped, cfg);
  EXPECT_EQ(cut.finish_reason, "length");
  EXPECT_EQ(cut.completion_tokens, 6u);

  auto off = parse({{"messages", user("q")}, {"enable_thinking", false}});
  EXPECT_EQ(plan_reply(*off, cfg).reasoning_tokens, 0u);
}

TEST_F(MockChat, StreamEventsReassembleTheCompletion) {
  MockConfig cfg;
  cfg.thinking = ThinkingMode::field;
  auto req = parse({{"messages", user("q")}});
  ChatReply reply = plan_reply(*req, cfg);
  ReplyIdentity ident{"chatcmpl-mock-1", "m", 1};
  json whole = json::parse(render_completion(ident, reply));
  StreamRenderer stream(ident, reply, true);
  std::string content, reasoning;
  json usage;
  std::string finish;
  for (size_t i = 0; i < stream.event_count(); ++i) {
    std::string ev;
    stream.append_event(ev, i);
    ASSERT_EQ(ev.rfind("data: ", 0), 0u);
    ASSERT_EQ(ev.substr(ev.size() - 2), "\n\n");
    std::string data = ev.substr(6, ev.size() - 8);
    if (i + 1 == stream.event_count()) {
      EXPECT_EQ(data, "[DONE]");
      break;
    }
    json chunk = json::parse(data);
    EXPECT_EQ(chunk["object"], "chat.completion.chunk");
    if (chunk["choices"].empty()) {
      usage = chunk["usage"];
      continue;
    }
    const json& delta = chunk["choices"][0]["delta"];
    content += delta.value("content", "");
    reasoning += delta.value("reasoning_content", "");
    if (!chunk["choices"][0]["finish_reason"].is_null())
      finish = chunk["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(content, whole["choices"][0]["message"]["content"]);
  EXPECT_EQ(reasoning, whole["choices"][0]["message"]["reasoning_content"]);
  EXPECT_EQ(finish, "stop");
  EXPECT_EQ(usage, whole["usage"]);
}

}  // namespace
}  // namespace flexllm::mock::detail
