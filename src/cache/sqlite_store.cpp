// The `ipc` cache store (store.hpp): one SQLite database per cache directory, opened by
// every process of the host that uses that directory. WAL mode lets lookups read a snapshot while
// one writer at a time commits, so the store keeps one write connection (the cache's writer
// thread is its only heavy user) and a small pool of read connections: a write waiting for
// another process's lock never holds up this process's lookups.
#include "cache/sqlite_store.hpp"

#include <pwd.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "cache/compression.hpp"

namespace flexllm::detail {
namespace {

using namespace std::chrono_literals;

constexpr int kBusyTimeoutMs = 5000;
// Opening a database and creating its schema also retry on SQLITE_BUSY / SQLITE_LOCKED by hand:
// the busy handler does not cover every conflict (processes switching a fresh file to WAL at the
// same instant can deadlock, and SQLite then fails one of them at once instead of waiting).
constexpr int kSetupAttempts = 40;
constexpr auto kSetupDeadline = 15s;
constexpr size_t kIdleReaders = 8;  // read connections kept open between lookups
// Expired rows one sweep deletes at most, so a large backlog never makes one write transaction
// (and the other processes waiting for the lock) slow; a full sweep makes the next write sweep too.
constexpr int kSweepRows = 5000;

// Values are zstd frames (compression.hpp); `expires` is in unix seconds, 0 = never. The partial
// index keeps the sweep from scanning the whole table. Keys are hashes, so each row of a write
// lands on a different leaf page and a transaction appends about one page per row to the WAL;
// checkpointing every 64 MB of WAL instead of SQLite's 4 MB lets a page rewritten by many
// transactions reach the database file once (measured: twice the rows/s of batched writes). The
// size limit truncates the WAL back after a checkpoint.
constexpr const char* kSetup = R"(
PRAGMA journal_mode=WAL;
PRAGMA synchronous=NORMAL;
PRAGMA wal_autocheckpoint=16384;
PRAGMA journal_size_limit=67108864;
CREATE TABLE IF NOT EXISTS entries(key BLOB PRIMARY KEY, value BLOB NOT NULL,
                                   expires INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_expires ON entries(expires) WHERE expires != 0;)";

bool is_busy(int rc) {
  int primary = rc & 0xff;
  return primary == SQLITE_BUSY || primary == SQLITE_LOCKED;
}

// The file is not a database this process can use: no later operation would succeed either.
bool is_fatal(int rc) {
  int primary = rc & 0xff;
  return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB || primary == SQLITE_CANTOPEN ||
         primary == SQLITE_PERM || primary == SQLITE_AUTH;
}

int64_t system_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// mkdir -p, with mode 0700 for each directory it creates: cached responses may be private.
// Processes creating the same directory at once each see the others' mkdir as EEXIST.
void make_directories(const std::string& dir) {
  if (dir.empty()) throw std::runtime_error("the cache directory is an empty path");
  size_t pos = 0;
  do {
    pos = dir.find('/', pos + 1);
    std::string part = dir.substr(0, pos);
    if (::mkdir(part.c_str(), 0700) == 0) continue;
    int err = errno;
    struct stat st {};
    if (::stat(part.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) continue;
    throw std::runtime_error(fmt::format("cannot create the cache directory {} ({}: {})", dir, part,
                                         std::strerror(err == EEXIST ? ENOTDIR : err)));
  } while (pos != std::string::npos);
}

// The owner of `st` as a message shows it: "name (uid N)", or "uid N" for an unknown one.
std::string owner_of(const struct stat& st) {
  passwd pw{};
  passwd* found = nullptr;
  char buf[4096];
  if (getpwuid_r(st.st_uid, &pw, buf, sizeof buf, &found) == 0 && found)
    return fmt::format("{} (uid {})", found->pw_name, st.st_uid);
  return fmt::format("uid {}", st.st_uid);
}

struct Finalize {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
struct Close {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using Statement = std::unique_ptr<sqlite3_stmt, Finalize>;

// One connection and the statements prepared on it; used by one thread at a time.
struct Connection {
  std::unique_ptr<sqlite3, Close> db;  // declared first: destroyed after its statements
  Statement begin, commit, rollback, select, upsert, erase_if_same, sweep, clear;

  int prepare(Statement& s, const char* sql) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v3(db.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    s.reset(raw);
    return rc;
  }
  // Runs a statement that returns no rows; SQLITE_DONE on success.
  static int run(const Statement& s) {
    int rc = sqlite3_step(s.get());
    sqlite3_reset(s.get());
    return rc;
  }
  // Ends a failed transaction (a no-op when SQLite already rolled it back).
  void abandon() {
    if (!sqlite3_get_autocommit(db.get())) run(rollback);
  }
};

class SqliteStore final : public CacheStore {
 public:
  SqliteStore(const std::string& dir, CacheWarn warn, SqliteStoreOptions options)
      : path_(dir + "/responses.sqlite3"),
        warn_(std::move(warn)),
        now_(options.now_unix ? std::move(options.now_unix) : system_now),
        sweep_interval_(options.sweep_interval.count()) {
    make_directories(dir);
    check_cache_dir(dir, ::geteuid());
    auto writer = std::make_unique<Connection>();
    if (int rc = open_writer(*writer); rc != SQLITE_OK) {
      // Whatever the cause (even a lock still held after every retry): no schema, only misses.
      disable(writer->db ? sqlite3_errmsg(writer->db.get()) : sqlite3_errstr(rc));
      return;
    }
    writer_ = std::move(writer);
  }

  std::optional<std::string> get(const CacheKey& key) override {
    std::vector<std::optional<std::string>> out(1);
    lookup(std::span<const CacheKey>(&key, 1), out, false);
    return std::move(out[0]);
  }

  std::vector<std::optional<std::string>> get_many(std::span<const CacheKey> keys) override {
    std::vector<std::optional<std::string>> out(keys.size());
    lookup(keys, out, keys.size() > 1);
    return out;
  }

  void put(const CacheKey& key, std::string_view value, std::chrono::seconds ttl) override {
    std::string frame = compress_value(value);
    write(std::span<const CacheKey>(&key, 1), std::span<const std::string>(&frame, 1), ttl);
  }

  void put_many(std::span<const CacheKey> keys, std::span<const std::string> values,
                std::chrono::seconds ttl) override {
    // Compressed before the write lock is taken: other processes wait for it only while rows go in.
    std::vector<std::string> frames;
    frames.reserve(values.size());
    for (const std::string& v : values) frames.push_back(compress_value(v));
    write(keys.first(std::min(keys.size(), frames.size())), frames, ttl);
  }

  void clear() override {
    if (broken_) return;
    std::lock_guard lock(write_mu_);
    if (int rc = Connection::run(writer_->clear); rc != SQLITE_DONE)
      failed("clearing", rc, writer_->db.get());
  }

 private:
  int open_connection(Connection& c, int flags) {
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(path_.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
    c.db.reset(db);
    if (rc != SQLITE_OK) return rc;
    return sqlite3_busy_timeout(db, kBusyTimeoutMs);
  }

  // Creates the file and its schema if needed; idempotent, so any number of processes may race.
  int open_writer(Connection& c) {
    int rc = open_connection(c, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (rc != SQLITE_OK) return rc;
    const auto deadline = std::chrono::steady_clock::now() + kSetupDeadline;
    std::minstd_rand jitter(static_cast<unsigned>(::getpid()));
    for (int attempt = 1;; ++attempt) {
      rc = sqlite3_exec(c.db.get(), kSetup, nullptr, nullptr, nullptr);
      if (!is_busy(rc) || attempt == kSetupAttempts || std::chrono::steady_clock::now() >= deadline)
        break;
      // Randomised so the processes that collided do not collide again in step.
      std::this_thread::sleep_for(std::chrono::milliseconds(1 + jitter() % (5 * attempt)));
    }
    if (rc != SQLITE_OK) return rc;
    if ((rc = c.prepare(c.begin, "BEGIN IMMEDIATE")) || (rc = c.prepare(c.commit, "COMMIT")) ||
        (rc = c.prepare(c.rollback, "ROLLBACK")) ||
        (rc = c.prepare(
             c.upsert, "INSERT OR REPLACE INTO entries(key, value, expires) VALUES(?1, ?2, ?3)")) ||
        (rc = c.prepare(c.erase_if_same, "DELETE FROM entries WHERE key = ?1 AND value = ?2")) ||
        (rc = c.prepare(c.sweep,
                        "DELETE FROM entries WHERE key IN (SELECT key FROM entries WHERE "
                        "expires != 0 AND expires <= ?1 LIMIT ?2)")) ||
        (rc = c.prepare(c.clear, "DELETE FROM entries")))
      return rc;
    return SQLITE_OK;
  }

  int open_reader(Connection& c) {
    int rc = open_connection(c, SQLITE_OPEN_READWRITE);  // WAL readers write the -shm index
    if (rc == SQLITE_OK && !(rc = c.prepare(c.begin, "BEGIN")) &&
        !(rc = c.prepare(c.commit, "COMMIT")) && !(rc = c.prepare(c.rollback, "ROLLBACK")))
      rc = c.prepare(c.select,
                     "SELECT value FROM entries WHERE key = ?1 AND (expires = 0 OR expires > ?2)");
    return rc;
  }

  std::unique_ptr<Connection> take_reader() {
    {
      std::lock_guard lock(readers_mu_);
      if (!idle_readers_.empty()) {
        std::unique_ptr<Connection> c = std::move(idle_readers_.back());
        idle_readers_.pop_back();
        return c;
      }
    }
    auto c = std::make_unique<Connection>();
    if (int rc = open_reader(*c); rc != SQLITE_OK) {
      failed("opening", rc, c->db.get());
      return nullptr;
    }
    return c;
  }

  void give_back(std::unique_ptr<Connection> c) {
    std::lock_guard lock(readers_mu_);
    if (idle_readers_.size() < kIdleReaders) idle_readers_.push_back(std::move(c));
  }

  // Fills out[i] for keys[i]; several keys are read in one transaction (one snapshot, one lock
  // acquisition instead of one per key).
  void lookup(std::span<const CacheKey> keys, std::vector<std::optional<std::string>>& out,
              bool transaction) {
    if (broken_ || keys.empty()) return;
    std::unique_ptr<Connection> reader = take_reader();
    if (!reader) return;
    Connection& c = *reader;
    sqlite3_stmt* select = c.select.get();
    std::vector<std::pair<size_t, std::string>> corrupt;  // index, stored bytes
    const int64_t now = now_();
    int rc = transaction ? Connection::run(c.begin) : SQLITE_DONE;
    for (size_t i = 0; i < keys.size() && rc == SQLITE_DONE; ++i) {
      sqlite3_bind_blob(select, 1, keys[i].data(), static_cast<int>(keys[i].size()), SQLITE_STATIC);
      sqlite3_bind_int64(select, 2, now);
      rc = sqlite3_step(select);
      if (rc == SQLITE_ROW) {
        std::string_view frame(static_cast<const char*>(sqlite3_column_blob(select, 0)),
                               static_cast<size_t>(sqlite3_column_bytes(select, 0)));
        out[i] = decompress_value(frame);
        if (!out[i]) corrupt.emplace_back(i, std::string(frame));
        rc = SQLITE_DONE;
      }
      sqlite3_reset(select);
    }
    if (transaction && rc == SQLITE_DONE) rc = Connection::run(c.commit);
    if (rc != SQLITE_DONE) {
      failed("a lookup", rc, c.db.get());
      c.abandon();
    }
    give_back(std::move(reader));
    if (!corrupt.empty()) erase_corrupt(keys, corrupt);
  }

  // Deletes entries whose bytes do not decompress, unless another writer replaced them meanwhile.
  void erase_corrupt(std::span<const CacheKey> keys,
                     const std::vector<std::pair<size_t, std::string>>& corrupt) {
    if (!warned_corrupt_.exchange(true))
      say(
          fmt::format("response cache {}: a stored value is corrupt (it does not decompress); "
                      "such entries are removed and count as misses",
                      path_));
    std::lock_guard lock(write_mu_);
    Connection& c = *writer_;
    int rc = Connection::run(c.begin);
    for (size_t i = 0; i < corrupt.size() && rc == SQLITE_DONE; ++i) {
      const auto& [index, bytes] = corrupt[i];
      sqlite3_bind_blob(c.erase_if_same.get(), 1, keys[index].data(),
                        static_cast<int>(keys[index].size()), SQLITE_STATIC);
      sqlite3_bind_blob(c.erase_if_same.get(), 2, bytes.data(), static_cast<int>(bytes.size()),
                        SQLITE_STATIC);
      rc = Connection::run(c.erase_if_same);
    }
    if (rc == SQLITE_DONE) rc = Connection::run(c.commit);
    if (rc != SQLITE_DONE) {
      failed("removing a corrupt entry", rc, c.db.get());
      c.abandon();
    }
  }

  // One write transaction: the sweep when it is due, then every row.
  void write(std::span<const CacheKey> keys, std::span<const std::string> frames,
             std::chrono::seconds ttl) {
    if (broken_ || keys.empty()) return;
    std::lock_guard lock(write_mu_);
    Connection& c = *writer_;
    const int64_t now = now_();
    const int64_t expires = ttl.count() > 0 ? now + ttl.count() : 0;
    int rc = Connection::run(c.begin);
    if (rc == SQLITE_DONE && now >= next_sweep_) {
      sqlite3_bind_int64(c.sweep.get(), 1, now);
      sqlite3_bind_int(c.sweep.get(), 2, kSweepRows);
      rc = Connection::run(c.sweep);
      next_sweep_ = sqlite3_changes(c.db.get()) < kSweepRows ? now + sweep_interval_ : now;
    }
    sqlite3_stmt* upsert = c.upsert.get();
    for (size_t i = 0; i < keys.size() && rc == SQLITE_DONE; ++i) {
      sqlite3_bind_blob(upsert, 1, keys[i].data(), static_cast<int>(keys[i].size()), SQLITE_STATIC);
      sqlite3_bind_blob(upsert, 2, frames[i].data(), static_cast<int>(frames[i].size()),
                        SQLITE_STATIC);
      sqlite3_bind_int64(upsert, 3, expires);
      rc = Connection::run(c.upsert);
    }
    if (rc == SQLITE_DONE) rc = Connection::run(c.commit);
    if (rc != SQLITE_DONE) {
      failed("a write", rc, c.db.get());
      c.abandon();
    }
  }

  // Reports a failure once per store. A file that is not a usable database turns the store into
  // an always-miss store (with its own message, even after an earlier transient failure).
  void failed(const char* what, int rc, sqlite3* db) {
    std::string reason = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    if (is_fatal(rc)) {
      disable(reason);
    } else if (!warned_failure_.exchange(true)) {
      say(
          fmt::format("response cache {}: {} failed ({}{}); treated as a miss / skipped write, "
                      "further failures are not reported",
                      path_, what, reason,
                      is_busy(rc) ? ", still locked after 5 s: another process holds it" : ""));
    }
  }

  void disable(const std::string& reason) {
    if (!broken_.exchange(true))
      say(fmt::format("response cache {} is unusable ({}): continuing without the cache", path_,
                      reason));
  }

  void say(const std::string& message) {
    if (warn_) warn_(message);
  }

  const std::string path_;
  const CacheWarn warn_;
  const std::function<int64_t()> now_;
  const int64_t sweep_interval_;
  std::atomic<bool> broken_{false}, warned_failure_{false}, warned_corrupt_{false};

  std::mutex write_mu_;
  std::unique_ptr<Connection> writer_;  // null only when broken_
  int64_t next_sweep_ = 0;              // unix seconds; the first write of a process sweeps

  std::mutex readers_mu_;
  std::vector<std::unique_ptr<Connection>> idle_readers_;
};

}  // namespace

// Whoever may write the directory or its database can plant answers that every later lookup
// returns as the server's (cache poisoning): the directory must be this user's and writable by
// nobody else, and the database files in it must be this user's too (planted while the directory
// was open, they survive a chmod). A sticky bit does not help: others could still create the
// database or its -wal file before this process does.
void check_cache_dir(const std::string& dir, uid_t me) {
  auto refuse = [&](const std::string& why, const std::string& fix) {
    throw std::runtime_error(fmt::format(
        "the cache directory {} {}: whoever can write there can plant answers that would be "
        "returned as the server's (cache poisoning); {}",
        dir, why, fix));
  };
  const std::string fix = "pick a cache directory of your own (cache_dir, XDG_CACHE_HOME)";
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0)
    throw std::runtime_error(
        fmt::format("cannot check the cache directory {}: {}", dir, std::strerror(errno)));
  if (st.st_uid != me) refuse("is owned by another user, " + owner_of(st), fix);
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    refuse(fmt::format("is writable by {} (mode {:04o})",
                       (st.st_mode & S_IWGRP) && (st.st_mode & S_IWOTH) ? "group and others"
                       : (st.st_mode & S_IWGRP)                         ? "its group"
                                                                        : "others",
                       st.st_mode & 07777),
           fmt::format("chmod go-w {}, or {}", dir, fix));
  for (const char* name :
       {"/responses.sqlite3", "/responses.sqlite3-wal", "/responses.sqlite3-shm"}) {
    const std::string file = dir + name;
    if (::lstat(file.c_str(), &st) == 0 && st.st_uid != me)
      refuse(fmt::format("holds {}, owned by another user, {}", file, owner_of(st)),
             "remove it, or " + fix);
  }
}

std::unique_ptr<CacheStore> make_sqlite_store(const std::string& dir, CacheWarn warn,
                                              SqliteStoreOptions options) {
  return std::make_unique<SqliteStore>(dir, std::move(warn), std::move(options));
}

std::unique_ptr<CacheStore> make_sqlite_store(const std::string& dir, CacheWarn warn) {
  return make_sqlite_store(dir, std::move(warn), SqliteStoreOptions{});
}

}  // namespace flexllm::detail
