#include "transport/native.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace flexllm::detail {

Http1Connection::Http1Connection(Loop& loop, const Http1Target& target)
    : loop_(loop), target_(target) {}

Http1Connection::~Http1Connection() {
  if (connect_timer_) loop_.cancel_timer(connect_timer_);
  if (fd_ >= 0) ::close(fd_);
}

Http1Connection* Http1Connection::acquire(Loop& loop, const Http1Target& target,
                                          std::chrono::milliseconds connect_timeout, bool fresh,
                                          std::string& error) {
  if (!fresh) {
    auto& idle = loop.idle_connections(target.key);
    if (!idle.empty()) {
      Http1Connection* c = idle.back();
      idle.pop_back();
      return c;
    }
  }
  auto owned = std::unique_ptr<Http1Connection>(new Http1Connection(loop, target));
  if (!owned->open(connect_timeout, error)) return nullptr;
  Http1Connection* c = owned.get();
  loop.connections_.emplace(c, std::move(owned));
  return c;
}

bool Http1Connection::open(std::chrono::milliseconds connect_timeout, std::string& error) {
  fd_ = ::socket(target_.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    error = std::string("cannot create a socket: ") + std::strerror(errno);
    return false;
  }
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int rc = ::connect(fd_, reinterpret_cast<const sockaddr*>(&target_.addr), target_.addr_len);
  if (rc != 0 && errno != EINPROGRESS) {
    error = "Failed to connect to " + target_.key + ": " + std::strerror(errno);
    return false;
  }
  state_ = State::connecting;
  watch(EPOLLOUT);
  connect_timer_ = loop_.add_timer(Clock::now() + connect_timeout, [this, connect_timeout] {
    connect_timer_ = 0;
    if (state_ != State::connecting || !transfer_) return;
    complete(CURLE_OPERATION_TIMEDOUT, "Connection to " + target_.key + " timed out after " +
                                           std::to_string(connect_timeout.count()) + " ms");
  });
  return true;
}

void Http1Connection::watch(uint32_t events) {
  if (events == watched_) return;
  loop_.watch(fd_, this, events, watched_ != 0);
  watched_ = events;
}

void Http1Connection::start(Transfer* t, const NativeRequest& request) {
  transfer_ = t;
  t->native = this;
  request_ = request;
  parser_.reset();
  iov_[0] = {const_cast<char*>(request.head.data()), request.head.size()};
  int n = request.has_body ? std::snprintf(length_line_, sizeof length_line_,
                                           "Content-Length: %zu\r\n\r\n", request.body.size())
                           : std::snprintf(length_line_, sizeof length_line_, "\r\n");
  iov_[1] = {length_line_, static_cast<size_t>(n)};
  iov_[2] = {const_cast<char*>(request.body.data()), request.body.size()};
  iov_count_ = request.body.empty() ? 2 : 3;
  iov_index_ = 0;
  if (state_ == State::idle) {
    state_ = State::writing;
    write_some();  // a kept-alive socket is writable: no need to wait for epoll to say so
  }
}

void Http1Connection::write_some() {
  while (iov_index_ < iov_count_) {
    ssize_t n = ::writev(fd_, iov_ + iov_index_, iov_count_ - iov_index_);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return watch(EPOLLOUT);
      return failed(errno, "send");
    }
    auto left = static_cast<size_t>(n);
    while (iov_index_ < iov_count_ && left >= iov_[iov_index_].iov_len) {
      left -= iov_[iov_index_].iov_len;
      ++iov_index_;
    }
    if (iov_index_ < iov_count_) {
      iov_[iov_index_].iov_base = static_cast<char*>(iov_[iov_index_].iov_base) + left;
      iov_[iov_index_].iov_len -= left;
    }
  }
  state_ = State::reading;
  watch(EPOLLIN | EPOLLRDHUP);
}

void Http1Connection::read_some() {
  std::string& buffer = loop_.read_buffer();
  if (buffer.size() < 64 * 1024) buffer.resize(64 * 1024);
  for (;;) {
    ssize_t n = ::read(fd_, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      return failed(errno, "recv");
    }
    if (n == 0) return failed(0, "recv");
    std::string_view data(buffer.data(), static_cast<size_t>(n));
    switch (parser_.feed(data, *this)) {
      case ResponseParser::Result::need_more: break;
      case ResponseParser::Result::done:
        // Bytes after a complete reply (we never pipeline) mean the stream is out of step.
        if (!data.empty()) parser_ = ResponseParser();  // keep_alive() now false: closed below
        return complete(CURLE_OK);
      case ResponseParser::Result::stopped:
        return complete(CURLE_WRITE_ERROR, "the reply's consumer stopped it");
      case ResponseParser::Result::error:
        return complete(CURLE_WEIRD_SERVER_REPLY,
                        "bad HTTP reply from " + target_.key + ": " + parser_.error());
    }
  }
}

// EOF, reset or a send failure while a transfer is on this connection.
void Http1Connection::failed(int err, const char* doing) {
  if (err == 0 && parser_.at_eof(*this) == ResponseParser::Result::done)
    return complete(CURLE_OK);  // a body delimited by the connection's close
  if (reused_ && !retried_ && !parser_.started()) {
    // The server closed this kept-alive connection while it sat idle, before our request got
    // there: nothing was processed, so the request moves to a fresh connection (once).
    Transfer* t = transfer_;
    NativeRequest request = request_;
    transfer_ = nullptr;
    t->native = nullptr;
    close_connection();
    std::string error;
    Http1Connection* fresh =
        acquire(loop_, target_, request.connect_timeout, /*fresh=*/true, error);
    if (!fresh) {
      std::snprintf(t->error_buffer, CURL_ERROR_SIZE, "%s", error.c_str());
      t->running = false;
      return t->on_complete(CURLE_COULDNT_CONNECT);
    }
    fresh->retried_ = true;
    return fresh->start(t, request);
  }
  std::string why = err ? std::string(doing) + " failed: " + std::strerror(err)
                        : std::string(parser_.started() ? "connection closed by " + target_.key +
                                                              " in the middle of the reply"
                                                        : "empty reply from " + target_.key);
  CURLcode code = !parser_.started()  ? (err ? CURLE_RECV_ERROR : CURLE_GOT_NOTHING)
                  : parser_.in_body() ? CURLE_PARTIAL_FILE
                                      : CURLE_RECV_ERROR;
  if (state_ == State::writing && err) code = CURLE_SEND_ERROR;
  complete(code, why);
}

void Http1Connection::complete(CURLcode code, const std::string& why) {
  if (connect_timer_) {
    loop_.cancel_timer(connect_timer_);
    connect_timer_ = 0;
  }
  Transfer* t = transfer_;
  transfer_ = nullptr;
  if (code == CURLE_OK && parser_.keep_alive() && state_ == State::reading) {
    // Back to the pool, watched for the server closing it meanwhile.
    state_ = State::idle;
    reused_ = true;
    retried_ = false;
    watch(EPOLLIN | EPOLLRDHUP);
    auto& idle = loop_.idle_connections(target_.key);
    if (static_cast<long>(idle.size()) < loop_.max_idle_per_target()) {
      idle.push_back(this);
    } else {
      close_connection();
    }
  } else {
    close_connection();
  }
  if (!t) return;
  t->native = nullptr;
  t->running = false;
  if (!why.empty() && t->error_buffer)
    std::snprintf(t->error_buffer, CURL_ERROR_SIZE, "%s", why.c_str());
  t->on_complete(code);  // last: it may start the next request on this very connection
}

void Http1Connection::abort(CURLcode code) {
  Transfer* t = transfer_;
  transfer_ = nullptr;
  close_connection();
  if (!t) return;
  t->native = nullptr;
  t->running = false;
  t->on_complete(code);
}

void Http1Connection::close_connection() {
  if (state_ == State::closed && fd_ < 0) return;
  if (state_ == State::idle) {
    auto& idle = loop_.idle_connections(target_.key);
    idle.erase(std::remove(idle.begin(), idle.end(), this), idle.end());
  }
  state_ = State::closed;
  if (connect_timer_) {
    loop_.cancel_timer(connect_timer_);
    connect_timer_ = 0;
  }
  if (fd_ >= 0) {
    if (watched_) loop_.unwatch(fd_);
    ::close(fd_);
    fd_ = -1;
    watched_ = 0;
  }
  dead = true;
  auto it = loop_.connections_.find(this);
  if (it != loop_.connections_.end()) {
    loop_.retire(std::move(it->second));
    loop_.connections_.erase(it);
  }
}

void Http1Connection::on_io(uint32_t events) {
  switch (state_) {
    case State::connecting: {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
        if (err == 0) err = ECONNREFUSED;
        return complete(CURLE_COULDNT_CONNECT,
                        "Failed to connect to " + target_.key + ": " + std::strerror(err));
      }
      if (connect_timer_) {
        loop_.cancel_timer(connect_timer_);
        connect_timer_ = 0;
      }
      state_ = State::writing;
      return write_some();
    }
    case State::writing:
      if (events & (EPOLLERR | EPOLLHUP)) return failed(EPIPE, "send");
      return write_some();
    case State::reading: return read_some();
    case State::idle:
      // The server closed the idle connection (or sent something unasked): drop it.
      return close_connection();
    case State::closed: return;
  }
}

void Http1Connection::on_status(int status) {
  transfer_->status = status;
}
bool Http1Connection::on_header(std::string_view line) {
  return transfer_->on_header(line);
}
bool Http1Connection::on_body(std::string_view bytes) {
  return transfer_->on_data(bytes);
}

}  // namespace flexllm::detail
