// A real redis-server for tests: started on a free loopback port without persistence, ready once
// it answers PING, stopped (or killed, to test outages) by the test. Tests that need it fail with
// a clear message when /usr/bin/redis-server is missing: they never skip silently.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace redis_test {

using namespace std::chrono_literals;

constexpr const char* kRedisServer = "/usr/bin/redis-server";

struct ReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyFree>;

// A plain hiredis connection for looking at the server directly.
class RedisClient {
 public:
  explicit RedisClient(int port, const std::string& password = "") {
    ctx_ = redisConnectWithTimeout("127.0.0.1", port, {1, 0});
    if (ctx_ && !ctx_->err && !password.empty()) command({"AUTH", password});
  }
  ~RedisClient() {
    if (ctx_) redisFree(ctx_);
  }
  bool ok() const { return ctx_ && !ctx_->err; }
  Reply command(std::initializer_list<std::string> args) {
    std::vector<const char*> ptr;
    std::vector<size_t> len;
    for (const std::string& a : args) {
      ptr.push_back(a.data());
      len.push_back(a.size());
    }
    return Reply(static_cast<redisReply*>(
        redisCommandArgv(ctx_, static_cast<int>(ptr.size()), ptr.data(), len.data())));
  }
  long long integer(std::initializer_list<std::string> args) {
    Reply r = command(args);
    EXPECT_TRUE(r && r->type == REDIS_REPLY_INTEGER);
    return r && r->type == REDIS_REPLY_INTEGER ? r->integer : -99;
  }

 private:
  redisContext* ctx_ = nullptr;
};

inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    ADD_FAILURE() << "cannot find a free port: " << std::strerror(errno);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// redis-server on 127.0.0.1, no persistence; stopped with the object.
class RedisServer {
 public:
  ~RedisServer() { stop(SIGTERM); }

  // Starts it and waits until it answers; false (with a test failure saying why) otherwise.
  bool start(int port, const std::string& password = "") {
    port_ = port;
    password_ = password;
    std::string p = std::to_string(port);
    std::vector<std::string> args = {
        kRedisServer, "--port", p, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"};
    if (!password.empty()) args.insert(args.end(), {"--requirepass", password});
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawn(&pid_, kRedisServer, &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      ADD_FAILURE() << "cannot start " << kRedisServer << ": " << std::strerror(rc);
      pid_ = -1;
      return false;
    }
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        ADD_FAILURE() << "redis-server exited at start (status " << status << ")";
        return false;
      }
      RedisClient client(port_, password_);
      if (client.ok()) {
        Reply pong = client.command({"PING"});
        if (pong && pong->type == REDIS_REPLY_STATUS && std::string(pong->str) == "PONG")
          return true;
      }
      std::this_thread::sleep_for(5ms);  // polling, bounded by the deadline
    }
    ADD_FAILURE() << "redis-server on port " << port_ << " did not answer PING within 10 s";
    return false;
  }

  void stop(int signal) {
    if (pid_ <= 0) return;
    ::kill(pid_, signal);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  int port() const { return port_; }
  std::string url(const std::string& suffix = "") const {
    return "redis://127.0.0.1:" + std::to_string(port_) + suffix;
  }
  RedisClient client() const { return RedisClient(port_, password_); }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string password_;
};

}  // namespace redis_test
