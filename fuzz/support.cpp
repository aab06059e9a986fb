#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "fuzz.hpp"

#include "flexllm/types.hpp"

namespace flexllm::fuzz {
namespace {

std::atomic<bool> g_abort{false};

}  // namespace

void abort_on_violation(bool on) {
  g_abort = on;
}

void violation(const char* file, int line, const char* condition, const std::string& detail) {
  std::string what =
      fmt::format("{}:{}: fuzz invariant broken: {}: {}", file, line, condition, detail);
  if (g_abort) {
    std::fprintf(stderr, "%s\n", what.c_str());
    std::abort();
  }
  throw Violation(what);
}

uint64_t input_hash(std::string_view input) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : input) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

std::vector<size_t> cuts_for(std::string_view input, size_t max_piece) {
  std::vector<size_t> cuts;
  uint64_t state = input_hash(input);
  size_t at = 0;
  while (at < input.size()) {
    // splitmix64
    state += 0x9e3779b97f4a7c15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    // Mostly short pieces (where carried-over state lives), now and then a long one.
    size_t piece = 1 + (z % 8 == 0 ? (z >> 8) % max_piece : (z >> 8) % 4);
    at = std::min(input.size(), at + piece);
    cuts.push_back(at);
  }
  return cuts;
}

std::vector<size_t> bytewise_cuts(size_t size) {
  std::vector<size_t> cuts(size);
  for (size_t i = 0; i < size; ++i) cuts[i] = i + 1;
  return cuts;
}

void check_no_key(std::string_view text, std::string_view input, const char* what) {
  FLEXLLM_FUZZ_CHECK(text.find(kApiKey) == std::string_view::npos, "{} shows the API key: {:?}",
                     what, text);
  constexpr size_t kPrefix = 4;
  const std::string_view prefix = kApiKey.substr(0, kPrefix);
  for (size_t at = input.find(prefix); at != std::string_view::npos;
       at = input.find(prefix, at + 1))
    if (input.substr(at, kApiKey.size()) != kApiKey) return;  // the input has other text like it
  FLEXLLM_FUZZ_CHECK(text.find(prefix) == std::string_view::npos,
                     "{} shows the start of the API key: {:?}", what, text);
}

const std::vector<Target>& targets() {
  static const std::vector<Target> all = {
      {"http1_response", http1_response},
      {"sse", sse},
      {"openai_reply", openai_reply},
      {"openai_stream", openai_stream},
      {"journal", journal},
      {"config", config},
      {"cache_value", cache_value},
      {"mock_request", mock_request},
  };
  return all;
}

bool same_answer(const ChatResult& a, const ChatResult& b) {
  return a.content == b.content && a.reasoning == b.reasoning && a.usage == b.usage &&
         a.tool_calls == b.tool_calls && a.finish_reason == b.finish_reason;
}

}  // namespace flexllm::fuzz
