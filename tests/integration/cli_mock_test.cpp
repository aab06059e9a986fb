// `flexllm mock` as a user runs it: the built binary in a child process.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "http.hpp"

extern char** environ;

namespace {

using namespace flexllm::test;

struct Child {
  pid_t pid = -1;
  int out = -1;  // the child's stdout
  int err = -1;  // the child's stderr

  ~Child() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    if (out >= 0) close(out);
    if (err >= 0) close(err);
  }
  int wait() {
    int status = 0;
    waitpid(pid, &status, 0);
    pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
};

std::unique_ptr<Child> spawn(std::vector<std::string> args) {
  args.insert(args.begin(), FLEXLLM_BIN);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int out[2], err[2];
  EXPECT_EQ(pipe(out), 0);
  EXPECT_EQ(pipe(err), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  posix_spawn_file_actions_addclose(&fa, out[0]);
  posix_spawn_file_actions_addclose(&fa, err[0]);
  auto child = std::make_unique<Child>();
  EXPECT_EQ(posix_spawn(&child->pid, FLEXLLM_BIN, &fa, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  close(out[1]);
  close(err[1]);
  child->out = out[0];
  child->err = err[0];
  return child;
}

// Reads from `fd` until `stop` is seen, EOF, or `limit` passes.
std::string read_until(int fd, const std::string& stop, std::chrono::milliseconds limit = 10s) {
  std::string got;
  auto deadline = std::chrono::steady_clock::now() + limit;
  char buf[4096];
  while (got.find(stop) == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

TEST(CliMock, PrintsItsUrlServesAndStopsOnSigterm) {
  auto child = spawn({"mock", "--port", "0", "--echo", "--seed", "3"});
  std::string line = read_until(child->out, "\n");
  ASSERT_EQ(line.rfind("http://127.0.0.1:", 0), 0u) << line;
  std::string url = line.substr(0, line.find('\n'));
  EXPECT_EQ(url.substr(url.size() - 3), "/v1");
  auto r = http({.url = url + "/chat/completions", .body = chat_body("hello cli")});
  ASSERT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.json_body()["choices"][0]["message"]["content"], "hello cli");
  kill(child->pid, SIGTERM);
  EXPECT_EQ(child->wait(), 0);
  EXPECT_NE(read_until(child->err, "stopped after 1 chat requests").find("stopped after 1"),
            std::string::npos);
}

TEST(CliMock, FaultDrawsGiveRunsOfErrorsUnlessEven) {
  // By default (independent draws) a 0.3 rate fails two requests in a row now and then; with
  // --fault-draws even it never does.
  auto longest_run = [](std::vector<std::string> extra) {
    std::vector<std::string> args = {"mock", "--port", "0", "--seed", "4", "--error-rate", "0.3"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto child = spawn(args);
    std::string line = read_until(child->out, "\n");
    EXPECT_EQ(line.rfind("http://127.0.0.1:", 0), 0u) << line;
    std::string url = line.substr(0, line.find('\n'));
    int run = 0, longest = 0;
    for (int i = 0; i < 200; ++i) {
      int status = http({.url = url + "/chat/completions", .body = chat_body("x")}).status;
      run = status == 500 ? run + 1 : 0;
      longest = std::max(longest, run);
    }
    kill(child->pid, SIGTERM);
    EXPECT_EQ(child->wait(), 0);
    return longest;
  };
  EXPECT_GE(longest_run({}), 2) << "no two consecutive requests both got 500";
  EXPECT_EQ(longest_run({"--fault-draws", "even"}), 1);
}

TEST(CliMock, BadFlagsExitWithCode2AndSayWhy) {
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{"mock", "--latency", "fast"}, "--latency"},
      {{"mock", "--error-rate", "1.5"}, "--error-rate"},
      {{"mock", "--thinking", "loud"}, "--thinking"},
      {{"mock", "--fault-draws", "random"}, "--fault-draws"},
      {{"mock", "--no-such-flag"}, "--no-such-flag"},
      {{"mock", "--error-rate", "0.7", "--drop-rate", "0.7"}, "add up to 1.4"},
      {{"mock", "--response-len", "0"}, "response_tokens"},
      {{"mock", "--port", "70000"}, "--port"},
      {{"frobnicate"}, "frobnicate"},
  };
  for (const auto& [args, says] : cases) {
    auto child = spawn(args);
    std::string err = read_until(child->err, "\x01", 5s);  // everything until EOF
    EXPECT_EQ(child->wait(), 2) << args.back();
    EXPECT_NE(err.find(says), std::string::npos) << "stderr: " << err;
  }
}

TEST(CliMock, VersionAndHelp) {
  auto v = spawn({"--version"});
  EXPECT_EQ(read_until(v->out, "\n").rfind("flexllm ", 0), 0u);
  EXPECT_EQ(v->wait(), 0);
  auto h = spawn({"mock", "--help"});
  std::string help = read_until(h->out, "\x01", 5s);
  EXPECT_EQ(h->wait(), 0);
  for (const char* flag : {"--latency", "--token-rate", "--thinking", "--error-rate", "--rate-429",
                           "--drop-rate", "--hang-rate", "--malformed-rate", "--truncate-rate",
                           "--fault-draws", "--max-qps", "--log", "--echo", "--seed", "Examples:"})
    EXPECT_NE(help.find(flag), std::string::npos) << flag;
}

}  // namespace
