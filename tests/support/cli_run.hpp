// Runs the built `flexllm` binary as a user would: a child process with its own environment
// (never the developer's FLEXLLM_*/OPENAI_* variables or real HOME), working directory and stdin,
// its stdout and stderr collected. Header-only; tests define FLEXLLM_BIN.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "spawn.hpp"

namespace flexllm::test {

struct CliOptions {
  std::map<std::string, std::string> env{};  // on top of PATH and HOME
  std::string home{};                        // HOME ("" = /nonexistent)
  std::string cwd{};                         // "" = the test's
  std::string stdin_text{};                  // written to the child's stdin, then closed
  std::chrono::milliseconds limit = std::chrono::seconds(60);  // killed after this
};

struct CliResult {
  int status = -1;  // exit code, or 128 + signal
  std::string out;
  std::string err;
};

// The environment a child gets: PATH (ours), HOME (`home`, or /nonexistent) and `extra`.
inline std::vector<std::string> child_environment(const std::string& home,
                                                  const std::map<std::string, std::string>& extra) {
  std::vector<std::string> env = {
      "PATH=" + std::string(std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin"),
      "HOME=" + (home.empty() ? std::string("/nonexistent") : home)};
  for (const auto& [k, v] : extra) env.push_back(k + "=" + v);
  return env;
}

// Starts the built command with `args` and `env`, in `cwd` ("" = ours), its standard streams as
// `fa` sets them up. Returns its pid, or -1.
inline pid_t spawn_flexllm(std::vector<std::string> args, std::vector<std::string> env,
                           const std::string& cwd, posix_spawn_file_actions_t* fa) {
  args.insert(args.begin(), FLEXLLM_BIN);
  return spawn_process(FLEXLLM_BIN, std::move(args), std::move(env), cwd, fa);
}

// A running child; `finish()` feeds its stdin, collects its output and waits for it.
class CliProcess {
 public:
  CliProcess(std::vector<std::string> args, const CliOptions& options) : options_(options) {
    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
      throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    pid_ = spawn_flexllm(std::move(args), child_environment(options.home, options.env), options.cwd,
                         &fa);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    in_ = in[1];
    out_ = out[0];
    err_ = err[0];
    if (pid_ < 0) throw std::runtime_error("posix_spawn failed");
    deadline_ = std::chrono::steady_clock::now() + options.limit;
    input_ = options.stdin_text;
  }
  CliProcess(const CliProcess&) = delete;
  CliProcess& operator=(const CliProcess&) = delete;
  ~CliProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    for (int fd : {in_, out_, err_})
      if (fd >= 0) close(fd);
  }

  pid_t pid() const { return pid_; }
  // More for the child's stdin (written as it reads; stdin closes in finish()).
  void send(const std::string& text) { input_ += text; }
  void signal(int sig) const { kill(pid_, sig); }

  // Reads the child's output until `text` appears in its stderr (stdout) or the child ends / the
  // limit passes; what was read stays part of the result.
  bool wait_for_stderr(const std::string& text) { return wait_for(result_.err, text); }
  bool wait_for_stdout(const std::string& text) { return wait_for(result_.out, text); }

  CliResult finish() {
    while (pump(true)) {
    }
    int status = 0;
    if (std::chrono::steady_clock::now() >= deadline_) kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = -1;
    result_.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return result_;
  }

 private:
  bool wait_for(const std::string& sink, const std::string& text) {
    while (sink.find(text) == std::string::npos) {
      if (!pump(/*feed_all=*/false)) return sink.find(text) != std::string::npos;
    }
    return true;
  }

  // One round of I/O; false once both outputs are closed or the limit passed.
  bool pump(bool feed_all) {
    if (out_ < 0 && err_ < 0) return false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline_ - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    std::vector<pollfd> fds;
    if (out_ >= 0) fds.push_back({out_, POLLIN, 0});
    if (err_ >= 0) fds.push_back({err_, POLLIN, 0});
    const bool feeding = in_ >= 0 && (feed_all || written_ < input_.size());
    if (feeding) fds.push_back({in_, POLLOUT, 0});
    if (poll(fds.data(), fds.size(), static_cast<int>(left.count())) <= 0) return true;
    for (const pollfd& p : fds) {
      if (!p.revents) continue;
      if (p.fd == in_) {
        if (written_ < input_.size()) {
          ssize_t n = write(in_, input_.data() + written_, input_.size() - written_);
          if (n > 0) written_ += static_cast<size_t>(n);
          if (n < 0) written_ = input_.size();
        }
        if (feed_all && written_ >= input_.size()) {
          close(in_);
          in_ = -1;
        }
        continue;
      }
      char buf[65536];
      ssize_t n = read(p.fd, buf, sizeof buf);
      std::string& sink = p.fd == out_ ? result_.out : result_.err;
      if (n > 0) {
        sink.append(buf, static_cast<size_t>(n));
      } else {
        close(p.fd);
        (p.fd == out_ ? out_ : err_) = -1;
      }
    }
    return true;
  }

  CliOptions options_;
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1, err_ = -1;
  std::string input_;
  size_t written_ = 0;
  CliResult result_;
  std::chrono::steady_clock::time_point deadline_;
};

inline CliResult run_cli(std::vector<std::string> args, const CliOptions& options = {}) {
  CliProcess p(std::move(args), options);
  return p.finish();
}

}  // namespace flexllm::test
