// The README's main job: a JSONL file of prompts through chat_completions_batch with a checkpoint
// file, live progress and a summary. Rerun it and the finished items are restored, not re-sent.
//
//   example_batch_demo [IN.jsonl] [OUT.jsonl]
// Input lines: {"prompt": "…", "system": "…"?, …}; the other fields travel as metadata.
#include <fstream>

#include "example_endpoint.hpp"

int main(int argc, char** argv) {
  using flexllm::json;
  const std::string in_path = argc > 1 ? argv[1] : "examples/prompts.jsonl";
  const std::string out_path = argc > 2 ? argv[2] : "demo-results.jsonl";
  std::ifstream in(in_path);
  if (!in) {
    std::cerr << "cannot open " << in_path << "\n";
    return 2;
  }
  std::vector<json> inputs, metadata;
  size_t line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    json rec = json::parse(line, nullptr, false);
    if (!rec.is_object() || !rec.contains("prompt")) {
      std::cerr << in_path << ":" << line_no << ": expected an object with \"prompt\"\n";
      return 2;
    }
    json messages = json::array();
    if (rec.contains("system"))
      messages.push_back({{"role", "system"}, {"content", rec["system"]}});
    messages.push_back({{"role", "user"}, {"content", rec["prompt"]}});
    rec.erase("prompt");
    rec.erase("system");
    inputs.push_back(std::move(messages));
    metadata.push_back(std::move(rec));
  }

  auto ep = example::endpoint({.latency_ms = {100, 400},
                               .response_tokens = {8, 16},
                               .reasoning_tokens = {4, 8},
                               .thinking = flexllm::mock::ThinkingMode::tags,
                               .faults = {.http_error = 0.1}});
  ep.config.concurrency_limit = 4;
  ep.config.retry_times = 6;
  ep.config.retry_delay = std::chrono::milliseconds(100);
  flexllm::LLMClient client(ep.config);
  flexllm::BatchResult result = client.chat_completions_batch(
      inputs, {.output_file = out_path, .metadata_list = metadata, .show_progress = true});

  std::cout << "\n"
            << result.summary.success << " answered now, " << result.summary.restored
            << " restored from " << out_path << ", " << result.summary.failed << " failed, "
            << result.summary.retries << " retries (the mock fails 10 % of requests)\n\n";
  for (size_t i = 0; i < std::min<size_t>(3, result.items.size()); ++i) {
    const auto& item = result.items[i];
    std::cout << "[" << item.index << "] " << flexllm::to_string(item.status) << " "
              << item.metadata.dump() << "\n    thought: "
              << (item.result && item.result->reasoning ? *item.result->reasoning : "")
              << "\n    answer:  " << item.content() << "\n";
  }
  std::cout << "\nfirst records of " << out_path << ":\n";
  std::ifstream out(out_path);
  std::string line;
  for (int i = 0; i < 2 && std::getline(out, line); ++i)
    std::cout << "  " << line.substr(0, 220) << "…\n";
  return result.summary.failed == 0 ? 0 : 1;
}
