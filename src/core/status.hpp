// Which HTTP statuses are worth another attempt: the one list the retry policy and the
// providers' in-band error codes share.
#pragma once

#include <cstdint>

namespace flexllm::detail {

// 408, 409, 429, 500, 502, 503, 504, 529: transient. Every other 4xx never is.
constexpr bool retryable_status(int64_t status) noexcept {
  switch (status) {
    case 408:
    case 409:
    case 429:
    case 500:
    case 502:
    case 503:
    case 504:
    case 529: return true;
    default: return false;
  }
}

}  // namespace flexllm::detail
