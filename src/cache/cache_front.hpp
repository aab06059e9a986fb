// The cache front: what the client, the batch runner and the stream path talk to. Above
// the stores (store.hpp) it adds the single-flight table, hit/miss counting, and a writer thread,
// so that neither the caller's nor the I/O thread ever waits for a database or Redis write.
//
// A request's life: get() on the caller's thread (a hit ends it); on a miss, join(): an identical
// request already in flight takes this one as a follower (one upstream call for both), else this
// one leads and calls land() with its outcome when it ends (on the I/O thread). A landed success
// stays in the flight table, answering identical requests, until the writer has stored it: reads
// see writes at once whatever the store's latency.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cache/store.hpp"
#include "flexllm/cache.hpp"
#include "flexllm/errors.hpp"
#include "flexllm/types.hpp"

namespace flexllm::detail {

struct CacheKeyHash {
  size_t operator()(const CacheKey& key) const noexcept {
    size_t h;
    std::memcpy(&h, key.data(), sizeof h);  // the key is a hash already
    return h;
  }
};

class CacheFront {
 public:
  // Opens the store of `config` (none when disabled). `store` replaces it (tests). Throws
  // InvalidRequestError naming the field for an unknown backend or a malformed Redis URL.
  explicit CacheFront(const ResponseCacheConfig& config,
                      std::unique_ptr<CacheStore> store = nullptr);
  ~CacheFront();  // stores what is queued

  bool enabled() const { return store_ != nullptr; }

  // The stored (or just landed) result under `key`, with cached set. Counts a hit or a miss.
  std::optional<ChatResult> get(const CacheKey& key);
  // The same for many keys at once (one store round trip): out[i] for keys[i].
  std::vector<std::optional<ChatResult>> get_many(std::span<const CacheKey> keys);

  // The outcome of a request that `follower` waits for: the result (cached set) or the error.
  using Follower = std::function<void(const ChatResult* result, const Error* error)>;
  // After a miss: true when an identical request is in flight (or has just landed) and
  // `follower` will be called with its outcome (possibly at once, on this thread) — the miss then
  // counts as a hit; false when the caller leads: it sends the request and must call land().
  bool join(const CacheKey& key, Follower follower);
  // A leader's outcome: a success is stored and handed to the followers, an error is handed to
  // them. Non-blocking (the store is written by the writer thread).
  void land(const CacheKey& key, const ChatResult* result, const Error* error);
  // Stores a result without a flight (a stream, which does not coalesce). Non-blocking.
  void put(const CacheKey& key, const ChatResult& result);

  CacheStats stats() const;
  void clear();
  // Waits until every queued write is in the store.
  void flush();

 private:
  struct Flight {
    std::vector<Follower> followers;
    std::optional<ChatResult> result;  // landed, waiting for the writer
  };
  void enqueue(const CacheKey& key, const ChatResult& result);
  void run_writer();
  void warn(const std::string& message);

  std::unique_ptr<CacheStore> store_;
  std::chrono::seconds ttl_;
  std::atomic<uint64_t> hits_{0}, misses_{0};

  std::mutex mu_;
  std::condition_variable cv_;       // the writer waits for work
  std::condition_variable flushed_;  // flush() waits for the writer
  std::unordered_map<CacheKey, Flight, CacheKeyHash> flights_;
  std::vector<CacheKey> queue_;  // to store: their results wait in flights_
  size_t writing_ = 0;           // taken by the writer, not yet stored
  // Keys lately stored and dropped from flights_ (the newest kRecent). A caller's lookup may come
  // just before its key is stored and its join just after: a join that would lead on one of these
  // reads the store again instead of sending a duplicate request.
  static constexpr size_t kRecent = 4096;
  std::deque<CacheKey> recent_;
  std::unordered_set<CacheKey, CacheKeyHash> recent_set_;
  bool stopping_ = false;
  std::thread writer_;
};

// How one request takes part in the cache: not at all (no cache), as the leader of a flight, or
// as a plain store of its answer (skip_cache, return_raw, streams).
struct CacheTicket {
  CacheFront* cache = nullptr;
  CacheKey key{};
  bool lead = false;
  // The request's outcome, for the cache (loop thread): a leader lands it (a success is stored
  // and handed to the followers, an error handed to them), anyone else stores a success.
  void settle(const ChatResult* result, const Error* error) const {
    if (!cache) return;
    if (lead) {
      cache->land(key, result, error);
    } else if (result) {
      cache->put(key, *result);
    }
  }
};

}  // namespace flexllm::detail
