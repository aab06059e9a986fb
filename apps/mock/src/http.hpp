// Incremental HTTP/1.x request parsing for the mock server. Pure functions over bytes, so they are
// unit-tested without sockets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace flexllm::mock::detail {

inline constexpr size_t kMaxHeaderBytes = 64 * 1024;
inline constexpr size_t kMaxBodyBytes = 64 * 1024 * 1024;  // room for inline images

struct RequestHead {
  std::string method;
  std::string path;         // target without the query
  std::string query;        // after '?', may be empty
  size_t header_bytes = 0;  // request line + headers + the blank line
  size_t content_length = 0;
  bool chunked = false;
  bool http11 = true;
  bool keep_alive = true;
  bool expect_continue = false;
  std::string authorization;  // the Authorization header's value
};

enum class ParseStatus { complete, incomplete, error };

struct HeadResult {
  ParseStatus status = ParseStatus::incomplete;
  RequestHead head;
  int error_status = 0;  // HTTP status to answer with when status == error
  std::string error;     // why
};

// Parses the request line and headers at the start of `data`.
HeadResult parse_request_head(std::string_view data);

struct ChunkedResult {
  ParseStatus status = ParseStatus::incomplete;
  size_t consumed = 0;  // bytes of `data` the chunked body (with trailers) occupies
  std::string error;
};

// Decodes a chunked body at the start of `data` into `body` (appended) once it is complete.
ChunkedResult decode_chunked(std::string_view data, std::string& body);

// The value of `name` in an application/x-www-form-urlencoded style query ("a=1&b=2").
std::optional<std::string_view> query_param(std::string_view query, std::string_view name);

std::string_view status_reason(int status);

}  // namespace flexllm::mock::detail
