// `flexllm batch` killed for real: the built command in child processes, SIGKILLed at random
// moments and during compaction, against a mock that fails, rate-limits, drops and hangs requests
// at random (docs/checkpoint.md is the contract checked). Each case runs a 2000-item job to its end
// through the kills and checks that the output holds exactly one answer per input, that nothing
// durable was asked for again, and that the answers lost to the kills stay within a bound.
//
// Nothing here sleeps to synchronise: the test waits on the mock's stats, on inotify and on the
// children (pidfd), every wait bounded.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_run.hpp"
#include "files.hpp"
#include "flexllm/mock/server.hpp"

namespace {

using flexllm::mock::FaultDraws;
using flexllm::mock::MockConfig;
using flexllm::mock::MockServer;
using flexllm::mock::MockStats;
using flexllm::mock::Outcome;
using flexllm::test::read_whole_file;
using json = nlohmann::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr size_t kItems = 2000;
const std::string kOut = "out.jsonl";
const std::string kTmp = "out.jsonl.compact.tmp";
const std::string kLock = "out.jsonl.lock";

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The built command as a child: its own environment (PATH and a fresh HOME), working directory
// and default signal handling; stdin /dev/null, stdout and stderr in files (a child never blocks
// on a pipe nobody reads). Killed and reaped when destroyed.
class Child {
 public:
  Child(const fs::path& dir, const fs::path& log_base, std::vector<std::string> args) {
    out_path_ = log_base.string() + ".out";
    err_path_ = log_base.string() + ".err";
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    started_ = Clock::now();
    pid_ = flexllm::test::spawn_flexllm(
        std::move(args), flexllm::test::child_environment((dir / "home").string(), {}),
        dir.string(), &fa);
    posix_spawn_file_actions_destroy(&fa);
    if (pid_ < 0) {
      ADD_FAILURE() << "posix_spawn " << FLEXLLM_BIN << " failed";
      return;
    }
    pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
    if (pidfd_ < 0) ADD_FAILURE() << "pidfd_open: " << std::strerror(errno);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (pidfd_ >= 0) ::close(pidfd_);
  }

  pid_t pid() const { return pid_; }
  int pidfd() const { return pidfd_; }
  Clock::time_point started() const { return started_; }
  bool running() const {
    if (status_ || pid_ <= 0) return false;
    pollfd p{pidfd_, POLLIN, 0};
    return ::poll(&p, 1, 0) == 0;
  }
  void kill9() const {
    if (pid_ > 0 && !status_) ::kill(pid_, SIGKILL);
  }
  // The exit code (128 + signal when killed), or nullopt if it has not ended within `limit`.
  std::optional<int> wait(std::chrono::milliseconds limit) {
    if (status_ || pid_ <= 0) return status_;
    pollfd p{pidfd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) <= 0) return std::nullopt;
    int st = 0;
    ::waitpid(pid_, &st, 0);
    ended_ = Clock::now();
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return status_;
  }
  // Seconds from spawn to the end (valid once wait() returned a status).
  double runtime() const { return std::chrono::duration<double>(ended_ - started_).count(); }
  std::string err() const { return read_whole_file(err_path_); }

 private:
  pid_t pid_ = -1;
  int pidfd_ = -1;
  std::optional<int> status_;
  Clock::time_point started_, ended_;
  std::string out_path_, err_path_;
};

// out.jsonl as it is on disk.
struct FileState {
  std::string bytes;
  std::vector<json> records;          // the complete lines, in file order
  std::map<size_t, json> latest;      // index -> its latest record (latest wins)
  std::map<size_t, std::string> raw;  // index -> its latest record's line
  bool torn_tail = false;             // the file ends in a partial line
  std::vector<std::string> problems;  // complete lines that are not JSON records

  std::set<size_t> durable() const {
    std::set<size_t> out;
    for (const auto& [i, r] : latest)
      if (r.value("status", "") == "success") out.insert(i);
    return out;
  }
  // The file as compaction writes it: the latest record of each index, sorted.
  std::string compacted() const {
    std::string out;
    for (const auto& [i, line] : raw) out += line + "\n";
    return out;
  }
  bool in_index_order() const {
    for (size_t k = 0; k < records.size(); ++k)
      if (records[k].value("index", size_t{0}) != k) return false;
    return true;
  }
};

FileState read_state(const fs::path& path) {
  FileState s;
  s.bytes = read_whole_file(path);
  size_t pos = 0;
  size_t line_no = 0;
  while (pos < s.bytes.size()) {
    size_t nl = s.bytes.find('\n', pos);
    ++line_no;
    if (nl == std::string::npos) {
      s.torn_tail = true;
      break;
    }
    std::string line = s.bytes.substr(pos, nl - pos);
    pos = nl + 1;
    json rec = json::parse(line, nullptr, false);
    if (rec.is_discarded() || !rec.is_object() || !rec.contains("index") ||
        !rec["index"].is_number_unsigned()) {
      s.problems.push_back("line " + std::to_string(line_no) + ": " + line.substr(0, 200));
      continue;
    }
    const size_t i = rec["index"].get<size_t>();
    s.latest[i] = rec;
    s.raw[i] = line;
    s.records.push_back(std::move(rec));
  }
  return s;
}

// Indices asked for in the arrivals after `after_seq` ("p<i>" echoes back to i).
std::vector<size_t> requested_since(const MockServer& mock, uint64_t after_seq) {
  std::vector<size_t> out;
  for (const auto& a : mock.stats().arrivals) {
    if (a.seq <= after_seq) continue;
    if (a.last_user.size() < 2 || a.last_user[0] != 'p') {
      ADD_FAILURE() << "an arrival with an unexpected prompt: " << a.last_user;
      continue;
    }
    out.push_back(std::stoul(a.last_user.substr(1)));
  }
  return out;
}

uint64_t last_seq(const MockServer& mock) {
  auto st = mock.stats();
  return st.arrivals.empty() ? 0 : st.arrivals.back().seq;
}

uint64_t served_ok(const MockServer& mock) {
  return mock.stats(false).count(Outcome::ok);
}

class CliCrash : public ::testing::TestWithParam<uint64_t> {
 protected:
  void SetUp() override {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (char& c : name)
      if (c == '/') c = '_';
    dir_ = fs::temp_directory_path() / ("flexllm_crash_" + std::to_string(getpid()) + "_" + name);
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "home");
    fs::create_directories(dir_ / "logs");  // outside the watched directory's own entries
    std::string in;
    for (size_t i = 0; i < kItems; ++i) in += "{\"prompt\": \"p" + std::to_string(i) + "\"}\n";
    std::ofstream(dir_ / "in.jsonl") << in;
    // Short backoff for 500s and drops (429s still wait the server's 1 s hint).
    std::ofstream(dir_ / "cfg.yaml") << "batch:\n  retry_delay: 0.05\n";
    rng_.seed(static_cast<std::mt19937::result_type>(GetParam()));
    mock_ = std::make_unique<MockServer>(mock_config());
  }
  void TearDown() override {
    children_.clear();  // kills and reaps whatever still runs
    mock_.reset();
    if (HasFailure())
      std::printf("[ crash ] kept %s for inspection\n", dir_.c_str());
    else
      fs::remove_all(dir_);
  }

  MockConfig mock_config() const {
    MockConfig c;
    c.seed = GetParam();
    c.echo = true;
    c.latency_ms = {20, 120};
    c.faults = {.http_error = 0.05, .rate_429 = 0.05, .drop = 0.02, .hang = 0.01};
    c.fault_draws = FaultDraws::independent;
    c.retry_after = 1000ms;
    return c;
  }

  Child& start(const std::string& url) {
    // The job's command line; only the endpoint varies.
    std::vector<std::string> args = {"--config", "cfg.yaml", "batch", "in.jsonl", "-o", kOut};
    for (const char* a : {"-m", "mock-model", "-c", "32", "--timeout", "2", "--retry-times", "8",
                          "--flush-interval", "0.1", "--no-progress", "--base-url"})
      args.push_back(a);
    args.push_back(url);
    fs::path log = dir_ / "logs" / ("run" + std::to_string(children_.size()));
    children_.push_back(std::make_unique<Child>(dir_, log, std::move(args)));
    return *children_.back();
  }

  // Waits until the mock has sent `target` successful answers in all, while `child` runs. The mock
  // counts an outcome when the request arrives: those still in flight are not answered yet.
  bool wait_served(uint64_t target, const Child& child) {
    const auto deadline = Clock::now() + 90s;
    while (Clock::now() < deadline) {
      if (mock_->wait_for(
              [&](const MockStats& s) { return s.count(Outcome::ok) >= target + s.in_flight; },
              100ms))
        return true;
      if (!child.running()) return false;
    }
    return false;
  }

  // After a kill: every connection of the dead process closed, so all its requests are counted.
  void wait_mock_quiet() {
    EXPECT_TRUE(mock_->wait_for([](const MockStats& s) { return s.connections_open == 0; }, 10s))
        << "the mock still has connections open after the client died";
  }

  // A random moment of a run: `base` (the answers served before it started) plus a count of
  // answers between 10 % and 80 % of what it has to do.
  uint64_t random_target(uint64_t base, size_t remaining) {
    std::uniform_real_distribution<double> frac(0.10, 0.80);
    return base + std::max<uint64_t>(1, static_cast<uint64_t>(frac(rng_) * remaining));
  }

  // After a run killed while `durable` was in the file: nothing durable was asked for again.
  void expect_no_durable_requested(const std::set<size_t>& durable, uint64_t after_seq,
                                   const std::string& run) {
    size_t again = 0;
    std::string first;
    for (size_t i : requested_since(*mock_, after_seq))
      if (durable.count(i) && again++ < 5) first += " " + std::to_string(i);
    EXPECT_EQ(again, 0u) << run << ": " << again
                         << " request(s) for indices durable before the run, e.g." << first;
  }

  // After a kill at `killed_at` of the run whose requests came after `after_seq`: the answers it
  // was sent long enough before the kill (the reply's latency, a flush interval, and a generous
  // second for the write, fdatasync and a busy machine) are in the file. Returns how many
  // successful answers served to the run are not in the file (the kill's cost).
  size_t expect_old_answers_durable(uint64_t after_seq, Clock::time_point killed_at,
                                    const std::set<size_t>& durable_after, const std::string& run) {
    const auto old_enough = killed_at - (120ms + 100ms + 1s);
    size_t lost = 0, lost_old = 0;
    std::string first;
    for (const auto& a : mock_->stats().arrivals) {
      if (a.seq <= after_seq || a.outcome != Outcome::ok) continue;
      const size_t i = std::stoul(a.last_user.substr(1));
      if (durable_after.count(i)) continue;
      ++lost;
      if (a.at < old_enough && lost_old++ < 5)
        first += " " + std::to_string(i) + " (" +
                 std::to_string(std::chrono::duration<double>(killed_at - a.at).count()) +
                 " s before the kill)";
    }
    EXPECT_EQ(lost_old, 0u) << run << ": " << lost_old
                            << " answer(s) served over 1.2 s before the kill are not in the file:"
                            << first;
    return lost;
  }

  void expect_complete_output() {
    FileState s = read_state(dir_ / kOut);
    EXPECT_FALSE(s.torn_tail) << "the finished output ends in a partial line";
    EXPECT_TRUE(s.problems.empty())
        << s.problems.size()
        << " bad line(s), first: " << (s.problems.empty() ? "" : s.problems.front());
    ASSERT_EQ(s.records.size(), kItems) << "records in the finished output";
    std::set<size_t> seen;
    size_t wrong = 0;
    for (size_t k = 0; k < s.records.size(); ++k) {
      const json& r = s.records[k];
      const size_t i = r["index"].get<size_t>();
      EXPECT_TRUE(seen.insert(i).second) << "index " << i << " recorded twice";
      if (r.value("status", "") != "success" || r.value("output", "") != "p" + std::to_string(i)) {
        if (wrong++ < 5) ADD_FAILURE() << "record " << k << ": " << r.dump().substr(0, 300);
      }
      EXPECT_EQ(i, k) << "the finished output is not in index order";
      if (i != k) break;
    }
    EXPECT_EQ(wrong, 0u) << "records that are not the echoed success";
    EXPECT_EQ(seen.size(), kItems);
    if (!seen.empty()) {
      EXPECT_EQ(*seen.rbegin(), kItems - 1);
    }
    EXPECT_FALSE(fs::exists(dir_ / kTmp)) << "stray " << kTmp;
    EXPECT_FALSE(fs::exists(dir_ / kLock)) << "stray " << kLock;
  }

  void expect_served_bound(const std::string& what) {
    const uint64_t ok = served_ok(*mock_);
    const double ratio = static_cast<double>(ok) / kItems;
    std::printf("[ crash ] %s seed %llu: %llu successful answers served for %zu items (%.3f x N)\n",
                what.c_str(), static_cast<unsigned long long>(GetParam()),
                static_cast<unsigned long long>(ok), kItems, ratio);
    RecordProperty("served_ratio", std::to_string(ratio));
    EXPECT_LE(ok * 4, kItems * 5) << "more than 1.25 x N answers served: " << ok;
  }

  fs::path dir_;
  std::mt19937 rng_;
  std::unique_ptr<MockServer> mock_;
  std::vector<std::unique_ptr<Child>> children_;
};

// A run orphaned by its wrapper keeps writing while the job is started again: the new runs are
// refused at once (exit 2, naming the file and the running pid) and send nothing. Once the
// orphan is killed, the job is accepted again and finishes, re-asking nothing durable.
TEST_P(CliCrash, OrphanedRunLocksOutRestartsUntilKilled) {
  const auto case_start = Clock::now();
  Child& a = start(mock_->base_url());
  // A has sent some requests.
  ASSERT_TRUE(mock_->wait_for([](const MockStats& s) { return s.requests >= 32; }, 30s))
      << "run A sent no requests: " << a.err();
  ASSERT_TRUE(a.running()) << a.err();
  EXPECT_EQ(read_whole_file(dir_ / kLock), std::to_string(a.pid()) + "\n") << "the lock file's pid";

  // B and C: the same job restarted while A writes. They talk to a mock of their own, so any
  // request they sent would show there.
  MockServer other(mock_config());
  Child& b = start(other.base_url());
  Child& c = start(other.base_url());
  for (Child* late : {&b, &c}) {
    std::optional<int> status = late->wait(10s);
    ASSERT_TRUE(status.has_value()) << "a second run on a locked output did not end";
    const std::string err = late->err();
    EXPECT_EQ(*status, 2) << err;
    EXPECT_LE(late->runtime(), 1.0) << "refused, but not at once";
    EXPECT_NE(err.find(kOut), std::string::npos) << err;
    EXPECT_NE(err.find("pid " + std::to_string(a.pid())), std::string::npos) << err;
    std::printf("[ crash ] seed %llu: run pid %d refused in %.3f s: %s",
                static_cast<unsigned long long>(GetParam()), static_cast<int>(late->pid()),
                late->runtime(), err.c_str());
  }
  EXPECT_EQ(other.stats(false).requests, 0u) << "a refused run sent requests";
  EXPECT_EQ(other.stats(false).other_requests, 0u) << "a refused run sent requests";
  ASSERT_TRUE(a.running()) << "A ended before B and C were refused: " << a.err();
  EXPECT_EQ(read_whole_file(dir_ / kLock), std::to_string(a.pid()) + "\n")
      << "a refused run touched it";

  // Kill A at a random moment.
  const uint64_t target = random_target(0, kItems);
  ASSERT_TRUE(wait_served(target, a)) << "A did not reach " << target << " answers: " << a.err();
  const auto killed_at = Clock::now();
  a.kill9();
  ASSERT_EQ(a.wait(10s), 128 + SIGKILL) << a.err();
  wait_mock_quiet();
  EXPECT_TRUE(fs::exists(dir_ / kLock)) << "a run killed with SIGKILL leaves its lock file";
  FileState before = read_state(dir_ / kOut);
  EXPECT_TRUE(before.problems.empty()) << before.problems.front();
  const std::set<size_t> durable = before.durable();
  const size_t lost = expect_old_answers_durable(0, killed_at, durable, "A");
  std::printf(
      "[ crash ] seed %llu: A killed after %.2f s at %llu answers served: %zu durable, "
      "%zu answers lost\n",
      static_cast<unsigned long long>(GetParam()), a.runtime(),
      static_cast<unsigned long long>(served_ok(*mock_)), durable.size(), lost);

  // The job again: accepted now (the lock died with A), and it finishes.
  const uint64_t seq = last_seq(*mock_);
  Child& d = start(mock_->base_url());
  std::optional<int> status = d.wait(100s);
  ASSERT_TRUE(status.has_value()) << "the rerun did not finish";
  EXPECT_EQ(*status, 0) << d.err();
  expect_no_durable_requested(durable, seq, "the rerun after A was killed");
  expect_complete_output();
  expect_served_bound("orphan");
  std::printf("[ crash ] seed %llu: orphan case took %.1f s (final run %.1f s)\n",
              static_cast<unsigned long long>(GetParam()), seconds_since(case_start), d.runtime());
}

// Five kills at random moments, then kills at the stages of the final compaction (as the copy is
// created, once it is written, once it is closed), each followed by a rerun; the last completes.
TEST_P(CliCrash, KilledAtRandomAndDuringCompactionResumesExactly) {
  const auto case_start = Clock::now();
  const int kRandomKills = 5;
  for (int round = 0; round < kRandomKills; ++round) {
    SCOPED_TRACE("random kill " + std::to_string(round + 1));
    FileState before = read_state(dir_ / kOut);
    ASSERT_TRUE(before.problems.empty()) << before.problems.front();
    const std::set<size_t> durable = before.durable();
    const uint64_t seq = last_seq(*mock_);
    const uint64_t target = random_target(served_ok(*mock_), kItems - durable.size());
    Child& run = start(mock_->base_url());
    ASSERT_TRUE(wait_served(target, run))
        << "the run ended before " << target << " answers: " << run.err();
    const auto killed_at = Clock::now();
    run.kill9();
    ASSERT_EQ(run.wait(10s), 128 + SIGKILL) << run.err();
    wait_mock_quiet();
    expect_no_durable_requested(durable, seq, "run " + std::to_string(round + 1));
    FileState after = read_state(dir_ / kOut);
    EXPECT_TRUE(after.problems.empty()) << after.problems.front();
    const size_t lost = expect_old_answers_durable(seq, killed_at, after.durable(),
                                                   "run " + std::to_string(round + 1));
    std::printf(
        "[ crash ] seed %llu: kill %d after %.2f s, %zu requests, %llu answers served in all: "
        "%zu -> %zu durable, %zu answers lost%s\n",
        static_cast<unsigned long long>(GetParam()), round + 1, run.runtime(),
        requested_since(*mock_, seq).size(), static_cast<unsigned long long>(served_ok(*mock_)),
        durable.size(), after.durable().size(), lost, after.torn_tail ? " (torn last line)" : "");
  }

  // Kills during compaction, at three of its steps; inotify says when each happens.
  struct Stage {
    const char* name;
    uint32_t mask;
  };
  const Stage stages[] = {
      {"created", IN_CREATE}, {"written", IN_MODIFY}, {"closed", IN_CLOSE_WRITE}};
  int landed_before_rename = 0, events_seen = 0;
  bool finished = false;
  for (const Stage& stage : stages) {
    SCOPED_TRACE(std::string("compaction kill when the copy is ") + stage.name);
    FileState before = read_state(dir_ / kOut);
    ASSERT_TRUE(before.problems.empty()) << before.problems.front();
    const std::set<size_t> durable = before.durable();
    const uint64_t seq = last_seq(*mock_);
    const bool had_work = durable.size() < kItems;
    const int ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    ASSERT_GE(ino, 0) << std::strerror(errno);
    std::unique_ptr<const int, void (*)(const int*)> closer(&ino,
                                                            [](const int* fd) { ::close(*fd); });
    ASSERT_GE(inotify_add_watch(ino, dir_.c_str(), stage.mask), 0) << std::strerror(errno);
    Child& run = start(mock_->base_url());
    bool seen = false;
    const auto deadline = Clock::now() + 100s;
    while (!seen && Clock::now() < deadline) {
      pollfd fds[2] = {{ino, POLLIN, 0}, {run.pidfd(), POLLIN, 0}};
      if (::poll(fds, 2, 1000) <= 0) continue;
      if (fds[0].revents & POLLIN) {
        alignas(inotify_event) char buf[8192];
        ssize_t n = ::read(ino, buf, sizeof buf);
        for (ssize_t off = 0; n > 0 && off < n;) {
          auto* ev = reinterpret_cast<inotify_event*>(buf + off);
          if ((ev->mask & stage.mask) && ev->len > 0 && kTmp == ev->name) {
            run.kill9();  // at once: the rest can wait
            seen = true;
            break;
          }
          off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
        }
      }
      if (!seen && (fds[1].revents & POLLIN)) break;  // ended without compacting
    }
    closer.reset();
    std::optional<int> status = run.wait(10s);
    ASSERT_TRUE(status.has_value()) << "the run did not finish";
    wait_mock_quiet();
    expect_no_durable_requested(durable, seq, std::string("run killed when ") + stage.name);
    const bool tmp_left = fs::exists(dir_ / kTmp);
    FileState after = read_state(dir_ / kOut);
    std::string landed;
    // A kill that came too late (the run had ended: a busy machine) is reported, not failed.
    const bool too_late = seen && *status == 0;
    if (seen && !too_late) {
      ++events_seen;
      EXPECT_EQ(*status, 128 + SIGKILL) << run.err();
      // Whatever the moment, the output holds every answer, whole.
      EXPECT_TRUE(after.problems.empty()) << after.problems.front();
      EXPECT_FALSE(after.torn_tail);
      EXPECT_EQ(after.durable().size(), kItems) << "answers lost by a kill during compaction";
      if (tmp_left) {
        ++landed_before_rename;
        landed = "before the rename (" + kTmp + " left, " +
                 std::to_string(fs::file_size(dir_ / kTmp)) + " bytes)";
      } else {
        landed = "after the rename";
      }
      // With nothing new to write, the output is as it was or its compacted form.
      if (!had_work) {
        if (tmp_left)
          EXPECT_TRUE(after.bytes == before.bytes) << "the output changed before the rename";
        else
          EXPECT_TRUE(after.bytes == before.compacted()) << "the output is not its compacted form";
      }
    } else {
      landed = too_late ? "the kill came too late: the run had ended"
                        : "no compaction seen; the run exited " + std::to_string(*status);
      EXPECT_EQ(*status, 0) << run.err();
    }
    std::printf("[ crash ] seed %llu: compaction kill '%s': event %s, %s, %.2f s run\n",
                static_cast<unsigned long long>(GetParam()), stage.name, seen ? "seen" : "not seen",
                landed.c_str(), run.runtime());
    if (!seen || too_late) {
      finished = true;
      break;
    }
  }
  EXPECT_GE(events_seen, 1) << "no kill landed during compaction";

  // The last run completes.
  if (!finished) {
    const std::set<size_t> durable = read_state(dir_ / kOut).durable();
    const uint64_t seq = last_seq(*mock_);
    Child& run = start(mock_->base_url());
    std::optional<int> status = run.wait(100s);
    ASSERT_TRUE(status.has_value()) << "the final run did not finish";
    EXPECT_EQ(*status, 0) << run.err();
    expect_no_durable_requested(durable, seq, "the final run");
  }
  expect_complete_output();
  expect_served_bound("kills");
  std::printf(
      "[ crash ] seed %llu: %d compaction event(s) seen, %d kill(s) before the rename; "
      "case took %.1f s\n",
      static_cast<unsigned long long>(GetParam()), events_seen, landed_before_rename,
      seconds_since(case_start));
}

INSTANTIATE_TEST_SUITE_P(Seeds, CliCrash, ::testing::Values(uint64_t{1}, uint64_t{2}, uint64_t{3}),
                         [](const ::testing::TestParamInfo<uint64_t>& info) {
                           return "seed" + std::to_string(info.param);
                         });

}  // namespace
