// Token streaming: print the answer as it arrives; the last event carries the whole result.
#include "example_endpoint.hpp"

int main() {
  auto ep = example::endpoint({.token_rate = 30, .response_tokens = {30, 40}});
  flexllm::LLMClient client(ep.config);
  auto messages = flexllm::json::array({{{"role", "user"}, {"content", "Tell me a short story."}}});
  try {
    for (const flexllm::StreamEvent& ev : client.chat_completions_stream(messages)) {
      if (ev.kind == flexllm::StreamEvent::content) std::cout << ev.text << std::flush;
      if (ev.kind == flexllm::StreamEvent::done)
        std::cout << "\n[finish_reason=" << ev.result->finish_reason << ", "
                  << (ev.result->usage ? ev.result->usage->completion_tokens : 0) << " tokens]\n";
    }
  } catch (const flexllm::Error& e) {  // a truncated stream is an error, never a silent success
    std::cerr << "\n" << flexllm::to_string(e.kind()) << ": " << e.what() << "\n";
    return 1;
  }
}
