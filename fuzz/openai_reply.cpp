// The OpenAI-compatible reply readers: a chat reply, an error body's message, a models list. A
// reply parses to the same result into a fresh and into a used ChatResult (every field is
// reset), twice in a row (the reused parser keeps nothing); a failure is a parse or provider
// error; no error shows the API key.
#include "fuzz.hpp"
#include "providers/openai.hpp"

namespace flexllm::fuzz {

void openai_reply(std::string_view input) {
  const detail::ProviderAdapter& adapter = detail::openai_adapter();
  detail::Endpoint ep;
  ep.base_url = "http://fuzz.invalid/v1";
  ep.api_key = std::string(kApiKey);

  ChatResult fresh;
  std::optional<Error> err = adapter.parse_chat_response(ep, input, fresh);
  ChatResult used;
  used.content = "stale";
  used.reasoning = "stale";
  used.usage = Usage{1, 2, 3, 4};
  used.tool_calls.push_back(ToolCall{"stale", "function", "stale", "{}"});
  used.finish_reason = "stale";
  std::optional<Error> again = adapter.parse_chat_response(ep, input, used);
  FLEXLLM_FUZZ_CHECK(err.has_value() == again.has_value(), "parsed once, failed once");
  if (err) {
    FLEXLLM_FUZZ_CHECK(err->kind() == ErrorKind::parse || err->kind() == ErrorKind::provider,
                       "a reply error of kind {}", to_string(err->kind()));
    FLEXLLM_FUZZ_CHECK(std::string_view(err->what()) == again->what(), "two messages: {:?} / {:?}",
                       err->what(), again->what());
    check_no_key(err->what(), input, "a reply error");
    check_no_key(err->body(), input, "a reply error's body");
  } else {
    FLEXLLM_FUZZ_CHECK(same_answer(fresh, used), "a used ChatResult kept something: {:?} / {:?}",
                       fresh.content, used.content);
    for (const ToolCall& c : fresh.tool_calls)
      FLEXLLM_FUZZ_CHECK(!c.arguments.empty(), "a tool call without arguments");
    if (fresh.reasoning) FLEXLLM_FUZZ_CHECK(!fresh.reasoning->empty(), "empty reasoning set");
  }

  (void)adapter.error_message(input);
  auto models = adapter.parse_models(ep, input);
  if (const Error* e = std::get_if<Error>(&models)) {
    FLEXLLM_FUZZ_CHECK(e->kind() == ErrorKind::parse || e->kind() == ErrorKind::provider,
                       "a models error of kind {}", to_string(e->kind()));
    check_no_key(e->what(), input, "a models error");
  }
}

}  // namespace flexllm::fuzz
