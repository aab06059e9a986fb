// An HTTP CONNECT proxy on 127.0.0.1 for tests of HTTPS_PROXY: it answers `CONNECT host:port`
// with 200 and splices bytes both ways, one thread per tunnel. Counts the tunnels it opened and
// remembers their targets. Header-only.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace flexllm::test {

class ConnectProxy {
 public:
  ConnectProxy() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ::listen(listen_fd_, 64);
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~ConnectProxy() {
    stopping_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    accept_thread_.join();
    ::close(listen_fd_);
    std::lock_guard lock(mu_);
    for (std::thread& t : tunnels_) t.join();
  }
  ConnectProxy(const ConnectProxy&) = delete;
  ConnectProxy& operator=(const ConnectProxy&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  size_t tunnels() const { return opened_.load(); }
  std::vector<std::string> targets() const {
    std::lock_guard lock(mu_);
    return targets_;
  }

 private:
  void accept_loop() {
    while (!stopping_) {
      int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        if (stopping_) return;
        continue;
      }
      std::lock_guard lock(mu_);
      tunnels_.emplace_back([this, c] { tunnel(c); });
    }
  }

  // Reads the CONNECT request (up to its blank line), connects, answers 200, then splices.
  void tunnel(int client) {
    std::string head;
    char buf[16384];
    while (head.find("\r\n\r\n") == std::string::npos && head.size() < 8192) {
      ssize_t n = ::read(client, buf, sizeof buf);
      if (n <= 0) return (void)::close(client);
      head.append(buf, static_cast<size_t>(n));
    }
    std::string extra = head.substr(head.find("\r\n\r\n") + 4);
    if (!head.starts_with("CONNECT ")) {
      const char kBad[] = "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n";
      (void)!::write(client, kBad, sizeof kBad - 1);
      return (void)::close(client);
    }
    std::string target = head.substr(8, head.find(' ', 8) - 8);
    {
      std::lock_guard lock(mu_);
      targets_.push_back(target);
    }
    const size_t colon = target.rfind(':');
    int upstream = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(std::stoi(target.substr(colon + 1))));
    const std::string host = target.substr(0, colon);
    ::inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host.c_str(), &a.sin_addr);
    if (::connect(upstream, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      const char kBad[] = "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";
      (void)!::write(client, kBad, sizeof kBad - 1);
      ::close(upstream);
      return (void)::close(client);
    }
    ++opened_;
    const char kOk[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    (void)!::write(client, kOk, sizeof kOk - 1);
    if (!extra.empty()) (void)!::write(upstream, extra.data(), extra.size());
    pollfd fds[2] = {{client, POLLIN, 0}, {upstream, POLLIN, 0}};
    while (!stopping_) {
      if (::poll(fds, 2, 200) < 0) break;
      bool done = false;
      for (int i = 0; i < 2 && !done; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
        if (n <= 0 || ::write(fds[1 - i].fd, buf, static_cast<size_t>(n)) != n) done = true;
      }
      if (done) break;
    }
    ::close(upstream);
    ::close(client);
  }

  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> opened_{0};
  std::thread accept_thread_;
  mutable std::mutex mu_;
  std::vector<std::thread> tunnels_;
  std::vector<std::string> targets_;
};

}  // namespace flexllm::test
