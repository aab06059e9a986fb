// The redis cache store against a redis-server the tests start on a free loopback port: TTL,
// pipelined batches, clear() keeping other keys, URLs and passwords, corrupt values, threads, and
// Redis going away mid-run and coming back.
#include <hiredis/hiredis.h>
#include <signal.h>

#include <cstring>

#include "cache/redis_store.hpp"
#include "cache_store_support.hpp"
#include "core/hex.hpp"
#include "redis_server.hpp"

namespace flexllm::detail {
namespace {

using namespace cache_test;
using namespace redis_test;
using namespace std::chrono_literals;

std::string redis_name(const CacheKey& key) {
  std::string out = "flexllm:v1:";
  append_hex(out, key);
  return out;
}

class RedisStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::access(kRedisServer, X_OK), 0)
        << kRedisServer << " is required by these tests (Debian package redis-server; "
        << "scripts/install-deps installs it)";
    ASSERT_TRUE(server_.start(free_port()));
  }
  RedisServer server_;
  Warnings warnings_;
};

TEST_F(RedisStoreTest, PutGetOverwriteAndTtl) {
  auto store = make_redis_store(server_.url(), warnings_.sink());
  RedisClient raw = server_.client();
  EXPECT_EQ(store->get(key_of(1)), std::nullopt);
  store->put(key_of(1), "first", 100s);
  EXPECT_EQ(store->get(key_of(1)), "first");
  long long ttl = raw.integer({"TTL", redis_name(key_of(1))});
  EXPECT_GE(ttl, 1);
  EXPECT_LE(ttl, 100);
  store->put(key_of(1), "second", 0s);
  EXPECT_EQ(store->get(key_of(1)), "second");
  EXPECT_EQ(raw.integer({"TTL", redis_name(key_of(1))}), -1) << "ttl 0 = no expiry";
  store->put(key_of(2), "", 0s);
  EXPECT_EQ(store->get(key_of(2)), "");
  Reply stored = raw.command({"GET", redis_name(key_of(1))});
  ASSERT_TRUE(stored && stored->type == REDIS_REPLY_STRING);
  EXPECT_NE(std::string(stored->str, stored->len), "second") << "values are stored compressed";
  EXPECT_TRUE(warnings_.get().empty());
}

TEST_F(RedisStoreTest, BatchesArePipelined) {
  auto store = make_redis_store(server_.url(), warnings_.sink());
  std::vector<CacheKey> keys;
  std::vector<std::string> values;
  for (uint64_t i = 0; i < 600; ++i) {
    keys.push_back(key_of(i));
    values.push_back(value_of(i));
  }
  store->put_many(keys, values, 50s);
  keys.push_back(key_of(5000));
  auto got = store->get_many(keys);
  ASSERT_EQ(got.size(), 601u);
  for (size_t i = 0; i < 600; ++i) EXPECT_EQ(got[i], values[i]) << i;
  EXPECT_EQ(got[600], std::nullopt);
  RedisClient raw = server_.client();
  EXPECT_EQ(raw.integer({"DBSIZE"}), 600);
  long long ttl = raw.integer({"TTL", redis_name(key_of(599))});
  EXPECT_GE(ttl, 1);
  EXPECT_LE(ttl, 50);
  EXPECT_TRUE(warnings_.get().empty());
}

TEST_F(RedisStoreTest, ThreadsShareOneStore) {
  auto store = make_redis_store(server_.url(), warnings_.sink());
  EXPECT_GT(hammer_from_threads(*store), 0u);
  EXPECT_TRUE(warnings_.get().empty());
}

TEST_F(RedisStoreTest, ClearRemovesOnlyThisCachesKeys) {
  RedisClient raw = server_.client();
  raw.command({"SET", "other:key", "1"});
  raw.command({"SET", "flexllm:v2:later", "1"});
  auto store = make_redis_store(server_.url(), warnings_.sink());
  std::vector<CacheKey> keys;
  std::vector<std::string> values;
  for (uint64_t i = 0; i < 2500; ++i) {  // more than one SCAN step
    keys.push_back(key_of(i));
    values.push_back(value_of(i));
  }
  store->put_many(keys, values, 0s);
  EXPECT_EQ(raw.integer({"DBSIZE"}), 2502);
  store->clear();
  EXPECT_EQ(raw.integer({"DBSIZE"}), 2);
  EXPECT_EQ(raw.integer({"EXISTS", "other:key"}), 1);
  EXPECT_EQ(raw.integer({"EXISTS", "flexllm:v2:later"}), 1);
  for (const auto& v : store->get_many(keys)) EXPECT_EQ(v, std::nullopt);
  EXPECT_TRUE(warnings_.get().empty());
}

TEST_F(RedisStoreTest, CorruptStoredValueIsAMissAndIsRemoved) {
  auto store = make_redis_store(server_.url(), warnings_.sink());
  RedisClient raw = server_.client();
  raw.command({"SET", redis_name(key_of(1)), "not a zstd frame"});
  store->put(key_of(2), "good", 0s);
  std::vector<CacheKey> keys = {key_of(1), key_of(2)};
  auto got = store->get_many(keys);
  EXPECT_EQ(got[0], std::nullopt);
  EXPECT_EQ(got[1], "good");
  EXPECT_EQ(raw.integer({"EXISTS", redis_name(key_of(1))}), 0);
  auto w = warnings_.get();
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("corrupt"), std::string::npos) << w[0];
}

TEST(RedisStoreUrl, BadUrlsThrowNamingTheUrlWithoutThePassword) {
  for (const std::string url :
       {"http://127.0.0.1:6379", "redis://", "redis://:s3cret@", "redis://:s3cret@host:0",
        "redis://host:65536", "redis://:s3cret@host:port", "redis://host:", "redis://host/db1",
        "redis://host/-1", "redis://user:s3cret@host", "redis://[::1", "redis://[::1]x",
        "redis://:s3cret@[::1]:"}) {
    try {
      make_redis_store(url, nullptr);
      ADD_FAILURE() << url << " was accepted";
    } catch (const std::invalid_argument& e) {
      std::string what = e.what();
      EXPECT_EQ(what.find("s3cret"), std::string::npos) << what;
      EXPECT_NE(what.find(url.substr(url.find('@') == std::string::npos ? 0 : url.find('@'))),
                std::string::npos)
          << "names the URL: " << what;
    }
  }
}

TEST(RedisStoreUrl, UnreachableRedisIsAWarningAndMissesNeverThePassword) {
  // Port 1 on loopback: nothing listens, the connection is refused at once.
  for (const std::string url : {"redis://127.0.0.1:1", "redis://:s3cret@127.0.0.1:1/2",
                                "redis://[::1]:1/0", "redis://localhost:1/"}) {
    Warnings warnings;
    std::unique_ptr<CacheStore> store;
    ASSERT_NO_THROW(store = make_redis_store(url, warnings.sink(), {.reconnect_interval = 0ms}));
    expect_always_miss(*store);
    auto w = warnings.get();
    ASSERT_EQ(w.size(), 1u) << url;
    EXPECT_NE(w[0].find(":1 unreachable"), std::string::npos) << w[0];
    EXPECT_NE(w[0].find("continuing without it"), std::string::npos) << w[0];
    EXPECT_EQ(w[0].find("s3cret"), std::string::npos) << w[0];
  }
}

TEST(RedisStoreAuth, PasswordAndDatabaseAreUsed) {
  ASSERT_EQ(::access(kRedisServer, X_OK), 0) << kRedisServer << " is required by these tests";
  RedisServer server;
  ASSERT_TRUE(server.start(free_port(), "s3cret-pw"));
  Warnings warnings;
  auto store = make_redis_store(
      "redis://:s3cret-pw@127.0.0.1:" + std::to_string(server.port()) + "/3", warnings.sink());
  store->put(key_of(1), "in db 3", 0s);
  EXPECT_EQ(store->get(key_of(1)), "in db 3");
  EXPECT_TRUE(warnings.get().empty());
  RedisClient raw = server.client();
  raw.command({"SELECT", "3"});
  EXPECT_EQ(raw.integer({"EXISTS", redis_name(key_of(1))}), 1);
  raw.command({"SELECT", "0"});
  EXPECT_EQ(raw.integer({"EXISTS", redis_name(key_of(1))}), 0);

  Warnings refused;
  auto wrong = make_redis_store("redis://:wrong-pw@127.0.0.1:" + std::to_string(server.port()),
                                refused.sink());
  EXPECT_EQ(wrong->get(key_of(1)), std::nullopt);
  auto w = refused.get();
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("AUTH"), std::string::npos) << w[0];
  EXPECT_EQ(w[0].find("wrong-pw"), std::string::npos) << w[0];
  EXPECT_EQ(w[0].find("s3cret-pw"), std::string::npos) << w[0];
}

TEST_F(RedisStoreTest, RedisGoingDownIsMissesWithOneWarningUntilItReturns) {
  auto store = make_redis_store(server_.url(), warnings_.sink(), {.reconnect_interval = 0ms});
  store->put(key_of(1), "before", 0s);
  ASSERT_EQ(store->get(key_of(1)), "before");
  server_.stop(SIGKILL);

  // First a pipeline of several MB into the dead connection: writes after the peer's reset fail
  // with EPIPE, which must not raise SIGPIPE (it would kill this process).
  std::vector<CacheKey> keys;
  std::vector<std::string> values;
  for (uint64_t i = 0; i < 600; ++i) {
    keys.push_back(key_of(100 + i));
    values.push_back(random_bytes(8192, static_cast<uint32_t>(i)));  // incompressible
  }
  EXPECT_NO_THROW(store->put_many(keys, values, 0s));
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(store->get(key_of(1)), std::nullopt);
    EXPECT_NO_THROW(store->put(key_of(2), "during", 10s));
    auto got = store->get_many(keys);
    EXPECT_EQ(got.size(), keys.size());
    for (const auto& v : got) EXPECT_EQ(v, std::nullopt);
    EXPECT_NO_THROW(store->clear());
  }
  auto w = warnings_.get();
  ASSERT_EQ(w.size(), 1u) << "one warning per outage";
  const std::string where = "127.0.0.1:" + std::to_string(server_.port());
  EXPECT_NE(w[0].find("redis cache at " + where + " unreachable"), std::string::npos) << w[0];
  EXPECT_NE(w[0].find("continuing without it"), std::string::npos) << w[0];

  ASSERT_TRUE(server_.start(server_.port()));  // a fresh, empty server on the same port
  store->put(key_of(3), "after", 0s);
  EXPECT_EQ(store->get(key_of(3)), "after");
  EXPECT_EQ(store->get(key_of(1)), std::nullopt);
  w = warnings_.get();
  ASSERT_EQ(w.size(), 2u);
  EXPECT_NE(w[1].find(where + " is reachable again"), std::string::npos) << w[1];
}

TEST_F(RedisStoreTest, NoReconnectBeforeTheIntervalHasPassed) {
  auto store = make_redis_store(server_.url(), warnings_.sink(), {.reconnect_interval = 1h});
  store->put(key_of(1), "before", 0s);
  server_.stop(SIGKILL);
  EXPECT_EQ(store->get(key_of(1)), std::nullopt);
  ASSERT_TRUE(server_.start(server_.port()));
  store->put(key_of(2), "dropped", 0s);  // Redis is back, but the store does not try yet
  EXPECT_EQ(store->get(key_of(2)), std::nullopt);
  EXPECT_EQ(server_.client().integer({"DBSIZE"}), 0);
  EXPECT_EQ(warnings_.get().size(), 1u);
}

}  // namespace
}  // namespace flexllm::detail
