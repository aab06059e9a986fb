#include <flexllm/flexllm.hpp>
#include <iostream>
int main() {
  try {
    flexllm::LLMClient client(
        {.base_url = "http://127.0.0.1:1/v1", .model = "m", .retry_times = 0, .proxy = ""});
    client.chat_completions(flexllm::json::array({{{"role", "user"}, {"content", "x"}}}));
  } catch (const flexllm::ConnectionError& e) {
    std::cout << "pkg-config build ok: " << e.what() << "\n";
  }
}
