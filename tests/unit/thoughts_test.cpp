#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "flexllm/types.hpp"

namespace flexllm {
namespace {

json load(const std::string& name) {
  std::ifstream in(std::string(FLEXLLM_TEST_DATA) + "/" + name);
  EXPECT_TRUE(in) << name;
  return json::parse(in);
}

TEST(ParseThoughtsText, NoTagsLeavesTheContentAlone) {
  Thoughts t = parse_thoughts(std::string_view("  Hello <think>not at the start</think>"));
  EXPECT_EQ(t.thought, "");
  EXPECT_EQ(t.answer, "  Hello <think>not at the start</think>");
  EXPECT_EQ(parse_thoughts(std::string_view("")).answer, "");
}

TEST(ParseThoughtsText, SplitsALeadingThinkBlock) {
  Thoughts t = parse_thoughts(std::string_view("<think>\nstep 1\nstep 2\n</think>\n\nThe answer."));
  EXPECT_EQ(t.thought, "step 1\nstep 2");
  EXPECT_EQ(t.answer, "The answer.");
}

TEST(ParseThoughtsText, LeadingWhitespaceBeforeTheTagIsAllowed) {
  Thoughts t = parse_thoughts(std::string_view(" \n\t<think>x</think>y"));
  EXPECT_EQ(t.thought, "x");
  EXPECT_EQ(t.answer, "y");
}

TEST(ParseThoughtsText, EmptyThinkBlock) {
  // Qwen3 with thinking switched off still emits an empty block.
  Thoughts t = parse_thoughts(std::string_view("<think>\n\n</think>\n\nHi!"));
  EXPECT_EQ(t.thought, "");
  EXPECT_EQ(t.answer, "Hi!");
}

TEST(ParseThoughtsText, UnclosedThinkIsAllThought) {
  Thoughts t = parse_thoughts(std::string_view("<think>\nI was cut off by max_tok"));
  EXPECT_EQ(t.thought, "I was cut off by max_tok");
  EXPECT_EQ(t.answer, "");
}

TEST(ParseThoughtsText, OnlyTheFirstCloseTagEndsTheThought) {
  Thoughts t = parse_thoughts(std::string_view("<think>a</think>b</think>c"));
  EXPECT_EQ(t.thought, "a");
  EXPECT_EQ(t.answer, "b</think>c");
}

TEST(ParseThoughtsJson, OpenAIReasoningContent) {
  Thoughts t = parse_thoughts(load("openai/chat_deepseek_reasoning.json"));
  EXPECT_EQ(t.thought, "Compare the integer parts: both 9. Then 0.11 vs 0.8: 0.8 is larger.");
  EXPECT_EQ(t.answer, "9.11 is smaller than 9.8.");
}

TEST(ParseThoughtsJson, OpenAIReasoningField) {
  Thoughts t = parse_thoughts(load("openai/chat_openrouter_reasoning.json"), Provider::openai);
  EXPECT_EQ(t.thought, "Sky color question; answer briefly.");
  EXPECT_EQ(t.answer, "Blue.");
}

TEST(ParseThoughtsJson, OpenAIThinkTagsWhenTheFieldIsNull) {
  Thoughts t = parse_thoughts(load("openai/chat_vllm_think.json"));
  EXPECT_EQ(t.thought, "The user greets me. I should greet back.");
  EXPECT_EQ(t.answer, "Hello! How can I help you today?");
}

TEST(ParseThoughtsJson, OpenAIWithoutReasoning) {
  Thoughts t = parse_thoughts(load("openai/chat_basic.json"));
  EXPECT_EQ(t.thought, "");
  EXPECT_EQ(t.answer, "The capital of France is Paris.");
}

TEST(ParseThoughtsJson, OpenAIMessageObjectAndOddShapes) {
  json msg = {{"role", "assistant"}, {"content", "<think>t</think>a"}};
  EXPECT_EQ(parse_thoughts(msg).thought, "t");
  json tools_only = load("openai/chat_tool_calls.json");  // content null
  EXPECT_EQ(parse_thoughts(tools_only).answer, "");
  // Malformed replies give nothing rather than throwing.
  EXPECT_EQ(parse_thoughts(json::parse(R"({"choices":[]})")).answer, "");
  EXPECT_EQ(parse_thoughts(json::parse(R"({"choices":[{"index":0}]})")).answer, "");
  EXPECT_EQ(parse_thoughts(json::parse("[1,2]")).answer, "");
  EXPECT_EQ(parse_thoughts(json()).answer, "");
}

const char* kGemini = R"({
  "candidates": [{
    "content": {"parts": [
      {"text": "**Weighing the options**\nThe user wants a number.", "thought": true},
      {"text": "Second thought.", "thought": true},
      {"text": "The answer"},
      {"text": " is 42.", "thoughtSignature": "CiIB..."}
    ], "role": "model"},
    "finishReason": "STOP", "index": 0}],
  "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 6, "totalTokenCount": 60,
                    "thoughtsTokenCount": 46},
  "modelVersion": "gemini-2.5-flash"})";

TEST(ParseThoughtsJson, Gemini) {
  Thoughts t = parse_thoughts(json::parse(kGemini), Provider::gemini);
  EXPECT_EQ(t.thought, "**Weighing the options**\nThe user wants a number.Second thought.");
  EXPECT_EQ(t.answer, "The answer is 42.");
  EXPECT_EQ(parse_thoughts(json::parse(R"({"candidates":[]})"), Provider::gemini).answer, "");
}

const char* kClaude = R"({
  "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
  "content": [
    {"type": "thinking", "thinking": "Let me analyze this step by step.", "signature": "EqQBCg..."},
    {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix..."},
    {"type": "thinking", "thinking": "Then check.", "signature": "Eq2"},
    {"type": "text", "text": "Based on my analysis, "},
    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
    {"type": "text", "text": "the answer is yes."}
  ],
  "stop_reason": "end_turn",
  "usage": {"input_tokens": 10, "output_tokens": 80}})";

TEST(ParseThoughtsJson, Claude) {
  Thoughts t = parse_thoughts(json::parse(kClaude), Provider::claude);
  EXPECT_EQ(t.thought, "Let me analyze this step by step.\nThen check.");
  EXPECT_EQ(t.answer, "Based on my analysis, the answer is yes.");
}

TEST(ParseThoughtsJson, AutomaticRecognisesTheShape) {
  EXPECT_EQ(parse_thoughts(json::parse(kGemini), Provider::automatic).answer, "The answer is 42.");
  EXPECT_EQ(parse_thoughts(json::parse(kClaude), Provider::automatic).thought,
            "Let me analyze this step by step.\nThen check.");
  EXPECT_EQ(parse_thoughts(load("openai/chat_vllm_think.json"), Provider::automatic).answer,
            "Hello! How can I help you today?");
}

TEST(ChatResultRaw, NullWhenUnset) {
  ChatResult r;
  EXPECT_TRUE(r.raw().is_null());
}

TEST(ChatResultRaw, ParsedLazilyAndSharedByCopies) {
  ChatResult r;
  r.set_raw(R"({"id":"x","choices":[]})");
  ChatResult copy = r;
  EXPECT_EQ(r.raw()["id"], "x");
  EXPECT_EQ(&copy.raw(), &r.raw());  // one parse for all copies
  r.set_raw(R"({"id":"y"})");        // replacing does not touch earlier copies
  EXPECT_EQ(r.raw()["id"], "y");
  EXPECT_EQ(copy.raw()["id"], "x");
}

TEST(ChatResultRaw, NotJsonIsKeptAsAString) {
  ChatResult r;
  r.set_raw("not json");
  EXPECT_EQ(r.raw(), json("not json"));
}

TEST(ChatResultRaw, ConcurrentFirstAccessIsSafe) {
  ChatResult r;
  r.set_raw(R"({"a":[1,2,3],"b":"text"})");
  std::vector<std::thread> threads;
  std::vector<const json*> seen(4);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i, copy = r] { seen[static_cast<size_t>(i)] = &copy.raw(); });
  }
  for (auto& t : threads) t.join();
  for (const json* j : seen) EXPECT_EQ((*j)["b"], "text");
}

TEST(Provider, Names) {
  EXPECT_STREQ(to_string(Provider::automatic), "auto");
  EXPECT_STREQ(to_string(Provider::openai), "openai");
  EXPECT_STREQ(to_string(Provider::gemini), "gemini");
  EXPECT_STREQ(to_string(Provider::claude), "claude");
}

}  // namespace
}  // namespace flexllm
