// A small TLS + HTTP/2 server (libnghttp2's server API, OpenSSL) for what nginx cannot do on
// demand: refuse every k-th stream, reset every k-th stream in the middle of its reply, or send
// GOAWAY after N streams on a connection. Everything else is answered at once with 200 and a fixed
// OpenAI chat completion (content "ok", with usage). One thread with its own poll loop serves
// every connection; ALPN offers h2 only.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tls_fixture.hpp"

namespace flexllm::test {

struct H2TestServerOptions {
  CertFiles cert{};                       // what the server presents
  uint32_t max_concurrent_streams = 100;  // SETTINGS_MAX_CONCURRENT_STREAMS it advertises
  // After the N-th stream of a connection: GOAWAY (NO_ERROR) with last_stream_id = that stream;
  // later streams are left unprocessed, and the connection closes once the rest is answered.
  int goaway_after = 0;
  // RST_STREAM REFUSED_STREAM on every k-th stream (counted over all connections) once its
  // request is in, before any reply.
  int refuse_every = 0;
  // RST_STREAM INTERNAL_ERROR on every k-th stream right after its response HEADERS (a failure
  // in the middle of the reply). A stream that is both is refused.
  int reset_every = 0;
  // Whether a request that was refused or reset once (told apart by its body) may be again. Off:
  // it is answered when it comes back. The every-k-th patterns are deterministic, and a client
  // that resends a request in a fixed place of its next burst could otherwise meet them in step,
  // the same request failing every time.
  bool repeat_faults = false;
  // Response header fields added to every answer (tests of the client's bounds on a reply head).
  std::vector<std::pair<std::string, std::string>> extra_headers{};
};

struct H2TestServerCounters {
  uint64_t streams = 0;      // requests received (beyond a GOAWAY's last stream: not counted)
  uint64_t answered = 0;     // 200 with the completion
  uint64_t refused = 0;      // REFUSED_STREAM
  uint64_t reset = 0;        // INTERNAL_ERROR after the response headers
  uint64_t connections = 0;  // accepted
};

class H2TestServer {
 public:
  // Listens on 127.0.0.1 (a free port) and serves on its own thread; throws std::runtime_error
  // when it cannot.
  explicit H2TestServer(H2TestServerOptions options);
  ~H2TestServer();  // stops, closing every connection
  H2TestServer(const H2TestServer&) = delete;
  H2TestServer& operator=(const H2TestServer&) = delete;

  uint16_t port() const { return port_; }
  std::string base_url() const;  // "https://127.0.0.1:PORT/v1"
  H2TestServerCounters counters() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  uint16_t port_ = 0;
  std::thread thread_;
};

}  // namespace flexllm::test
