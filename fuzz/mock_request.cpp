// The mock server's request parsing: the head is complete exactly when its blank line has arrived
// (never earlier, the same head with more bytes after it), its size is where that line ends, its
// errors carry a status; a chunked body is complete at one place, decodes the same with more bytes
// after it, and is incomplete on every shorter prefix tried.
#include "fuzz.hpp"
#include "http.hpp"

namespace flexllm::fuzz {
namespace {

using mock::detail::ChunkedResult;
using mock::detail::HeadResult;
using mock::detail::ParseStatus;

bool same_head(const mock::detail::RequestHead& a, const mock::detail::RequestHead& b) {
  return a.method == b.method && a.path == b.path && a.query == b.query &&
         a.header_bytes == b.header_bytes && a.content_length == b.content_length &&
         a.chunked == b.chunked && a.http11 == b.http11 && a.keep_alive == b.keep_alive &&
         a.expect_continue == b.expect_continue && a.authorization == b.authorization;
}

void check_head(std::string_view input, const HeadResult& h) {
  if (h.status == ParseStatus::error) {
    FLEXLLM_FUZZ_CHECK(h.error_status >= 400 && h.error_status <= 599 && !h.error.empty(),
                       "an error with status {} and reason {:?}", h.error_status, h.error);
    FLEXLLM_FUZZ_CHECK(!mock::detail::status_reason(h.error_status).empty(), "no reason phrase");
  } else if (h.status == ParseStatus::complete) {
    const size_t end = input.find("\r\n\r\n");
    FLEXLLM_FUZZ_CHECK(end != std::string_view::npos && h.head.header_bytes == end + 4,
                       "a head of {} bytes, its blank line ends at {}", h.head.header_bytes,
                       end == std::string_view::npos ? 0 : end + 4);
    FLEXLLM_FUZZ_CHECK(h.head.content_length <= mock::detail::kMaxBodyBytes,
                       "a body of {} bytes accepted", h.head.content_length);
    FLEXLLM_FUZZ_CHECK(!(h.head.chunked && h.head.content_length != 0),
                       "chunked with a Content-Length");
    (void)mock::detail::query_param(h.head.query, "status");
  }
}

void check_chunked(std::string_view body) {
  std::string decoded;
  const ChunkedResult whole = mock::detail::decode_chunked(body, decoded);
  FLEXLLM_FUZZ_CHECK(whole.consumed <= body.size(), "consumed {} of {} bytes", whole.consumed,
                     body.size());
  if (whole.status == ParseStatus::error) {
    FLEXLLM_FUZZ_CHECK(!whole.error.empty(), "a chunked error without a reason");
    return;
  }
  if (whole.status == ParseStatus::incomplete) {
    FLEXLLM_FUZZ_CHECK(decoded.empty(), "an incomplete body decoded");
    return;
  }
  FLEXLLM_FUZZ_CHECK(decoded.size() <= body.size() && decoded.size() <= mock::detail::kMaxBodyBytes,
                     "{} bytes decoded from {}", decoded.size(), body.size());
  // More bytes after the body change nothing.
  std::string more(body.substr(0, whole.consumed));
  more += "5\r\nextra\r\n0\r\n\r\n";
  std::string again;
  const ChunkedResult longer = mock::detail::decode_chunked(more, again);
  FLEXLLM_FUZZ_CHECK(longer.status == ParseStatus::complete && longer.consumed == whole.consumed &&
                         again == decoded,
                     "the body decodes differently with bytes after it");
  // Shorter: incomplete (the server waits for more), never complete or an error.
  const uint64_t h = input_hash(body);
  for (size_t cut : {whole.consumed - 1, h % whole.consumed, (h >> 20) % whole.consumed}) {
    std::string part;
    const ChunkedResult r = mock::detail::decode_chunked(body.substr(0, cut), part);
    FLEXLLM_FUZZ_CHECK(r.status == ParseStatus::incomplete && part.empty(),
                       "the first {} of {} bytes: status {}", cut, whole.consumed,
                       static_cast<int>(r.status));
  }
}

}  // namespace

void mock_request(std::string_view input) {
  const HeadResult whole = mock::detail::parse_request_head(input);
  check_head(input, whole);
  const uint64_t h = input_hash(input);
  if (whole.status == ParseStatus::complete) {
    const size_t n = whole.head.header_bytes;
    for (size_t cut : {n - 1, h % n}) {
      const HeadResult r = mock::detail::parse_request_head(input.substr(0, cut));
      FLEXLLM_FUZZ_CHECK(r.status == ParseStatus::incomplete,
                         "the first {} of {} head bytes: status {}", cut, n,
                         static_cast<int>(r.status));
    }
    const std::string longer = std::string(input) + "\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    const HeadResult more = mock::detail::parse_request_head(longer);
    FLEXLLM_FUZZ_CHECK(more.status == ParseStatus::complete && same_head(more.head, whole.head),
                       "the head parses differently with bytes after it");
    if (whole.head.chunked) check_chunked(input.substr(n));
  } else if (!input.empty()) {
    // No complete head: no prefix has one either.
    const HeadResult r = mock::detail::parse_request_head(input.substr(0, h % input.size()));
    FLEXLLM_FUZZ_CHECK(r.status != ParseStatus::complete, "a prefix has a complete head");
  }
  // The body decoder alone, on any bytes.
  check_chunked(input);
}

}  // namespace flexllm::fuzz
