#include "cache/cache_front.hpp"
#include "core/invalid.hpp"

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include <fmt/format.h>

#include "cache/cache_value.hpp"

namespace flexllm::detail {
namespace {

constexpr size_t kWriteBatch = 512;  // writes per store transaction / pipeline

std::string default_cache_dir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
    return std::string(xdg) + "/flexllm/responses";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.cache/flexllm/responses";
}

}  // namespace

CacheFront::CacheFront(const ResponseCacheConfig& config, std::unique_ptr<CacheStore> store)
    : store_(std::move(store)), ttl_(config.ttl) {
  if (config.ttl.count() < 0) invalid("ResponseCacheConfig.ttl: must not be negative");
  if (!store_ && config.enabled) {
    auto say = [this](const std::string& m) { warn(m); };
    const std::string& backend = config.backend;
    if (backend == "local" || (backend.empty() && !config.use_ipc)) {
      store_ = make_local_store(config.max_bytes);
    } else if (backend == "ipc" || backend.empty()) {
      const std::string dir = config.cache_dir.empty() ? default_cache_dir() : config.cache_dir;
      try {
        store_ = make_sqlite_store(dir, say);
      } catch (const std::exception& e) {
        // An unusable directory must not stop the work: it runs uncached, and says so.
        warn(fmt::format("response cache disabled: {}", e.what()));
      }
    } else if (backend.starts_with("redis://")) {
      try {
        store_ = make_redis_store(backend, say);
      } catch (const std::invalid_argument& e) {
        invalid(fmt::format("ResponseCacheConfig.backend: {}", e.what()));
      }
    } else {
      invalid(fmt::format(
          "ResponseCacheConfig.backend: unknown backend '{}' (use local, ipc or redis://host:port)",
          backend.substr(0, backend.find("://") == std::string::npos ? backend.size()
                                                                     : backend.find("://") + 3)));
    }
  }
  if (store_) writer_ = std::thread([this] { run_writer(); });
}

CacheFront::~CacheFront() {
  if (!writer_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  writer_.join();
}

void CacheFront::warn(const std::string& message) {
  std::fprintf(stderr, "flexllm: warning: %s\n", message.c_str());
}

std::optional<ChatResult> CacheFront::get(const CacheKey& key) {
  auto found = get_many(std::span<const CacheKey>(&key, 1));
  return std::move(found[0]);
}

std::vector<std::optional<ChatResult>> CacheFront::get_many(std::span<const CacheKey> keys) {
  std::vector<std::optional<ChatResult>> out(keys.size());
  if (!store_) return out;
  // Results landed but not yet stored answer first; the store answers the rest in one trip.
  std::vector<CacheKey> ask;
  std::vector<size_t> where;
  {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < keys.size(); ++i) {
      auto it = flights_.find(keys[i]);
      if (it != flights_.end() && it->second.result) {
        out[i] = it->second.result;
      } else {
        ask.push_back(keys[i]);
        where.push_back(i);
      }
    }
  }
  if (!ask.empty()) {
    auto values = store_->get_many(ask);
    for (size_t j = 0; j < values.size(); ++j)
      if (values[j]) out[where[j]] = decode_cache_value(*values[j]);  // corrupt = a miss
  }
  uint64_t hits = 0;
  for (auto& r : out)
    if (r) {
      r->cached = true;
      r->attempts = 0;
      ++hits;
    }
  hits_.fetch_add(hits, std::memory_order_relaxed);
  misses_.fetch_add(keys.size() - hits, std::memory_order_relaxed);
  return out;
}

bool CacheFront::join(const CacheKey& key, Follower follower) {
  std::optional<ChatResult> landed;
  // Under the lock: follow a flight in the air, take a landed result, or lead (true: led). With
  // `recheck`, a key stored lately does not lead but is read back from the store first.
  auto take_part = [&](bool recheck) {
    std::lock_guard lock(mu_);
    auto [it, created] = flights_.try_emplace(key);
    if (created) {
      if (!recheck || !recent_set_.contains(key)) return true;  // the caller leads
      flights_.erase(it);
      return false;
    }
    if (!it->second.result) {
      it->second.followers.push_back(std::move(follower));
      misses_.fetch_sub(1, std::memory_order_relaxed);
      hits_.fetch_add(1, std::memory_order_relaxed);
      follower = nullptr;
      return false;
    }
    landed = it->second.result;
    return false;
  };
  if (take_part(/*recheck=*/true)) return false;
  if (!follower) return true;  // following a flight
  if (!landed) {
    // Stored between the caller's lookup and now.
    auto values = store_->get_many(std::span<const CacheKey>(&key, 1));
    if (values[0]) landed = decode_cache_value(*values[0]);
    if (!landed && take_part(/*recheck=*/false)) return false;  // expired meanwhile: lead
    if (!follower) return true;
  }
  misses_.fetch_sub(1, std::memory_order_relaxed);
  hits_.fetch_add(1, std::memory_order_relaxed);
  landed->cached = true;
  landed->attempts = 0;
  follower(&*landed, nullptr);
  return true;
}

void CacheFront::land(const CacheKey& key, const ChatResult* result, const Error* error) {
  std::vector<Follower> followers;
  {
    std::lock_guard lock(mu_);
    auto it = flights_.find(key);
    if (it != flights_.end()) {
      followers = std::move(it->second.followers);
      if (result) {
        it->second.followers.clear();
        it->second.result = *result;
        queue_.push_back(key);
      } else {
        flights_.erase(it);
      }
    } else if (result) {  // cleared meanwhile: stored all the same
      flights_[key].result = *result;
      queue_.push_back(key);
    }
  }
  if (result) cv_.notify_one();
  if (followers.empty()) return;
  if (!result) {
    for (Follower& f : followers) f(nullptr, error);
    return;
  }
  ChatResult copy = *result;
  copy.cached = true;
  copy.attempts = 0;
  for (Follower& f : followers) f(&copy, nullptr);
}

void CacheFront::put(const CacheKey& key, const ChatResult& result) {
  if (!store_) return;
  {
    std::lock_guard lock(mu_);
    flights_[key].result = result;  // a refresh (skip_cache) replaces what was there
    queue_.push_back(key);
  }
  cv_.notify_one();
}

void CacheFront::run_writer() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) break;  // stopping, with nothing left to store
    // The results wait in the flight table (where lookups see them); the copies to encode are
    // made here, off the threads that landed them.
    const size_t n = std::min(queue_.size(), kWriteBatch);
    std::vector<CacheKey> keys;
    std::vector<ChatResult> results;
    for (size_t i = 0; i < n; ++i) {
      auto it = flights_.find(queue_[i]);
      if (it == flights_.end() || !it->second.result) continue;  // cleared meanwhile
      keys.push_back(queue_[i]);
      results.push_back(*it->second.result);
    }
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(n));
    writing_ = n;
    lock.unlock();
    std::vector<std::string> values;
    values.reserve(results.size());
    for (const ChatResult& result : results) values.push_back(encode_cache_value(result));
    if (!keys.empty()) store_->put_many(keys, values, ttl_);
    lock.lock();
    writing_ = 0;
    // Stored: the store answers from now on. A flight that is in the air again (no result) is
    // another request's and stays.
    for (const CacheKey& key : keys) {
      auto it = flights_.find(key);
      if (it != flights_.end() && it->second.result && it->second.followers.empty()) {
        flights_.erase(it);
        if (recent_set_.insert(key).second) recent_.push_back(key);
      }
    }
    while (recent_.size() > kRecent) {
      recent_set_.erase(recent_.front());
      recent_.pop_front();
    }
    flushed_.notify_all();
  }
  flushed_.notify_all();
}

void CacheFront::flush() {
  std::unique_lock lock(mu_);
  flushed_.wait(lock, [this] { return queue_.empty() && writing_ == 0; });
}

CacheStats CacheFront::stats() const {
  return CacheStats{hits_.load(std::memory_order_relaxed), misses_.load(std::memory_order_relaxed)};
}

void CacheFront::clear() {
  if (!store_) return;
  flush();
  {
    std::lock_guard lock(mu_);
    for (auto it = flights_.begin(); it != flights_.end();)
      it = it->second.result ? flights_.erase(it) : std::next(it);
    recent_.clear();
    recent_set_.clear();
  }
  store_->clear();
}

}  // namespace flexllm::detail

namespace flexllm {

ResponseCacheConfig ResponseCacheConfig::local(std::chrono::seconds ttl) {
  return {.enabled = true, .ttl = ttl, .use_ipc = false, .backend = "local"};
}
ResponseCacheConfig ResponseCacheConfig::ipc(std::chrono::seconds ttl, std::string dir) {
  return {
      .enabled = true, .ttl = ttl, .use_ipc = true, .cache_dir = std::move(dir), .backend = "ipc"};
}
ResponseCacheConfig ResponseCacheConfig::redis(std::string url, std::chrono::seconds ttl) {
  return {.enabled = true, .ttl = ttl, .use_ipc = false, .backend = std::move(url)};
}
ResponseCacheConfig ResponseCacheConfig::persistent(std::string dir) {
  return ipc(std::chrono::seconds(0), std::move(dir));
}
ResponseCacheConfig ResponseCacheConfig::disabled() {
  return {.enabled = false};
}

ResponseCache::ResponseCache(const ResponseCacheConfig& config)
    : front_(std::make_unique<detail::CacheFront>(config)) {}
ResponseCache::~ResponseCache() = default;
bool ResponseCache::enabled() const {
  return front_->enabled();
}
CacheStats ResponseCache::stats() const {
  return front_->stats();
}
void ResponseCache::clear() {
  front_->clear();
}
detail::CacheFront& ResponseCache::front() {
  return *front_;
}

}  // namespace flexllm
