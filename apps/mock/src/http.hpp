// Incremental HTTP/1.x request parsing for the mock server. Pure functions over bytes, so they are
// unit-tested without sockets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace flexllm::mock::detail {

inline constexpr size_t kMaxHeaderBytes = 64 * 1024;       // request line + headers, and trailers
inline constexpr size_t kMaxBodyBytes = 64 * 1024 * 1024;  // room for inline images
inline constexpr size_t kMaxChunkLineBytes = 4096;         // a chunk's size line with extensions

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

// Parses the request line and headers at the start of `data`: 431 for a head over
// kMaxHeaderBytes, 413 for a Content-Length over `max_body`.
HeadResult parse_request_head(std::string_view data, size_t max_body = kMaxBodyBytes);

struct ChunkedResult {
  ParseStatus status = ParseStatus::incomplete;
  size_t consumed = 0;   // bytes of `data` taken (up to the body's end, when complete)
  int error_status = 0;  // HTTP status to answer with when status == error
  std::string error;
};

// A chunked request body decoded as its bytes arrive. Each byte is looked at once, and partial
// lines are kept here, so a body sent in many small pieces costs what it costs in one; what it
// keeps is bounded (a size line, the trailers), and so is the decoded body (413 beyond max_body).
class ChunkedDecoder {
 public:
  explicit ChunkedDecoder(size_t max_body = kMaxBodyBytes) : max_body_(max_body) {}

  // Takes the next bytes of the body and appends what they decode to `body`. Takes all of `data`
  // until the body ends; when complete, `consumed` is where it ended (the next request follows).
  ChunkedResult feed(std::string_view data, std::string& body);
  // Bytes looked at so far: the bytes taken, each once.
  size_t bytes_examined() const { return examined_; }

 private:
  enum class State : uint8_t { size_line, data, data_cr, data_lf, trailer, done, failed };
  ChunkedResult fail(int status, std::string why, size_t consumed);

  size_t max_body_;
  State state_ = State::size_line;
  std::string line_;          // the size or trailer line so far
  size_t chunk_left_ = 0;     // bytes of the current chunk still to come
  size_t decoded_ = 0;        // body bytes so far
  size_t trailer_bytes_ = 0;  // trailers so far
  size_t examined_ = 0;
};

// The chunked body at the start of `data`, decoded in one go: appended to `body` once complete.
ChunkedResult decode_chunked(std::string_view data, std::string& body,
                             size_t max_body = kMaxBodyBytes);

// "64 MiB", "64 KiB", "1000 bytes": a limit as the errors name it.
std::string size_text(size_t bytes);

// The value of `name` in an application/x-www-form-urlencoded style query ("a=1&b=2").
std::optional<std::string_view> query_param(std::string_view query, std::string_view name);

std::string_view status_reason(int status);

}  // namespace flexllm::mock::detail
