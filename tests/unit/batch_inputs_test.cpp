// The JSONL input forms of jsonl_requests (SPEC §14): one record to one request + metadata; the
// reader's bound on a line's length.
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "batch/input_formats.hpp"
#include "batch/line_reader.hpp"

namespace {

using flexllm::json;
using flexllm::detail::request_from_record;

json user(const std::string& text) {
  return json{{"role", "user"}, {"content", text}};
}
json system(const std::string& text) {
  return json{{"role", "system"}, {"content", text}};
}

TEST(BatchInputs, MessagesRecordKeepsItsOtherFieldsAsMetadata) {
  auto item = request_from_record(
      json{{"messages", json::array({user("hi")})}, {"id", 7}, {"tags", {"a"}}}, "");
  EXPECT_TRUE(item.error.empty());
  EXPECT_EQ(item.messages, json::array({user("hi")}));
  EXPECT_EQ(item.metadata, (json{{"id", 7}, {"tags", {"a"}}}));
}

TEST(BatchInputs, PromptQAndQuestionWithOptionalSystem) {
  for (const char* key : {"prompt", "q", "question"}) {
    auto item = request_from_record(json{{key, "why?"}, {"system", "be brief"}}, "");
    EXPECT_TRUE(item.error.empty()) << key;
    EXPECT_EQ(item.messages, json::array({system("be brief"), user("why?")})) << key;
    EXPECT_TRUE(item.metadata.is_null()) << key;  // nothing left over
  }
  // "prompt" wins over "q"; the unused alias stays metadata.
  auto both = request_from_record(json{{"prompt", "a"}, {"q", "b"}}, "");
  EXPECT_EQ(both.messages, json::array({user("a")}));
  EXPECT_EQ(both.metadata, (json{{"q", "b"}}));
}

TEST(BatchInputs, AlpacaInstructionAndInput) {
  auto item = request_from_record(
      json{{"instruction", "Translate"}, {"input", "bonjour"}, {"output", "hello"}}, "");
  EXPECT_EQ(item.messages, json::array({user("Translate\n\nbonjour")}));
  EXPECT_EQ(item.metadata, (json{{"output", "hello"}}));
  auto no_input = request_from_record(json{{"instruction", "Say hi"}, {"input", ""}}, "");
  EXPECT_EQ(no_input.messages, json::array({user("Say hi")}));
}

TEST(BatchInputs, BareArrayAndString) {
  auto arr = request_from_record(json::array({user("x")}), "");
  EXPECT_EQ(arr.messages, json::array({user("x")}));
  auto str = request_from_record(json("just ask"), "");
  EXPECT_EQ(str.messages, json::array({user("just ask")}));
}

TEST(BatchInputs, DefaultSystemOnlyWhereTheRecordHasNone) {
  EXPECT_EQ(request_from_record(json{{"prompt", "p"}}, "dflt").messages,
            json::array({system("dflt"), user("p")}));
  EXPECT_EQ(request_from_record(json{{"prompt", "p"}, {"system", "own"}}, "dflt").messages,
            json::array({system("own"), user("p")}));
  EXPECT_EQ(request_from_record(json::array({system("own"), user("p")}), "dflt").messages,
            json::array({system("own"), user("p")}));
  EXPECT_EQ(request_from_record(json::array({user("p")}), "dflt").messages,
            json::array({system("dflt"), user("p")}));
}

TEST(BatchInputs, UnusableRecordsSayWhy) {
  auto none = request_from_record(json{{"text", "x"}, {"id", 1}}, "");
  EXPECT_NE(none.error.find("\"prompt\""), std::string::npos) << none.error;
  EXPECT_NE(none.error.find("id, text"), std::string::npos) << none.error;  // what it has
  EXPECT_NE(request_from_record(json{{"prompt", 3}}, "").error.find("\"prompt\" must be"),
            std::string::npos);
  EXPECT_NE(request_from_record(json{{"messages", "x"}}, "").error.find("\"messages\""),
            std::string::npos);
  EXPECT_NE(request_from_record(json(42), "").error.find("number"), std::string::npos);
  EXPECT_FALSE(request_from_record(json::array(), "").error.empty());
}

TEST(BatchInputs, ParseErrorsNameTheColumn) {
  std::string why = flexllm::detail::describe_parse_error(R"({"prompt": "x",})");
  EXPECT_EQ(why.rfind("column ", 0), 0u) << why;
}

}  // namespace

namespace {

using flexllm::detail::LineReader;

TEST(LineReaderLimit, ALineOverTheLimitIsNamedAndPassedOverWithoutBeingHeld) {
  const std::string path =
      ::testing::TempDir() + "flexllm_" + std::to_string(getpid()) + "_long_lines.jsonl";
  {
    std::ofstream f(path, std::ios::binary);
    f << "short\n"
      << std::string(5 << 20, 'x') << "\n"  // over the limit, across many read blocks
      << "after\n"
      << std::string(1500, 'y') << "\n"      // over the limit, within one block
      << std::string(3000, ' ') << "\t\r\n"  // blank however long: skipped like any blank line
      << std::string(1001, 'z');             // over the limit, the last line, no newline
  }
  LineReader in(path, 1000);
  std::string_view line;
  ASSERT_TRUE(in.next(line));
  EXPECT_EQ(line, "short");
  EXPECT_FALSE(in.too_long());
  ASSERT_TRUE(in.next(line));
  EXPECT_TRUE(in.too_long());
  EXPECT_EQ(in.line_no(), 2u);
  EXPECT_TRUE(line.empty());
  // Its bytes went by; what the reader holds is its block and at most a line's worth.
  EXPECT_LE(in.held_bytes(), (256u << 10) + 2 * 1000 + 64) << in.held_bytes();
  ASSERT_TRUE(in.next(line));
  EXPECT_EQ(line, "after");
  EXPECT_FALSE(in.too_long());
  EXPECT_EQ(in.line_no(), 3u);
  ASSERT_TRUE(in.next(line));
  EXPECT_TRUE(in.too_long());
  EXPECT_EQ(in.line_no(), 4u);
  ASSERT_TRUE(in.next(line));
  EXPECT_TRUE(in.too_long());
  EXPECT_EQ(in.line_no(), 6u);
  EXPECT_FALSE(in.next(line));
  EXPECT_LE(in.held_bytes(), (256u << 10) + 2 * 1000 + 64) << in.held_bytes();

  // A line of exactly the limit is read.
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << std::string(1000, 'e') << "\n" << std::string(1000, 'f');
  }
  LineReader exact(path, 1000);
  ASSERT_TRUE(exact.next(line));
  EXPECT_EQ(line, std::string(1000, 'e'));
  ASSERT_TRUE(exact.next(line));
  EXPECT_EQ(line, std::string(1000, 'f'));
  EXPECT_FALSE(exact.too_long());
  std::remove(path.c_str());
}

TEST(LineReaderLimit, TheErrorNamesTheLimit) {
  EXPECT_NE(flexllm::detail::too_long_line(64u << 20).find("longer than 64 MiB"),
            std::string::npos);
  EXPECT_NE(flexllm::detail::too_long_line(1000).find("longer than 1000 bytes"), std::string::npos);
}

}  // namespace
