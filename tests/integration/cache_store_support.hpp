// Shared by the cache store tests (cache_store_test.cpp: SQLite, cache_store_redis_test.cpp:
// Redis): deterministic keys and values, a warning collector, and checks any store must pass.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cache/store.hpp"

namespace flexllm::detail::cache_test {

inline std::string temp_dir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "flexllm_" + std::to_string(getpid()) + "_" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

inline CacheKey key_of(uint64_t i) {
  CacheKey k{};
  uint64_t x = i * 0x9E3779B97F4A7C15ull + 1;
  for (size_t b = 0; b < k.size(); ++b) {
    k[b] = static_cast<uint8_t>(x >> (8 * (b % 8)));
    if (b == 7) x = x * 0xBF58476D1CE4E5B9ull + i;
  }
  return k;
}

// About 200 bytes, different for every i, like a small cached reply.
inline std::string value_of(uint64_t i) {
  return R"({"content":"answer number )" + std::to_string(i) +
         R"( is here","reasoning":null,"tool_calls":[],"finish_reason":"stop","usage":)"
         R"({"prompt_tokens":12,"completion_tokens":)" +
         std::to_string(i % 97) + R"(,"total_tokens":)" + std::to_string(12 + i % 97) + "}}";
}

inline std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

// Collects warnings from any thread.
struct Warnings {
  std::mutex mu;
  std::vector<std::string> list;
  CacheWarn sink() {
    return [this](const std::string& w) {
      std::lock_guard lock(mu);
      list.push_back(w);
    };
  }
  std::vector<std::string> get() {
    std::lock_guard lock(mu);
    return list;
  }
};

// Threads of one process sharing a store: two write batches, three look up (batched and single);
// every value seen is the one of its key. Returns the number of hits, to show lookups did hit.
inline size_t hammer_from_threads(CacheStore& store) {
  std::atomic<size_t> hits{0}, wrong{0};
  // Half the keys are there from the start: lookups hit even if a loaded machine runs the
  // readers before any writer.
  {
    std::vector<CacheKey> keys;
    std::vector<std::string> values;
    for (uint64_t id = 0; id < 200; id += 2) {
      keys.push_back(key_of(id));
      values.push_back(value_of(id));
    }
    store.put_many(keys, values, std::chrono::seconds(0));
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < 5; ++t)
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<uint32_t>(t));
      for (int op = 0; op < 300; ++op) {
        std::vector<CacheKey> keys;
        std::vector<uint64_t> ids;
        for (int i = 0; i < 16; ++i) {
          ids.push_back(rng() % 200);
          keys.push_back(key_of(ids.back()));
        }
        if (t < 2) {
          std::vector<std::string> values;
          for (uint64_t id : ids) values.push_back(value_of(id));
          store.put_many(keys, values, std::chrono::seconds(0));
          continue;
        }
        auto got = t == 4 ? std::vector<std::optional<std::string>>{store.get(keys[0])}
                          : store.get_many(keys);
        for (size_t i = 0; i < got.size(); ++i)
          if (got[i]) (*got[i] == value_of(ids[i]) ? hits : wrong)++;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0u);
  return hits.load();
}

// A store that could not open its storage: every operation is a miss or a no-op, none throws.
inline void expect_always_miss(CacheStore& store) {
  EXPECT_NO_THROW(store.put(key_of(1), "v", std::chrono::seconds(0)));
  EXPECT_EQ(store.get(key_of(1)), std::nullopt);
  std::vector<CacheKey> keys = {key_of(1), key_of(2)};
  std::vector<std::string> values = {"a", "b"};
  EXPECT_NO_THROW(store.put_many(keys, values, std::chrono::seconds(5)));
  auto got = store.get_many(keys);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], std::nullopt);
  EXPECT_EQ(got[1], std::nullopt);
  EXPECT_NO_THROW(store.clear());
}

}  // namespace flexllm::detail::cache_test
