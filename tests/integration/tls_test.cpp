// The native HTTPS transport (TLS + HTTP/2) end to end: nginx as a TLS + HTTP/2 front of the
// in-process mock (tests/support/tls_fixture), a scripted HTTP/2 server for refused and reset
// streams and GOAWAY (tests/support/h2_test_server), and certificates made by the test (a CA of
// its own, expired and wrong-name server certificates, a client certificate). Connections are
// counted from nginx's access log ($connection), requests from the mock's counters.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <future>
#include <map>
#include <set>

#include "cli_run.hpp"
#include "client_support.hpp"
#include "connect_proxy.hpp"
#include "flexllm/pool.hpp"
#include "h2_test_server.hpp"
#include "tls_fixture.hpp"

namespace flexllm::test {
namespace {

using Clock = std::chrono::steady_clock;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string first_failure(const BatchResult& r) {
  for (const BatchResultItem& item : r.items)
    if (item.status != ItemStatus::success)
      return "item " + std::to_string(item.index) + ": " +
             (item.error ? item.error->what() : std::string(to_string(item.status)));
  return "none";
}

// Requests per connection, from nginx's access log ("$connection $connection_requests ...").
std::map<std::string, size_t> requests_per_connection(const NginxTls& nginx) {
  std::map<std::string, size_t> per;
  for (const std::string& line : nginx.access_log()) ++per[line.substr(0, line.find(' '))];
  return per;
}

// Connections that made a full TLS handshake (the log's third field is "." rather than "r").
size_t full_handshakes(const NginxTls& nginx) {
  std::set<std::string> full;
  for (const std::string& line : nginx.access_log())
    if (contains(line, " . ")) full.insert(line.substr(0, line.find(' ')));
  return full.size();
}

class Tls : public ::testing::Test {
 protected:
  // A client of `base_url` trusting the test CA (verification on), with test-speed retries.
  ClientConfig config(const std::string& base_url, ClientConfig c = {}) const {
    c.base_url = base_url;
    if (c.api_key.empty()) c.api_key = "sk-test-key";
    if (c.model.empty()) c.model = "mock-model";
    c.proxy = "";  // loopback never goes through a proxy from the environment
    const ClientConfig library;
    if (c.timeout == library.timeout) c.timeout = 20s;
    if (c.connect_timeout == library.connect_timeout) c.connect_timeout = 5s;
    if (c.retry_delay == library.retry_delay) c.retry_delay = 1ms;
    return c;
  }
  ClientConfig trusting(const std::string& base_url, ClientConfig c = {}) const {
    c.ca_cert = pki_.ca_pem;
    return config(base_url, std::move(c));
  }
  NginxOptions front_of(const MockServer& mock, NginxOptions o = {}) const {
    if (o.cert.cert.empty()) o.cert = pki_.server;
    o.upstream_port = mock.port();
    return o;
  }

  TempDir dir_{"flexllm_tls_test"};
  TestPki pki_{dir_.path()};
};

// ---- calls over nginx (TLS + HTTP/2)

TEST_F(Tls, ChatStreamAndModelsOverTlsAndHttp2OnOneConnection) {
  MockServer mock({.response_tokens = {8, 8}});
  NginxTls nginx(front_of(mock));
  LLMClient client(trusting(nginx.base_url()));

  ChatResult r = client.chat_completions(user("hello"));
  EXPECT_FALSE(r.content.empty());
  EXPECT_EQ(r.finish_reason, "stop");
  ASSERT_TRUE(r.usage);
  EXPECT_EQ(r.usage->completion_tokens, 8);
  EXPECT_EQ(r.attempts, 1);
  EXPECT_EQ(r.endpoint, nginx.base_url());

  std::string streamed;
  int content_events = 0, usage_events = 0;
  std::shared_ptr<const ChatResult> done;
  for (const StreamEvent& ev : client.chat_completions_stream(user("stream me"))) {
    if (ev.kind == StreamEvent::content) {
      EXPECT_FALSE(done) << "content after done";
      streamed += ev.text;
      ++content_events;
    } else if (ev.kind == StreamEvent::usage) {
      ++usage_events;
    } else if (ev.kind == StreamEvent::done) {
      done = ev.result;
    }
  }
  EXPECT_EQ(content_events, 8);
  EXPECT_EQ(usage_events, 1);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->content, streamed);
  EXPECT_EQ(done->finish_reason, "stop");

  EXPECT_EQ(client.model_list(), std::vector<std::string>{"mock-model"});

  MockStats st = mock.stats();
  EXPECT_EQ(st.requests, 2u);
  ASSERT_EQ(st.arrivals.size(), 2u);
  EXPECT_FALSE(st.arrivals[0].stream);
  EXPECT_TRUE(st.arrivals[1].stream);
  ASSERT_TRUE(nginx.wait_for_log_lines(3)) << nginx.errors();
  for (const std::string& line : nginx.access_log()) {
    EXPECT_TRUE(contains(line, " 200 ")) << line;
    EXPECT_TRUE(contains(line, "HTTP/2.0")) << "the native transport speaks HTTP/2: " << line;
  }
  EXPECT_EQ(nginx.connections(), 1u) << "three sequential calls share one connection";
}

TEST_F(Tls, StreamEventsPassThroughAsTheServerSendsThem) {
  // 12 tokens at 40 tokens/s: ~300 ms between the first token and the last.
  MockServer mock({.token_rate = 40, .response_tokens = {12, 12}});
  NginxTls nginx(front_of(mock));
  LLMClient client(trusting(nginx.base_url()));
  std::optional<Clock::time_point> first, last;
  ChatResult r = client.chat_completions_stream(user("slowly"), [&](const StreamEvent& ev) {
    if (ev.kind != StreamEvent::content) return;
    if (!first) first = Clock::now();
    last = Clock::now();
  });
  ASSERT_TRUE(first && last);
  EXPECT_GE(*last - *first, 150ms) << "events must arrive as they are produced, not all at the end";
  EXPECT_EQ(r.finish_reason, "stop");
  EXPECT_EQ(r.attempts, 1);
}

// ---- the connection pool: stream limits, GOAWAY

TEST_F(Tls, BatchOpensOnlyTheConnectionsTheStreamLimitRequires) {
  MockServer mock({.latency_ms = {90, 110}});
  NginxTls nginx(front_of(mock, {.max_concurrent_streams = 128}));
  LLMClient client(trusting(nginx.base_url(), {.concurrency_limit = 300}));
  BatchResult r = client.chat_completions_batch(prompts(2000));
  EXPECT_EQ(r.summary.success, 2000u) << first_failure(r);
  EXPECT_EQ(r.summary.failed, 0u);
  EXPECT_EQ(r.summary.retries, 0u);
  EXPECT_EQ(mock.stats(false).requests, 2000u);
  EXPECT_GT(mock.stats(false).max_in_flight, 128u) << "more than one connection's worth at once";
  ASSERT_TRUE(nginx.wait_for_log_lines(2000)) << nginx.access_log().size();
  const size_t bound = static_cast<size_t>(std::ceil(300.0 / 128)) + 1;
  EXPECT_LE(nginx.connections(), bound) << "connections used for 300 in flight at 128 streams each";
}

TEST_F(Tls, OneAndTwoStreamsPerConnectionAreHonoured) {
  for (int streams : {1, 2}) {
    SCOPED_TRACE("http2_max_concurrent_streams " + std::to_string(streams));
    MockServer mock({.latency_ms = {40, 60}});
    NginxTls nginx(front_of(mock, {.max_concurrent_streams = streams}));
    LLMClient client(trusting(nginx.base_url(), {.concurrency_limit = 20}));
    BatchResult r = client.chat_completions_batch(prompts(200));
    EXPECT_EQ(r.summary.success, 200u) << first_failure(r);
    EXPECT_EQ(r.summary.retries, 0u);
    for (const BatchResultItem& item : r.items) EXPECT_EQ(item.attempts, 1) << item.index;
    EXPECT_EQ(mock.stats(false).requests, 200u);
    ASSERT_TRUE(nginx.wait_for_log_lines(200));
    EXPECT_LE(nginx.connections(), static_cast<size_t>(20 / streams + 1));
    EXPECT_GE(nginx.connections(), static_cast<size_t>(20 / streams) / 4)
        << "the client does use parallel connections when one carries so few streams";
  }
}

TEST_F(Tls, GoawayAfterKeepaliveRequestsIsRetriedTransparently) {
  MockServer mock({.latency_ms = {5, 20}});
  NginxTls nginx(front_of(mock, {.keepalive_requests = 100}));
  LLMClient client(trusting(nginx.base_url(), {.concurrency_limit = 300}));
  BatchResult r = client.chat_completions_batch(prompts(3000));
  EXPECT_EQ(r.summary.success, 3000u) << first_failure(r);
  EXPECT_EQ(r.summary.failed, 0u);
  EXPECT_EQ(r.summary.retries, 0u) << "streams nginx never processed are not attempts";
  size_t not_one = 0;
  for (const BatchResultItem& item : r.items) not_one += item.attempts != 1;
  EXPECT_EQ(not_one, 0u);
  const uint64_t requests = mock.stats(false).requests;
  EXPECT_GE(requests, 3000u);
  EXPECT_LE(requests, 3030u) << "nothing re-sent that nginx had passed on";
  ASSERT_TRUE(nginx.wait_for_log_lines(3000));
  const auto per = requests_per_connection(nginx);
  EXPECT_GE(per.size(), 30u) << "nginx closes a connection after 100 requests";
  for (const auto& [connection, n] : per) EXPECT_LE(n, 100u) << "connection " << connection;
  EXPECT_LE(full_handshakes(nginx), 2u)
      << "new connections resume the TLS session of an earlier one (of " << per.size() << ")";
}

// ---- a scripted HTTP/2 server: refused and reset streams, GOAWAY

TEST_F(Tls, RefusedStreamsAreRequeuedAndNotCountedAsAttempts) {
  H2TestServer server({.cert = pki_.server, .refuse_every = 3});
  LLMClient client(trusting(server.base_url(), {.concurrency_limit = 30}));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(client.chat_completions(user("one")).attempts, 1);
  BatchResult r = client.chat_completions_batch(prompts(300));
  EXPECT_EQ(r.summary.success, 300u) << first_failure(r);
  EXPECT_EQ(r.summary.retries, 0u);
  for (const BatchResultItem& item : r.items) {
    EXPECT_EQ(item.attempts, 1) << item.index;
    ASSERT_TRUE(item.result) << item.index;
    EXPECT_EQ(item.result->content, "ok");
  }
  H2TestServerCounters c = server.counters();
  EXPECT_GT(c.refused, 0u);
  EXPECT_EQ(c.answered, 306u);
  EXPECT_EQ(c.streams, c.answered + c.refused) << "each refused request came back once more";
}

TEST_F(Tls, AServerThatRefusesEveryStreamFailsTheRequestAfterTenRequeues) {
  H2TestServer server({.cert = pki_.server, .refuse_every = 1, .repeat_faults = true});
  LLMClient client(trusting(server.base_url(), {.retry_times = 0}));
  auto start = Clock::now();
  try {
    client.chat_completions(user("never"));
    ADD_FAILURE() << "the call succeeded";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "refused")) << e.what();
    EXPECT_TRUE(contains(e.what(), "127.0.0.1:" + std::to_string(server.port()))) << e.what();
  }
  EXPECT_LT(Clock::now() - start, 5s);
  H2TestServerCounters c = server.counters();
  EXPECT_EQ(c.streams, 11u) << "the first stream and 10 requeues";
  EXPECT_EQ(c.refused, 11u);
  EXPECT_EQ(c.answered, 0u);
}

TEST_F(Tls, GoawayMovesUnprocessedStreamsToANewConnection) {
  H2TestServer server({.cert = pki_.server, .max_concurrent_streams = 100, .goaway_after = 50});
  LLMClient client(trusting(server.base_url(), {.concurrency_limit = 100}));
  BatchResult r = client.chat_completions_batch(prompts(200));
  EXPECT_EQ(r.summary.success, 200u) << first_failure(r);
  EXPECT_EQ(r.summary.retries, 0u);
  for (const BatchResultItem& item : r.items) EXPECT_EQ(item.attempts, 1) << item.index;
  H2TestServerCounters c = server.counters();
  EXPECT_EQ(c.answered, 200u);
  EXPECT_GE(c.connections, 4u) << "each connection answers 50 streams at most";
  // And a call after all that still works (no connection left in a draining state takes it).
  EXPECT_EQ(client.chat_completions(user("after")).content, "ok");
}

TEST_F(Tls, AResetInTheMiddleOfAReplyIsARetriedFailure) {
  {
    H2TestServer server({.cert = pki_.server, .reset_every = 5});
    LLMClient client(trusting(server.base_url(), {.concurrency_limit = 20, .retry_times = 3}));
    BatchResult r = client.chat_completions_batch(prompts(200));
    EXPECT_EQ(r.summary.success, 200u) << first_failure(r);
    size_t twice = 0;
    for (const BatchResultItem& item : r.items) {
      EXPECT_LE(item.attempts, 2) << item.index;  // the server resets a request once at most
      twice += item.attempts == 2;
    }
    H2TestServerCounters c = server.counters();
    EXPECT_GT(c.reset, 0u);
    EXPECT_EQ(twice, c.reset) << "a reset stream is an attempt that failed";
    EXPECT_EQ(r.summary.retries, c.reset) << "one retry per reset stream";
    EXPECT_EQ(c.answered, 200u);
  }
  {
    H2TestServer server({.cert = pki_.server, .reset_every = 5});
    LLMClient client(trusting(server.base_url(), {.concurrency_limit = 20, .retry_times = 0}));
    BatchResult r = client.chat_completions_batch(prompts(100));
    H2TestServerCounters c = server.counters();
    EXPECT_EQ(r.summary.failed, c.reset);
    EXPECT_EQ(r.summary.success + r.summary.failed, 100u);
    EXPECT_GT(r.summary.failed, 0u);
    for (const BatchResultItem& item : r.items) {
      if (item.status != ItemStatus::error) continue;
      ASSERT_TRUE(item.error);
      EXPECT_EQ(item.error->kind(), ErrorKind::connection) << item.error->what();
      EXPECT_TRUE(item.error->retryable()) << item.error->what();
      EXPECT_TRUE(contains(item.error->what(), "reset")) << item.error->what();
      EXPECT_EQ(item.attempts, 1);
    }
  }
}

// ---- trust

// The single call's error, its type checked, with how long the call took.
template <class Expected>
std::pair<Error, Clock::duration> call_error(LLMClient& client) {
  const auto start = Clock::now();
  try {
    client.chat_completions(user("x"));
  } catch (const Expected& e) {
    return {e, Clock::now() - start};
  } catch (const Error& e) {
    ADD_FAILURE() << "wrong error type (kind " << to_string(e.kind()) << "): " << e.what();
    return {e, Clock::now() - start};
  }
  ADD_FAILURE() << "the call succeeded";
  return {Error(ErrorKind::http, "none"), Clock::now() - start};
}

TEST_F(Tls, AnUntrustedCertificateFailsFastOnceNamingTheServerAndTheReason) {
  MockServer mock;
  NginxTls nginx(front_of(mock));
  const std::string where = "127.0.0.1:" + std::to_string(nginx.port());
  // The test CA is in no system store. A retry would wait 2 s: the call must not take that long.
  LLMClient client(config(nginx.base_url(), {.timeout = 10s, .retry_delay = 2s}));
  auto [e, took] = call_error<ConnectionError>(client);
  EXPECT_EQ(e.kind(), ErrorKind::connection);
  EXPECT_FALSE(e.retryable());
  EXPECT_TRUE(contains(e.what(), where)) << e.what();
  EXPECT_TRUE(contains(e.what(), "unable to get local issuer certificate") ||
              contains(e.what(), "self-signed certificate"))
      << e.what();
  EXPECT_LT(took, 1500ms) << e.what();
  BatchResult r = client.chat_completions_batch(prompts(1));
  ASSERT_EQ(r.items.size(), 1u);
  EXPECT_EQ(r.items[0].status, ItemStatus::error);
  EXPECT_EQ(r.items[0].attempts, 1) << "a certificate problem is not retried";
  EXPECT_EQ(r.summary.retries, 0u);
  EXPECT_EQ(mock.stats(false).requests, 0u);
  EXPECT_TRUE(nginx.access_log().empty());
}

TEST_F(Tls, AnExpiredCertificateIsRejectedAsExpired) {
  MockServer mock;
  NginxTls nginx(front_of(mock, {.cert = pki_.expired}));
  LLMClient client(trusting(nginx.base_url()));
  auto [e, took] = call_error<ConnectionError>(client);
  EXPECT_FALSE(e.retryable());
  EXPECT_TRUE(contains(e.what(), "expired")) << e.what();
  EXPECT_TRUE(contains(e.what(), "127.0.0.1:" + std::to_string(nginx.port()))) << e.what();
  EXPECT_LT(took, 1500ms);
  EXPECT_EQ(mock.stats(false).requests, 0u);
}

TEST_F(Tls, ACertificateForAnotherNameIsRejectedAsAMismatch) {
  MockServer mock;
  const bool v6 = ipv6_loopback_available();
  NginxTls nginx(front_of(mock, {.cert = pki_.wrong_name, .ipv6_loopback = v6}));
  {
    LLMClient client(trusting(nginx.base_url("127.0.0.1")));
    auto [e, took] = call_error<ConnectionError>(client);
    EXPECT_FALSE(e.retryable());
    EXPECT_TRUE(contains(e.what(), "IP address mismatch")) << e.what();
  }
  {
    // "localhost" may resolve to 127.0.0.1 or ::1: nginx listens on both when it can.
    LLMClient client(trusting(nginx.base_url("localhost")));
    auto [e, took] = call_error<ConnectionError>(client);
    EXPECT_FALSE(e.retryable());
    EXPECT_TRUE(contains(e.what(), "hostname mismatch")) << e.what();
    EXPECT_TRUE(contains(e.what(), "localhost:" + std::to_string(nginx.port()))) << e.what();
  }
  EXPECT_EQ(mock.stats(false).requests, 0u);
}

TEST_F(Tls, VerifyTlsOffAcceptsACertificateForAnotherName) {
  MockServer mock;
  NginxTls nginx(front_of(mock, {.cert = pki_.wrong_name}));
  LLMClient client(config(nginx.base_url(), {.verify_tls = false}));
  EXPECT_EQ(client.chat_completions(user("x")).attempts, 1);
  EXPECT_EQ(client.chat_completions_stream(user("y")).result().finish_reason, "stop");
  EXPECT_EQ(mock.stats(false).requests, 2u);
}

TEST_F(Tls, AVerifyingClientNeverRidesOnAConnectionMadeWithoutVerification) {
  MockServer mock;
  NginxTls nginx(front_of(mock, {.cert = pki_.wrong_name}));
  // TLS settings of their own (paths no other test uses), so each gets a fresh context.
  const std::string ca_copy = dir_.file("ca-copy.pem");
  std::filesystem::copy_file(pki_.ca_pem, ca_copy);
  // A verifying client that never sends anything: its TLS context comes and goes.
  { LLMClient idle(trusting(nginx.base_url())); }
  // A client that does not verify connects, and its connection stays open.
  LLMClient lax(config(nginx.base_url(), {.verify_tls = false, .ca_cert = ca_copy}));
  EXPECT_EQ(lax.chat_completions(user("lax")).attempts, 1);
  // The verifying client again: the certificate is for another name, whatever is open already.
  LLMClient strict(trusting(nginx.base_url()));
  auto [e, took] = call_error<ConnectionError>(strict);
  EXPECT_TRUE(contains(e.what(), "mismatch")) << e.what();
  EXPECT_EQ(mock.stats(false).requests, 1u) << "only the lax client's request got through";
}

// ---- mTLS

TEST_F(Tls, AGatewayAskingForAClientCertificateGetsOne) {
  MockServer mock;
  NginxTls nginx(front_of(mock, {.client_ca = pki_.ca_pem}));
  {
    LLMClient client(trusting(nginx.base_url()));
    auto [e, took] = call_error<HttpError>(client);
    EXPECT_EQ(e.status(), 400);
    EXPECT_FALSE(e.retryable());
    EXPECT_TRUE(contains(e.what(), "No required SSL certificate was sent")) << e.what();
    EXPECT_EQ(mock.stats(false).requests, 0u);
  }
  LLMClient client(
      trusting(nginx.base_url(), {.client_cert = pki_.client.cert, .client_key = pki_.client.key}));
  ChatResult r = client.chat_completions(user("with a certificate"));
  EXPECT_EQ(r.attempts, 1);
  EXPECT_EQ(r.finish_reason, "stop");
  EXPECT_EQ(client.chat_completions_stream(user("streamed")).result().finish_reason, "stop");
  EXPECT_EQ(mock.stats(false).requests, 2u);
}

TEST_F(Tls, AClientCertificateIsPresentedOverHttp1Too) {
  MockServer mock;
  NginxTls nginx(front_of(mock, {.http2 = false, .client_ca = pki_.ca_pem}));
  {
    LLMClient client(trusting(nginx.base_url()));
    auto [e, took] = call_error<HttpError>(client);
    EXPECT_EQ(e.status(), 400);
    EXPECT_TRUE(contains(e.what(), "No required SSL certificate was sent")) << e.what();
  }
  LLMClient client(
      trusting(nginx.base_url(), {.client_cert = pki_.client.cert, .client_key = pki_.client.key}));
  EXPECT_EQ(client.chat_completions(user("with a certificate")).attempts, 1);
  EXPECT_EQ(mock.stats(false).requests, 1u);
  ASSERT_TRUE(nginx.wait_for_log_lines(2));
  for (const std::string& line : nginx.access_log())
    EXPECT_TRUE(contains(line, "HTTP/1.1")) << line;
}

// ---- a server without HTTP/2

TEST_F(Tls, AnHttp1OnlyServerIsHandedToLibcurl) {
  MockServer mock({.echo = true});
  NginxTls nginx(front_of(mock, {.http2 = false}));
  LLMClient client(trusting(nginx.base_url(), {.concurrency_limit = 10}));
  ChatResult r = client.chat_completions(user("first"));
  EXPECT_EQ(r.content, "first");
  EXPECT_EQ(r.attempts, 1) << "the hand-over is not an attempt";
  EXPECT_EQ(client.chat_completions_stream(user("streamed")).result().content, "streamed");
  BatchResult batch = client.chat_completions_batch(prompts(50));
  EXPECT_EQ(batch.summary.success, 50u) << first_failure(batch);
  EXPECT_EQ(batch.summary.retries, 0u);
  for (const BatchResultItem& item : batch.items) {
    EXPECT_EQ(item.attempts, 1) << item.index;
    EXPECT_EQ(item.content(), "p" + std::to_string(item.index));
  }
  EXPECT_EQ(mock.stats(false).requests, 52u);
  ASSERT_TRUE(nginx.wait_for_log_lines(52));
  for (const std::string& line : nginx.access_log())
    EXPECT_TRUE(contains(line, "HTTP/1.1")) << line;
}

// ---- a proxy: HTTPS goes through a CONNECT tunnel (libcurl), with the same trust settings

TEST_F(Tls, HttpsThroughAConnectProxyWorksWithTheSameTrust) {
  MockServer mock({.echo = true});
  NginxTls nginx(front_of(mock));
  ConnectProxy proxy;
  ClientConfig through = trusting(nginx.base_url(), {.concurrency_limit = 8});
  through.proxy = proxy.url();  // (config() clears it: the tests' default is no proxy)
  LLMClient client(through);
  EXPECT_EQ(client.chat_completions(user("tunnelled")).content, "tunnelled");
  BatchResult batch = client.chat_completions_batch(prompts(40));
  EXPECT_EQ(batch.summary.success, 40u) << first_failure(batch);
  EXPECT_GE(proxy.tunnels(), 1u);
  for (const std::string& target : proxy.targets())
    EXPECT_EQ(target, "127.0.0.1:" + std::to_string(nginx.port()));
  EXPECT_EQ(mock.stats(false).requests, 41u);
  // Without the CA, the tunnel is there but the certificate is not trusted: a clear refusal —
  // and no ride on the connection the trusting client verified (libcurl shares connections only
  // between equal trust settings, so the CA file is an option, not a callback).
  ClientConfig bare = config(nginx.base_url(), {.retry_times = 0});
  bare.proxy = proxy.url();
  LLMClient untrusting(bare);
  Error e = error_of([&] { untrusting.chat_completions(user("x")); });
  EXPECT_FALSE(e.retryable()) << e.what();
  EXPECT_TRUE(contains(e.what(), "certificate")) << e.what();
}

// ---- the command trusts SSL_CERT_FILE

TEST_F(Tls, TheCommandTrustsTheCasOfSslCertFile) {
  MockServer mock({.models = {"tls-model-a", "tls-model-b"}});
  NginxTls nginx(front_of(mock));
  CliOptions o;
  o.cwd = dir_.path();
  o.env = {{"SSL_CERT_FILE", pki_.ca_pem}};
  CliResult r = run_cli({"models", "--base-url", nginx.base_url()}, o);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "tls-model-a\ntls-model-b\n") << r.err;
  r = run_cli({"ask", "--base-url", nginx.base_url(), "--no-stream", "hi"}, o);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(r.out.empty());

  o.env.clear();
  r = run_cli({"models", "--base-url", nginx.base_url()}, o);
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "unable to get local issuer certificate") ||
              contains(r.err, "self-signed certificate"))
      << r.err;
  EXPECT_TRUE(contains(r.err, "127.0.0.1:" + std::to_string(nginx.port()))) << r.err;
  EXPECT_EQ(mock.stats(false).requests, 1u) << "only the ask with SSL_CERT_FILE got through";
}

// ---- the client's usual behaviour, over TLS + HTTP/2

TEST_F(Tls, AsyncFanOutKeepsEveryResultWithItsRequest) {
  MockServer mock({.latency_ms = {1, 30}, .echo = true});
  NginxTls nginx(front_of(mock));
  LLMClient client(trusting(nginx.base_url(), {.concurrency_limit = 32}));
  std::vector<std::future<ChatResult>> futures;
  for (int i = 0; i < 300; ++i)
    futures.push_back(client.chat_completions_async(user("n" + std::to_string(i))));
  for (int i = 0; i < 300; ++i) EXPECT_EQ(futures[i].get().content, "n" + std::to_string(i));
  EXPECT_EQ(mock.stats(false).requests, 300u);
}

TEST_F(Tls, ConcurrencyLimitIsReachedAndNeverExceeded) {
  MockServer mock({.latency_ms = {10, 40}});
  NginxTls nginx(front_of(mock));
  LLMClient client(trusting(nginx.base_url(), {.concurrency_limit = 7}));
  std::vector<std::future<ChatResult>> futures;
  for (int i = 0; i < 150; ++i)
    futures.push_back(client.chat_completions_async(user("c" + std::to_string(i))));
  for (auto& f : futures) f.get();
  EXPECT_EQ(mock.stats(false).max_in_flight, 7u);
  ASSERT_TRUE(nginx.wait_for_log_lines(150));
  EXPECT_EQ(nginx.connections(), 1u) << "7 streams fit on one connection";
}

TEST_F(Tls, APoolFailsOverWhenAnHttpsEndpointGoesDown) {
  MockServer mock_a({.echo = true}), mock_b({.echo = true});
  NginxTls a(front_of(mock_a)), b(front_of(mock_b));
  PoolConfig pc;
  pc.load_balance = LoadBalance::round_robin;
  pc.endpoints = {{.base_url = a.base_url(), .api_key = "k", .model = "mock-model", .proxy = ""},
                  {.base_url = b.base_url(), .api_key = "k", .model = "mock-model", .proxy = ""}};
  pc.defaults = trusting("https://unused.invalid", {.retry_times = 3});
  LLMClientPool pool(pc);
  BatchResult first = pool.chat_completions_batch(prompts(100));
  EXPECT_EQ(first.summary.success, 100u) << first_failure(first);
  EXPECT_GT(mock_a.stats(false).requests, 20u);
  EXPECT_GT(mock_b.stats(false).requests, 20u);

  b.stop();  // its open connections die with it
  mock_a.reset_stats();
  mock_b.reset_stats();
  BatchResult second = pool.chat_completions_batch(prompts(200, "q"));
  EXPECT_EQ(second.summary.success, 200u) << first_failure(second);
  for (const BatchResultItem& item : second.items)
    EXPECT_EQ(item.content(), "q" + std::to_string(item.index));
  EXPECT_EQ(mock_a.stats(false).requests, 200u);
  EXPECT_EQ(mock_b.stats(false).requests, 0u);
  std::vector<EndpointStats> st = pool.stats();
  ASSERT_EQ(st.size(), 2u);
  EXPECT_TRUE(st[0].healthy);
  EXPECT_FALSE(st[1].healthy);
  EXPECT_GE(st[1].failed, 3u);
}

TEST_F(Tls, ABatchCheckpointOverHttpsResumesWithoutResending) {
  MockServer mock({.latency_ms = {1, 10}, .echo = true});
  NginxTls nginx(front_of(mock));
  LLMClient client(trusting(nginx.base_url(), {.concurrency_limit = 16}));
  const std::string out = dir_.file("out.jsonl");
  auto inputs = prompts(100);
  std::vector<json> first(inputs.begin(), inputs.begin() + 60);
  BatchResult r1 = client.chat_completions_batch(first, {.output_file = out});
  EXPECT_EQ(r1.summary.success, 60u) << first_failure(r1);
  mock.reset_stats();
  BatchResult r2 = client.chat_completions_batch(inputs, {.output_file = out});
  EXPECT_EQ(r2.summary.restored, 60u);
  EXPECT_EQ(r2.summary.success, 40u) << first_failure(r2);
  for (size_t i = 0; i < 100; ++i) {
    EXPECT_EQ(r2.items[i].status, i < 60 ? ItemStatus::restored : ItemStatus::success) << i;
    EXPECT_EQ(r2.items[i].content(), "p" + std::to_string(i));
  }
  MockStats st = mock.stats();
  EXPECT_EQ(st.requests, 40u);
  std::set<std::string> asked;
  for (const mock::Arrival& a : st.arrivals) asked.insert(a.last_user);
  EXPECT_EQ(asked.count("p0"), 0u);
  EXPECT_EQ(asked.count("p99"), 1u);
}

}  // namespace
}  // namespace flexllm::test
