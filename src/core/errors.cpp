#include "flexllm/errors.hpp"

#include <utility>

namespace flexllm {

const char* to_string(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::http: return "http";
    case ErrorKind::rate_limited: return "rate_limited";
    case ErrorKind::timeout: return "timeout";
    case ErrorKind::connection: return "connection";
    case ErrorKind::parse: return "parse";
    case ErrorKind::truncated: return "truncated";
    case ErrorKind::provider: return "provider";
    case ErrorKind::invalid_request: return "invalid_request";
    case ErrorKind::budget_exceeded: return "budget_exceeded";
    case ErrorKind::cancelled: return "cancelled";
    case ErrorKind::checkpoint: return "checkpoint";
  }
  return "unknown";
}

std::string display_url(std::string_view url) {
  const size_t at = url.rfind('@');
  if (at == std::string_view::npos) return std::string(url);
  const size_t scheme = url.find("://");
  const size_t host = scheme == std::string_view::npos || scheme > at ? 0 : scheme + 3;
  std::string out(url.substr(0, host));
  out.append("***").append(url.substr(at));
  return out;
}

Error::Error(ErrorKind kind, std::string message, std::string endpoint, int status,
             std::string body, bool retryable)
    : std::runtime_error(std::move(message)),
      kind_(kind),
      endpoint_(std::move(endpoint)),
      status_(status),
      body_(std::move(body)),
      retryable_(retryable) {}

CheckpointError::CheckpointError(Reason reason, std::string message, std::string path)
    : Error(ErrorKind::checkpoint, std::move(message)), reason_(reason), path_(std::move(path)) {}

void Error::rethrow() const {
  // Batch items and futures carry a plain Error; callers catch by subclass, so the dynamic type
  // is rebuilt from kind() here, in one place.
  switch (kind_) {
    case ErrorKind::http: throw HttpError(*this);
    case ErrorKind::rate_limited: throw RateLimitedError(*this);
    case ErrorKind::timeout: throw TimeoutError(*this);
    case ErrorKind::connection: throw ConnectionError(*this);
    case ErrorKind::parse: throw ParseError(*this);
    case ErrorKind::truncated: throw TruncatedError(*this);
    case ErrorKind::provider: throw ProviderError(*this);
    case ErrorKind::invalid_request: throw InvalidRequestError(*this);
    case ErrorKind::budget_exceeded: throw BudgetExceededError(*this);
    case ErrorKind::cancelled: throw CancelledError(*this);
    case ErrorKind::checkpoint: throw CheckpointError(*this);
  }
  throw *this;  // an out-of-range kind: still an Error
}

}  // namespace flexllm
