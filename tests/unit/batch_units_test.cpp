// Pure pieces of the batch layer: latency percentiles, record keys and lines, the progress line.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "batch/journal.hpp"
#include "batch/latency_histogram.hpp"
#include "batch/progress.hpp"
#include "core/json_scan.hpp"

namespace flexllm::detail {
namespace {

TEST(LatencyHistogram, PercentilesWithinOnePercent) {
  LatencyHistogram h;
  EXPECT_EQ(h.percentile(0.5), 0);
  for (int ms = 1; ms <= 1000; ++ms) h.add(ms / 1000.0);
  EXPECT_EQ(h.count(), 1000u);
  EXPECT_NEAR(h.percentile(0.50), 0.500, 0.005);
  EXPECT_NEAR(h.percentile(0.95), 0.950, 0.0095);
  EXPECT_NEAR(h.percentile(0.99), 0.990, 0.0099);
  EXPECT_GE(h.percentile(1.0), 0.999);
  h.add(0);    // below the first bucket
  h.add(1e9);  // beyond the last: clamped, never out of range
  EXPECT_EQ(h.count(), 1002u);
}

TEST(RecordKey, DependsOnEveryByteOfTheRequest) {
  RecordKey a = record_key(R"({"model":"m","messages":[]})");
  EXPECT_EQ(a, record_key(R"({"model":"m","messages":[]})"));
  EXPECT_NE(a, record_key(R"({"model":"n","messages":[]})"));
  EXPECT_EQ(key_hex(a).size(), 32u);
  EXPECT_EQ(key_hex(a).find_first_not_of("0123456789abcdef"), std::string::npos);
}

TEST(RecordLine, SuccessAndErrorRecordsAreValidJson) {
  BatchResultItem ok;
  ok.index = 7;
  ChatResult r;
  r.content = "quote \" and newline \n";
  r.reasoning = "why";
  r.usage = Usage{1, 2, 3, 1};
  r.finish_reason = "stop";
  r.attempts = 2;
  r.tool_calls.push_back(ToolCall{"call_1", "function", "f", R"({"a":1})"});
  ok.result = r;
  ok.metadata = {{"row", 7}};
  std::string line = format_record(
      ok, record_key("x"),
      saved_input(nlohmann::json::array({{{"role", "user"}, {"content", "hi"}}}), SaveInput::last));
  nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j["index"], 7);
  EXPECT_EQ(j["status"], "success");
  EXPECT_EQ(j["key"], key_hex(record_key("x")));
  EXPECT_EQ(j["output"], r.content);
  EXPECT_EQ(j["reasoning"], "why");
  EXPECT_EQ(j["usage"]["reasoning_tokens"], 1);
  EXPECT_EQ(j["tool_calls"][0]["arguments"], R"({"a":1})");
  EXPECT_EQ(j["attempts"], 2);
  EXPECT_EQ(j["metadata"]["row"], 7);
  EXPECT_EQ(j["input"]["content"], "hi") << "save_input=last keeps the last message";

  BatchResultItem bad;
  bad.index = 8;
  bad.status = ItemStatus::error;
  bad.error = std::make_shared<const Error>(ErrorKind::timeout, "no reply");
  nlohmann::json e = nlohmann::json::parse(format_record(bad, record_key("y"), ""));
  EXPECT_EQ(e["status"], "error");
  EXPECT_EQ(e["error"], "no reply");
  EXPECT_EQ(e["error_kind"], "timeout");
  EXPECT_FALSE(e.contains("input"));
  EXPECT_FALSE(e.contains("output"));
}

TEST(ProgressLine, ShowsCountsRateEtaAndTheRateCap) {
  BatchSummary s;
  s.success = 40;
  s.failed = 5;
  s.restored = 5;
  s.retries = 3;
  s.usage.total_tokens = 1234;
  s.elapsed = std::chrono::seconds(9);
  std::string line = Progress::line(s, 100, 7, 12.5);
  EXPECT_NE(line.find("50/100"), std::string::npos) << line;
  EXPECT_NE(line.find("50.0%"), std::string::npos) << line;
  EXPECT_NE(line.find("5.0 req/s"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA 10s"), std::string::npos) << line;
  EXPECT_NE(line.find("ok 40 failed 5 cached 0 restored 5"), std::string::npos) << line;
  EXPECT_NE(line.find("retries 3"), std::string::npos) << line;
  EXPECT_NE(line.find("pending 7"), std::string::npos) << line;
  EXPECT_NE(line.find("tokens 1234"), std::string::npos) << line;
  EXPECT_NE(line.find("rate 12.5/s"), std::string::npos) << line;
  EXPECT_EQ(Progress::line(s, std::nullopt, 0, INFINITY).find("rate"), std::string::npos);
}

}  // namespace
}  // namespace flexllm::detail

namespace flexllm::detail {
namespace {

TEST(JsonScan, FindsValuesAndTheLastElement) {
  std::string_view body =
      R"({"model":"m","messages":[{"role":"user","content":"a \"]} ["},{"role":"user","content":"b"}],"n":1})";
  size_t at = body.find(R"("messages":)") + 11;
  size_t end = json_value_end(body, at);
  ASSERT_NE(end, std::string_view::npos);
  std::string_view messages = body.substr(at, end - at);
  EXPECT_EQ(nlohmann::json::parse(messages).size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(json_last_element(messages))["content"], "b");
  EXPECT_EQ(json_last_element("[]"), "");
  EXPECT_EQ(json_last_element("[1,2,3]"), "3");
  EXPECT_EQ(json_value_end("[1,[2", 0), std::string_view::npos);
  EXPECT_EQ(json_value_end("12,", 0), 2u);
  // Escapes: an escaped quote does not end a string, an escaped backslash before a quote does.
  EXPECT_EQ(json_value_end(R"("a\"b",1)", 0), 6u);
  EXPECT_EQ(json_value_end(R"("a\\",1)", 0), 5u);
  EXPECT_EQ(json_value_end(R"("a\\\"]",1)", 0), 8u);
  EXPECT_EQ(json_value_end(R"(["\\"],2)", 0), 6u);
  EXPECT_EQ(json_value_end(R"("open \")", 0), std::string_view::npos);
  // Every messages array nlohmann writes is found whole, whatever its strings hold.
  for (std::string text : {"plain", "quote \" ]", "back\\slash\\", "\\\"", "}{][,\n"}) {
    std::string array =
        nlohmann::json::array({{{"role", "user"}, {"content", text}}, {{"role", "x"}}}).dump();
    std::string doc = R"({"messages":)" + array + R"(,"n":1})";
    EXPECT_EQ(doc.substr(12, json_value_end(doc, 12) - 12), array) << text;
  }
}

}  // namespace
}  // namespace flexllm::detail
