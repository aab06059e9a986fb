// Which fault (if any) a chat request gets. Pure: a function of the rates, the draw mode, the seed
// and the request's sequence number, so tests can examine long sequences without a server.
#pragma once

#include <cstdint>

#include "flexllm/mock/server.hpp"

namespace flexllm::mock::detail {

// The outcome of the `seq`-th chat request (1-based): Outcome::ok or one of the fault kinds.
Outcome draw_fault(const FaultRates& rates, FaultDraws draws, uint64_t seed, uint64_t seq);

}  // namespace flexllm::mock::detail
