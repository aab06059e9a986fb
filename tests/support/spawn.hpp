// Starting a child process for the tests: its own arguments, environment and working directory,
// its standard streams as the caller sets them up, and default signal handling whatever the test
// runner set (a child must die of SIGTERM/SIGINT like any program). Header-only.
#pragma once

#include <signal.h>
#include <spawn.h>

#include <cerrno>
#include <string>
#include <vector>

namespace flexllm::test {

// Starts `path` with `args` (argv[0] included) and `env` ("NAME=value"), in `cwd` ("" = ours),
// its standard streams as `fa` sets them up. Returns its pid, or -1 (errno says why) when it cannot
// be started.
inline pid_t spawn_process(const std::string& path, std::vector<std::string> args,
                           std::vector<std::string> env, const std::string& cwd,
                           posix_spawn_file_actions_t* fa) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(fa, cwd.c_str());
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, path.c_str(), fa, &attr, argv.data(), envp.data());
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    errno = rc;
    return -1;
  }
  return pid;
}

}  // namespace flexllm::test
