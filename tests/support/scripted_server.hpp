// A raw-socket HTTP/1.1 server on 127.0.0.1 for tests of what a client does with replies that no
// well-behaved server sends: it reads each request whole (head, and the body its Content-Length
// announces), counts it, and answers with exactly the bytes the test scripted — in as many writes
// as the script has pieces, a piece repeated at a given pace if asked — then closes the
// connection, keeps it for the next request, or holds it open without a word. One thread per
// connection. Header-only.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace flexllm::test {

// What the server sends for one request.
struct ScriptedReply {
  struct Piece {
    std::string bytes;
    int times = 1;                     // sent this many times (each its own write)
    std::chrono::milliseconds gap{0};  // before each repetition after the first
  };
  enum class After { close, keep_alive, hold };

  std::vector<Piece> pieces;
  After after = After::close;

  ScriptedReply& send(std::string bytes) {
    pieces.push_back({std::move(bytes)});
    return *this;
  }
  ScriptedReply& send_repeated(std::string bytes, int times,
                               std::chrono::milliseconds gap = std::chrono::milliseconds(0)) {
    pieces.push_back({std::move(bytes), times, gap});
    return *this;
  }
  // The connection stays open and silent until the client closes it (or the server stops).
  ScriptedReply& then_hold() {
    after = After::hold;
    return *this;
  }
  ScriptedReply& then_keep_alive() {
    after = After::keep_alive;
    return *this;
  }
};

class ScriptedServer {
 public:
  // Request i gets script[i]; requests past the end get the last reply again.
  explicit ScriptedServer(std::vector<ScriptedReply> script) : script_(std::move(script)) {
    if (script_.empty()) throw std::invalid_argument("ScriptedServer: an empty script");
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0 ||
        ::listen(listen_fd_, 64) != 0)
      throw std::runtime_error("ScriptedServer: cannot listen on 127.0.0.1");
    port_ = ntohs(a.sin_port);
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  explicit ScriptedServer(ScriptedReply reply)
      : ScriptedServer(std::vector<ScriptedReply>{std::move(reply)}) {}

  ~ScriptedServer() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      for (int fd : open_) ::shutdown(fd, SHUT_RDWR);  // unblocks their reads and writes
    }
    stop_cv_.notify_all();
    ::shutdown(listen_fd_, SHUT_RDWR);
    accept_thread_.join();
    ::close(listen_fd_);
    for (std::thread& t : connections_) t.join();
  }
  ScriptedServer(const ScriptedServer&) = delete;
  ScriptedServer& operator=(const ScriptedServer&) = delete;

  uint16_t port() const { return port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  // Requests read whole so far (each counted before its reply is sent).
  size_t requests() const {
    std::lock_guard lock(mu_);
    return bodies_.size();
  }
  std::vector<std::string> bodies() const {
    std::lock_guard lock(mu_);
    return bodies_;
  }
  size_t connections() const { return accepted_.load(); }

 private:
  void accept_loop() {
    for (;;) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      std::lock_guard lock(mu_);
      if (stopping_) {
        if (fd >= 0) ::close(fd);
        return;
      }
      if (fd < 0) continue;
      ++accepted_;
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      open_.push_back(fd);
      connections_.emplace_back([this, fd] { serve(fd); });
    }
  }

  void serve(int fd) {
    std::string in;
    for (;;) {
      std::string body;
      if (!read_request(fd, in, body)) break;
      const ScriptedReply* reply;
      {
        std::lock_guard lock(mu_);
        reply = &script_[std::min(bodies_.size(), script_.size() - 1)];
        bodies_.push_back(std::move(body));
      }
      if (!write_reply(fd, *reply) || reply->after == ScriptedReply::After::close) break;
      if (reply->after == ScriptedReply::After::hold) {
        hold(fd);
        break;
      }
    }
    std::lock_guard lock(mu_);
    open_.erase(std::remove(open_.begin(), open_.end(), fd), open_.end());
    ::close(fd);
  }

  // One request from `in` (topped up from the socket): false at EOF or on a head without end.
  static bool read_request(int fd, std::string& in, std::string& body) {
    size_t head_end;
    while ((head_end = in.find("\r\n\r\n")) == std::string::npos) {
      if (in.size() > (1u << 20) || !read_some(fd, in)) return false;
    }
    size_t length = 0;
    std::string head = in.substr(0, head_end);
    for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (size_t at = head.find("\r\ncontent-length:"); at != std::string::npos)
      length = std::stoul(head.substr(at + 17));
    const size_t total = head_end + 4 + length;
    while (in.size() < total)
      if (!read_some(fd, in)) return false;
    body = in.substr(head_end + 4, length);
    in.erase(0, total);
    return true;
  }

  static bool read_some(int fd, std::string& in) {
    char buf[65536];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return false;
    in.append(buf, static_cast<size_t>(n));
    return true;
  }

  bool write_reply(int fd, const ScriptedReply& reply) {
    for (const ScriptedReply::Piece& piece : reply.pieces) {
      for (int i = 0; i < piece.times; ++i) {
        if (i > 0 && piece.gap.count() > 0) {
          std::unique_lock lock(mu_);
          if (stop_cv_.wait_for(lock, piece.gap, [this] { return stopping_; })) return false;
        }
        for (size_t sent = 0; sent < piece.bytes.size();) {
          const ssize_t n =
              ::send(fd, piece.bytes.data() + sent, piece.bytes.size() - sent, MSG_NOSIGNAL);
          if (n <= 0) return false;  // the client went away
          sent += static_cast<size_t>(n);
        }
      }
    }
    return true;
  }

  // Silent until the client closes the connection or the server stops (bounded: 60 s).
  void hold(int fd) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    char buf[4096];
    while (std::chrono::steady_clock::now() < until) {
      {
        std::lock_guard lock(mu_);
        if (stopping_) return;
      }
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 100) < 0) return;
      if ((p.revents & (POLLIN | POLLHUP | POLLERR)) && ::read(fd, buf, sizeof buf) <= 0) return;
    }
  }

  const std::vector<ScriptedReply> script_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::thread accept_thread_;
  std::atomic<size_t> accepted_{0};
  mutable std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::vector<int> open_;
  std::vector<std::thread> connections_;
  std::vector<std::string> bodies_;
};

}  // namespace flexllm::test
