// The response cache wired into the client against the in-process mock: hits cost no request (the
// mock's counters say so), single-flight, what is never cached, streams, batches, the ipc store
// shared by two clients, and a broken store that leaves the client working uncached.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "client_support.hpp"
#include "redis_server.hpp"

namespace flexllm::test {
namespace {

std::string temp_dir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "flexllm_cache_" + std::to_string(getpid()) + "_" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

ClientConfig cached(const MockServer& mock, ResponseCacheConfig cache, ClientConfig c = {}) {
  c.cache = std::move(cache);
  return config_for(mock, std::move(c));
}

TEST(Cache, ARepeatedCallIsAnsweredWithoutARequest) {
  MockServer mock(MockConfig{});
  LLMClient client(cached(mock, ResponseCacheConfig::local()));
  ChatResult first = client.chat_completions(user("hello"), {.temperature = 0.5});
  ChatResult second = client.chat_completions(user("hello"), {.temperature = 0.5});
  EXPECT_FALSE(first.cached);
  EXPECT_TRUE(second.cached);
  EXPECT_EQ(second.content, first.content);
  EXPECT_EQ(second.usage, first.usage);
  EXPECT_EQ(second.finish_reason, first.finish_reason);
  EXPECT_EQ(second.endpoint, mock.base_url());
  EXPECT_EQ(second.attempts, 0);
  EXPECT_EQ(mock.stats(false).requests, 1u);
  // Anything that changes the answer is another entry.
  client.chat_completions(user("hello"), {.temperature = 0.7});
  client.chat_completions(user("hello"), {.temperature = 0.5, .max_tokens = 10});
  client.chat_completions(user("hello"), {.model = "other-model", .temperature = 0.5});
  client.chat_completions(user("Hello"), {.temperature = 0.5});
  EXPECT_EQ(mock.stats(false).requests, 5u);
  CacheStats stats = client.cache().stats();
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.misses, 5u);
  EXPECT_NEAR(stats.hit_rate(), 1.0 / 6, 1e-9);
  // skip_cache asks upstream again (and refreshes the entry); clear() empties the cache.
  EXPECT_FALSE(
      client.chat_completions(user("hello"), {.temperature = 0.5, .skip_cache = true}).cached);
  EXPECT_EQ(mock.stats(false).requests, 6u);
  client.cache().clear();
  EXPECT_FALSE(client.chat_completions(user("hello"), {.temperature = 0.5}).cached);
  EXPECT_EQ(mock.stats(false).requests, 7u);
}

TEST(Cache, ConcurrentIdenticalMissesMakeOneRequest) {
  MockServer mock({.latency_ms = {80, 80}});
  LLMClient client(cached(mock, ResponseCacheConfig::local(), {.concurrency_limit = 100}));
  std::vector<std::future<ChatResult>> futures;
  for (int i = 0; i < 100; ++i) futures.push_back(client.chat_completions_async(user("same")));
  std::vector<ChatResult> results;
  for (auto& f : futures) results.push_back(f.get());
  EXPECT_EQ(mock.stats(false).requests, 1u) << "single-flight";
  size_t fresh = 0;
  for (const ChatResult& r : results) {
    EXPECT_EQ(r.content, results[0].content);
    fresh += !r.cached;
  }
  EXPECT_EQ(fresh, 1u);
  EXPECT_EQ(client.cache().stats().hits, 99u);
  // Followers of a failed request get its error (they would have failed the same way).
}

TEST(Cache, FailuresAndTruncatedStreamsAreNeverCached) {
  {
    MockServer mock({.faults = {.http_error = 1.0}, .error_status = 400});
    LLMClient client(cached(mock, ResponseCacheConfig::local(), {.retry_times = 0}));
    EXPECT_THROW(client.chat_completions(user("x")), HttpError);
    EXPECT_THROW(client.chat_completions(user("x")), HttpError);
    EXPECT_EQ(mock.stats(false).requests, 2u);
  }
  {
    MockServer mock({.faults = {.truncate = 1.0}});
    LLMClient client(cached(mock, ResponseCacheConfig::local(), {.retry_times = 0}));
    EXPECT_THROW(client.chat_completions_stream(user("y")).result(), TruncatedError);
    EXPECT_THROW(client.chat_completions(user("y")), Error);
    EXPECT_EQ(mock.stats(false).requests, 2u) << "a truncated stream left nothing to reuse";
  }
  {
    // Followers of a failed leader get its error, and nothing is stored.
    MockServer mock({.latency_ms = {50, 50}, .faults = {.http_error = 1.0}, .error_status = 400});
    LLMClient client(cached(mock, ResponseCacheConfig::local(), {.retry_times = 0}));
    auto a = client.chat_completions_async(user("z"));
    auto b = client.chat_completions_async(user("z"));
    EXPECT_THROW(a.get(), HttpError);
    EXPECT_THROW(b.get(), HttpError);
    EXPECT_EQ(mock.stats(false).requests, 1u);
  }
}

TEST(Cache, StreamsReplayHitsAndStoreTheirAnswers) {
  MockServer mock({.thinking = mock::ThinkingMode::field});
  LLMClient client(cached(mock, ResponseCacheConfig::local()));
  // A streamed answer is stored...
  ChatResult streamed = client.chat_completions_stream(user("s")).result();
  ASSERT_TRUE(streamed.reasoning);
  ChatResult plain = client.chat_completions(user("s"));
  EXPECT_TRUE(plain.cached);
  EXPECT_EQ(plain.content, streamed.content);
  EXPECT_EQ(plain.reasoning, streamed.reasoning);
  // ...and a hit replays as events: reasoning, content, usage, done.
  std::string thinking, content;
  bool done = false, usage = false;
  for (const StreamEvent& ev : client.chat_completions_stream(user("s"))) {
    if (ev.kind == StreamEvent::thinking) thinking += ev.text;
    if (ev.kind == StreamEvent::content) content += ev.text;
    if (ev.kind == StreamEvent::usage) usage = true;
    if (ev.kind == StreamEvent::done) {
      done = true;
      EXPECT_TRUE(ev.result->cached);
    }
  }
  EXPECT_EQ(thinking, *streamed.reasoning);
  EXPECT_EQ(content, streamed.content);
  EXPECT_TRUE(usage);
  EXPECT_TRUE(done);
  EXPECT_EQ(mock.stats(false).requests, 1u);
}

TEST(Cache, ToolCallOnlyRepliesAreCached) {
  MockServer mock(MockConfig{});
  LLMClient client(cached(mock, ResponseCacheConfig::local()));
  json tools = weather_tools();
  RequestOptions options{.tools = tools, .tool_choice = "required"};
  ChatResult first = client.chat_completions(user("weather?"), options);
  ASSERT_FALSE(first.tool_calls.empty());
  ChatResult second = client.chat_completions(user("weather?"), options);
  EXPECT_TRUE(second.cached);
  EXPECT_EQ(second.tool_calls, first.tool_calls);
  EXPECT_EQ(second.finish_reason, first.finish_reason);
  EXPECT_EQ(mock.stats(false).requests, 1u);
}

TEST(Cache, BatchItemsAreCachedAndDuplicatesCoalesce) {
  MockServer mock({.latency_ms = {1, 20}, .echo = true});
  LLMClient client(cached(mock, ResponseCacheConfig::local(), {.concurrency_limit = 16}));
  std::vector<json> inputs;
  for (int i = 0; i < 60; ++i) inputs.push_back(user("q" + std::to_string(i % 20)));
  BatchResult first = client.chat_completions_batch(inputs);
  EXPECT_EQ(mock.stats(false).requests, 20u) << "one request per distinct input";
  EXPECT_EQ(first.summary.success, 20u);
  EXPECT_EQ(first.summary.cached, 40u);
  for (size_t i = 0; i < inputs.size(); ++i)
    EXPECT_EQ(first.items[i].content(), "q" + std::to_string(i % 20)) << i;
  BatchResult second = client.chat_completions_batch(inputs);
  EXPECT_EQ(second.summary.cached, 60u);
  EXPECT_EQ(mock.stats(false).requests, 20u);
  for (const auto& item : second.items) EXPECT_EQ(item.status, ItemStatus::cached);
  // The iterator reports them as cached too.
  size_t n = 0, cached_items = 0;
  MessageSource source(
      [&]() -> std::optional<json> {
        if (n >= inputs.size()) return std::nullopt;
        return inputs[n++];
      },
      inputs.size());
  for (const auto& item : client.iter_chat_completions_batch(source))
    cached_items += item.status == ItemStatus::cached;
  EXPECT_EQ(cached_items, 60u);
}

TEST(Cache, TheIpcStoreIsSharedBetweenClientsAndRuns) {
  MockServer mock(MockConfig{});
  std::string dir = temp_dir("ipc");
  std::string content;
  {
    LLMClient writer(cached(mock, ResponseCacheConfig::ipc(std::chrono::hours(1), dir)));
    content = writer.chat_completions(user("persist me")).content;
  }  // closing the client stores what is queued
  LLMClient reader(cached(mock, ResponseCacheConfig::ipc(std::chrono::hours(1), dir)));
  ChatResult r = reader.chat_completions(user("persist me"));
  EXPECT_TRUE(r.cached);
  EXPECT_EQ(r.content, content);
  EXPECT_EQ(mock.stats(false).requests, 1u);
  std::filesystem::remove_all(dir);
}

TEST(Cache, ACorruptStoreLeavesTheClientWorkingUncached) {
  MockServer mock(MockConfig{});
  std::string dir = temp_dir("corrupt");
  std::filesystem::create_directories(dir);
  {
    std::ofstream f(dir + "/responses.sqlite3", std::ios::binary);
    for (int i = 0; i < 4096; ++i) f.put(static_cast<char>(i * 37));
  }
  testing::internal::CaptureStderr();
  std::string content;
  for (int run = 0; run < 2; ++run) {  // nothing survives a run: the store cannot keep it
    LLMClient client(cached(mock, ResponseCacheConfig::ipc(std::chrono::hours(1), dir)));
    ChatResult r = client.chat_completions(user("a"));
    EXPECT_FALSE(r.cached);
    if (run == 1) {
      EXPECT_EQ(r.content, content);
    }
    content = r.content;
  }
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find(dir), std::string::npos) << "the warning names the file: " << err;
  EXPECT_EQ(mock.stats(false).requests, 2u);
  std::filesystem::remove_all(dir);
}

// The redis backend through the client: two clients share it (as two machines would), and when
// Redis goes away mid-run the client keeps answering, uncached, and says so once.
TEST(Cache, RedisIsSharedAndItsOutageOnlyCostsTheCache) {
  ASSERT_EQ(::access("/usr/bin/redis-server", X_OK), 0)
      << "these tests need redis-server (Debian package redis-server; scripts/install-deps)";
  redis_test::RedisServer redis;
  ASSERT_TRUE(redis.start(redis_test::free_port()));
  MockServer mock(MockConfig{});
  auto config = cached(mock, ResponseCacheConfig::redis(redis.url("/0"), std::chrono::hours(1)));
  std::string content;
  {
    LLMClient writer(config);
    content = writer.chat_completions(user("shared")).content;
  }  // closing stores what is queued
  testing::internal::CaptureStderr();
  LLMClient reader(config);
  ChatResult hit = reader.chat_completions(user("shared"));
  EXPECT_TRUE(hit.cached);
  EXPECT_EQ(hit.content, content);
  EXPECT_EQ(mock.stats(false).requests, 1u);
  // A batch looks its items up together (one MGET per lookahead block).
  std::vector<json> inputs(40, user("shared"));
  for (int i = 0; i < 40; ++i) inputs.push_back(user("new " + std::to_string(i)));
  BatchResult r = reader.chat_completions_batch(inputs);
  EXPECT_EQ(r.summary.cached, 40u);
  EXPECT_EQ(r.summary.success, 40u);
  redis.stop(SIGKILL);
  for (int i = 0; i < 5; ++i) {
    ChatResult r2 = reader.chat_completions(user("during the outage " + std::to_string(i)));
    EXPECT_FALSE(r2.cached);
  }
  EXPECT_EQ(mock.stats(false).requests, 46u) << "every call still answered";
  std::string err = testing::internal::GetCapturedStderr();
  size_t warnings = 0;
  for (size_t at = err.find("unreachable"); at != std::string::npos;
       at = err.find("unreachable", at + 1))
    ++warnings;
  EXPECT_EQ(warnings, 1u) << "one warning per outage: " << err;
}

TEST(Cache, BadBackendIsAConfigError) {
  MockServer mock(MockConfig{});
  ResponseCacheConfig bad{.enabled = true, .backend = "memcached://x"};
  EXPECT_THROW(LLMClient(cached(mock, bad)), InvalidRequestError);
  EXPECT_THROW(LLMClient(cached(mock, ResponseCacheConfig::redis("redis://:secret@host:notaport"))),
               InvalidRequestError);
  try {
    LLMClient c(cached(mock, ResponseCacheConfig::redis("redis://:secret@host:notaport")));
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).find("secret"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace flexllm::test
