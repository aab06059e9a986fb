// The native HTTP/1.1 transport for cleartext endpoints (self-hosted vLLM, SGLang, Ollama, …
// behind http://). libcurl carries everything else (TLS, HTTP/2, proxies). Measured reason
// (bench/RESULTS.md): with small LLM replies libcurl's per-transfer work (handle setup, two poll()
// calls per request, header handling) was a third of the client's CPU; this path writes each
// request with one writev and reads replies straight into a parser, on the same event loop.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flexllm::detail {

// Bounds on a reply's head, on every native transport (HTTP/2 counts its header fields the same
// way): fields of the head (interim 1xx heads and trailers included), and their bytes ("Name:
// value" plus the line end, the status line too). Real servers send a few dozen fields and a few
// KiB; the caps keep a hostile or broken server from growing memory without end.
inline constexpr size_t kMaxHeaderFields = 100;
inline constexpr size_t kMaxHeaderBytes = 64 * 1024;

// Incremental HTTP/1.x response parser: status line, headers, and a body framed by
// Content-Length, chunked encoding, or the connection's close. Strict where framing is at stake:
// a status line is "HTTP/1.x NNN" (three digits, 100-599), chunk sizes are 1-16 hex digits, a
// repeated Content-Length is an error. Pure: unit-tested on bytes.
class ResponseParser {
 public:
  class Sink {
   public:
    virtual void on_status(int status) = 0;
    // "Name: value", no CRLF; false: stop (the transfer is aborted)
    virtual bool on_header(std::string_view line) = 0;
    virtual bool on_body(std::string_view bytes) = 0;  // false: stop (the transfer is aborted)
   protected:
    ~Sink() = default;
  };
  enum class Result { need_more, done, error, stopped };

  // Consumes bytes from the front of `data` (it is advanced); stops after a complete response.
  Result feed(std::string_view& data, Sink& sink);
  // The connection reached EOF: a body delimited by the close is complete, anything else is not.
  Result at_eof(Sink& sink);
  void reset();

  bool started() const { return started_; }  // any byte of a response seen
  bool in_body() const { return state_ >= State::body_length && state_ != State::done; }
  bool keep_alive() const { return keep_alive_; }
  const std::string& error() const { return error_; }

 private:
  enum class State {
    status_line,
    headers,
    body_length,
    chunk_size,
    chunk_data,
    chunk_crlf,
    trailers,
    body_until_close,
    done,
  };
  Result fail(std::string why);
  bool take_line(std::string_view& data, std::string_view& line);
  Result end_of_headers();
  Result header_line(std::string_view line, Sink& sink);
  Result chunk_size_line(std::string_view line);

  State state_ = State::status_line;
  std::string line_;  // a line split across reads
  bool line_spent_ = false;
  uint64_t remaining_ = 0;
  size_t head_fields_ = 0;  // header fields so far (all heads of this reply, trailers included)
  size_t head_bytes_ = 0;
  int status_ = 0;
  bool started_ = false;
  bool chunked_ = false;
  bool has_length_ = false;
  bool keep_alive_ = true;
  bool http10_ = false;
  std::string error_;
};

// Where a native transfer goes: resolved once, when the client is made (never on the I/O thread).
struct Http1Target {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string key;  // "host:port": connections are pooled per key
};

// A URL's host, resolved (the first address): what the native transports connect to.
struct ResolvedHost {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string host;       // without brackets
  std::string port;       // the URL's, or the scheme's default
  std::string authority;  // as written in the URL ("host", "host:port", "[::1]:8443")
};
// nullopt when `url` does not start with `scheme` ("http://"), has user info, or does not resolve.
std::optional<ResolvedHost> resolve_url_host(std::string_view url, std::string_view scheme,
                                             const char* default_port);

// Resolves the host of an http:// URL; nullopt when it is not one or does not resolve.
std::optional<Http1Target> resolve_http1_target(std::string_view url);
// The request target of a URL: its path and query ("/v1/chat/completions").
std::string_view url_request_target(std::string_view url);

}  // namespace flexllm::detail
