#include "cache/local_store.hpp"

#include <algorithm>
#include <cstring>
#include <list>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace flexllm::detail {
namespace {

using Clock = std::chrono::steady_clock;
constexpr Clock::time_point kNever = Clock::time_point::max();

// What an entry costs beyond its key and value bytes: the list node, the hash node and its
// bucket, the string header and the expiry. An estimate: the bound is on memory, roughly.
constexpr size_t kEntryOverhead = 128;

size_t entry_cost(size_t value_size) {
  return sizeof(CacheKey) + value_size + kEntryOverhead;
}

// Keys are XXH3 hashes, so any of their bytes are uniformly distributed: the first eight pick
// the shard, the last eight the bucket within it (independent bits, so a shard's buckets are all
// used).
uint64_t key_word(const CacheKey& key, size_t offset) {
  uint64_t w;
  std::memcpy(&w, key.data() + offset, sizeof w);
  return w;
}

struct KeyHash {
  size_t operator()(const CacheKey& key) const noexcept { return key_word(key, 8); }
};

// The current time, read at most once per store operation and only when an entry has an expiry.
class LazyNow {
 public:
  explicit LazyNow(const SteadyNow& now) : now_(now) {}
  Clock::time_point operator()() {
    if (!known_) {
      t_ = now_();
      known_ = true;
    }
    return t_;
  }

 private:
  const SteadyNow& now_;
  Clock::time_point t_{};
  bool known_ = false;
};

// One LRU map. Its methods are called with `mutex` held.
struct alignas(64) Shard {
  struct Entry {
    CacheKey key;
    std::string value;
    Clock::time_point expires;
  };

  std::mutex mutex;
  std::list<Entry> lru;  // most recently used first
  std::unordered_map<CacheKey, std::list<Entry>::iterator, KeyHash> index;
  size_t bytes = 0;  // entry_cost() of every entry

  std::optional<std::string> get(const CacheKey& key, LazyNow& now) {
    const auto it = index.find(key);
    if (it == index.end()) return std::nullopt;
    const auto entry = it->second;
    if (entry->expires != kNever && now() >= entry->expires) {
      erase(it);
      return std::nullopt;
    }
    lru.splice(lru.begin(), lru, entry);
    return entry->value;
  }

  void put(const CacheKey& key, std::string_view value, Clock::time_point expires,
           size_t capacity) {
    const size_t cost = entry_cost(value.size());
    const auto it = index.find(key);
    if (cost > capacity) {
      // Can never fit; an older value under the key is outdated now, so it goes too.
      if (it != index.end()) erase(it);
      return;
    }
    if (it != index.end()) {
      const auto entry = it->second;
      bytes -= entry_cost(entry->value.size());
      entry->value.assign(value);
      entry->expires = expires;
      lru.splice(lru.begin(), lru, entry);
    } else {
      lru.push_front(Entry{key, std::string(value), expires});
      index.emplace(key, lru.begin());
    }
    bytes += cost;
    while (bytes > capacity) erase(index.find(lru.back().key));
  }

  void erase(std::unordered_map<CacheKey, std::list<Entry>::iterator, KeyHash>::iterator it) {
    bytes -= entry_cost(it->second->value.size());
    lru.erase(it->second);
    index.erase(it);
  }

  void clear() {
    index.clear();
    lru.clear();
    bytes = 0;
  }
};

class LocalStore final : public CacheStore {
 public:
  LocalStore(size_t max_bytes, size_t shards, SteadyNow now)
      : count_(std::max<size_t>(shards, 1)),
        capacity_(max_bytes / count_),
        shards_(std::make_unique<Shard[]>(count_)),
        now_(std::move(now)) {}

  std::optional<std::string> get(const CacheKey& key) override {
    Shard& shard = shard_of(key);
    LazyNow now(now_);
    std::lock_guard lock(shard.mutex);
    return shard.get(key, now);
  }

  std::vector<std::optional<std::string>> get_many(std::span<const CacheKey> keys) override {
    std::vector<std::optional<std::string>> out(keys.size());
    LazyNow now(now_);
    by_shard(keys, [&](Shard& shard, size_t i) { out[i] = shard.get(keys[i], now); });
    return out;
  }

  void put(const CacheKey& key, std::string_view value, std::chrono::seconds ttl) override {
    const Clock::time_point expires = expiry(ttl);
    Shard& shard = shard_of(key);
    std::lock_guard lock(shard.mutex);
    shard.put(key, value, expires, capacity_);
  }

  void put_many(std::span<const CacheKey> keys, std::span<const std::string> values,
                std::chrono::seconds ttl) override {
    const Clock::time_point expires = expiry(ttl);
    // Equal sizes by contract; never read past the shorter one.
    keys = keys.first(std::min(keys.size(), values.size()));
    by_shard(keys,
             [&](Shard& shard, size_t i) { shard.put(keys[i], values[i], expires, capacity_); });
  }

  void clear() override {
    for (size_t s = 0; s < count_; ++s) {
      std::lock_guard lock(shards_[s].mutex);
      shards_[s].clear();
    }
  }

 private:
  size_t shard_index(const CacheKey& key) const { return key_word(key, 0) % count_; }
  Shard& shard_of(const CacheKey& key) { return shards_[shard_index(key)]; }

  // ttl 0 (or less) never expires; a ttl past the clock's range neither.
  Clock::time_point expiry(std::chrono::seconds ttl) const {
    if (ttl <= std::chrono::seconds::zero()) return kNever;
    const Clock::time_point t = now_();
    if (ttl >= std::chrono::duration_cast<std::chrono::seconds>(kNever - t)) return kNever;
    return t + ttl;
  }

  // Calls f(shard, i) for every index of `keys`, grouped by shard (a stable counting sort) so
  // that each shard is locked once per call; within a shard, indices keep their order, so of
  // two writes to one key the later wins.
  template <class F>
  void by_shard(std::span<const CacheKey> keys, F&& f) {
    std::vector<size_t> begin(count_ + 1, 0);
    for (const CacheKey& key : keys) ++begin[shard_index(key) + 1];
    for (size_t s = 0; s < count_; ++s) begin[s + 1] += begin[s];
    std::vector<size_t> next(begin.begin(), begin.end() - 1);
    std::vector<size_t> order(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) order[next[shard_index(keys[i])]++] = i;
    for (size_t s = 0; s < count_; ++s) {
      if (begin[s] == begin[s + 1]) continue;
      std::lock_guard lock(shards_[s].mutex);
      for (size_t j = begin[s]; j < begin[s + 1]; ++j) f(shards_[s], order[j]);
    }
  }

  const size_t count_;
  const size_t capacity_;  // bytes per shard
  const std::unique_ptr<Shard[]> shards_;
  const SteadyNow now_;
};

}  // namespace

std::unique_ptr<CacheStore> make_local_store(size_t max_bytes, size_t shards, SteadyNow now) {
  return std::make_unique<LocalStore>(max_bytes, shards, std::move(now));
}

std::unique_ptr<CacheStore> make_local_store(size_t max_bytes, size_t shards) {
  return make_local_store(max_bytes, shards, [] { return Clock::now(); });
}

}  // namespace flexllm::detail
