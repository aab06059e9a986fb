// flexllm mock LLM server: an OpenAI-compatible test and benchmark endpoint.
//
// One event-loop thread (libevent) serves every connection, so it holds tens of thousands of
// concurrent requests. Tests start it in-process on an ephemeral port with per-test knobs:
//
//   flexllm::mock::MockServer mock({.latency_ms = {50, 50}, .faults = {.http_error = 0.1}});
//   auto url = mock.base_url();            // "http://127.0.0.1:41234/v1"
//   ... drive a client against url ...
//   EXPECT_EQ(mock.stats().count(flexllm::mock::Outcome::http_error), 3u);
//
// The same server is `flexllm mock` on the command line.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace flexllm::mock {

namespace detail {
struct ServerState;
}

// An inclusive range [min, max]; a single value when min == max.
struct Range {
  uint32_t min = 0;
  uint32_t max = 0;

  // "N" or "A-B" (non-negative integers); throws std::invalid_argument on anything else.
  static Range parse(std::string_view text);
};

// How the mock returns reasoning ("thinking") text.
enum class ThinkingMode {
  none,   // no reasoning
  field,  // message.reasoning_content (and delta.reasoning_content when streaming)
  tags,   // "<think>…</think>" at the start of the content
};

// Fault injection rates, each a probability in [0, 1]; their sum must not exceed 1. Exactly one
// outcome is drawn per chat request, the way MockConfig::fault_draws says.
struct FaultRates {
  double http_error = 0;  // HTTP MockConfig::error_status, OpenAI-shaped body (after the latency)
  double rate_429 = 0;    // HTTP 429 at once, with Retry-After, retry-after-ms, x-ratelimit-*
  double drop = 0;        // connection closed without a reply (after the latency)
  double hang = 0;        // request accepted, never answered; held until the client goes away
  double malformed = 0;   // HTTP 200 whose JSON body (or one stream event) is not valid JSON
  double truncate = 0;    // stream stops half-way: no finish_reason, no [DONE], connection closed;
                          // non-stream: Content-Length promises the full body, half is sent
};

// How each chat request's outcome is drawn from FaultRates; both are reproducible from the seed.
enum class FaultDraws {
  // The default. Each request's outcome drawn on its own (splitmix64 of the seed and the
  // request's sequence number, uniform in [0, 1)): runs of consecutive faults happen as they do
  // in real life (a retry can fail again, and again), and counts wander as a binomial's do.
  independent,
  // A low-discrepancy sequence (golden-ratio steps from a seeded offset): every rate holds within
  // a handful of requests over any window, for tests that need exact counts. The price: a kind
  // below a 0.38 rate never hits two requests in a row, so runs of failures never happen.
  even,
};

struct MockConfig {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0 = pick a free port
  uint64_t seed = 0;  // content, latencies and faults are reproducible from it
  // Names listed by GET /v1/models; the first is the reply's model when a request names none.
  std::vector<std::string> models = {"mock-model"};
  Range latency_ms{0, 0};         // time to the reply (first byte of a stream)
  double token_rate = 0;          // stream pacing in tokens/s; 0 = send the whole stream at once
  Range response_tokens{16, 64};  // answer length in tokens (one word = one token)
  Range reasoning_tokens{16, 48};
  bool echo = false;  // the answer is the last user message, verbatim
  ThinkingMode thinking = ThinkingMode::none;
  FaultRates faults{};
  FaultDraws fault_draws = FaultDraws::independent;
  // Status of FaultRates::http_error replies (500 by default; any 4xx/5xx to test a client's
  // retry policy). A 401 quotes the request's bearer token back, as some servers do.
  int error_status = 500;
  std::chrono::milliseconds retry_after{1000};  // hint sent with injected 429s
  // Requests above this rate get 429 at once (token bucket, capacity qps_burst); 0 = no limit.
  double max_qps = 0;
  double qps_burst = 0;          // 0 = max(1, max_qps): one second's worth
  std::string log_file{};        // JSONL line per chat request (with its body) when not empty
  bool record_bodies = false;    // keep each request body in Arrival::body (tests inspect them)
  size_t max_arrivals = 200000;  // arrivals kept for stats(); older ones are counted, not kept
  // Bounds on what one connection can make the server hold or wait for. A request head is at most
  // 64 KiB (431 beyond); a body at most max_body_bytes (413 beyond, chunked or not). A head must
  // arrive whole within header_timeout of its first byte, and a body must not pause longer than
  // body_timeout; otherwise the request is answered 408 and the connection closed. An idle
  // keep-alive connection (no byte of a next request) is kept.
  size_t max_body_bytes = 64 * 1024 * 1024;  // room for inline images
  std::chrono::milliseconds header_timeout{30000};
  std::chrono::milliseconds body_timeout{60000};

  // Throws std::invalid_argument naming the offending field.
  void validate() const;
};

// What the mock did with a chat request.
enum class Outcome : uint8_t {
  ok,
  http_error,
  rate_limited,  // injected 429 (FaultRates::rate_429)
  qps_limited,   // 429 from max_qps
  dropped,
  hung,
  malformed,
  truncated,
  bad_request,  // 400: body not JSON, or no messages
};
inline constexpr size_t kOutcomeCount = 9;
std::string_view to_string(Outcome outcome);

struct Arrival {
  uint64_t seq = 0;  // 1-based order of arrival
  std::chrono::steady_clock::time_point at;
  Outcome outcome = Outcome::ok;
  bool stream = false;
  std::string last_user;  // the last user message's text (first 256 bytes)
  std::string body;       // the whole request body when MockConfig::record_bodies
};

struct MockStats {
  uint64_t requests = 0;        // chat completion requests
  uint64_t other_requests = 0;  // /v1/models, /mock/*, unknown paths
  std::array<uint64_t, kOutcomeCount> by_outcome{};
  uint64_t in_flight = 0;      // chat requests accepted and not yet fully answered
  uint64_t max_in_flight = 0;  // the most in flight at any moment since start/reset
  uint64_t connections_open = 0;
  uint64_t connections_total = 0;
  uint64_t max_connections_open = 0;
  uint64_t arrivals_dropped = 0;  // arrivals beyond max_arrivals (oldest are dropped first)
  // Request bytes the parser looked at (searching for a head's end, parsing it, decoding chunked
  // bodies): a small multiple of the bytes received however they were split, never their square.
  uint64_t bytes_parsed = 0;
  // The most bytes held for one connection at once: request bytes received and not yet parsed
  // plus reply bytes not yet sent (a body being received is not counted: max_body_bytes bounds
  // it). The bounds keep it within about 64 KiB + 1 MiB + the largest reply.
  uint64_t max_buffered_bytes = 0;
  std::vector<Arrival> arrivals;

  uint64_t count(Outcome outcome) const { return by_outcome[static_cast<size_t>(outcome)]; }
  // The stats as the JSON document GET /mock/stats serves.
  std::string to_json(std::chrono::steady_clock::time_point epoch, bool with_arrivals) const;
};

class MockServer {
 public:
  // Binds (throws std::system_error when it cannot) and starts serving on its own thread.
  explicit MockServer(MockConfig config = {});
  ~MockServer();  // stops, closing every connection
  MockServer(const MockServer&) = delete;
  MockServer& operator=(const MockServer&) = delete;

  uint16_t port() const;
  std::string base_url() const;  // "http://HOST:PORT/v1"

  MockStats stats(bool with_arrivals = true) const;
  void reset_stats();
  // Blocks until `done(stats)` holds (re-checked whenever the stats change) or `timeout` passes;
  // returns whether it held. Arrivals are not included in the stats `done` sees.
  bool wait_for(const std::function<bool(const MockStats&)>& done,
                std::chrono::milliseconds timeout) const;
  // Replaces the knobs for requests arriving from now on (host and port are kept).
  void update(MockConfig config);
  // The moment the server started; Arrival::at and /mock/stats times count from here.
  std::chrono::steady_clock::time_point epoch() const;
  void stop();  // idempotent

 private:
  std::unique_ptr<detail::ServerState> impl_;
};

}  // namespace flexllm::mock
