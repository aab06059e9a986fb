// The `redis` cache store (store.hpp): entries shared by machines, one Redis key per
// entry ("flexllm:v1:<hex>"), expiry by Redis itself. One blocking hiredis connection guarded by a
// mutex: lookups are one MGET and writes one pipeline, so a connection per thread would buy little.
// Redis being down must never stall or break the client: a failure drops the connection, and
// until the reconnect interval has passed every operation is a miss without touching the network.
#include "cache/redis_store.hpp"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <stdexcept>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "cache/compression.hpp"
#include "core/hex.hpp"
#include "flexllm/errors.hpp"

namespace flexllm::detail {
namespace {

constexpr std::string_view kPrefix = "flexllm:v1:";
constexpr std::string_view kScheme = "redis://";
constexpr int kScanBatch = 1000;  // keys per SCAN step and per UNLINK in clear()

struct RedisUrl {
  std::string host;
  int port = 6379;
  int db = 0;
  std::string password;
};

bool parse_int(std::string_view digits, int max, int& out) {
  if (digits.empty() || digits.size() > 9) return false;
  int v = 0;
  for (char ch : digits) {
    if (ch < '0' || ch > '9') return false;
    v = v * 10 + (ch - '0');
  }
  if (v > max) return false;
  out = v;
  return true;
}

// redis://[:password@]host[:port][/db]; host may be a bracketed IPv6 address.
RedisUrl parse_url(const std::string& url) {
  auto invalid = [&](std::string_view why) {
    return std::invalid_argument(
        fmt::format("invalid Redis URL {}: {} (expected redis://[:password@]host[:port][/db])",
                    display_url(url), why));
  };
  if (!url.starts_with(kScheme)) throw invalid("it does not start with redis://");
  std::string_view rest = std::string_view(url).substr(kScheme.size());
  RedisUrl out;
  if (size_t at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view credentials = rest.substr(0, at);
    if (!credentials.starts_with(':'))
      throw invalid("a user name is not supported, only a password after ':'");
    out.password = std::string(credentials.substr(1));
    rest.remove_prefix(at + 1);
  }
  std::string_view authority = rest.substr(0, rest.find('/'));
  if (authority.size() < rest.size()) {
    std::string_view db = rest.substr(authority.size() + 1);
    if (!db.empty() && !parse_int(db, 1 << 30, out.db))
      throw invalid("the database is not a non-negative number");
  }
  std::string_view port;
  if (authority.starts_with('[')) {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) throw invalid("an IPv6 address lacks its ']'");
    out.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty() && !after.starts_with(':')) throw invalid("unexpected text after ']'");
    if (!after.empty()) port = after.substr(1);
    if (after == ":") throw invalid("the port is empty");
  } else {
    size_t colon = authority.find(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) throw invalid("the port is empty");
    }
  }
  if (out.host.empty()) throw invalid("the host is missing");
  if (!port.empty() && (!parse_int(port, 65535, out.port) || out.port == 0))
    throw invalid("the port is not a number from 1 to 65535");
  return out;
}

timeval to_timeval(std::chrono::milliseconds d) {
  return {static_cast<time_t>(d.count() / 1000), static_cast<suseconds_t>(d.count() % 1000 * 1000)};
}

std::string redis_key(const CacheKey& key) {
  std::string out(kPrefix);
  append_hex(out, key);
  return out;
}

struct ContextFree {
  void operator()(redisContext* c) const { redisFree(c); }
};
struct ReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Context = std::unique_ptr<redisContext, ContextFree>;
using Reply = std::unique_ptr<redisReply, ReplyFree>;

// hiredis writes with write(2): a Redis that went away would raise SIGPIPE and kill the process.
// The signal is blocked on this thread while hiredis runs, and one it raised is consumed before
// the old mask comes back (a SIGPIPE that was already pending is left alone).
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
  }
  ~SigpipeBlock() {
    if (!was_pending_) {
      sigset_t pending;
      sigpending(&pending);
      timespec none{};
      if (sigismember(&pending, SIGPIPE) == 1) sigtimedwait(&pipe_, nullptr, &none);
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  sigset_t pipe_, old_;
  bool was_pending_ = false;
};

// An argument vector for redisAppendCommandArgv; the strings must outlive the call.
struct Args {
  std::vector<const char*> ptr;
  std::vector<size_t> len;
  void add(std::string_view s) {
    ptr.push_back(s.data());
    len.push_back(s.size());
  }
  void clear() {
    ptr.clear();
    len.clear();
  }
  int append_to(redisContext* c) const {
    return redisAppendCommandArgv(c, static_cast<int>(ptr.size()),
                                  const_cast<const char**>(ptr.data()), len.data());
  }
};

class RedisStore final : public CacheStore {
 public:
  RedisStore(RedisUrl url, CacheWarn warn, RedisStoreOptions options)
      : url_(std::move(url)),
        where_(fmt::format(
            fmt::runtime(url_.host.find(':') == std::string::npos ? "{}:{}" : "[{}]:{}"), url_.host,
            url_.port)),
        warn_(std::move(warn)),
        options_(options) {
    // Connecting now reports an unreachable Redis when the cache is set up, not at first use.
    connected();
  }

  std::optional<std::string> get(const CacheKey& key) override {
    return std::move(get_many(std::span<const CacheKey>(&key, 1))[0]);
  }

  std::vector<std::optional<std::string>> get_many(std::span<const CacheKey> keys) override {
    std::vector<std::optional<std::string>> out(keys.size());
    if (keys.empty()) return out;
    std::vector<std::string> names;
    names.reserve(keys.size());
    Args args;
    args.add("MGET");
    for (const CacheKey& k : keys) args.add(names.emplace_back(redis_key(k)));
    Reply reply;
    {
      std::unique_lock lock = connected();
      if (!lock) return out;
      SigpipeBlock block;
      if (args.append_to(ctx_.get()) != REDIS_OK) {
        drop(ctx_->errstr);
        return out;
      }
      if (!(reply = next_reply())) return out;
    }
    // Decompressed after the connection is free again: a reply outlives its context.
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != keys.size()) {
      command_failed("MGET", reply.get());
      return out;
    }
    Args corrupt;
    corrupt.add("UNLINK");
    for (size_t i = 0; i < keys.size(); ++i) {
      const redisReply* r = reply->element[i];
      if (r->type != REDIS_REPLY_STRING) continue;
      out[i] = decompress_value(std::string_view(r->str, r->len));
      if (!out[i]) corrupt.add(names[i]);
    }
    if (corrupt.ptr.size() > 1) erase_corrupt(corrupt);
    return out;
  }

  void put(const CacheKey& key, std::string_view value, std::chrono::seconds ttl) override {
    std::string v(value);
    put_many(std::span<const CacheKey>(&key, 1), std::span<const std::string>(&v, 1), ttl);
  }

  void put_many(std::span<const CacheKey> keys, std::span<const std::string> values,
                std::chrono::seconds ttl) override {
    const size_t n = std::min(keys.size(), values.size());
    if (n == 0) return;
    std::vector<std::string> names, frames;
    names.reserve(n);
    frames.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      names.push_back(redis_key(keys[i]));
      frames.push_back(compress_value(values[i]));
    }
    const std::string seconds = std::to_string(ttl.count());
    std::unique_lock lock = connected();
    if (!lock) return;
    SigpipeBlock block;
    Args args;
    for (size_t i = 0; i < n; ++i) {
      args.clear();
      args.add("SET");
      args.add(names[i]);
      args.add(frames[i]);
      if (ttl.count() > 0) {
        args.add("EX");
        args.add(seconds);
      }
      if (args.append_to(ctx_.get()) != REDIS_OK) return drop(ctx_->errstr);
    }
    // Every reply is read, even after an error reply, so the connection stays in step.
    for (size_t i = 0; i < n; ++i) {
      Reply reply = next_reply();
      if (!reply) return;
      if (reply->type == REDIS_REPLY_ERROR) command_failed("SET", reply.get());
    }
  }

  // SCAN + UNLINK in batches over this cache's prefix only: other data in the same Redis database
  // (other applications, other key versions) stays.
  void clear() override {
    std::unique_lock lock = connected();
    if (!lock) return;
    SigpipeBlock block;
    const std::string match = std::string(kPrefix) + "*", count = std::to_string(kScanBatch);
    std::string cursor = "0";
    do {
      Args scan;
      for (std::string_view a :
           {std::string_view("SCAN"), std::string_view(cursor), std::string_view("MATCH"),
            std::string_view(match), std::string_view("COUNT"), std::string_view(count)})
        scan.add(a);
      if (scan.append_to(ctx_.get()) != REDIS_OK) return drop(ctx_->errstr);
      Reply reply = next_reply();
      if (!reply) return;
      if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
          reply->element[0]->type != REDIS_REPLY_STRING ||
          reply->element[1]->type != REDIS_REPLY_ARRAY)
        return command_failed("SCAN", reply.get());
      cursor.assign(reply->element[0]->str, reply->element[0]->len);
      const redisReply* found = reply->element[1];
      if (found->elements == 0) continue;
      Args unlink;
      unlink.add("UNLINK");
      for (size_t i = 0; i < found->elements; ++i)
        unlink.add(std::string_view(found->element[i]->str, found->element[i]->len));
      if (unlink.append_to(ctx_.get()) != REDIS_OK) return drop(ctx_->errstr);
      Reply done = next_reply();
      if (!done) return;
      if (done->type == REDIS_REPLY_ERROR) return command_failed("UNLINK", done.get());
    } while (cursor != "0");
  }

 private:
  // The mutex, locked, with a live connection in ctx_; or an unlocked lock when Redis is down and
  // the reconnect interval has not passed, or another thread is already connecting. Connecting
  // happens outside the mutex so that an unreachable host holds nobody up for the connect timeout.
  std::unique_lock<std::mutex> connected() {
    std::unique_lock lock(mu_);
    if (ctx_) return lock;
    if (connecting_ || std::chrono::steady_clock::now() < next_attempt_) return {};
    connecting_ = true;
    lock.unlock();
    std::string error;
    Context c = connect(error);
    lock.lock();
    connecting_ = false;
    if (!c) {
      outage(error);
      return {};
    }
    ctx_ = std::move(c);
    if (down_) {
      down_ = false;
      say(fmt::format("redis cache at {} is reachable again", where_));
    }
    return lock;
  }

  Context connect(std::string& error) {
    Context c(redisConnectWithTimeout(url_.host.c_str(), url_.port,
                                      to_timeval(options_.connect_timeout)));
    if (!c) {
      error = "cannot allocate a connection";
      return nullptr;
    }
    if (c->err) {
      error = c->errstr;
      return nullptr;
    }
    redisSetTimeout(c.get(), to_timeval(options_.command_timeout));
    redisEnableKeepAlive(c.get());
    SigpipeBlock block;
    auto setup = [&](std::initializer_list<std::string_view> argv, const char* what) {
      Args args;
      for (std::string_view a : argv) args.add(a);
      Reply reply;
      if (args.append_to(c.get()) == REDIS_OK) {
        void* raw = nullptr;
        if (redisGetReply(c.get(), &raw) == REDIS_OK) reply.reset(static_cast<redisReply*>(raw));
      }
      if (!reply) {
        error = c->errstr;
        return false;
      }
      if (reply->type == REDIS_REPLY_ERROR) {  // Redis's own text; it never echoes the password
        error = fmt::format("{} failed: {}", what, std::string_view(reply->str, reply->len));
        return false;
      }
      return true;
    };
    if (!url_.password.empty() && !setup({"AUTH", url_.password}, "AUTH")) return nullptr;
    const std::string db = std::to_string(url_.db);
    if (url_.db != 0 && !setup({"SELECT", db}, "SELECT")) return nullptr;
    return c;
  }

  // The reply to the oldest command sent, or null after dropping the connection.
  Reply next_reply() {
    void* raw = nullptr;
    if (redisGetReply(ctx_.get(), &raw) != REDIS_OK || !raw) {
      drop(ctx_->errstr);
      return nullptr;
    }
    return Reply(static_cast<redisReply*>(raw));
  }

  // Called with mu_ held: the connection failed (Redis gone, a timeout, a broken stream).
  void drop(const std::string& error) {
    ctx_.reset();
    outage(error);
  }

  void outage(const std::string& error) {
    next_attempt_ = std::chrono::steady_clock::now() + options_.reconnect_interval;
    if (down_) return;
    down_ = true;
    say(fmt::format("redis cache at {} unreachable: {}; continuing without it", where_, error));
  }

  // Redis answered with an error (out of memory, a key of another type, ...): the connection is
  // fine, the operation counts as a miss or a dropped write.
  void command_failed(const char* command, const redisReply* reply) {
    if (warned_command_.exchange(true)) return;
    std::string_view text = reply->type == REDIS_REPLY_ERROR
                                ? std::string_view(reply->str, reply->len)
                                : std::string_view("an unexpected reply");
    say(fmt::format("redis cache at {}: {} failed: {}; further such failures are not reported",
                    where_, command, text));
  }

  void erase_corrupt(const Args& unlink) {
    if (!warned_corrupt_.exchange(true))
      say(
          fmt::format("redis cache at {}: a stored value is corrupt (it does not decompress); "
                      "such entries are removed and count as misses",
                      where_));
    std::unique_lock lock = connected();
    if (!lock) return;
    SigpipeBlock block;
    if (unlink.append_to(ctx_.get()) != REDIS_OK) return drop(ctx_->errstr);
    next_reply();
  }

  void say(const std::string& message) {
    if (warn_) warn_(message);
  }

  const RedisUrl url_;
  const std::string where_;  // host:port, for messages (never the password)
  const CacheWarn warn_;
  const RedisStoreOptions options_;
  std::atomic<bool> warned_command_{false}, warned_corrupt_{false};

  std::mutex mu_;
  Context ctx_;
  bool connecting_ = false;
  bool down_ = false;  // an outage was reported and Redis has not answered since
  std::chrono::steady_clock::time_point next_attempt_{};
};

}  // namespace

std::unique_ptr<CacheStore> make_redis_store(const std::string& url, CacheWarn warn,
                                             RedisStoreOptions options) {
  return std::make_unique<RedisStore>(parse_url(url), std::move(warn), options);
}

std::unique_ptr<CacheStore> make_redis_store(const std::string& url, CacheWarn warn) {
  return make_redis_store(url, std::move(warn), RedisStoreOptions{});
}

}  // namespace flexllm::detail
