#include <flexllm/flexllm.hpp>
#include <flexllm/mock/server.hpp>
#include <iostream>
int main() {
  flexllm::mock::MockServer mock({.echo = true});
  flexllm::LLMClient client({.base_url = mock.base_url(), .model = "m", .proxy = ""});
  auto r = client.chat_completions(
      flexllm::json::array({{{"role", "user"}, {"content", "installed ok"}}}));
  std::cout << r.content << " (flexllm " << flexllm::version() << ")\n";
}
