#include "http.hpp"

#include "core/text.hpp"

#include <charconv>

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

HeadResult parse_request_head(std::string_view data) {
  size_t end = data.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (data.size() > kMaxHeaderBytes) return fail(431, "request headers larger than 64 KiB");
    return {};
  }
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
  if (r.head.content_length > kMaxBodyBytes) return fail(413, "request body larger than 64 MiB");
  return r;
}

ChunkedResult decode_chunked(std::string_view data, std::string& body) {
  ChunkedResult r;
  std::string decoded;
  size_t pos = 0;
  for (;;) {
    size_t eol = data.find("\r\n", pos);
    if (eol == std::string_view::npos) return r;  // incomplete
    std::string_view size_line = data.substr(pos, eol - pos);
    size_line = size_line.substr(0, size_line.find(';'));  // chunk extensions
    size_line = trim(size_line);
    size_t size = 0;
    auto [ptr, ec] =
        std::from_chars(size_line.data(), size_line.data() + size_line.size(), size, 16);
    if (ec != std::errc() || ptr != size_line.data() + size_line.size() || size_line.empty()) {
      r.status = ParseStatus::error;
      r.error = "invalid chunk size";
      return r;
    }
    pos = eol + 2;
    if (size == 0) {
      // Trailers, then the empty line.
      for (;;) {
        eol = data.find("\r\n", pos);
        if (eol == std::string_view::npos) return r;
        bool empty = eol == pos;
        pos = eol + 2;
        if (empty) break;
      }
      r.status = ParseStatus::complete;
      r.consumed = pos;
      body.append(decoded);
      return r;
    }
    if (decoded.size() + size > kMaxBodyBytes) {
      r.status = ParseStatus::error;
      r.error = "request body larger than 64 MiB";
      return r;
    }
    if (data.size() < pos + size + 2) return r;
    decoded.append(data.substr(pos, size));
    if (data.substr(pos + size, 2) != "\r\n") {
      r.status = ParseStatus::error;
      r.error = "chunk not followed by CRLF";
      return r;
    }
    pos += size + 2;
  }
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
