// One blocking call, with the typed errors a production caller handles.
#include "example_endpoint.hpp"

int main() {
  auto ep = example::endpoint();
  flexllm::LLMClient client(ep.config);
  flexllm::json messages =
      flexllm::json::array({{{"role", "system"}, {"content", "You are concise."}},
                            {{"role", "user"}, {"content", "Say hello in five words."}}});
  try {
    flexllm::ChatResult r =
        client.chat_completions(messages, {.temperature = 0.2, .max_tokens = 64});
    std::cout << r.content << "\n";
    if (r.usage)
      std::cout << "(" << r.usage->total_tokens << " tokens, " << r.latency.count() << " s, "
                << r.attempts << " attempt(s))\n";
  } catch (const flexllm::HttpError& e) {
    std::cerr << "HTTP " << e.status() << ": " << e.what() << "\n";
    return 1;
  } catch (const flexllm::Error& e) {  // timeout, connection, parse, …
    std::cerr << flexllm::to_string(e.kind()) << ": " << e.what() << "\n";
    return 1;
  }
}
