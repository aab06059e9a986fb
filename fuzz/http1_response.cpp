// The native transport's response parser: the same responses, headers, bodies and results whether
// the bytes arrive whole, one at a time or in random pieces; pipelined responses parsed one after
// another as a kept-alive connection does; nothing consumed past the input.
#include "fuzz.hpp"
#include "transport/http1.hpp"

namespace flexllm::fuzz {
namespace {

using detail::ResponseParser;
using Result = ResponseParser::Result;

constexpr int kMaxResponses = 4;  // on one connection

struct Response {
  Result result = Result::need_more;
  int status = 0;
  std::vector<std::string> headers;
  std::string body;
  std::string error;
  bool keep_alive = false;
  bool at_eof = false;  // the result came from at_eof() (the input ended first)
  size_t end = 0;       // offset after the response (done/stopped)
  bool operator==(const Response&) const = default;
};

struct Sink : ResponseParser::Sink {
  Response* r = nullptr;
  int statuses = 0;
  size_t stop_after = SIZE_MAX;  // on_body returns false once the body is this long
  void on_status(int status) override {
    FLEXLLM_FUZZ_CHECK(statuses == 0, "a second status ({} after {})", status, r->status);
    FLEXLLM_FUZZ_CHECK(status >= 100 && status <= 999, "status {} is not three digits", status);
    FLEXLLM_FUZZ_CHECK(status >= 200 || status == 101, "interim status {} reported", status);
    ++statuses;
    r->status = status;
  }
  bool on_header(std::string_view line) override {
    FLEXLLM_FUZZ_CHECK(statuses == 0, "header after the status: {:?}", line);
    FLEXLLM_FUZZ_CHECK(line.find('\n') == std::string_view::npos, "header with LF: {:?}", line);
    r->headers.emplace_back(line);
    return true;
  }
  bool on_body(std::string_view bytes) override {
    FLEXLLM_FUZZ_CHECK(statuses == 1, "body before the status");
    FLEXLLM_FUZZ_CHECK(!bytes.empty(), "an empty body piece");
    r->body.append(bytes);
    return r->body.size() < stop_after;
  }
};

std::vector<Response> parse(std::string_view input, const std::vector<size_t>& cuts,
                            size_t stop_after) {
  std::vector<Response> out(1);
  ResponseParser parser;
  Sink sink;
  sink.r = &out.back();
  sink.stop_after = stop_after;
  size_t at = 0;
  size_t cut_index = 0;
  // Bounded: every turn ends a response or consumes a piece.
  while (out.size() <= kMaxResponses) {
    if (cut_index == cuts.size()) {  // the connection closes
      Response& r = out.back();
      r.result = parser.at_eof(sink);
      r.at_eof = true;
      if (r.result == Result::error) {
        FLEXLLM_FUZZ_CHECK(!parser.error().empty(), "an error without a reason");
        r.error = parser.error();
      }
      if (r.result == Result::done) r.keep_alive = parser.keep_alive();
      break;
    }
    size_t cut = cuts[cut_index];
    std::string_view piece = input.substr(at, cut - at);
    const char* begin = piece.data();
    const size_t size = piece.size();
    Result result = parser.feed(piece, sink);
    // What is left is a suffix of the piece (or nothing: an emptied view may point anywhere).
    FLEXLLM_FUZZ_CHECK(
        piece.empty() || (piece.data() >= begin && piece.data() + piece.size() == begin + size),
        "feed() moved the view other than from its front");
    const size_t consumed = size - piece.size();
    Response& r = out.back();
    if (result == Result::need_more) {
      FLEXLLM_FUZZ_CHECK(consumed == size, "need_more with {} of {} bytes left", size - consumed,
                         size);
      at = cut;
      ++cut_index;
      continue;
    }
    r.result = result;
    r.end = at + consumed;
    if (result == Result::error) {
      FLEXLLM_FUZZ_CHECK(!parser.error().empty(), "an error without a reason");
      r.error = parser.error();
      break;
    }
    FLEXLLM_FUZZ_CHECK(parser.error().empty(), "{} with an error: {}",
                       result == Result::done ? "done" : "stopped", parser.error());
    if (result == Result::stopped) break;
    FLEXLLM_FUZZ_CHECK(sink.statuses == 1, "done without a status");
    FLEXLLM_FUZZ_CHECK(!parser.in_body(), "done while in the body");
    r.keep_alive = parser.keep_alive();
    // done again without input: a finished response stays finished and consumes nothing.
    std::string_view none;
    FLEXLLM_FUZZ_CHECK(parser.feed(none, sink) == Result::done, "done not kept");
    if (!r.keep_alive) break;
    // The next response on the connection starts with the bytes left over.
    at += consumed;
    parser.reset();
    out.emplace_back();
    sink.r = &out.back();
    sink.statuses = 0;
    FLEXLLM_FUZZ_CHECK(!parser.started(), "started after reset");
  }
  return out;
}

void expect_same(const std::vector<Response>& a, const std::vector<Response>& b, const char* how) {
  FLEXLLM_FUZZ_CHECK(a.size() == b.size(), "whole: {} responses, {}: {}", a.size(), how, b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    const Response &x = a[i], &y = b[i];
    FLEXLLM_FUZZ_CHECK(x == y,
                       "response {} differs whole/{}: result {}/{} status {}/{} headers {}/{} "
                       "body {}/{} bytes, error {:?}/{:?}, keep-alive {}/{}, end {}/{}",
                       i, how, static_cast<int>(x.result), static_cast<int>(y.result), x.status,
                       y.status, x.headers.size(), y.headers.size(), x.body.size(), y.body.size(),
                       x.error, y.error, x.keep_alive, y.keep_alive, x.end, y.end);
  }
}

}  // namespace

void http1_response(std::string_view input) {
  const std::vector<size_t> whole_cut =
      input.empty() ? std::vector<size_t>{} : std::vector<size_t>{input.size()};
  const auto whole = parse(input, whole_cut, SIZE_MAX);
  expect_same(whole, parse(input, bytewise_cuts(input.size()), SIZE_MAX), "bytewise");
  expect_same(whole, parse(input, cuts_for(input, 64), SIZE_MAX), "pieces");
  // A sink that stops: stopped wherever the body reaches its limit, however the bytes are cut.
  const size_t stop_after = 1 + input_hash(input) % 16;
  const auto stop_whole = parse(input, whole_cut, stop_after);
  const auto stop_pieces = parse(input, bytewise_cuts(input.size()), stop_after);
  FLEXLLM_FUZZ_CHECK(stop_whole.size() == stop_pieces.size() &&
                         stop_whole.back().result == stop_pieces.back().result,
                     "a stopping sink: {} responses / {}, last result {} / {}", stop_whole.size(),
                     stop_pieces.size(), static_cast<int>(stop_whole.back().result),
                     static_cast<int>(stop_pieces.back().result));
}

}  // namespace flexllm::fuzz
