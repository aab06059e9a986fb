// Throughput of the persistent cache stores as the cache front uses them: lookups in batches of
// 256 keys from one thread (target for ipc: ≥ 50 000 hits/s including decompression of
// ~200-byte values), the same from two threads, single gets, and batched writes.
//
//   cache_store_bench [--entries N] [--seconds S] [--redis URL]
//
// Without --redis it measures the ipc (SQLite) store in a fresh temporary directory; with it, the
// Redis store at URL (its flexllm:v1:* keys are cleared first). Prints one JSON line per measure.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cache/redis_store.hpp"
#include "cache/sqlite_store.hpp"

namespace {

using flexllm::detail::CacheKey;
using flexllm::detail::CacheStore;
using Clock = std::chrono::steady_clock;

constexpr size_t kBatch = 256;

// Random-looking like a hash, and cheap (splitmix64), so the bench measures the store.
uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

CacheKey key_of(uint64_t i) {
  CacheKey k{};
  uint64_t a = mix(i), b = mix(a);
  for (size_t j = 0; j < 8; ++j) {
    k[j] = static_cast<uint8_t>(a >> (8 * j));
    k[8 + j] = static_cast<uint8_t>(b >> (8 * j));
  }
  return k;
}

// An encoded reply of about 200 bytes, like the cache front stores.
std::string value_of(uint64_t i) {
  return R"({"content":"The answer to question )" + std::to_string(i) +
         R"( is forty-two, as computed.","finish_reason":"stop","usage":{"prompt_tokens":)" +
         std::to_string(20 + i % 50) + R"(,"completion_tokens":)" + std::to_string(i % 300) +
         R"(,"total_tokens":)" + std::to_string(20 + i % 50 + i % 300) +
         R"(},"model":"gpt-4o-mini","tool_calls":[]})";
}

void report(const char* what, double ops, double seconds, const char* unit) {
  std::printf("{\"measure\":\"%s\",\"%s\":%.0f,\"seconds\":%.2f}\n", what, unit, ops / seconds,
              seconds);
  std::fflush(stdout);
}

// Batched lookups of random present keys from `threads` threads for `seconds`; returns hits/s.
void lookups(CacheStore& store, size_t entries, double seconds, int threads, bool batched) {
  std::atomic<uint64_t> hits{0}, misses{0};
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  const auto t0 = Clock::now();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      std::mt19937_64 rng(static_cast<uint64_t>(t) + 1);
      std::vector<CacheKey> keys(kBatch);
      uint64_t h = 0, m = 0;
      while (Clock::now() < end) {
        if (batched) {
          for (CacheKey& k : keys) k = key_of(rng() % entries);
          for (const auto& v : store.get_many(keys)) (v ? h : m)++;
        } else {
          for (size_t i = 0; i < kBatch; ++i) (store.get(key_of(rng() % entries)) ? h : m)++;
        }
      }
      hits += h;
      misses += m;
    });
  for (auto& w : workers) w.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  if (misses) std::fprintf(stderr, "unexpected misses: %llu\n", (unsigned long long)misses.load());
  char name[64];
  std::snprintf(name, sizeof name, "%s_%dthread", batched ? "get_many_256" : "get", threads);
  report(name, static_cast<double>(hits), elapsed, "hits_per_s");
}

}  // namespace

int main(int argc, char** argv) {
  size_t entries = 100'000;
  double seconds = 3;
  std::string redis;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--entries")
      entries = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--seconds")
      seconds = std::strtod(argv[i + 1], nullptr);
    else if (a == "--redis")
      redis = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: cache_store_bench [--entries N] [--seconds S] [--redis URL]\n");
      return 2;
    }
  }
  auto warn = [](const std::string& w) { std::fprintf(stderr, "warning: %s\n", w.c_str()); };
  std::string dir;
  std::unique_ptr<CacheStore> store;
  if (redis.empty()) {
    dir = (std::filesystem::temp_directory_path() /
           ("flexllm_cache_bench_" + std::to_string(getpid())))
              .string();
    store = flexllm::detail::make_sqlite_store(dir, warn);
  } else {
    store = flexllm::detail::make_redis_store(redis, warn);
    store->clear();
  }

  const auto t0 = Clock::now();
  std::vector<CacheKey> keys;
  std::vector<std::string> values;
  for (size_t i = 0; i < entries; i += kBatch) {
    keys.clear();
    values.clear();
    for (size_t j = i; j < std::min(entries, i + kBatch); ++j) {
      keys.push_back(key_of(j));
      values.push_back(value_of(j));
    }
    store->put_many(keys, values, std::chrono::hours(1));
  }
  report("put_many_256", static_cast<double>(entries),
         std::chrono::duration<double>(Clock::now() - t0).count(), "puts_per_s");

  lookups(*store, entries, seconds, 1, true);
  lookups(*store, entries, seconds, 2, true);
  lookups(*store, entries, seconds, 1, false);

  if (redis.empty())
    std::filesystem::remove_all(dir);
  else
    store->clear();
  return 0;
}
