// Test-side HTTP over real sockets: libcurl (easy and multi) and raw TCP, for driving the mock
// server. Independent of the flexllm client on purpose: the mock's tests must not depend on the
// code the mock exists to test.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace flexllm::test {

using json = nlohmann::json;
using namespace std::chrono_literals;

struct HttpRequest {
  std::string method = "POST";
  std::string url;
  std::string body;
  std::vector<std::string> headers = {"Content-Type: application/json"};
  bool fresh_connection = false;  // no connection reuse (so curl never re-sends on a dead one)
};

struct HttpResponse {
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // names lower-cased
  int curl_code = 0;                           // CURLcode; 0 = the transfer completed
  std::string error;
  // Arrival time of each piece of the body, relative to the start of the request.
  std::vector<std::pair<std::chrono::duration<double>, size_t>> chunks;
  std::chrono::duration<double> elapsed{};

  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
  json json_body() const { return json::parse(body); }
};

HttpResponse http(const HttpRequest& request, std::chrono::milliseconds timeout = 10s);
HttpResponse http_get(const std::string& url, std::chrono::milliseconds timeout = 10s);

// Runs every request with at most `parallel` in flight; results are aligned with `requests`.
std::vector<HttpResponse> http_parallel(const std::vector<HttpRequest>& requests, size_t parallel,
                                        std::chrono::milliseconds timeout);

// Sends `bytes` on a fresh TCP connection to 127.0.0.1:port and returns everything received until
// the server closes or `quiet` passes without data (bounded by `limit` overall).
std::string raw_exchange(uint16_t port, const std::string& bytes,
                         std::chrono::milliseconds quiet = 300ms,
                         std::chrono::milliseconds limit = 5s);

// A chat request body with one user message.
std::string chat_body(const std::string& user, bool stream = false, json extra = json::object());

// The `data:` payloads of an SSE body, in order.
std::vector<std::string> sse_data(const std::string& body);

}  // namespace flexllm::test
