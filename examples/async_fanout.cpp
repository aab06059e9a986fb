// Many requests at once from one thread: futures, with the client's concurrency and rate limits
// doing the pacing.
#include <future>
#include <vector>

#include "example_endpoint.hpp"

int main() {
  auto ep = example::endpoint({.latency_ms = {50, 200}});
  ep.config.concurrency_limit = 50;
  ep.config.max_qps = 200.0;
  flexllm::LLMClient client(ep.config);

  std::vector<std::future<flexllm::ChatResult>> futures;
  for (int i = 0; i < 200; ++i) {
    auto messages = flexllm::json::array(
        {{{"role", "user"},
          {"content", "Give a one-line fact about the number " + std::to_string(i)}}});
    futures.push_back(client.chat_completions_async(messages));
  }
  int ok = 0, failed = 0;
  for (size_t i = 0; i < futures.size(); ++i) {
    try {
      auto r = futures[i].get();
      ++ok;
      if (i < 3) std::cout << i << ": " << r.content << "\n";
    } catch (const flexllm::Error& e) {
      ++failed;
      std::cerr << i << ": " << e.what() << "\n";
    }
  }
  std::cout << ok << " ok, " << failed << " failed\n";
  return failed == 0 ? 0 : 1;
}
