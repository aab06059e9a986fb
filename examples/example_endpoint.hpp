// Where the examples send their requests: the endpoint in FLEXLLM_BASE_URL / OPENAI_BASE_URL
// (with FLEXLLM_API_KEY / OPENAI_API_KEY and FLEXLLM_MODEL / OPENAI_MODEL), or, when none is set,
// an in-process mock server so every example runs out of the box.
#pragma once

#include <flexllm/flexllm.hpp>
#include <flexllm/mock/server.hpp>
#include <iostream>
#include <memory>

namespace example {

struct Endpoint {
  std::unique_ptr<flexllm::mock::MockServer> mock;  // set when no real endpoint is configured
  flexllm::ClientConfig config;
};

inline std::string first_env(const char* a, const char* b) {
  std::string v = flexllm::env(a);
  return v.empty() ? flexllm::env(b) : v;
}

inline Endpoint endpoint(flexllm::mock::MockConfig mock_config = {}) {
  Endpoint ep;
  ep.config.base_url = first_env("FLEXLLM_BASE_URL", "OPENAI_BASE_URL");
  ep.config.api_key = first_env("FLEXLLM_API_KEY", "OPENAI_API_KEY");
  ep.config.model = first_env("FLEXLLM_MODEL", "OPENAI_MODEL");
  if (ep.config.base_url.empty()) {
    ep.mock = std::make_unique<flexllm::mock::MockServer>(std::move(mock_config));
    ep.config.base_url = ep.mock->base_url();
    ep.config.model = "mock-model";
    ep.config.proxy = "";
    std::cerr << "(no FLEXLLM_BASE_URL set: using an in-process mock at " << ep.config.base_url
              << ")\n";
  }
  return ep;
}

}  // namespace example
