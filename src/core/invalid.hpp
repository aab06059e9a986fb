// The one way the library rejects a request or a configuration before any I/O.
#pragma once

#include <string>
#include <utility>

#include "flexllm/errors.hpp"

namespace flexllm::detail {

// Throws InvalidRequestError with `message` (which names the offending field or input).
[[noreturn]] inline void invalid(std::string message) {
  throw InvalidRequestError(Error(ErrorKind::invalid_request, std::move(message)));
}

}  // namespace flexllm::detail
