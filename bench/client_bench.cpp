// The flexllm client's side of scenarios S1/S2 (../shared/bench): N chat requests with at most C
// in flight, through LLMClient::chat_completions_async. Prints one JSON line.
//
//   client_bench --base-url http://127.0.0.1:18080/v1 -n 20000 -c 100 [--stream]
//                [--transport auto|curl|native]
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <future>
#include <string>

#include <flexllm/flexllm.hpp>

#include "fixture_request.hpp"

namespace {

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: client_bench --base-url URL -n N -c C [--stream] [--model M] "
               "[--transport auto|curl|native]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string base_url, model = "gpt-4o-mini";
  long n = 0, c = 0;
  bool stream = false;
  flexllm::Transport transport = flexllm::Transport::automatic;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--base-url") {
      base_url = value();
    } else if (a == "-n") {
      n = std::atol(value().c_str());
    } else if (a == "-c") {
      c = std::atol(value().c_str());
    } else if (a == "--model") {
      model = value();
    } else if (a == "--stream") {
      stream = true;
    } else if (a == "--transport") {
      std::string t = value();
      if (t == "curl") {
        transport = flexllm::Transport::curl;
      } else if (t == "native") {
        transport = flexllm::Transport::native;
      } else if (t != "auto") {
        usage();
      }
    } else {
      usage();
    }
  }
  if (base_url.empty() || n <= 0 || c <= 0) usage();

  flexllm::LLMClient client({.base_url = base_url,
                             .api_key = "sk-bench-0000000000000000",
                             .model = model,
                             .concurrency_limit = static_cast<int>(c),
                             .retry_times = 0,
                             .proxy = "",
                             .transport = transport});
  const flexllm::RequestOptions options{.temperature = 0.2, .max_tokens = 256};
  long ok = 0, err = 0;
  size_t content_bytes = 0;
  auto start = std::chrono::steady_clock::now();
  if (stream) {
    // Streams are consumed one per thread would measure threads, not the client: drain them as
    // they complete, C at a time.
    std::deque<flexllm::ChatStream> window;
    long next = 0;
    while (next < n || !window.empty()) {
      while (next < n && static_cast<long>(window.size()) < c)
        window.push_back(client.chat_completions_stream(
            bench::fixture_messages(static_cast<size_t>(next++)), options));
      try {
        content_bytes += window.front().result().content.size();
        ++ok;
      } catch (const flexllm::Error&) {
        ++err;
      }
      window.pop_front();
    }
  } else {
    // A window of 2*C outstanding futures keeps the engine's queue full without holding N. After
    // waiting for the oldest, everything already finished is taken too, then the window is
    // refilled in one go: the caller wakes once per batch, not once per reply.
    std::deque<std::future<flexllm::ChatResult>> window;
    long next = 0;
    auto take = [&] {
      try {
        content_bytes += window.front().get().content.size();
        ++ok;
      } catch (const flexllm::Error&) {
        ++err;
      }
      window.pop_front();
    };
    while (next < n || !window.empty()) {
      while (next < n && static_cast<long>(window.size()) < 2 * c)
        window.push_back(client.chat_completions_async(
            bench::fixture_messages(static_cast<size_t>(next++)), options));
      take();
      while (!window.empty() &&
             window.front().wait_for(std::chrono::seconds(0)) == std::future_status::ready)
        take();
    }
  }
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  double cpu = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
               static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  std::printf(
      "{\"n\":%ld,\"ok\":%ld,\"err\":%ld,\"wall_s\":%.3f,\"req_s\":%.0f,\"cpu_s\":%.3f,"
      "\"cpu_ms_per_req\":%.4f,\"peak_rss_mb\":%.1f,\"content_bytes\":%zu}\n",
      n, ok, err, wall, static_cast<double>(n) / wall, cpu, cpu * 1000.0 / static_cast<double>(n),
      static_cast<double>(ru.ru_maxrss) / 1024.0, content_bytes);
  return err == 0 ? 0 : 1;
}
