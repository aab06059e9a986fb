// The `local` cache store with its clock as a parameter, so that tests move time instead of
// sleeping. make_local_store(max_bytes, shards) in store.hpp is this with steady_clock::now.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include "cache/store.hpp"

namespace flexllm::detail {

using SteadyNow = std::function<std::chrono::steady_clock::time_point()>;

std::unique_ptr<CacheStore> make_local_store(size_t max_bytes, size_t shards, SteadyNow now);

}  // namespace flexllm::detail
