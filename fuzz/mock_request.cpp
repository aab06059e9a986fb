// The mock server's request parsing: the head is complete exactly when its blank line has arrived
// (never earlier, the same head with more bytes after it), its size is where that line ends, its
// errors carry a status; a chunked body decodes to the same body, end or error whether it arrives
// whole, one byte at a time or in random pieces (with the 64 MiB cap and a small one), each byte
// examined once, and the same as decoding it in one go.
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

struct Decoded {
  ParseStatus status = ParseStatus::incomplete;
  size_t end = 0;  // where the body ended (complete)
  int error_status = 0;
  std::string body;
  bool operator==(const Decoded&) const = default;
};

// The incremental decoder fed `body` in the given pieces.
Decoded decode_in_pieces(std::string_view body, const std::vector<size_t>& cuts, size_t max_body) {
  mock::detail::ChunkedDecoder decoder(max_body);
  Decoded d;
  size_t at = 0;
  for (size_t cut : cuts) {
    const size_t size = cut - at;
    const ChunkedResult r = decoder.feed(body.substr(at, size), d.body);
    FLEXLLM_FUZZ_CHECK(r.consumed <= size, "consumed {} of {} bytes", r.consumed, size);
    FLEXLLM_FUZZ_CHECK(decoder.bytes_examined() <= at + r.consumed, "{} bytes examined of {} taken",
                       decoder.bytes_examined(), at + r.consumed);
    if (r.status == ParseStatus::incomplete) {
      FLEXLLM_FUZZ_CHECK(r.consumed == size, "incomplete with {} of {} bytes left",
                         size - r.consumed, size);
      at = cut;
      continue;
    }
    d.status = r.status;
    if (r.status == ParseStatus::error) {
      FLEXLLM_FUZZ_CHECK(!r.error.empty() && r.error_status >= 400 && r.error_status <= 599,
                         "a chunked error with status {} and reason {:?}", r.error_status, r.error);
      d.error_status = r.error_status;
      d.body.clear();  // how much was decoded before the error depends on the pieces
    } else {
      d.end = at + r.consumed;
    }
    break;
  }
  return d;
}

void check_chunked(std::string_view body) {
  const uint64_t h = input_hash(body);
  for (size_t max_body : {mock::detail::kMaxBodyBytes, size_t{1} + h % 64}) {
    const Decoded whole = decode_in_pieces(body, {body.size()}, max_body);
    for (const auto& [cuts, how] : {std::pair{bytewise_cuts(body.size()), "bytewise"},
                                    std::pair{cuts_for(body, 64), "pieces"}}) {
      const Decoded d = decode_in_pieces(body, cuts, max_body);
      FLEXLLM_FUZZ_CHECK(d == whole,
                         "max body {}: whole/{}: status {}/{} end {}/{} error {}/{} body {}/{} "
                         "bytes",
                         max_body, how, static_cast<int>(whole.status), static_cast<int>(d.status),
                         whole.end, d.end, whole.error_status, d.error_status, whole.body.size(),
                         d.body.size());
    }
    if (whole.status == ParseStatus::complete)
      FLEXLLM_FUZZ_CHECK(whole.body.size() <= max_body, "{} bytes decoded past the cap of {}",
                         whole.body.size(), max_body);
    // In one go: the same, and the body appended only once complete.
    std::string decoded;
    const ChunkedResult once = mock::detail::decode_chunked(body, decoded, max_body);
    FLEXLLM_FUZZ_CHECK(once.status == whole.status &&
                           (once.status != ParseStatus::complete ||
                            (once.consumed == whole.end && decoded == whole.body)) &&
                           (once.status == ParseStatus::complete || decoded.empty()),
                       "decode_chunked: status {} consumed {}, the decoder: {} {}",
                       static_cast<int>(once.status), once.consumed, static_cast<int>(whole.status),
                       whole.end);
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
    // A smaller body cap: 413 for a Content-Length over it, else the same head.
    const size_t cap = h % 256;
    const HeadResult capped = mock::detail::parse_request_head(input, cap);
    if (whole.head.content_length > cap)
      FLEXLLM_FUZZ_CHECK(capped.status == ParseStatus::error && capped.error_status == 413,
                         "Content-Length {} over a cap of {}: status {}", whole.head.content_length,
                         cap, capped.error_status);
    else
      FLEXLLM_FUZZ_CHECK(
          capped.status == ParseStatus::complete && same_head(capped.head, whole.head),
          "Content-Length {} within a cap of {}: parsed differently", whole.head.content_length,
          cap);
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
