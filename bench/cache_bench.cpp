// Response cache benchmarks (issue 5): a fully cached batch, and the latency of one cached call.
//
//   cache_bench --base-url URL --backend local|ipc|redis://HOST:PORT -n N [--dir DIR]
//
// Fills the cache with a batch of N fixture requests (through the server at URL), then, with a
// fresh client on the same store (local: the same client, its store lives in the process), times
// the same batch answered wholly from the cache, and 20 000 single cached calls one after another.
// Prints one JSON line: items/s of the cached batch, hit latency p50/p99 in µs, peak RSS.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <flexllm/flexllm.hpp>

#include "fixture_request.hpp"

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: cache_bench --base-url URL --backend local|ipc|redis://HOST:PORT -n N "
               "[--dir DIR]\n");
  std::exit(2);
}

flexllm::MessageSource fixtures(size_t n) {
  auto next = std::make_shared<size_t>(0);
  return flexllm::MessageSource(
      [next, n]() -> std::optional<flexllm::json> {
        if (*next >= n) return std::nullopt;
        return bench::fixture_messages((*next)++);
      },
      n);
}

}  // namespace

int main(int argc, char** argv) {
  std::string base_url, backend, dir;
  size_t n = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--base-url") {
      base_url = value();
    } else if (a == "--backend") {
      backend = value();
    } else if (a == "--dir") {
      dir = value();
    } else if (a == "-n") {
      n = std::strtoull(value().c_str(), nullptr, 10);
    } else {
      usage();
    }
  }
  if (base_url.empty() || backend.empty() || n == 0) usage();
  flexllm::ClientConfig config{.base_url = base_url,
                               .api_key = "sk-bench-0000000000000000",
                               .model = "gpt-4o-mini",
                               .concurrency_limit = 100,
                               .retry_times = 0,
                               .proxy = ""};
  config.cache = {.enabled = true,
                  .ttl = std::chrono::hours(1),
                  .use_ipc = backend == "ipc",
                  .cache_dir = dir,
                  .backend = backend};
  const flexllm::RequestOptions request{.temperature = 0.2, .max_tokens = 256};

  auto client = std::make_unique<flexllm::LLMClient>(config);
  client->cache().clear();
  auto fill = client->chat_completions_batch(fixtures(n), {.request = request});
  if (fill.summary.success != n) {
    std::fprintf(stderr, "cache_bench: filling the cache failed (%zu of %zu)\n",
                 fill.summary.success, n);
    return 1;
  }
  // Persistent stores: a new client reads what the first one wrote (its destructor stores what
  // is still queued). The local store lives in its client, which is kept.
  if (backend != "local") {
    client.reset();
    client = std::make_unique<flexllm::LLMClient>(config);
  }
  const auto t0 = Clock::now();
  auto cached = client->chat_completions_batch(fixtures(n), {.request = request});
  const double batch_s = std::chrono::duration<double>(Clock::now() - t0).count();

  const size_t calls = 20000;
  std::vector<double> us;
  us.reserve(calls);
  for (size_t i = 0; i < calls; ++i) {
    flexllm::json messages = bench::fixture_messages(i % n);
    const auto c0 = Clock::now();
    flexllm::ChatResult r = client->chat_completions(messages, request);
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - c0).count());
    if (!r.cached) {
      std::fprintf(stderr, "cache_bench: call %zu was not a hit\n", i);
      return 1;
    }
  }
  std::sort(us.begin(), us.end());
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf(
      "{\"backend\":\"%s\",\"n\":%zu,\"cached\":%zu,\"batch_s\":%.3f,\"items_s\":%.0f,"
      "\"hit_p50_us\":%.1f,\"hit_p99_us\":%.1f,\"peak_rss_mb\":%.1f}\n",
      backend.c_str(), n, cached.summary.cached, batch_s, static_cast<double>(n) / batch_s,
      us[us.size() / 2], us[us.size() * 99 / 100], static_cast<double>(ru.ru_maxrss) / 1024.0);
  return cached.summary.cached == n ? 0 : 1;
}
