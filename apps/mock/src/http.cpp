#include "http.hpp"

#include "core/text.hpp"

#include <charconv>

#include <fmt/format.h>

namespace flexllm::mock::detail {
namespace {

using flexllm::detail::has_header_token;
using flexllm::detail::iequals;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

HeadResult fail(int status, std::string why) {
  HeadResult r;
  r.status = ParseStatus::error;
  r.error_status = status;
  r.error = std::move(why);
  return r;
}

}  // namespace

HeadResult parse_request_head(std::string_view data, size_t max_body) {
  size_t end = data.find("\r\n\r\n");
  if (end == std::string_view::npos ? data.size() > kMaxHeaderBytes : end + 4 > kMaxHeaderBytes)
    return fail(431, "request headers larger than " + size_text(kMaxHeaderBytes));
  if (end == std::string_view::npos) return {};
  HeadResult r;
  r.status = ParseStatus::complete;
  r.head.header_bytes = end + 4;
  std::string_view block = data.substr(0, end + 2);  // every line ends with CRLF

  size_t eol = block.find("\r\n");
  std::string_view line = block.substr(0, eol);
  block.remove_prefix(eol + 2);
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return fail(400, "malformed request line");
  r.head.method = std::string(line.substr(0, sp1));
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (version == "HTTP/1.1") {
    r.head.keep_alive = true;
  } else if (version == "HTTP/1.0") {
    r.head.http11 = false;
    r.head.keep_alive = false;
  } else {
    return fail(505, "unsupported HTTP version");
  }
  size_t q = target.find('?');
  r.head.path = std::string(target.substr(0, q));
  if (q != std::string_view::npos) r.head.query = std::string(target.substr(q + 1));

  bool have_length = false;
  while (!block.empty()) {
    eol = block.find("\r\n");
    line = block.substr(0, eol);
    block.remove_prefix(eol + 2);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return fail(400, "malformed header line");
    std::string_view name = line.substr(0, colon);
    std::string_view value = trim(line.substr(colon + 1));
    if (iequals(name, "content-length")) {
      size_t n = 0;
      auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || ptr != value.data() + value.size() || value.empty())
        return fail(400, "invalid Content-Length");
      if (have_length && n != r.head.content_length) return fail(400, "conflicting Content-Length");
      have_length = true;
      r.head.content_length = n;
    } else if (iequals(name, "transfer-encoding")) {
      if (!has_header_token(value, "chunked")) return fail(501, "unsupported Transfer-Encoding");
      r.head.chunked = true;
    } else if (iequals(name, "connection")) {
      if (has_header_token(value, "close")) r.head.keep_alive = false;
      if (has_header_token(value, "keep-alive")) r.head.keep_alive = true;
    } else if (iequals(name, "authorization")) {
      r.head.authorization = std::string(value);
    } else if (iequals(name, "expect")) {
      if (iequals(value, "100-continue")) r.head.expect_continue = true;
    }
  }
  if (r.head.chunked && have_length) return fail(400, "both Content-Length and chunked");
  if (r.head.content_length > max_body)
    return fail(413, "request body larger than " + size_text(max_body));
  return r;
}

ChunkedResult ChunkedDecoder::fail(int status, std::string why, size_t consumed) {
  state_ = State::failed;
  ChunkedResult r;
  r.status = ParseStatus::error;
  r.consumed = consumed;
  r.error_status = status;
  r.error = std::move(why);
  return r;
}

ChunkedResult ChunkedDecoder::feed(std::string_view data, std::string& body) {
  if (state_ == State::done) return {ParseStatus::complete, 0, 0, {}};
  if (state_ == State::failed) return fail(400, "chunked body already failed", 0);
  size_t pos = 0;
  while (pos < data.size()) {
    switch (state_) {
      case State::size_line:
      case State::trailer: {
        const bool trailer = state_ == State::trailer;
        const size_t nl = data.find('\n', pos);
        const size_t end = nl == std::string_view::npos ? data.size() : nl + 1;
        const size_t take = end - pos;
        examined_ += take;
        if (trailer && trailer_bytes_ + line_.size() + take > kMaxHeaderBytes)
          return fail(431, "request trailers larger than " + size_text(kMaxHeaderBytes), end);
        if (!trailer && line_.size() + take > kMaxChunkLineBytes)
          return fail(400, "chunk size line longer than " + size_text(kMaxChunkLineBytes), end);
        line_.append(data.substr(pos, take));
        pos = end;
        if (nl == std::string_view::npos) break;  // the rest of the line comes later
        if (line_.size() < 2 || line_[line_.size() - 2] != '\r')
          return fail(400, "chunk line not ended by CRLF", pos);
        std::string_view line(line_.data(), line_.size() - 2);
        if (trailer) {
          trailer_bytes_ += line_.size();
          const bool last = line.empty();
          line_.clear();
          if (last) {
            state_ = State::done;
            return {ParseStatus::complete, pos, 0, {}};
          }
          break;
        }
        line = trim(line.substr(0, line.find(';')));  // chunk extensions
        size_t size = 0;
        auto [ptr, ec] = std::from_chars(line.data(), line.data() + line.size(), size, 16);
        if (ec == std::errc::result_out_of_range)
          return fail(413, "request body larger than " + size_text(max_body_), pos);
        if (ec != std::errc() || ptr != line.data() + line.size() || line.empty())
          return fail(400, "invalid chunk size", pos);
        line_.clear();
        if (size == 0) {
          state_ = State::trailer;
        } else if (size > max_body_ - decoded_) {
          return fail(413, "request body larger than " + size_text(max_body_), pos);
        } else {
          chunk_left_ = size;
          state_ = State::data;
        }
        break;
      }
      case State::data: {
        const size_t take = std::min(chunk_left_, data.size() - pos);
        body.append(data.data() + pos, take);
        examined_ += take;
        pos += take;
        chunk_left_ -= take;
        decoded_ += take;
        if (chunk_left_ == 0) state_ = State::data_cr;
        break;
      }
      case State::data_cr:
      case State::data_lf: {
        const bool cr = state_ == State::data_cr;
        ++examined_;
        if (data[pos++] != (cr ? '\r' : '\n')) return fail(400, "chunk not followed by CRLF", pos);
        state_ = cr ? State::data_lf : State::size_line;
        break;
      }
      case State::done:
      case State::failed: break;  // returned above
    }
  }
  return {ParseStatus::incomplete, pos, 0, {}};
}

ChunkedResult decode_chunked(std::string_view data, std::string& body, size_t max_body) {
  ChunkedDecoder decoder(max_body);
  std::string decoded;
  ChunkedResult r = decoder.feed(data, decoded);
  if (r.status == ParseStatus::complete) body.append(decoded);
  return r;
}

std::string size_text(size_t bytes) {
  if (bytes >= (1u << 20) && bytes % (1u << 20) == 0) return fmt::format("{} MiB", bytes >> 20);
  if (bytes >= (1u << 10) && bytes % (1u << 10) == 0) return fmt::format("{} KiB", bytes >> 10);
  return fmt::format("{} bytes", bytes);
}

std::optional<std::string_view> query_param(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    size_t eq = item.find('=');
    if (item.substr(0, eq) == name)
      return eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

std::string_view status_reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 529: return "Site Overloaded";
    default: return "Unknown";
  }
}

}  // namespace flexllm::mock::detail
