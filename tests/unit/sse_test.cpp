#include "transport/sse.hpp"
#include "test_data.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace flexllm::detail {
namespace {

struct Ev {
  std::string event;
  std::string data;
  friend bool operator==(const Ev&, const Ev&) = default;
  friend std::ostream& operator<<(std::ostream& os, const Ev& e) {
    return os << "{event=\"" << e.event << "\" data=\"" << e.data << "\"}";
  }
};

std::string read_file(const std::string& name) {
  return test::read_test_file(name);
}

// Feeds `pieces` in order; the views in SseEvent are copied at once (they die with the call).
std::vector<Ev> decode(const std::vector<std::string>& pieces, SseDecoder& d) {
  std::vector<Ev> out;
  for (const std::string& p : pieces) {
    // Feed from a private copy so that a view kept past the call would be caught by ASan.
    auto buf = std::make_unique<std::string>(p);
    d.feed(*buf, [&](const SseEvent& e) {
      out.push_back({std::string(e.event), std::string(e.data)});
    });
  }
  return out;
}

std::vector<Ev> decode(const std::vector<std::string>& pieces) {
  SseDecoder d;
  return decode(pieces, d);
}

std::vector<Ev> decode_whole(std::string_view s) {
  return decode({std::string(s)});
}

std::vector<std::string> bytewise(std::string_view s) {
  std::vector<std::string> v;
  for (char c : s) v.emplace_back(1, c);
  return v;
}

TEST(Sse, DataWithAndWithoutSpace) {
  auto ev = decode_whole("data: one\n\ndata:two\n\ndata:  three\n\n");
  ASSERT_EQ(ev.size(), 3u);
  EXPECT_EQ(ev[0].data, "one");
  EXPECT_EQ(ev[1].data, "two");
  EXPECT_EQ(ev[2].data, " three");  // only one leading space is part of the framing
}

TEST(Sse, MultiLineDataIsJoinedWithNewlines) {
  auto ev = decode_whole("data: {\ndata: \"a\": 1\ndata:}\n\n");
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].data, "{\n\"a\": 1\n}");
}

TEST(Sse, CommentsAndUnknownFieldsAreIgnored) {
  SseDecoder d;
  auto ev =
      decode({": keep-alive\n\n:another comment\ndata: x\nfoo: bar\nid: 42\nretry: 1500\n\n"}, d);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].data, "x");
  EXPECT_EQ(d.last_event_id(), "42");
  EXPECT_EQ(d.retry_ms(), 1500);
}

TEST(Sse, RetryMustBeDigits) {
  SseDecoder d;
  decode({"retry: 12x\ndata: a\n\n"}, d);
  EXPECT_EQ(d.retry_ms(), -1);
}

TEST(Sse, EventField) {
  auto ev = decode_whole(
      "event: message_start\ndata: {\"type\":\"message_start\"}\n\n"
      "data: plain\n\n"
      "event: ping\n\n"  // no data: not dispatched, and the type does not leak into the next
      "data: after\n\n");
  ASSERT_EQ(ev.size(), 3u);
  EXPECT_EQ(ev[0], (Ev{"message_start", "{\"type\":\"message_start\"}"}));
  EXPECT_EQ(ev[1], (Ev{"", "plain"}));
  EXPECT_EQ(ev[2], (Ev{"", "after"}));
}

TEST(Sse, EmptyDataLineIsAnEvent) {
  auto ev = decode_whole("data:\n\ndata\n\n");
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].data, "");
  EXPECT_EQ(ev[1].data, "");
  auto two = decode_whole("data\ndata\n\n");
  ASSERT_EQ(two.size(), 1u);
  EXPECT_EQ(two[0].data, "\n");
}

TEST(Sse, DispatchedOnlyOnTheBlankLine) {
  SseDecoder d;
  std::vector<Ev> ev = decode({"data: a\n"}, d);
  EXPECT_TRUE(ev.empty());
  EXPECT_TRUE(d.pending());
  ev = decode({"\n"}, d);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_FALSE(d.pending());
}

TEST(Sse, FinalEventWithoutBlankLineIsNotDispatched) {
  SseDecoder d;
  auto ev = decode({"data: a\n\ndata: cut"}, d);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_TRUE(d.pending());  // the caller learns the body ended mid-event
  SseDecoder d2;
  decode({"data: whole line but no blank\n"}, d2);
  EXPECT_TRUE(d2.pending());
}

TEST(Sse, LineEndings) {
  const std::vector<Ev> want = {{"", "a"}, {"e", "b\nc"}};
  EXPECT_EQ(decode_whole("data: a\n\nevent: e\ndata: b\ndata: c\n\n"), want);
  EXPECT_EQ(decode_whole("data: a\r\n\r\nevent: e\r\ndata: b\r\ndata: c\r\n\r\n"), want);
  EXPECT_EQ(decode_whole("data: a\r\revent: e\rdata: b\rdata: c\r\r"), want);
  EXPECT_EQ(decode_whole("data: a\r\n\nevent: e\rdata: b\ndata: c\r\n\r"), want);  // mixed
}

TEST(Sse, CrlfSplitAcrossFeeds) {
  // The CR ends the line; the LF in the next chunk must not count as a second (blank) line.
  auto ev = decode({"data: a\r", "\ndata: b\r", "\n\r", "\n"});
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].data, "a\nb");
  // …and a CR at the end of a chunk followed by something else is a line end of its own.
  auto cr = decode({"data: a\r", "\r", "data: b\r", "\r"});
  ASSERT_EQ(cr.size(), 2u);
  EXPECT_EQ(cr[1].data, "b");
}

TEST(Sse, ByteOrderMarkIsSkipped) {
  auto ev = decode_whole(
      "\xEF\xBB\xBF"
      "data: a\n\n");
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].data, "a");
  EXPECT_EQ(decode(bytewise("\xEF\xBB\xBF"
                            "data: a\n\n")),
            ev);
  // Only at the very start, and a lookalike prefix is content.
  auto later = decode_whole(
      "data: \xEF\xBB\xBF"
      "b\n\n");
  EXPECT_EQ(later[0].data,
            "\xEF\xBB\xBF"
            "b");
  auto partial = decode({"\xEF", "data: x\n\n"});
  EXPECT_TRUE(partial.empty());  // "\xEF" "data" is a field name, not "data"
}

TEST(Sse, CallbackCanStop) {
  SseDecoder d;
  int calls = 0;
  auto status = d.feed("data: 1\n\ndata: 2\n\ndata: 3\n\n", [&](const SseEvent&) {
    ++calls;
    return calls < 2;
  });
  EXPECT_EQ(status, SseDecoder::Status::stopped);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(d.feed("data: 4\n\n", [&](const SseEvent&) { ++calls; }), SseDecoder::Status::stopped);
  EXPECT_EQ(calls, 2);
}

TEST(Sse, EventSizeIsCapped) {
  {
    SseDecoder d(64);
    std::vector<Ev> ev;
    auto sink = [&](const SseEvent& e) {
      ev.push_back({std::string(e.event), std::string(e.data)});
    };
    EXPECT_EQ(d.feed("data: " + std::string(64, 'x') + "\n\n", sink), SseDecoder::Status::ok);
    EXPECT_EQ(ev.size(), 1u);
    EXPECT_EQ(d.feed("data: " + std::string(65, 'x') + "\n\n", sink),
              SseDecoder::Status::too_large);
    EXPECT_EQ(d.status(), SseDecoder::Status::too_large);
    EXPECT_EQ(d.feed("data: y\n\n", sink), SseDecoder::Status::too_large);  // stays failed
    EXPECT_EQ(ev.size(), 1u);
  }
  {
    SseDecoder d(64);  // many lines that add up
    SseDecoder::Status s = SseDecoder::Status::ok;
    for (int i = 0; i < 20 && s == SseDecoder::Status::ok; ++i)
      s = d.feed("data: 0123456789\n", [](const SseEvent&) {});
    EXPECT_EQ(s, SseDecoder::Status::too_large);
  }
  {
    SseDecoder d(64);  // a line that never ends, fed in pieces
    SseDecoder::Status s = SseDecoder::Status::ok;
    for (int i = 0; i < 20 && s == SseDecoder::Status::ok; ++i)
      s = d.feed("data: 0123456789", [](const SseEvent&) {});
    EXPECT_EQ(s, SseDecoder::Status::too_large);
  }
  EXPECT_EQ(SseDecoder().max_event_bytes(), size_t{16} << 20);
}

TEST(Sse, DefaultCapAllowsLargeEvents) {
  const std::string big(4 << 20, 'z');
  std::string stream = "data: " + big + "\n\n";
  std::vector<std::string> pieces;
  for (size_t i = 0; i < stream.size(); i += 65536) pieces.push_back(stream.substr(i, 65536));
  auto ev = decode(pieces);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].data.size(), big.size());
}

// The property that matters for real networks: however the bytes are cut, the same events.
class SseTranscript : public ::testing::TestWithParam<const char*> {};

TEST_P(SseTranscript, SameEventsWhereverTheChunksAreCut) {
  const std::string body = read_file(GetParam());
  const std::vector<Ev> whole = decode_whole(body);
  ASSERT_GE(whole.size(), 3u);

  EXPECT_EQ(decode(bytewise(body)), whole) << "byte by byte";
  for (size_t cut = 0; cut <= body.size(); ++cut) {
    ASSERT_EQ(decode({body.substr(0, cut), body.substr(cut)}), whole) << "cut at " << cut;
  }
  std::mt19937 rng(12345);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::string> pieces;
    size_t pos = 0;
    while (pos < body.size()) {
      size_t n = std::uniform_int_distribution<size_t>(0, 40)(rng);
      pieces.push_back(body.substr(pos, n));
      pos += n;
    }
    ASSERT_EQ(decode(pieces), whole) << "round " << round;
  }
}

INSTANTIATE_TEST_SUITE_P(Recorded, SseTranscript,
                         ::testing::Values("openai/stream_basic.sse", "openai/stream_crlf.sse",
                                           "openai/stream_cr.sse", "openai/stream_tool_calls.sse",
                                           "openai/stream_deepseek_reasoning.sse",
                                           "openai/stream_think_tags.sse",
                                           "openai/stream_error.sse",
                                           "openai/stream_truncated.sse"));

TEST(Sse, FramingVariantsDecodeToTheSameEvents) {
  auto lf = decode_whole(read_file("openai/stream_basic.sse"));
  auto crlf = decode_whole(read_file("openai/stream_crlf.sse"));
  auto cr = decode_whole(read_file("openai/stream_cr.sse"));
  EXPECT_EQ(crlf, lf);
  EXPECT_EQ(cr, lf);
  EXPECT_EQ(lf.back().data, "[DONE]");
}

}  // namespace
}  // namespace flexllm::detail
