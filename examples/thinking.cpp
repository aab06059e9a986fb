// Thinking mode: switch reasoning on, read it apart from the answer (field or <think> tags).
#include "example_endpoint.hpp"

int main() {
  auto ep = example::endpoint({.thinking = flexllm::mock::ThinkingMode::tags});
  flexllm::LLMClient client(ep.config);
  auto messages = flexllm::json::array({{{"role", "user"}, {"content", "Is 97 prime?"}}});
  flexllm::ChatResult r =
      client.chat_completions(messages, {.thinking = "high", .return_raw = true});
  std::cout << "thought: " << r.reasoning.value_or("(none)") << "\n---\nanswer: " << r.content
            << "\n";
  // The same split from the raw reply, as the Python library's parse_thoughts does it.
  auto [thought, answer] = flexllm::parse_thoughts(r.raw(), client.provider());
  return thought == r.reasoning.value_or("") && answer == r.content ? 0 : 1;
}
