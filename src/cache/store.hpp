// Response cache storage: where encoded cache values live. Three backends behind one
// interface — `local` (in-process sharded LRU), `ipc` (SQLite in WAL mode, shared by the processes
// of a host), `redis` (shared by machines). The cache front (single-flight, key function, stats,
// the writer thread) sits above this in response_cache.hpp; stores only map keys to bytes.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace flexllm::detail {

using CacheKey = std::array<uint8_t, 16>;  // XXH3-128 of the canonical key JSON (cache_key.hpp)

// A store maps keys to encoded values (cache_value.hpp) with a per-entry time to live.
// Thread-safe: lookups come from caller threads, writes from the cache's writer thread.
// A store never throws once constructed: an I/O failure (busy database past its timeout, corrupt
// file, Redis down) is reported once through the warning callback and the operation behaves as a
// miss / a dropped write, so the client keeps working uncached.
class CacheStore {
 public:
  virtual ~CacheStore() = default;

  // The value under `key`, or nullopt (absent, expired, or the store failing).
  virtual std::optional<std::string> get(const CacheKey& key) = 0;
  // Many lookups at once (one transaction / one pipeline): out[i] is the value of keys[i].
  virtual std::vector<std::optional<std::string>> get_many(std::span<const CacheKey> keys) = 0;
  // Stores `value` under `key`; ttl 0 = never expires. Overwrites an existing entry.
  virtual void put(const CacheKey& key, std::string_view value, std::chrono::seconds ttl) = 0;
  // Many writes at once (one transaction / one pipeline).
  virtual void put_many(std::span<const CacheKey> keys, std::span<const std::string> values,
                        std::chrono::seconds ttl) = 0;
  // Removes every entry of this cache (for redis: every key under this cache's prefix).
  virtual void clear() = 0;
};

using CacheWarn = std::function<void(const std::string&)>;

// In-process: `shards` LRU maps, each bounded to max_bytes / shards of key+value bytes; expired
// entries are dropped on access.
std::unique_ptr<CacheStore> make_local_store(size_t max_bytes, size_t shards = 16);

// SQLite database `dir`/responses.sqlite3 (created with its directory), WAL mode, busy timeout,
// values zstd-compressed, expired rows swept periodically. Any number of processes may open the
// same directory at once. Throws std::runtime_error naming the path when the directory cannot
// be created, or when it is not private (check_cache_dir); a corrupt or unreadable database is
// reported through `warn` and the store works as an always-miss store.
std::unique_ptr<CacheStore> make_sqlite_store(const std::string& dir, CacheWarn warn);

// Redis at `url` (redis://[:password@]host[:port][/db]); keys are "flexllm:v1:<hex>", values
// zstd-compressed, TTL by Redis expiry. Reconnects after a failure (at most once per second); while
// Redis is unreachable every operation is a miss / dropped write and `warn` is called once per
// outage. Throws std::invalid_argument naming the URL when it cannot be parsed.
std::unique_ptr<CacheStore> make_redis_store(const std::string& url, CacheWarn warn);

}  // namespace flexllm::detail
