// The ipc cache store (SQLite) against real files in a temporary directory: batches, expiry
// through an injected clock and the sweep, corrupt files and values, unusable paths, threads, and
// four processes opening one fresh directory at once.
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "cache/cache_front.hpp"
#include "cache/sqlite_store.hpp"
#include "cache_store_support.hpp"

namespace flexllm::detail {
namespace {

using namespace cache_test;
using namespace std::chrono_literals;

// A second connection to the database file, to look behind the store's back.
class RawDb {
 public:
  explicit RawDb(const std::string& dir) {
    EXPECT_EQ(sqlite3_open((dir + "/responses.sqlite3").c_str(), &db_), SQLITE_OK);
    sqlite3_busy_timeout(db_, 5000);
  }
  ~RawDb() { sqlite3_close(db_); }
  int64_t scalar(const std::string& sql, const CacheKey* key = nullptr) {
    sqlite3_stmt* s = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db_);
    if (key) sqlite3_bind_blob(s, 1, key->data(), 16, SQLITE_TRANSIENT);
    int64_t v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_finalize(s);
    return v;
  }
  std::string text(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr), SQLITE_OK);
    std::string out;
    if (sqlite3_step(s) == SQLITE_ROW)
      out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out;
  }
  std::string value(const CacheKey& key) {
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db_, "SELECT value FROM entries WHERE key = ?1", -1, &s, nullptr);
    sqlite3_bind_blob(s, 1, key.data(), 16, SQLITE_TRANSIENT);
    std::string out;
    if (sqlite3_step(s) == SQLITE_ROW)
      out.assign(static_cast<const char*>(sqlite3_column_blob(s, 0)),
                 static_cast<size_t>(sqlite3_column_bytes(s, 0)));
    sqlite3_finalize(s);
    return out;
  }
  void set_value(const CacheKey& key, const std::string& bytes) {
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db_, "UPDATE entries SET value = ?2 WHERE key = ?1", -1, &s, nullptr);
    sqlite3_bind_blob(s, 1, key.data(), 16, SQLITE_TRANSIENT);
    sqlite3_bind_blob(s, 2, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
    EXPECT_EQ(sqlite3_step(s), SQLITE_DONE);
    EXPECT_EQ(sqlite3_changes(db_), 1);
    sqlite3_finalize(s);
  }
  int64_t rows_with(const CacheKey& key) {
    return scalar("SELECT count(*) FROM entries WHERE key = ?1", &key);
  }

 private:
  sqlite3* db_ = nullptr;
};

TEST(SqliteStore, PutGetOverwriteAndBatches) {
  std::string dir = temp_dir("sqlite_basic") + "/nested/cache";
  Warnings warnings;
  auto store = make_sqlite_store(dir, warnings.sink());
  EXPECT_EQ(::access((dir + "/responses.sqlite3").c_str(), F_OK), 0);
  struct stat st {};
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u) << "the cache directory is private";

  EXPECT_EQ(store->get(key_of(1)), std::nullopt);
  store->put(key_of(1), "first", 0s);
  EXPECT_EQ(store->get(key_of(1)), "first");
  store->put(key_of(1), "second", 0s);
  EXPECT_EQ(store->get(key_of(1)), "second");
  store->put(key_of(2), "", 0s);
  EXPECT_EQ(store->get(key_of(2)), "") << "an empty value is a hit, not a miss";
  std::string big = random_bytes(3 << 20, 7);
  store->put(key_of(3), big, 0s);
  EXPECT_EQ(store->get(key_of(3)), big);

  std::vector<CacheKey> keys;
  std::vector<std::string> values;
  for (uint64_t i = 100; i < 400; ++i) {
    keys.push_back(key_of(i));
    values.push_back(value_of(i));
  }
  store->put_many(keys, values, 0s);
  keys.push_back(key_of(9999));  // never stored
  auto got = store->get_many(keys);
  ASSERT_EQ(got.size(), 301u);
  for (size_t i = 0; i < 300; ++i) EXPECT_EQ(got[i], values[i]) << i;
  EXPECT_EQ(got[300], std::nullopt);
  EXPECT_TRUE(store->get_many({}).empty());

  RawDb raw(dir);
  EXPECT_EQ(raw.text("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM entries"), 303);
  EXPECT_EQ(raw.scalar("SELECT max(length(key)) FROM entries"), 16);
  EXPECT_LT(raw.scalar("SELECT length(value) FROM entries WHERE key = ?1", &keys[0]),
            static_cast<int64_t>(values[0].size()))
      << "values are stored compressed";
  EXPECT_TRUE(warnings.get().empty());

  // A second store on the same directory sees the same entries; clear() empties both.
  auto other = make_sqlite_store(dir, warnings.sink());
  EXPECT_EQ(other->get(key_of(1)), "second");
  other->clear();
  EXPECT_EQ(store->get(key_of(1)), std::nullopt);
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM entries"), 0);
  std::filesystem::remove_all(temp_dir("sqlite_basic"));
}

TEST(SqliteStore, ThreadsShareOneStore) {
  std::string dir = temp_dir("sqlite_threads");
  Warnings warnings;
  auto store = make_sqlite_store(dir, warnings.sink());
  EXPECT_GT(hammer_from_threads(*store), 0u);
  EXPECT_TRUE(warnings.get().empty());
  std::filesystem::remove_all(dir);
}

TEST(SqliteStore, ExpiryFollowsTheClockAndTheSweepDeletesExpiredRows) {
  std::string dir = temp_dir("sqlite_ttl");
  Warnings warnings;
  int64_t now = 1'700'000'000;
  auto store = make_sqlite_store(dir, warnings.sink(),
                                 {.now_unix = [&] { return now; }, .sweep_interval = 60s});
  store->put(key_of(1), "short", 10s);  // the first write sweeps; the next sweep is due at +60 s
  store->put(key_of(2), "forever", 0s);
  std::vector<CacheKey> keys = {key_of(3), key_of(4)};
  std::vector<std::string> values = {"three", "four"};
  store->put_many(keys, values, 100s);

  RawDb raw(dir);
  EXPECT_EQ(raw.scalar("SELECT expires FROM entries WHERE key = ?1", &keys[0]), now + 100)
      << "expiry is stored in unix seconds";
  const CacheKey k2 = key_of(2);
  EXPECT_EQ(raw.scalar("SELECT expires FROM entries WHERE key = ?1", &k2), 0);

  now += 9;
  EXPECT_EQ(store->get(key_of(1)), "short");
  now += 1;  // expires == now: gone
  EXPECT_EQ(store->get(key_of(1)), std::nullopt);
  EXPECT_EQ(store->get(key_of(2)), "forever");
  std::vector<CacheKey> all = {key_of(1), key_of(2), key_of(3), key_of(4)};
  auto got = store->get_many(all);
  EXPECT_EQ(got[0], std::nullopt);
  EXPECT_EQ(got[1], "forever");
  EXPECT_EQ(got[2], "three");
  EXPECT_EQ(got[3], "four");
  EXPECT_EQ(raw.rows_with(key_of(1)), 1) << "an expired row stays until a sweep";

  store->put(key_of(5), "five", 0s);  // 10 s after the last sweep: none
  EXPECT_EQ(raw.rows_with(key_of(1)), 1);
  now += 50;  // 60 s after the last sweep
  store->put(key_of(6), "six", 0s);
  EXPECT_EQ(raw.rows_with(key_of(1)), 0) << "the sweep deleted the expired row";
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM entries"), 5);

  now += 200;  // keys 3 and 4 expired too; a put_many sweeps as well
  store->put_many(std::vector<CacheKey>{key_of(7)}, std::vector<std::string>{"seven"}, 0s);
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM entries"), 4);
  EXPECT_EQ(store->get(key_of(3)), std::nullopt);
  EXPECT_EQ(store->get(key_of(7)), "seven");
  EXPECT_TRUE(warnings.get().empty());
  std::filesystem::remove_all(dir);
}

TEST(SqliteStore, ALargeBacklogIsSweptInBoundedSteps) {
  std::string dir = temp_dir("sqlite_backlog");
  int64_t now = 1'700'000'000;
  auto store =
      make_sqlite_store(dir, nullptr, {.now_unix = [&] { return now; }, .sweep_interval = 10s});
  std::vector<CacheKey> keys;
  std::vector<std::string> values;
  for (uint64_t i = 0; i < 11000; ++i) {
    keys.push_back(key_of(i));
    values.push_back("v");
  }
  store->put_many(keys, values, 10s);
  RawDb raw(dir);
  now += 11;  // all expired
  // Each write sweeps at most 5000 rows and, while that limit is reached, the next write sweeps
  // again (without waiting for the sweep interval).
  const int64_t remaining[] = {6000, 1000, 0, 0};
  for (uint64_t round = 0; round < 4; ++round) {
    store->put(key_of(100000 + round), "kept", 0s);
    EXPECT_EQ(raw.scalar("SELECT count(*) FROM entries WHERE expires != 0"), remaining[round])
        << "after write " << round;
  }
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM entries"), 4);
  std::filesystem::remove_all(dir);
}

// A store over `dir` that cannot work: every lookup misses, with one warning naming the file.
void expect_unusable_store(const std::string& dir, Warnings& warnings) {
  auto store = make_sqlite_store(dir, warnings.sink());
  expect_always_miss(*store);
  auto w = warnings.get();
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find(dir + "/responses.sqlite3"), std::string::npos) << w[0];
}

TEST(SqliteStore, CorruptDatabaseFileWarnsOnceAndMisses) {
  std::string dir = temp_dir("sqlite_garbage");
  std::filesystem::create_directories(dir);
  ::chmod(dir.c_str(), 0700);  // whatever the umask: a directory others may write is refused
  const std::string path = dir + "/responses.sqlite3";
  std::ofstream(path) << std::string(8192, 'x') << "this is not a database";
  Warnings warnings;
  std::unique_ptr<CacheStore> store;
  ASSERT_NO_THROW(store = make_sqlite_store(dir, warnings.sink()));
  expect_always_miss(*store);
  auto w = warnings.get();
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find(path), std::string::npos) << w[0];
  EXPECT_NE(w[0].find("not a database"), std::string::npos) << w[0];
  std::filesystem::remove_all(dir);
}

TEST(SqliteStore, DatabasePathThatCannotBeOpenedWarnsAndMisses) {
  // A directory where the file should be: fails for root too, unlike permissions.
  std::string dir = temp_dir("sqlite_dir_in_the_way");
  std::filesystem::create_directories(dir + "/responses.sqlite3");
  ::chmod(dir.c_str(), 0700);
  Warnings warnings;
  expect_unusable_store(dir, warnings);
  std::filesystem::remove_all(dir);
}

// The user `nobody`, whom a test running as root becomes to be subject to file permissions.
struct Nobody {
  uid_t uid = 0;
  gid_t gid = 0;
};
Nobody nobody() {
  const passwd* pw = ::getpwnam("nobody");
  if (!pw) throw std::runtime_error("no user 'nobody' to drop root's privileges to");
  return {pw->pw_uid, pw->pw_gid};
}

// Runs `check` where file permissions apply: in this process, or, when it runs as root (which
// they do not bind), in a child process that has become `nobody`. Fails the test when the check
// failed in the child (whose failures are printed above by its own copy of gtest).
template <class F>
void with_permissions_applying(F&& check) {
  if (::geteuid() != 0) {
    check();
    return;
  }
  const Nobody who = nobody();
  std::fflush(stdout);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::alarm(60);  // a hung child dies instead of hanging the test
    if (::setgroups(0, nullptr) != 0 || ::setgid(who.gid) != 0 || ::setuid(who.uid) != 0 ||
        ::geteuid() == 0)
      ::_exit(3);
    check();
    std::fflush(stdout);
    ::_exit(::testing::Test::HasFailure() ? 1 : 0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the child running as nobody died of signal "
                                 << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "the check failed as nobody (1: see its failures above; 3: privileges not dropped)";
}

TEST(SqliteStore, UnreadableDirectoryWarnsAndMisses) {
  std::string dir = temp_dir("sqlite_unreadable");
  std::filesystem::create_directories(dir);
  // Its owner's (whoever runs the check), so that only the permissions stand in the way.
  if (::geteuid() == 0) {
    ASSERT_EQ(::chown(dir.c_str(), nobody().uid, nobody().gid), 0);
  }
  ASSERT_EQ(::chmod(dir.c_str(), 0), 0);
  with_permissions_applying([&] {
    Warnings warnings;
    expect_unusable_store(dir, warnings);
  });
  EXPECT_FALSE(std::filesystem::exists(dir + "/responses.sqlite3"));
  ::chmod(dir.c_str(), 0700);
  std::filesystem::remove_all(dir);
}

// A directory others may write: they could plant answers (cache poisoning). Refused, naming it and
// why, before anything is created in it; a sticky bit changes nothing (others could still create
// the database or its -wal file first).
TEST(SqliteStore, ADirectoryOthersMayWriteIsRefused) {
  const std::string dir = temp_dir("sqlite_shared");
  const std::pair<mode_t, const char*> cases[] = {
      {0777, "writable by group and others (mode 0777)"},
      {01777, "writable by group and others (mode 1777)"},
      {0703, "writable by others (mode 0703)"},
      {0770, "writable by its group (mode 0770)"},
  };
  for (const auto& [mode, says] : cases) {
    std::filesystem::create_directories(dir);
    ASSERT_EQ(::chmod(dir.c_str(), mode), 0);
    try {
      make_sqlite_store(dir, nullptr);
      ADD_FAILURE() << "a directory of mode " << std::oct << mode << " was used";
    } catch (const std::runtime_error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("the cache directory " + dir + " is " + says), std::string::npos) << what;
      EXPECT_NE(what.find("poisoning"), std::string::npos) << what;
      EXPECT_NE(what.find("chmod go-w " + dir), std::string::npos) << what;
    }
    EXPECT_FALSE(std::filesystem::exists(dir + "/responses.sqlite3"));
    std::filesystem::remove_all(dir);
  }
  // Its own user's and private: used.
  std::filesystem::create_directories(dir);
  ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);
  Warnings warnings;
  auto store = make_sqlite_store(dir, warnings.sink());
  store->put(key_of(1), "v", 0s);
  EXPECT_EQ(store->get(key_of(1)), "v");
  EXPECT_TRUE(warnings.get().empty());
  std::filesystem::remove_all(dir);
}

// Another user's directory, or another user's database file in one's own directory (planted while
// the directory was open to others: a chmod leaves it there). The check takes the user it checks
// for, so this runs the same as root or not; as root, a chown to nobody is also checked through
// make_sqlite_store itself.
TEST(SqliteStore, ADirectoryOrDatabaseOfAnotherUserIsRefused) {
  const std::string dir = temp_dir("sqlite_foreign");
  std::filesystem::create_directories(dir);
  ASSERT_EQ(::chmod(dir.c_str(), 0700), 0);
  const uid_t me = ::geteuid();
  const uid_t other = me + 1;
  EXPECT_NO_THROW(check_cache_dir(dir, me));
  auto refused = [&](uid_t as, const std::string& says) {
    try {
      check_cache_dir(dir, as);
      ADD_FAILURE() << "not refused: " << says;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("poisoning"), std::string::npos) << e.what();
    }
  };
  refused(other, "the cache directory " + dir + " is owned by another user");
  refused(other, "(uid " + std::to_string(me) + ")");
  for (const char* name : {"responses.sqlite3", "responses.sqlite3-wal", "responses.sqlite3-shm"}) {
    const std::string file = dir + "/" + name;
    std::ofstream(file) << "";
    try {
      check_cache_dir(dir, me);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "own file refused: " << e.what();
    }
    if (::geteuid() == 0) {
      ASSERT_EQ(::chown(file.c_str(), nobody().uid, nobody().gid), 0);
      try {
        make_sqlite_store(dir, nullptr);
        ADD_FAILURE() << "a database file of nobody's was used: " << file;
      } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("holds " + file + ", owned by another user, nobody"),
                  std::string::npos)
            << e.what();
      }
    }
    std::filesystem::remove(file);
  }
  if (::geteuid() == 0) {
    ASSERT_EQ(::chown(dir.c_str(), nobody().uid, nobody().gid), 0);
    try {
      make_sqlite_store(dir, nullptr);
      ADD_FAILURE() << "a directory of nobody's was used";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("is owned by another user, nobody"), std::string::npos)
          << e.what();
    }
    EXPECT_FALSE(std::filesystem::exists(dir + "/responses.sqlite3"));
  }
  std::filesystem::remove_all(dir);
}

TEST(SqliteStore, DirectoryThatCannotBeCreatedThrowsNamingIt) {
  std::string base = temp_dir("sqlite_file_in_the_way");
  std::filesystem::create_directories(base);
  std::ofstream(base + "/plain") << "a file";
  try {
    make_sqlite_store(base + "/plain/cache", nullptr);
    ADD_FAILURE() << "a directory under a file cannot be created";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(base + "/plain/cache"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(base);
}

TEST(SqliteStore, CorruptStoredValuesAreMissesAndAreRemoved) {
  std::string dir = temp_dir("sqlite_bad_value");
  Warnings warnings;
  auto store = make_sqlite_store(dir, warnings.sink());
  for (uint64_t i = 1; i <= 3; ++i) store->put(key_of(i), value_of(i), 0s);
  {
    RawDb raw(dir);
    raw.set_value(key_of(1), random_bytes(64, 3));  // not a zstd frame at all
    std::string frame = raw.value(key_of(2));
    ASSERT_GT(frame.size(), 8u);
    frame[frame.size() / 2] ^= 0x20;  // a frame whose content no longer matches its checksum
    raw.set_value(key_of(2), frame);
  }
  EXPECT_EQ(store->get(key_of(1)), std::nullopt);
  std::vector<CacheKey> keys = {key_of(2), key_of(3)};
  auto got = store->get_many(keys);
  EXPECT_EQ(got[0], std::nullopt);
  EXPECT_EQ(got[1], value_of(3));
  RawDb raw(dir);
  EXPECT_EQ(raw.rows_with(key_of(1)), 0) << "a corrupt entry is deleted";
  EXPECT_EQ(raw.rows_with(key_of(2)), 0);
  EXPECT_EQ(raw.rows_with(key_of(3)), 1);
  auto w = warnings.get();
  ASSERT_EQ(w.size(), 1u) << "reported once per store";
  EXPECT_NE(w[0].find("corrupt"), std::string::npos) << w[0];
  store->put(key_of(1), "fresh", 0s);
  EXPECT_EQ(store->get(key_of(1)), "fresh");
  std::filesystem::remove_all(dir);
}

// Four processes open one fresh directory at the same instant (schema creation races) and mix
// batched writes and reads over one key set; a value is a function of its key, so any torn,
// mixed-up or lost write shows.
TEST(SqliteStoreProcesses, FourProcessesShareOneFreshDirectory) {
  const std::string dir = temp_dir("sqlite_processes");
  constexpr int kChildren = 4, kOps = 2000;
  constexpr uint64_t kKeys = 300;
  int start[2];
  ASSERT_EQ(::pipe(start), 0);
  std::vector<pid_t> children;
  for (int c = 0; c < kChildren; ++c) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid > 0) {
      children.push_back(pid);
      continue;
    }
    // The child: no gtest assertions, an exit code per kind of failure.
    ::alarm(90);  // a hung child dies instead of hanging the test
    ::close(start[1]);
    char byte;
    while (::read(start[0], &byte, 1) < 0 && errno == EINTR) {
    }
    int code = 0;
    try {
      auto store = make_sqlite_store(dir, [&](const std::string& w) {
        std::fprintf(stderr, "child %d warned: %s\n", c, w.c_str());
        code = 3;
      });
      std::mt19937 rng(static_cast<uint32_t>(c));
      for (int op = 0; op < kOps && code == 0; ++op) {
        std::vector<CacheKey> keys;
        if (op % 2 == 0) {  // 16 consecutive keys; over the run every key is written by everyone
          std::vector<std::string> values;
          for (uint64_t t = 0; t < 16; ++t) {
            uint64_t k =
                (static_cast<uint64_t>(c) * 37 + static_cast<uint64_t>(op) * 8 + t) % kKeys;
            keys.push_back(key_of(k));
            values.push_back(value_of(k));
          }
          if (op % 10 == 0)
            store->put(keys[0], values[0], 0s);
          else
            store->put_many(keys, values, 0s);
          continue;
        }
        std::vector<uint64_t> ids;
        for (int t = 0; t < 32; ++t) ids.push_back(rng() % kKeys);
        for (uint64_t k : ids) keys.push_back(key_of(k));
        auto got = op % 10 == 1 ? std::vector<std::optional<std::string>>{store->get(keys[0])}
                                : store->get_many(keys);
        for (size_t i = 0; i < got.size(); ++i)
          if (got[i] && *got[i] != value_of(ids[i])) {
            std::fprintf(stderr, "child %d: key %llu has a wrong value\n", c,
                         static_cast<unsigned long long>(ids[i]));
            code = 2;
          }
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child %d: %s\n", c, e.what());
      code = 4;
    }
    std::fflush(stderr);
    ::_exit(code);
  }
  ::close(start[0]);
  ::close(start[1]);  // EOF on the pipe: every child starts now
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status)) << "child killed by signal " << WTERMSIG(status);
    if (WIFEXITED(status)) {
      EXPECT_EQ(WEXITSTATUS(status), 0) << "see the child's stderr above";
    }
  }
  Warnings warnings;
  auto store = make_sqlite_store(dir, warnings.sink());
  std::vector<CacheKey> keys;
  for (uint64_t k = 0; k < kKeys; ++k) keys.push_back(key_of(k));
  auto got = store->get_many(keys);
  for (uint64_t k = 0; k < kKeys; ++k) EXPECT_EQ(got[k], value_of(k)) << "key " << k;
  EXPECT_EQ(RawDb(dir).scalar("SELECT count(*) FROM entries"), static_cast<int64_t>(kKeys));
  EXPECT_TRUE(warnings.get().empty());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace flexllm::detail

namespace flexllm::detail {
namespace {

// A lookup that misses just before its key is stored, and a join just after: the join answers
// from the store instead of leading a second request for the same key.
TEST(CacheFront, AJoinRightAfterTheStoreReadsItInsteadOfLeading) {
  CacheFront front(ResponseCacheConfig::local());
  CacheKey key{};
  key[0] = 42;
  EXPECT_FALSE(front.get(key));                      // the caller's lookup: a miss
  ASSERT_FALSE(front.join(key, [](auto, auto) {}));  // another caller leads the flight
  ChatResult result;
  result.content = "answer";
  front.land(key, &result, nullptr);
  front.flush();  // stored, and dropped from the flight table
  const ChatResult* got = nullptr;
  ChatResult copy;
  EXPECT_TRUE(front.join(key, [&](const ChatResult* r, const Error*) {
    copy = *r;
    got = &copy;
  })) << "the caller whose lookup missed must not lead again";
  ASSERT_TRUE(got);
  EXPECT_EQ(got->content, "answer");
  EXPECT_TRUE(got->cached);
  // Once cleared, the key leads again.
  front.clear();
  EXPECT_FALSE(front.join(key, [](auto, auto) {}));
}

}  // namespace
}  // namespace flexllm::detail
