// The `redis` cache store (store.hpp) with its timing knobs, which the tests shorten.
#pragma once

#include <chrono>

#include "cache/store.hpp"

namespace flexllm::detail {

struct RedisStoreOptions {
  // After a failure, operations are misses without trying Redis until this much time has passed.
  std::chrono::milliseconds reconnect_interval{std::chrono::seconds(1)};
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(1)};
  // Per command (or pipeline read): a Redis that hangs costs the caller at most this long.
  std::chrono::milliseconds command_timeout{std::chrono::seconds(1)};
};

std::unique_ptr<CacheStore> make_redis_store(const std::string& url, CacheWarn warn,
                                             RedisStoreOptions options);

}  // namespace flexllm::detail
