// The `ipc` cache store (store.hpp) with the knobs its tests turn: the clock that expiry and the
// sweep read, and how often the sweep runs.
#pragma once

#include <sys/types.h>

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

// Throws std::runtime_error naming `dir` and the reason when the directory is not one only `me`
// can write (another user owns it, or its group or others may write it, sticky bit or not) or
// holds database files another user owns: whoever can write there can poison the cache.
// make_sqlite_store() checks its directory with the process's effective user.
void check_cache_dir(const std::string& dir, uid_t me);

}  // namespace flexllm::detail
