// The OpenAI-compatible stream decoder (SSE events carrying chat.completion.chunk objects): the
// same events, error and assembled result however the body is cut; the streamed text a prefix of
// the final content and reasoning; no API key in any error. And the <think> splitter: its pieces,
// for the input taken as content cut anywhere, concatenate to what parse_thoughts() gives.
#include "fuzz.hpp"
#include "providers/openai.hpp"

namespace flexllm::fuzz {
namespace {

using detail::Endpoint;
using detail::StreamDecoder;

std::string describe(const StreamEvent& e) {
  std::string s = fmt::format("{}:{:?}", static_cast<int>(e.kind), e.text);
  if (e.tool)
    s += fmt::format(" tool {} {:?} {:?} {:?}", e.tool->index, e.tool->id, e.tool->name,
                     e.tool->arguments);
  if (e.usage_info)
    s += fmt::format(" usage {} {} {} {}", e.usage_info->prompt_tokens,
                     e.usage_info->completion_tokens, e.usage_info->total_tokens,
                     e.usage_info->reasoning_tokens.value_or(-1));
  return s;
}

std::string describe(const Error& e) {
  return fmt::format("error {} {:?} body {:?} retryable {}", to_string(e.kind()), e.what(),
                     e.body(), e.retryable());
}

std::string describe(const ChatResult& r) {
  std::string s = fmt::format("content {:?} reasoning {:?} finish {:?}", r.content,
                              r.reasoning.value_or("(none)"), r.finish_reason);
  if (r.usage)
    s += fmt::format(" usage {} {} {}", r.usage->prompt_tokens, r.usage->completion_tokens,
                     r.usage->total_tokens);
  for (const ToolCall& c : r.tool_calls)
    s += fmt::format(" call {:?} {:?} {:?} {:?}", c.id, c.type, c.name, c.arguments);
  return s;
}

void check_error(const Error& e, std::string_view input) {
  FLEXLLM_FUZZ_CHECK(e.kind() == ErrorKind::parse || e.kind() == ErrorKind::provider ||
                         e.kind() == ErrorKind::truncated,
                     "a stream error of kind {}", to_string(e.kind()));
  check_no_key(e.what(), input, "a stream error");
  check_no_key(e.body(), input, "a stream error's body");
}

std::vector<std::string> decode(std::string_view input, const std::vector<size_t>& cuts) {
  Endpoint ep;
  ep.base_url = "http://fuzz.invalid/v1";
  ep.api_key = std::string(kApiKey);
  std::unique_ptr<StreamDecoder> decoder = detail::openai_adapter().make_stream_decoder(ep);
  std::vector<std::string> out;
  std::vector<StreamEvent> events;
  std::string content, reasoning;
  size_t at = 0;
  for (size_t cut : cuts) {
    events.clear();
    std::optional<Error> err = decoder->feed(input.substr(at, cut - at), events);
    at = cut;
    for (const StreamEvent& e : events) {
      FLEXLLM_FUZZ_CHECK(e.kind != StreamEvent::done, "a done event from the decoder");
      if (e.kind == StreamEvent::content || e.kind == StreamEvent::thinking) {
        FLEXLLM_FUZZ_CHECK(!e.text.empty(), "an empty text event");
        (e.kind == StreamEvent::content ? content : reasoning).append(e.text);
      }
      out.push_back(describe(e));
    }
    if (err) {
      check_error(*err, input);
      out.push_back("feed " + describe(*err));
      break;
    }
  }
  auto result = decoder->finish();
  if (const Error* e = std::get_if<Error>(&result)) {
    check_error(*e, input);
    out.push_back("finish " + describe(*e));
  } else {
    const ChatResult& r = std::get<ChatResult>(result);
    FLEXLLM_FUZZ_CHECK(r.content.starts_with(content),
                       "streamed content {:?} is not a prefix of "
                       "the result's {:?}",
                       content, r.content);
    FLEXLLM_FUZZ_CHECK(r.reasoning.value_or("").starts_with(reasoning),
                       "streamed thinking {:?} is not a prefix of the result's {:?}", reasoning,
                       r.reasoning.value_or(""));
    for (const ToolCall& c : r.tool_calls)
      FLEXLLM_FUZZ_CHECK(!c.arguments.empty(), "a tool call without arguments");
    out.push_back("finish " + describe(r));
  }
  return out;
}

void expect_same(const std::vector<std::string>& a, const std::vector<std::string>& b,
                 const char* how) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  FLEXLLM_FUZZ_CHECK(i == a.size() && i == b.size(),
                     "whole/{}: {}/{} steps, first difference at {}: {:?} / {:?}", how, a.size(),
                     b.size(), i, i < a.size() ? a[i] : "(end)", i < b.size() ? b[i] : "(end)");
}

// The input taken as streamed content, pushed in the given pieces.
void think_split(std::string_view input, const std::vector<size_t>& cuts, bool pass_through) {
  detail::ThinkTagSplitter splitter;
  if (pass_through) splitter.pass_through();
  std::string thinking, content;
  size_t at = 0;
  for (size_t cut : cuts) {
    std::string t, c;
    splitter.push(input.substr(at, cut - at), t, c);
    thinking += t;
    content += c;
    at = cut;
  }
  splitter.flush(thinking, content);
  if (pass_through && !input.empty()) {
    FLEXLLM_FUZZ_CHECK(thinking.empty() && content == input,
                       "pass-through changed the content: thinking {:?}, content {:?}", thinking,
                       content);
    return;
  }
  const Thoughts want = parse_thoughts(input);
  FLEXLLM_FUZZ_CHECK(thinking == want.thought && content == want.answer,
                     "split <think>: thinking {:?} content {:?}, parse_thoughts: {:?} {:?}",
                     thinking, content, want.thought, want.answer);
}

}  // namespace

void openai_stream(std::string_view input) {
  const auto whole = decode(input, {input.size()});
  expect_same(whole, decode(input, bytewise_cuts(input.size())), "bytewise");
  expect_same(whole, decode(input, cuts_for(input, 64)), "pieces");

  think_split(input, {input.size()}, false);
  think_split(input, bytewise_cuts(input.size()), false);
  think_split(input, cuts_for(input, 16), false);
  think_split(input, cuts_for(input, 16), true);
}

}  // namespace flexllm::fuzz
