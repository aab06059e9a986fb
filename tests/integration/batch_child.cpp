// A batch in a child process, for the crash tests: `batch_child BASE_URL OUTPUT_FILE N`.
// Inputs are "p<i>"; the mock echoes them back.
#include <cstdlib>
#include <iostream>

#include <flexllm/flexllm.hpp>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: batch_child BASE_URL OUTPUT_FILE N\n";
    return 2;
  }
  flexllm::LLMClient client({.base_url = argv[1],
                             .model = "mock-model",
                             .concurrency_limit = 8,
                             .retry_times = 2,
                             .retry_delay = std::chrono::milliseconds(1),
                             .proxy = ""});
  std::vector<flexllm::json> inputs;
  for (int i = 0; i < std::atoi(argv[3]); ++i)
    inputs.push_back(
        flexllm::json::array({{{"role", "user"}, {"content", "p" + std::to_string(i)}}}));
  auto result = client.chat_completions_batch(
      inputs, {.output_file = argv[2], .flush_interval = std::chrono::milliseconds(50)});
  std::cout << result.summary.success << " " << result.summary.restored << "\n";
  return result.summary.failed == 0 ? 0 : 1;
}
