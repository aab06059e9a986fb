// Shared helpers for the client's integration tests: a mock server plus a client pointed at it.
#pragma once

#include <gtest/gtest.h>

#include <flexllm/flexllm.hpp>
#include <flexllm/mock/server.hpp>

#include <map>
#include <memory>
#include <mutex>

#include "tls_fixture.hpp"

namespace flexllm::test {

using namespace std::chrono_literals;
using mock::MockConfig;
using mock::MockServer;
using mock::MockStats;
using mock::Outcome;

inline json user(const std::string& text) {
  return json::array({{{"role", "user"}, {"content", text}}});
}

// `n` one-message inputs "<prefix>0", "<prefix>1", … (an echoing mock answers each with its text).
inline std::vector<json> prompts(size_t n, const std::string& prefix = "p") {
  std::vector<json> out;
  for (size_t i = 0; i < n; ++i) out.push_back(user(prefix + std::to_string(i)));
  return out;
}

// One OpenAI-style tool, get_weather(city), for tool-call tests.
inline json weather_tools() {
  return json::array({{{"type", "function"},
                       {"function",
                        {{"name", "get_weather"},
                         {"parameters",
                          {{"type", "object"},
                           {"properties", {{"city", {{"type", "string"}}}}},
                           {"required", {"city"}}}}}}}});
}

// A client for `mock` with fast retries; `tweak` adjusts the config.
// With FLEXLLM_TEST_TRANSPORT=tls, the https:// URL of a TLS + HTTP/2 front (nginx, trusting a
// CA made for the run) of `mock`: one per mock port, kept until the process ends.
inline std::string tls_front_of(const MockServer& mock, std::string& ca_pem) {
  static std::mutex mu;
  static TempDir dir("flexllm_tls_front");
  static TestPki pki(dir.path());
  static std::map<uint16_t, std::unique_ptr<NginxTls>> fronts;
  std::lock_guard lock(mu);
  std::unique_ptr<NginxTls>& front = fronts[mock.port()];
  if (!front)
    front =
        std::make_unique<NginxTls>(NginxOptions{.cert = pki.server, .upstream_port = mock.port()});
  ca_pem = pki.ca_pem;
  return front->base_url();
}

inline ClientConfig config_for(const MockServer& mock, ClientConfig c = {}) {
  c.base_url = mock.base_url();
  if (c.api_key.empty()) c.api_key = "sk-test-key";
  if (c.model.empty()) c.model = "mock-model";
  c.proxy = "";  // loopback never goes through a proxy from the environment
  // CTest runs these tests once per transport (tests/integration/CMakeLists.txt): the native
  // one, libcurl, and the native TLS + HTTP/2 one through an nginx front.
  if (c.transport == Transport::automatic && env("FLEXLLM_TEST_TRANSPORT") == "curl")
    c.transport = Transport::curl;
  if (env("FLEXLLM_TEST_TRANSPORT") == "tls") c.base_url = tls_front_of(mock, c.ca_cert);
  return c;
}

// The base URL a client of `mock` made with config_for() talks to (results and errors name it).
inline std::string url_for(const MockServer& mock) {
  return config_for(mock).base_url;
}

// Runs `fn` and returns the flexllm::Error it throws (fails the test when it throws none).
template <class F>
Error error_of(F&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "no flexllm::Error was thrown";
  return Error(ErrorKind::http, "none");
}

}  // namespace flexllm::test
