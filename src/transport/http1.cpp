#include "transport/http1.hpp"

#include "core/text.hpp"

#include <netdb.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

namespace flexllm::detail {
namespace {

constexpr size_t kMaxLine = 64 * 1024;

// A header value without the optional whitespace around it.
std::string_view trim_ows(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

// Server bytes quoted in an error message: at most 40 of them, printable ASCII only (the
// message may end up in a JSON file).
std::string quoted(std::string_view bytes) {
  std::string out = "\"";
  for (char c : bytes.substr(0, 40)) out.push_back(c >= 0x20 && c < 0x7F ? c : '?');
  out.append(bytes.size() > 40 ? "…\"" : "\"");
  return out;
}

std::string_view authority_of(std::string_view url) {
  size_t s = url.find("://");
  if (s != std::string_view::npos) url.remove_prefix(s + 3);
  return url.substr(0, url.find_first_of("/?#"));
}

}  // namespace

void ResponseParser::reset() {
  *this = ResponseParser();
}

ResponseParser::Result ResponseParser::fail(std::string why) {
  error_ = std::move(why);
  return Result::error;
}

// The next CRLF- (or LF-) terminated line, from `data` directly when it holds it whole.
bool ResponseParser::take_line(std::string_view& data, std::string_view& line) {
  if (line_spent_) {  // the previous line came from line_ and has been handled
    line_.clear();
    line_spent_ = false;
  }
  size_t nl = data.find('\n');
  if (nl == std::string_view::npos) {
    if (line_.size() + data.size() > kMaxLine) {
      error_ = "response line longer than 64 KiB";
      return false;
    }
    line_.append(data);
    data = {};
    return false;
  }
  if (line_.empty()) {
    line = data.substr(0, nl);
  } else {
    line_.append(data.substr(0, nl));
    line = line_;
    line_spent_ = true;
  }
  data.remove_prefix(nl + 1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return true;
}

ResponseParser::Result ResponseParser::end_of_headers() {
  if (status_ >= 100 && status_ < 200 && status_ != 101) {  // interim (100 Continue): skip it
    state_ = State::status_line;
    chunked_ = has_length_ = false;
    return Result::need_more;
  }
  if (http10_ && keep_alive_ && !has_length_ && !chunked_) keep_alive_ = false;
  if (status_ == 204 || status_ == 304) {
    state_ = State::done;
  } else if (chunked_) {
    state_ = State::chunk_size;
  } else if (has_length_) {
    state_ = remaining_ == 0 ? State::done : State::body_length;
  } else {
    state_ = State::body_until_close;
    keep_alive_ = false;
  }
  return Result::need_more;
}

namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

}  // namespace

ResponseParser::Result ResponseParser::header_line(std::string_view line, Sink& sink) {
  if (++head_fields_ > kMaxHeaderFields)
    return fail(fmt::format("more than {} header fields", kMaxHeaderFields));
  size_t colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return fail("malformed header line");
  std::string_view name = line.substr(0, colon);
  std::string_view value = trim_ows(line.substr(colon + 1));
  if (state_ == State::trailers) return Result::need_more;  // framing is settled: not passed on
  if (iequals(name, "content-length")) {
    uint64_t length = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), length);
    if (value.empty() || ec != std::errc() || p != value.data() + value.size())
      return fail("invalid Content-Length " + quoted(value));
    // Two lengths, even equal ones, mean something between us and the server is confused
    // about where this reply ends: no guess.
    if (has_length_)
      return fail(
          length == remaining_
              ? std::string("repeated Content-Length")
              : fmt::format("conflicting Content-Length values ({} and {})", remaining_, length));
    remaining_ = length;
    has_length_ = true;
  } else if (iequals(name, "transfer-encoding")) {
    chunked_ = has_header_token(value, "chunked");
  } else if (iequals(name, "connection")) {
    if (has_header_token(value, "close")) keep_alive_ = false;
    if (has_header_token(value, "keep-alive") && http10_) keep_alive_ = true;
  }
  return sink.on_header(line) ? Result::need_more : Result::stopped;
}

// "1a2b[ ;ext…]": 1-16 hex digits (at most 2^64 - 1, so no overflow), extensions ignored.
ResponseParser::Result ResponseParser::chunk_size_line(std::string_view line) {
  std::string_view size = line.substr(0, line.find(';'));
  while (!size.empty() && (size.back() == ' ' || size.back() == '\t')) size.remove_suffix(1);
  if (size.empty() || size.size() > 16 || !std::all_of(size.begin(), size.end(), is_hex))
    return fail("invalid chunk size " + quoted(line));
  std::from_chars(size.data(), size.data() + size.size(), remaining_, 16);
  state_ = remaining_ == 0 ? State::trailers : State::chunk_data;
  return Result::need_more;
}

ResponseParser::Result ResponseParser::feed(std::string_view& data, Sink& sink) {
  if (!data.empty()) started_ = true;
  while (state_ != State::done) {
    std::string_view line;
    switch (state_) {
      case State::status_line:
      case State::headers:
      case State::chunk_size:
      case State::chunk_crlf:
      case State::trailers: {
        if (!take_line(data, line)) return error_.empty() ? Result::need_more : Result::error;
        if (state_ != State::chunk_size && state_ != State::chunk_crlf &&
            (head_bytes_ += line.size() + 2) > kMaxHeaderBytes)
          return fail(fmt::format("reply head larger than {} KiB", kMaxHeaderBytes / 1024));
        if (state_ == State::status_line) {
          // "HTTP/1.1 200 OK", the reason phrase optional.
          if (line.size() < 12 || !line.starts_with("HTTP/1.") || !is_digit(line[7]) ||
              line[8] != ' ')
            return fail("malformed status line " + quoted(line));
          if (!is_digit(line[9]) || !is_digit(line[10]) || !is_digit(line[11]) ||
              (line.size() > 12 && line[12] != ' ') || line[9] < '1' || line[9] > '5')
            return fail("malformed status code in " + quoted(line));
          status_ = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
          http10_ = line[7] == '0';
          keep_alive_ = !http10_;
          state_ = State::headers;
        } else if (state_ == State::headers) {
          if (line.empty()) {
            if (Result r = end_of_headers(); r != Result::need_more) return r;
            if (state_ != State::status_line) sink.on_status(status_);
          } else if (Result r = header_line(line, sink); r != Result::need_more) {
            return r;
          }
        } else if (state_ == State::chunk_size) {
          if (Result r = chunk_size_line(line); r != Result::need_more) return r;
        } else if (state_ == State::chunk_crlf) {
          if (!line.empty()) return fail("chunk not followed by CRLF");
          state_ = State::chunk_size;
        } else if (line.empty()) {  // trailers end
          state_ = State::done;
        } else if (Result r = header_line(line, sink); r != Result::need_more) {
          return r;
        }
        break;
      }
      case State::body_length:
      case State::chunk_data: {
        if (data.empty()) return Result::need_more;
        size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, data.size()));
        if (!sink.on_body(data.substr(0, n))) return Result::stopped;
        data.remove_prefix(n);
        remaining_ -= n;
        if (remaining_ == 0)
          state_ = state_ == State::body_length ? State::done : State::chunk_crlf;
        break;
      }
      case State::body_until_close:
        if (data.empty()) return Result::need_more;
        if (!sink.on_body(data)) return Result::stopped;
        data = {};
        return Result::need_more;
      case State::done: break;
    }
  }
  return Result::done;
}

ResponseParser::Result ResponseParser::at_eof(Sink&) {
  if (state_ == State::body_until_close || state_ == State::done) {
    state_ = State::done;
    return Result::done;
  }
  return fail(started_ ? "connection closed in the middle of the reply" : "no reply");
}

std::optional<ResolvedHost> resolve_url_host(std::string_view url, std::string_view scheme,
                                             const char* default_port) {
  if (!url.starts_with(scheme)) return std::nullopt;
  std::string_view authority = authority_of(url);
  if (authority.empty() || authority.find('@') != std::string_view::npos) return std::nullopt;
  ResolvedHost r;
  r.port = default_port;
  if (authority.front() == '[') {
    size_t rb = authority.find(']');
    if (rb == std::string_view::npos) return std::nullopt;
    r.host = std::string(authority.substr(1, rb - 1));
    if (rb + 1 < authority.size()) {
      if (authority[rb + 1] != ':') return std::nullopt;
      r.port = std::string(authority.substr(rb + 2));
    }
  } else {
    size_t colon = authority.rfind(':');
    r.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) r.port = std::string(authority.substr(colon + 1));
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (r.host.empty() || getaddrinfo(r.host.c_str(), r.port.c_str(), &hints, &res) != 0 || !res)
    return std::nullopt;
  std::memcpy(&r.addr, res->ai_addr, res->ai_addrlen);
  r.addr_len = static_cast<socklen_t>(res->ai_addrlen);
  freeaddrinfo(res);
  r.authority = std::string(authority);
  return r;
}

std::optional<Http1Target> resolve_http1_target(std::string_view url) {
  auto host = resolve_url_host(url, "http://", "80");
  if (!host) return std::nullopt;
  Http1Target t;
  t.addr = host->addr;
  t.addr_len = host->addr_len;
  t.key = host->authority;
  return t;
}

std::string_view url_request_target(std::string_view url) {
  size_t s = url.find("://");
  if (s != std::string_view::npos) url.remove_prefix(s + 3);
  size_t slash = url.find_first_of("/?#");
  if (slash == std::string_view::npos || url[slash] == '#') return "/";
  url.remove_prefix(slash);
  url = url.substr(0, url.find('#'));
  return url.front() == '/' ? url : std::string_view("/");
}

}  // namespace flexllm::detail
