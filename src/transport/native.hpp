// A keep-alive HTTP/1.1 client connection of the native transport (see http1.hpp for why it
// exists). Connections are owned by the Loop, pooled per target while idle, and serve one
// request at a time.
#pragma once

#include <sys/uio.h>

#include <string>

#include "transport/http1.hpp"
#include "transport/loop.hpp"

namespace flexllm::detail {

class Http1Connection final : public IoHandler, private ResponseParser::Sink {
 public:
  // An idle pooled connection to `target`, or a new one being opened (`fresh` skips the pool).
  // nullptr with `error` set when a socket cannot even be started.
  static Http1Connection* acquire(Loop& loop, const Http1Target& target,
                                  std::chrono::milliseconds connect_timeout, bool fresh,
                                  std::string& error);
  ~Http1Connection() override;

  void start(Transfer* t, const NativeRequest& request);
  // Ends the running transfer with `code`; the connection cannot be reused (closed).
  void abort(CURLcode code);
  void on_io(uint32_t events) override;

 private:
  enum class State { connecting, writing, reading, idle, closed };

  Http1Connection(Loop& loop, const Http1Target& target);
  bool open(std::chrono::milliseconds connect_timeout, std::string& error);
  void write_some();
  void read_some();
  void failed(int err, const char* doing);  // a socket error or EOF while busy
  void complete(CURLcode code, const std::string& why = {});
  void close_connection();
  void watch(uint32_t events);

  void on_status(int status) override;
  bool on_header(std::string_view line) override;
  bool on_body(std::string_view bytes) override;

  Loop& loop_;
  Http1Target target_;  // a copy: idle connections outlive the clients that opened them
  int fd_ = -1;
  State state_ = State::closed;
  uint32_t watched_ = 0;  // events registered in epoll (0: not registered)
  Transfer* transfer_ = nullptr;
  NativeRequest request_;
  iovec iov_[3]{};
  int iov_count_ = 0;
  int iov_index_ = 0;
  char length_line_[64] = {};
  ResponseParser parser_;
  bool reused_ = false;   // served a request before: it may have gone stale while idle
  bool retried_ = false;  // this transfer already moved once from a stale connection
  Loop::TimerId connect_timer_ = 0;
};

}  // namespace flexllm::detail
