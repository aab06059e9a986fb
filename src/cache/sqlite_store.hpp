// The `ipc` cache store (store.hpp) with the knobs its tests turn: the clock that expiry and the
// sweep read, and how often the sweep runs.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

#include "cache/store.hpp"

namespace flexllm::detail {

struct SqliteStoreOptions {
  // Unix seconds; expiry times are stored in them. Empty = the system clock.
  std::function<int64_t()> now_unix;
  // A put deletes the expired rows when the last sweep of this store is at least this old.
  std::chrono::seconds sweep_interval{std::chrono::minutes(10)};
};

std::unique_ptr<CacheStore> make_sqlite_store(const std::string& dir, CacheWarn warn,
                                              SqliteStoreOptions options);

}  // namespace flexllm::detail
