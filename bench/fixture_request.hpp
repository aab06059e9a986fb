// The shared benchmark request (../shared/bench/fixtures/request.json) with its report id varied
// per request, so every request is distinct.
#pragma once

#include <cstdio>
#include <string>

#include <flexllm/flexllm.hpp>

namespace bench {

inline flexllm::json fixture_messages(size_t i) {
  char id[24];
  std::snprintf(id, sizeof id, "%06zu", i);
  return flexllm::json::array(
      {{{"role", "system"},
        {"content", "You are a concise assistant that summarises business documents."}},
       {{"role", "user"},
        {"content",
         std::string("Summarise the attached quarterly report in two sentences, focusing on "
                     "revenue growth and margins. Report id: ") +
             id}}});
}

}  // namespace bench
