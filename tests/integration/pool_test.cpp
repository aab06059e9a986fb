// LLMClientPool against several in-process mocks over real sockets (SPEC §8): load-balancing
// strategies, health with a half-open probe, fail-over, dead endpoints, distributed batches,
// streams, checkpoint resume and the pool's cache. Counts come from the mocks' own counters.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <functional>
#include <future>
#include <map>

#include "client_support.hpp"
#include "flexllm/pool.hpp"

namespace flexllm::test {
namespace {

using Clock = std::chrono::steady_clock;

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "flexllm_pool_" + std::to_string(getpid()) + "_" + name;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

uint64_t requests(const MockServer& mock) {
  return mock.stats(false).requests;
}

// Base URLs of `n` distinct loopback ports with nothing listening: each bound to port 0 (so the
// kernel picks a free one), then all closed. Connections to them are refused at once.
std::vector<std::string> dead_urls(size_t n) {
  std::vector<int> fds;
  std::vector<std::string> urls;
  for (size_t i = 0; i < n; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    socklen_t len = sizeof addr;
    EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    fds.push_back(fd);
    urls.push_back("http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/v1");
  }
  for (int fd : fds) ::close(fd);
  return urls;
}

std::string dead_url() {
  return dead_urls(1)[0];
}

// A pool over `urls`: endpoint i is c.endpoints[i] when the test gave one (weight, limit, key…)
// with its base_url, key and model filled in. The library's slow defaults (120 s timeout, 1 s
// retry delay) become test-speed ones unless the test set its own; the transport honours
// FLEXLLM_TEST_TRANSPORT=curl as config_for does.
PoolConfig pool_over(const std::vector<std::string>& urls, PoolConfig c = {}) {
  c.endpoints.resize(std::max(c.endpoints.size(), urls.size()));
  for (size_t i = 0; i < urls.size(); ++i) {
    EndpointConfig& e = c.endpoints[i];
    if (e.base_url.empty()) e.base_url = urls[i];
    if (e.api_key.empty()) e.api_key = "sk-test-key";
    if (e.model.empty()) e.model = "mock-model";
    if (!e.proxy) e.proxy = "";  // loopback never goes through a proxy from the environment
  }
  ClientConfig& d = c.defaults;
  const ClientConfig library;
  if (d.timeout == library.timeout) d.timeout = 10s;
  if (d.connect_timeout == library.connect_timeout) d.connect_timeout = 2s;
  if (d.retry_delay == library.retry_delay) d.retry_delay = 1ms;
  d.proxy = "";
  if (d.transport == Transport::automatic && env("FLEXLLM_TEST_TRANSPORT") == "curl")
    d.transport = Transport::curl;
  return c;
}

PoolConfig pool_for(const std::vector<const MockServer*>& mocks, PoolConfig c = {}) {
  std::vector<std::string> urls;
  for (const MockServer* m : mocks) urls.push_back(m->base_url());
  return pool_over(urls, std::move(c));
}

// Sequential calls (each must succeed) until `done()` holds or `limit` passes; returns whether it
// held. A half-open probe is a request, so waiting for one means calling (no sleeps).
bool call_until(LLMClientPool& pool, const std::function<bool()>& done,
                std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > deadline) return false;
    EXPECT_NO_THROW(pool.chat_completions(user("poll")));
  }
  return true;
}

TEST(Pool, RoundRobinSpreadsSequentialCallsExactlyEvenly) {
  MockServer a(MockConfig{}), b(MockConfig{}), c(MockConfig{});
  LLMClientPool pool(pool_for({&a, &b, &c}, {.load_balance = LoadBalance::round_robin}));
  std::map<std::string, int> answered_by;
  for (int i = 0; i < 300; ++i)
    ++answered_by[std::string(pool.chat_completions(user("r")).endpoint)];
  EXPECT_EQ(requests(a), 100u);
  EXPECT_EQ(requests(b), 100u);
  EXPECT_EQ(requests(c), 100u);
  EXPECT_EQ(answered_by[a.base_url()], 100);
  EXPECT_EQ(answered_by[b.base_url()], 100);
  EXPECT_EQ(answered_by[c.base_url()], 100);
}

TEST(Pool, WeightedSplitFollowsTheWeightsThreeToOne) {
  MockServer heavy({.latency_ms = {2, 2}}), light({.latency_ms = {2, 2}});
  LLMClientPool pool(
      pool_for({&heavy, &light}, {.endpoints = {{.weight = 3, .concurrency_limit = 50},
                                                {.weight = 1, .concurrency_limit = 50}},
                                  .load_balance = LoadBalance::weighted}));
  BatchResult r = pool.chat_completions_batch(prompts(4000));
  EXPECT_EQ(r.summary.success, 4000u);
  MockStats h = heavy.stats(false), l = light.stats(false);
  EXPECT_EQ(h.requests + l.requests, 4000u) << "no faults: one request per input";
  EXPECT_NEAR(static_cast<double>(h.requests), 3000, 300);
  EXPECT_NEAR(static_cast<double>(l.requests), 1000, 100);
  EXPECT_LE(h.max_in_flight, 50u) << "each endpoint's concurrency_limit holds";
  EXPECT_LE(l.max_in_flight, 50u);
}

TEST(Pool, FallbackStrategyUsesTheFirstEndpointUntilItFailsThenTheNext) {
  MockServer first({.echo = true}), second({.echo = true});
  LLMClientPool pool(pool_for({&first, &second}, {.load_balance = LoadBalance::fallback,
                                                  .failure_threshold = 3,
                                                  .recovery_time = 10s,
                                                  .defaults = {.retry_times = 3}}));
  for (int i = 0; i < 20; ++i) {
    ChatResult r = pool.chat_completions(user("f" + std::to_string(i)));
    EXPECT_EQ(r.content, "f" + std::to_string(i));
    EXPECT_EQ(r.endpoint, first.base_url());
  }
  EXPECT_EQ(requests(first), 20u);
  EXPECT_EQ(requests(second), 0u) << "fallback never touches the second while the first works";

  first.update({.echo = true, .faults = {.http_error = 1.0}, .error_status = 500});
  first.reset_stats();
  for (int i = 0; i < 30; ++i) {
    ChatResult r = pool.chat_completions(user("g" + std::to_string(i)));
    EXPECT_EQ(r.content, "g" + std::to_string(i)) << "every call still succeeds";
    EXPECT_EQ(r.endpoint, second.base_url());
  }
  EXPECT_EQ(requests(first), 3u)
      << "failure_threshold consecutive failures, then no more traffic until recovery_time";
  EXPECT_EQ(requests(second), 30u);
  std::vector<EndpointStats> st = pool.stats();
  ASSERT_EQ(st.size(), 2u);
  EXPECT_FALSE(st[0].healthy);
  EXPECT_TRUE(st[1].healthy);
  EXPECT_EQ(st[0].failed, 3u);
}

TEST(Pool, ADeadEndpointCostsNoFailedRequestAndIsMarkedUnhealthy) {
  MockServer a(MockConfig{}), b(MockConfig{});
  LLMClientPool pool(
      pool_over({dead_url(), a.base_url(), b.base_url()},
                {.load_balance = LoadBalance::round_robin, .defaults = {.retry_times = 3}}));
  BatchResult r = pool.chat_completions_batch(prompts(2000));
  EXPECT_EQ(r.summary.success, 2000u);
  EXPECT_EQ(r.summary.failed, 0u);
  for (const BatchResultItem& item : r.items)
    if (item.status != ItemStatus::success) {
      ADD_FAILURE() << "item " << item.index << ": " << (item.error ? item.error->what() : "?");
      break;
    }
  EXPECT_EQ(requests(a) + requests(b), 2000u);
  EXPECT_GT(requests(a), 500u) << "the two healthy endpoints share the work";
  EXPECT_GT(requests(b), 500u);
  std::vector<EndpointStats> st = pool.stats();
  ASSERT_EQ(st.size(), 3u);
  EXPECT_FALSE(st[0].healthy);
  EXPECT_EQ(st[0].done, 0u);
  EXPECT_GE(st[0].failed, 3u);
  EXPECT_LE(st[0].failed, 50u) << "once unhealthy it gets no more traffic (recovery_time is 60 s)";
  EXPECT_TRUE(st[1].healthy);
  EXPECT_TRUE(st[2].healthy);
}

TEST(Pool, UnhealthyEndpointGetsOneProbeAfterRecoveryTimeThenTrafficAgain) {
  MockServer bad({.faults = {.http_error = 1.0}, .error_status = 503}), good(MockConfig{});
  LLMClientPool pool(pool_for({&bad, &good}, {.load_balance = LoadBalance::round_robin,
                                              .failure_threshold = 2,
                                              .recovery_time = 300ms,
                                              .defaults = {.retry_times = 3}}));
  for (int i = 0; i < 20 && pool.stats()[0].healthy; ++i)
    EXPECT_NO_THROW(pool.chat_completions(user("a")));
  ASSERT_FALSE(pool.stats()[0].healthy) << "consecutive 503s make it unhealthy";
  EXPECT_EQ(requests(bad), 2u) << "exactly failure_threshold failures";

  // Still broken: after recovery_time one probe goes through, fails (the call succeeds on the
  // other endpoint), and the endpoint is closed for another recovery_time.
  bad.reset_stats();
  const auto unhealthy_since = Clock::now();
  ASSERT_TRUE(call_until(
      pool, [&] { return requests(bad) > 0; }, 5s))
      << "no probe was sent";
  EXPECT_GE(Clock::now() - unhealthy_since, 250ms) << "the probe waited for recovery_time";
  EXPECT_EQ(requests(bad), 1u);
  for (int i = 0; i < 10; ++i) EXPECT_NO_THROW(pool.chat_completions(user("b")));
  EXPECT_EQ(requests(bad), 1u) << "a failed probe closes the endpoint for another recovery_time";
  EXPECT_FALSE(pool.stats()[0].healthy);

  // Fixed: the next probe succeeds, the endpoint is healthy and back in the rotation.
  bad.update(MockConfig{});
  bad.reset_stats();
  ASSERT_TRUE(call_until(
      pool, [&] { return requests(bad) > 0; }, 5s))
      << "no probe was sent";
  EXPECT_EQ(requests(bad), 1u) << "exactly one probe";
  EXPECT_TRUE(pool.stats()[0].healthy) << "a successful probe makes it healthy again";
  bad.reset_stats();
  good.reset_stats();
  for (int i = 0; i < 10; ++i) EXPECT_NO_THROW(pool.chat_completions(user("c")));
  EXPECT_EQ(requests(bad), 5u) << "round robin over both again";
  EXPECT_EQ(requests(good), 5u);
}

TEST(Pool, FailOverMakesEveryRequestSucceedDespiteAnEightyPercentErrorEndpoint) {
  MockServer flaky({.echo = true, .faults = {.http_error = 0.8}, .error_status = 500});
  MockServer solid({.echo = true});
  // A threshold out of reach keeps the flaky endpoint in the rotation: fail-over alone saves
  // each request.
  LLMClientPool pool(pool_for({&flaky, &solid}, {.load_balance = LoadBalance::round_robin,
                                                 .fallback = true,
                                                 .failure_threshold = 100000,
                                                 .defaults = {.retry_times = 5}}));
  BatchResult r = pool.chat_completions_batch(prompts(1000));
  EXPECT_EQ(r.summary.success, 1000u);
  EXPECT_EQ(r.summary.failed, 0u);
  for (size_t i = 0; i < r.items.size(); ++i)
    if (r.items[i].content() != "p" + std::to_string(i)) {
      ADD_FAILURE() << "item " << i << " status " << to_string(r.items[i].status);
      break;
    }
  uint64_t errors = flaky.stats(false).count(Outcome::http_error);
  EXPECT_GE(errors, 200u) << "the flaky endpoint really was asked and really failed";
  EXPECT_EQ(r.summary.retries, errors) << "each failed attempt was retried once, elsewhere";
  EXPECT_EQ(solid.stats(false).count(Outcome::http_error), 0u);
}

TEST(Pool, DistributedBatchGivesTheFasterEndpointProportionallyMoreWork) {
  MockServer fast({.latency_ms = {50, 50}}), slow({.latency_ms = {200, 200}});
  LLMClientPool pool(pool_for(
      {&fast, &slow},
      {.endpoints = {{.concurrency_limit = 8}, {.concurrency_limit = 8}}}));  // 160/s vs 40/s
  BatchResult r = pool.chat_completions_batch(prompts(500), {.distribute = true});
  EXPECT_EQ(r.summary.success, 500u);
  MockStats f = fast.stats(false), s = slow.stats(false);
  EXPECT_EQ(f.requests + s.requests, 500u);
  EXPECT_NEAR(static_cast<double>(f.requests), 400, 60) << "4:1, the ratio of their throughputs";
  EXPECT_NEAR(static_cast<double>(s.requests), 100, 60);
  EXPECT_EQ(f.max_in_flight, 8u) << "each endpoint is kept full, and never over its limit";
  EXPECT_EQ(s.max_in_flight, 8u);
}

TEST(Pool, AllEndpointsDownFailsEveryItemWithTheReasonInBoundedTime) {
  std::vector<std::string> dead = dead_urls(2);
  LLMClientPool pool(pool_over(dead, {.defaults = {.retry_times = 2, .retry_delay = 1ms}}));
  const auto start = Clock::now();
  BatchResult r = pool.chat_completions_batch(prompts(50));
  EXPECT_LT(Clock::now() - start, 30s);
  ASSERT_EQ(r.items.size(), 50u);
  // Nothing answers: the batch stops once its first items (max(20, concurrency)) all failed to
  // connect, and says why; the rest is not run.
  EXPECT_EQ(r.summary.aborted.rfind("endpoint unreachable: ", 0), 0u) << r.summary.aborted;
  EXPECT_GE(r.summary.failed, 20u);
  EXPECT_EQ(r.summary.success, 0u);
  EXPECT_EQ(r.summary.failed + r.summary.not_run, 50u);
  EXPECT_EQ(r.summary.errors["connection"], r.summary.failed);
  for (const BatchResultItem& item : r.items) {
    EXPECT_EQ(item.status, ItemStatus::error);
    ASSERT_TRUE(item.error) << item.index;
    if (item.error->kind() == ErrorKind::cancelled) continue;  // not run
    EXPECT_EQ(item.error->kind(), ErrorKind::connection) << item.error->what();
    EXPECT_EQ(item.attempts, 3) << "each tried 1 + retry_times";
    std::string why = lower(item.error->what());
    EXPECT_TRUE(why.find("refused") != std::string::npos ||
                why.find("could not connect") != std::string::npos ||
                why.find("couldn't connect") != std::string::npos)
        << item.error->what();
    EXPECT_TRUE(item.error->endpoint() == dead[0] || item.error->endpoint() == dead[1])
        << item.error->endpoint();
  }
  for (const EndpointStats& st : pool.stats()) {
    EXPECT_FALSE(st.healthy) << st.base_url;
    EXPECT_EQ(st.done, 0u);
  }
}

TEST(Pool, TheSameBaseUrlWithTwoKeysStaysTwoEndpoints) {
  MockServer mock(MockConfig{});
  LLMClientPool pool(
      pool_for({&mock, &mock}, {.endpoints = {{.api_key = "sk-key-a"}, {.api_key = "sk-key-b"}},
                                .load_balance = LoadBalance::round_robin}));
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(pool.chat_completions(user("k")).endpoint, mock.base_url());
  EXPECT_EQ(requests(mock), 100u);
  std::vector<EndpointStats> st = pool.stats();
  ASSERT_EQ(st.size(), 2u) << "not merged by base_url";
  EXPECT_EQ(st[0].base_url, mock.base_url());
  EXPECT_EQ(st[1].base_url, mock.base_url());
  EXPECT_EQ(st[0].done, 50u);
  EXPECT_EQ(st[1].done, 50u);
}

TEST(Pool, StreamsReturnContentThroughThePool) {
  MockServer a({.echo = true}), b({.echo = true});
  LLMClientPool pool(pool_for({&a, &b}));
  EXPECT_EQ(pool.chat_completions_stream(user("streamed one")).result().content, "streamed one");
  std::string content;
  bool done = false;
  ChatResult r = pool.chat_completions_stream(user("streamed two"), [&](const StreamEvent& ev) {
    if (ev.kind == StreamEvent::content) content += ev.text;
    if (ev.kind == StreamEvent::done) done = true;
  });
  EXPECT_EQ(content, "streamed two");
  EXPECT_EQ(r.content, "streamed two");
  EXPECT_TRUE(done);
  size_t streamed = 0;
  for (const MockServer* m : {&a, &b})
    for (const mock::Arrival& arrival : m->stats().arrivals) streamed += arrival.stream;
  EXPECT_EQ(streamed, 2u);
  EXPECT_EQ(requests(a) + requests(b), 2u);
}

TEST(Pool, DistributedBatchCheckpointResumesWithoutAnyRequest) {
  MockServer a({.latency_ms = {1, 5}, .echo = true}), b({.latency_ms = {1, 5}, .echo = true});
  LLMClientPool pool(pool_for({&a, &b}));
  std::string out = temp_path("resume.jsonl");
  std::remove(out.c_str());
  BatchResult first =
      pool.chat_completions_batch(prompts(60), {.distribute = true, .output_file = out});
  EXPECT_EQ(first.summary.success, 60u);
  EXPECT_GT(requests(a), 0u) << "both endpoints took part";
  EXPECT_GT(requests(b), 0u);
  a.reset_stats();
  b.reset_stats();
  BatchResult again =
      pool.chat_completions_batch(prompts(60), {.distribute = true, .output_file = out});
  EXPECT_EQ(again.summary.restored, 60u);
  for (size_t i = 0; i < 60; ++i) {
    EXPECT_EQ(again.items[i].status, ItemStatus::restored) << i;
    EXPECT_EQ(again.items[i].content(), "p" + std::to_string(i));
  }
  EXPECT_EQ(requests(a) + requests(b), 0u) << "a rerun sends nothing already done";
  std::remove(out.c_str());
}

TEST(Pool, PoolCacheAnswersARepeatedCallWithoutARequest) {
  MockServer a(MockConfig{}), b(MockConfig{});
  LLMClientPool pool(pool_for({&a, &b}, {.load_balance = LoadBalance::round_robin,
                                         .defaults = {.cache = ResponseCacheConfig::local()}}));
  ChatResult first = pool.chat_completions(user("same question"));
  // Round robin would send the repeat to the other endpoint: the pool's one cache answers it.
  ChatResult second = pool.chat_completions(user("same question"));
  EXPECT_FALSE(first.cached);
  EXPECT_TRUE(second.cached);
  EXPECT_EQ(second.content, first.content);
  EXPECT_EQ(requests(a) + requests(b), 1u);
  EXPECT_EQ(pool.cache().stats().hits, 1u);
  EXPECT_EQ(pool.cache().stats().misses, 1u);
  EXPECT_FALSE(pool.chat_completions(user("another question")).cached);
  EXPECT_EQ(requests(a) + requests(b), 2u);
}

TEST(Pool, StatsTrackInFlightDoneAndLatencyPerEndpoint) {
  MockServer a({.latency_ms = {500, 500}}), b({.latency_ms = {500, 500}});
  LLMClientPool pool(pool_for({&a, &b}, {.load_balance = LoadBalance::round_robin}));
  std::vector<std::future<ChatResult>> calls;
  for (int i = 0; i < 20; ++i) calls.push_back(pool.chat_completions_async(user("s")));
  auto ten_in_flight = [](const MockStats& s) { return s.in_flight == 10; };
  ASSERT_TRUE(a.wait_for(ten_in_flight, 5s));
  ASSERT_TRUE(b.wait_for(ten_in_flight, 5s));
  std::vector<EndpointStats> busy = pool.stats();
  ASSERT_EQ(busy.size(), 2u);
  EXPECT_EQ(busy[0].in_flight, 10u);
  EXPECT_EQ(busy[1].in_flight, 10u);
  for (auto& call : calls) EXPECT_FALSE(call.get().content.empty());

  std::vector<EndpointStats> st = pool.stats();
  ASSERT_EQ(st.size(), 2u);
  const MockServer* mocks[] = {&a, &b};
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(st[i].base_url, mocks[i]->base_url());
    EXPECT_EQ(st[i].model, "mock-model");
    EXPECT_EQ(st[i].in_flight, 0u) << "in_flight returns to 0";
    EXPECT_EQ(st[i].done, requests(*mocks[i]));
    EXPECT_EQ(st[i].done, 10u);
    EXPECT_EQ(st[i].failed, 0u);
    EXPECT_TRUE(st[i].healthy);
    EXPECT_GT(st[i].latency, 0);
    EXPECT_LT(st[i].latency, 10);
    EXPECT_TRUE(std::isinf(st[i].rate)) << "no rate cap configured";
  }
}

// A stream fails over while nothing of it has reached the caller, and never after.
TEST(Pool, StreamsFailOverOnlyBeforeTheirFirstEvent) {
  MockServer broken({.echo = true, .faults = {.http_error = 1.0}, .error_status = 503});
  MockServer cut({.echo = true, .faults = {.truncate = 1.0}});
  MockServer good({.echo = true});
  {
    LLMClientPool pool(pool_for(
        {&broken, &good}, {.load_balance = LoadBalance::fallback, .defaults = {.retry_times = 2}}));
    EXPECT_EQ(pool.chat_completions_stream(user("before")).result().content, "before");
    EXPECT_EQ(requests(broken), 1u);
    EXPECT_EQ(requests(good), 1u);
  }
  LLMClientPool pool(pool_for(
      {&cut, &good}, {.load_balance = LoadBalance::fallback, .defaults = {.retry_times = 2}}));
  std::string seen;
  EXPECT_THROW(pool.chat_completions_stream(user("a few words then the connection is cut"),
                                            [&](const StreamEvent& ev) { seen += ev.text; }),
               TruncatedError);
  EXPECT_FALSE(seen.empty()) << "events arrived before the cut";
  EXPECT_EQ(requests(cut), 1u);
  EXPECT_EQ(requests(good), 1u) << "only the first stream went to the good endpoint";
}

// A pool batch's final summary (show_progress) adds a line per endpoint.
TEST(Pool, ProgressSummaryHasALinePerEndpoint) {
  MockServer a({.echo = true}), b({.echo = true});
  LLMClientPool pool(pool_for({&a, &b}));
  testing::internal::CaptureStderr();
  BatchResult r = pool.chat_completions_batch(prompts(10), {.show_progress = true});
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(r.summary.success, 10u);
  for (const MockServer* m : {&a, &b})
    EXPECT_NE(err.find(m->base_url() + " (mock-model): 5 done, 0 failed attempts, healthy"),
              std::string::npos)
        << err;
}

// Existing clients join a pool as endpoints: the pool spreads and fails over between them, and
// they stay usable on their own, before and after the pool.
TEST(Pool, ExistingClientsJoinAPoolAndOutliveIt) {
  MockServer a({.echo = true}), b({.echo = true});
  auto ca = std::make_shared<LLMClient>(config_for(a));
  auto cb = std::make_shared<LLMClient>(config_for(b));
  {
    LLMClientPool pool({.clients = {ca, cb}, .load_balance = LoadBalance::round_robin});
    for (int i = 0; i < 20; ++i)
      EXPECT_EQ(pool.chat_completions(user("q" + std::to_string(i))).content,
                "q" + std::to_string(i));
    EXPECT_EQ(requests(a), 10u);
    EXPECT_EQ(requests(b), 10u);
    ASSERT_EQ(pool.stats().size(), 2u);
    EXPECT_EQ(pool.stats()[0].base_url, url_for(a));
    BatchResult r = pool.chat_completions_batch(prompts(40), {.distribute = true});
    EXPECT_EQ(r.summary.success, 40u);
  }
  EXPECT_EQ(ca->chat_completions(user("after")).content, "after");
  EXPECT_EQ(cb->chat_completions(user("after")).content, "after");
  // A client on another runtime cannot share the pool's loop.
  ClientConfig other = config_for(a);
  other.runtime = std::make_shared<Runtime>();
  auto elsewhere = std::make_shared<LLMClient>(other);
  EXPECT_THROW(LLMClientPool({.clients = {elsewhere}}), InvalidRequestError);
}

TEST(Pool, InvalidConfigsAreRejectedNamingTheField) {
  MockServer mock(MockConfig{});
  auto rejects = [&](const PoolConfig& config, const std::string& field) {
    Error e = error_of([&] { config.validate(); });
    EXPECT_EQ(e.kind(), ErrorKind::invalid_request);
    EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    Error ctor = error_of([&] { LLMClientPool pool(config); });
    EXPECT_EQ(ctor.kind(), ErrorKind::invalid_request);
    EXPECT_NE(std::string(ctor.what()).find(field), std::string::npos) << ctor.what();
  };
  rejects(PoolConfig{}, "endpoints");
  rejects(pool_for({&mock}, {.endpoints = {{.weight = -1}}}), "weight");
  rejects(pool_for({&mock}, {.failure_threshold = 0}), "failure_threshold");
  EXPECT_THROW(LLMClientPool(pool_for({&mock}, {.failure_threshold = 0})), InvalidRequestError);
  EXPECT_NO_THROW(pool_for({&mock}).validate());
  EXPECT_EQ(requests(mock), 0u);
}

}  // namespace
}  // namespace flexllm::test
