// The typed errors single calls throw. Each says what failed, at which endpoint, and
// whether retrying could help; none ever contains an API key.
#pragma once

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace flexllm {

enum class ErrorKind {
  http,             // the server answered with an error status (HttpError)
  rate_limited,     // 429 after the retries, or a Retry-After beyond max_retry_delay
  timeout,          // connect, per-attempt or stream-idle timeout
  connection,       // refused, reset, DNS, TLS, closed without a reply
  parse,            // a reply that is not the JSON it should be
  truncated,        // a stream that ended without its terminator / finish_reason
  provider,         // an error reported inside a 200 reply or a stream (in-band)
  invalid_request,  // rejected before any network I/O (bad messages or options)
  budget_exceeded,  // the cost budget stopped the work
  cancelled,        // the client was closed or the stream abandoned
  checkpoint,       // a batch's output file cannot be used or written (CheckpointError)
};
const char* to_string(ErrorKind kind) noexcept;

// `url` as flexllm shows it (error messages and Error::endpoint(), ChatResult::endpoint, progress,
// logs): the user info of a URL ("http://user:password@host/v1") replaced by "***"
// ("http://***@host/v1"). Everything up to the URL's last '@' counts as user info, so a password
// holding '/' or '#' is hidden too (a path with an '@' then shows less of itself).
std::string display_url(std::string_view url);

// Base of every flexllm error. A copyable value: batch items carry one; rethrow() raises the
// matching subclass so callers can catch by type.
class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string message, std::string endpoint = {}, int status = 0,
        std::string body = {}, bool retryable = false);

  ErrorKind kind() const noexcept { return kind_; }
  bool retryable() const noexcept { return retryable_; }
  const std::string& endpoint() const noexcept { return endpoint_; }
  int status() const noexcept { return status_; }             // HTTP status, 0 when none
  const std::string& body() const noexcept { return body_; }  // error body (capped excerpt)
  // The server's retry hint (Retry-After / retry-after-ms / x-ratelimit-reset-*), if any.
  std::optional<std::chrono::milliseconds> retry_after() const noexcept { return retry_after_; }
  void set_retry_after(std::optional<std::chrono::milliseconds> v) noexcept { retry_after_ = v; }

  [[noreturn]] void rethrow() const;

 private:
  ErrorKind kind_;
  std::string endpoint_;
  int status_;
  std::string body_;
  bool retryable_;
  std::optional<std::chrono::milliseconds> retry_after_;
};

class HttpError : public Error {
 public:
  explicit HttpError(const Error& e) : Error(e) {}
};
class RateLimitedError : public HttpError {
 public:
  explicit RateLimitedError(const Error& e) : HttpError(e) {}
};
#define FLEXLLM_ERROR_TYPE(Name)                \
  class Name : public Error {                   \
   public:                                      \
    explicit Name(const Error& e) : Error(e) {} \
  }
FLEXLLM_ERROR_TYPE(TimeoutError);
FLEXLLM_ERROR_TYPE(ConnectionError);
FLEXLLM_ERROR_TYPE(ParseError);
FLEXLLM_ERROR_TYPE(TruncatedError);
FLEXLLM_ERROR_TYPE(ProviderError);
FLEXLLM_ERROR_TYPE(InvalidRequestError);
FLEXLLM_ERROR_TYPE(BudgetExceededError);
FLEXLLM_ERROR_TYPE(CancelledError);
#undef FLEXLLM_ERROR_TYPE

// A batch's output file (its checkpoint) cannot be used or written: thrown by the batch calls and
// the batch iterator, never carried by an item. docs/checkpoint.md has the rules.
class CheckpointError : public Error {
 public:
  enum class Reason {
    locked,            // another run holds the file (its lock file names the process)
    not_a_checkpoint,  // an existing file that is not a flexllm checkpoint: left unchanged
    different_job,     // a checkpoint of other inputs, model or options: left unchanged
    io,                // reading or writing failed (the message has the OS error)
  };
  CheckpointError(Reason reason, std::string message, std::string path);
  explicit CheckpointError(const Error& e) : Error(e) {}
  Reason reason() const noexcept { return reason_; }
  const std::string& path() const noexcept { return path_; }

 private:
  Reason reason_ = Reason::io;
  std::string path_;
};

}  // namespace flexllm
