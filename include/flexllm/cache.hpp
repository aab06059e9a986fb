// The response cache: repeated requests cost nothing, across calls, processes (ipc) and
// machines (redis). Keys are correct by construction: a hash of everything that decides the reply
// (endpoint, model, messages with images by content, every output-affecting option).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace flexllm {

namespace detail {
class CacheFront;
}

struct ResponseCacheConfig {
  bool enabled = false;
  std::chrono::seconds ttl = std::chrono::hours(24);  // per entry; 0 = never expires
  // true: the persistent store shared by every process of this host (SQLite in WAL mode under
  // cache_dir), kept across runs; false: in-process only (the fastest).
  bool use_ipc = true;
  // The ipc store's directory; "" = $XDG_CACHE_HOME/flexllm/responses, else
  // ~/.cache/flexllm/responses.
  std::string cache_dir{};
  // "" (local or ipc, by use_ipc), "local", "ipc", or "redis://[:password@]host[:port][/db]"
  // (shared between machines).
  std::string backend{};
  size_t max_bytes = size_t{256} << 20;  // local store: size bound (least recently used go first)

  static ResponseCacheConfig local(std::chrono::seconds ttl = std::chrono::hours(24));
  static ResponseCacheConfig ipc(std::chrono::seconds ttl = std::chrono::hours(24),
                                 std::string dir = {});
  static ResponseCacheConfig redis(std::string url,
                                   std::chrono::seconds ttl = std::chrono::hours(24));
  // The ipc store with entries that never expire.
  static ResponseCacheConfig persistent(std::string dir = {});
  static ResponseCacheConfig disabled();
};

struct CacheStats {
  uint64_t hits = 0;    // answered from the cache (or by an identical request in flight)
  uint64_t misses = 0;  // sent upstream
  double hit_rate() const {
    return hits + misses ? static_cast<double>(hits) / static_cast<double>(hits + misses) : 0.0;
  }
};

// A client's cache (LLMClient::cache()). A store that fails (corrupt file, Redis down) is reported
// once on stderr and the client goes on uncached; it never fails a request.
class ResponseCache {
 public:
  // Opens the store of `config` (nothing when disabled). Throws InvalidRequestError naming the
  // field for an unknown backend or a malformed Redis URL.
  explicit ResponseCache(const ResponseCacheConfig& config);
  ~ResponseCache();
  ResponseCache(const ResponseCache&) = delete;
  ResponseCache& operator=(const ResponseCache&) = delete;

  bool enabled() const;
  CacheStats stats() const;
  // Removes every entry (of this cache's store: for redis, the flexllm keys only).
  void clear();

  detail::CacheFront& front();

 private:
  std::unique_ptr<detail::CacheFront> front_;
};

}  // namespace flexllm
