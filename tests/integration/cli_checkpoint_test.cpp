// The batch output file's contract (docs/checkpoint.md) through the built `flexllm batch`: a child
// process against mock servers started here, with real sockets, a fresh HOME and a fresh working
// directory per test. Every wait is on the mock's stats, the child's stderr or the child itself.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_run.hpp"
#include "flexllm/mock/server.hpp"

namespace {

using flexllm::mock::MockConfig;
using flexllm::mock::MockServer;
using flexllm::mock::MockStats;
using flexllm::mock::Outcome;
using flexllm::test::CliOptions;
using flexllm::test::CliProcess;
using flexllm::test::CliResult;
using flexllm::test::run_cli;
using json = nlohmann::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// N input lines {"prompt": "<prefix><i>"}.
std::string make_input(int n, const std::string& prefix = "p") {
  std::string in;
  for (int i = 0; i < n; ++i) in += "{\"prompt\": \"" + prefix + std::to_string(i) + "\"}\n";
  return in;
}

// A port on 127.0.0.1 where nothing listens: bound to pick it, then closed.
uint16_t dead_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

MockConfig echo() {
  MockConfig c;
  c.echo = true;
  return c;
}

// Requests the mock has answered with success (ok outcomes are counted on arrival; hung ones stay
// in flight until the client goes away).
uint64_t answered_ok(const MockStats& st) {
  return st.count(Outcome::ok) + st.count(Outcome::hung) - st.in_flight;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

bool contains(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

class CliCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/flexllm_ckpt_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ / "home");
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  CliOptions opts() const {
    CliOptions o;
    o.home = (dir_ / "home").string();
    o.cwd = dir_.string();
    return o;
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  bool exists(const std::string& name) const { return fs::exists(dir_ / name); }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(path(name), std::ios::binary) << text;
  }
  std::string bytes(const std::string& name) const {
    std::ifstream in(path(name), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // Every line of the file parsed as JSON; a line that is not JSON fails the test.
  std::vector<json> records(const std::string& name) const {
    std::vector<json> out;
    std::ifstream in(path(name));
    size_t line_no = 0;
    for (std::string line; std::getline(in, line);) {
      ++line_no;
      try {
        out.push_back(json::parse(line));
      } catch (const std::exception& e) {
        ADD_FAILURE() << name << ":" << line_no << " is not JSON (" << e.what() << "): " << line;
      }
    }
    return out;
  }

  // `flexllm batch IN -o OUT -m mock-model --base-url URL --no-progress EXTRA…`
  static std::vector<std::string> batch(const std::string& in, const std::string& out,
                                        const std::string& url,
                                        const std::vector<std::string>& extra = {}) {
    std::vector<std::string> a = {"batch",      in,  "-o",           out, "-m", "mock-model",
                                  "--base-url", url, "--no-progress"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  // The records hold indices 0..n-1 exactly once each, in order, all answered with "p<i>".
  void expect_complete(const std::string& name, int n, const std::string& prefix = "p") const {
    auto recs = records(name);
    ASSERT_EQ(recs.size(), static_cast<size_t>(n)) << name;
    for (int i = 0; i < n; ++i) {
      EXPECT_EQ(recs[i]["index"], i) << recs[i].dump();
      EXPECT_EQ(recs[i]["status"], "success") << recs[i].dump();
      EXPECT_EQ(recs[i]["output"], prefix + std::to_string(i)) << recs[i].dump();
    }
  }

  fs::path dir_;
};

// Issue point 2: a second run on an output another run is writing is refused at once, before any
// request, naming the file and the holder; the first run is not disturbed and completes.
TEST_F(CliCheckpoint, SecondRunOnTheSameOutputIsRefusedAtOnce) {
  MockConfig slow = echo();
  slow.latency_ms = {400, 400};
  MockServer mock(slow);
  MockServer other(echo());  // the second run's endpoint: whatever it sends lands here
  const int n = 300;
  write("in.jsonl", make_input(n));
  CliProcess first(batch("in.jsonl", "out.jsonl", mock.base_url(), {"-c", "4"}), opts());
  ASSERT_TRUE(mock.wait_for([](const MockStats& st) { return st.requests >= 4; }, 30s));
  const std::string lock_text = std::to_string(first.pid()) + "\n";
  EXPECT_EQ(bytes("out.jsonl.lock"), lock_text);
  const std::string out_before = bytes("out.jsonl");

  const auto t0 = Clock::now();
  CliResult second = run_cli(batch("in.jsonl", "out.jsonl", other.base_url(), {"-c", "4"}), opts());
  const double took = seconds_since(t0);
  EXPECT_EQ(second.status, 2) << second.err;
  EXPECT_LT(took, 1.0) << second.err;
  EXPECT_TRUE(contains(second.err, "out.jsonl is being written by another flexllm batch (pid " +
                                       std::to_string(first.pid()) + ")"))
      << second.err;
  EXPECT_EQ(other.stats().requests, 0u);
  // The first run's file and lock are as they were (the file only grew by the first's appends).
  EXPECT_EQ(bytes("out.jsonl.lock"), lock_text);
  const std::string out_after = bytes("out.jsonl");
  EXPECT_EQ(out_after.compare(0, out_before.size(), out_before), 0)
      << "the second run changed what the first had written";

  // Let the first finish quickly: requests arriving from now on are answered at once.
  mock.update(echo());
  CliResult r = first.finish();
  ASSERT_EQ(r.status, 0) << r.err;
  expect_complete("out.jsonl", n);
  EXPECT_EQ(mock.stats().requests, static_cast<uint64_t>(n));  // every index sent once
  EXPECT_FALSE(exists("out.jsonl.lock"));                      // removed when the run ends
}

// Issue point 3: an existing file that is not a checkpoint is refused and left byte for byte;
// --overwrite keeps it as a backup and never replaces a backup; an empty file is used; a foreign
// lock file is refused and left as it is.
TEST_F(CliCheckpoint, ForeignFilesAreRefusedUnchangedAndOverwriteKeepsEveryBackup) {
  MockServer mock(echo());
  const int n = 5;
  write("in.jsonl", make_input(n));
  ASSERT_EQ(run_cli(batch("in.jsonl", "ok.jsonl", mock.base_url()), opts()).status, 0);
  const std::string a_checkpoint = bytes("ok.jsonl");
  uint64_t sent = mock.stats().requests;
  ASSERT_EQ(sent, static_cast<uint64_t>(n));

  const std::vector<std::pair<std::string, std::string>> foreign = {
      {"notes.jsonl", "my notes about the run\nsecond line\n"},
      {"other.jsonl", "{\"id\":1,\"text\":\"x\"}\n{\"id\":2,\"text\":\"y\"}\n"},
      // A blank first line is not a checkpoint, whatever follows.
      {"blank_first.jsonl", "\n" + a_checkpoint},
  };
  for (const auto& [name, text] : foreign) {
    SCOPED_TRACE(name);
    write(name, text);
    CliResult r = run_cli(batch("in.jsonl", name, mock.base_url()), opts());
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_TRUE(contains(r.err, name + " exists and is not a flexllm checkpoint")) << r.err;
    EXPECT_EQ(bytes(name), text);
    EXPECT_EQ(mock.stats().requests, sent);
    EXPECT_FALSE(exists(name + ".bak"));
    EXPECT_FALSE(exists(name + ".lock"));
  }

  // --overwrite: the old file becomes notes.jsonl.bak, and the batch runs.
  const std::string notes = bytes("notes.jsonl");
  CliResult r = run_cli(batch("in.jsonl", "notes.jsonl", mock.base_url(), {"--overwrite"}), opts());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "notes.jsonl.bak")) << r.err;
  EXPECT_EQ(bytes("notes.jsonl.bak"), notes);
  expect_complete("notes.jsonl", n);
  EXPECT_EQ(mock.stats().requests, sent += n);
  const std::string first_results = bytes("notes.jsonl");

  // Again: the first backup stays, the results just replaced go to notes.jsonl.bak.1.
  r = run_cli(batch("in.jsonl", "notes.jsonl", mock.base_url(), {"--overwrite"}), opts());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "notes.jsonl.bak.1")) << r.err;
  EXPECT_EQ(bytes("notes.jsonl.bak"), notes);
  EXPECT_EQ(bytes("notes.jsonl.bak.1"), first_results);
  EXPECT_FALSE(exists("notes.jsonl.bak.2"));
  expect_complete("notes.jsonl", n);
  EXPECT_EQ(mock.stats().requests, sent += n);

  // An empty file is simply used (nothing to back up).
  write("empty.jsonl", "");
  r = run_cli(batch("in.jsonl", "empty.jsonl", mock.base_url()), opts());
  ASSERT_EQ(r.status, 0) << r.err;
  expect_complete("empty.jsonl", n);
  EXPECT_FALSE(exists("empty.jsonl.bak"));
  EXPECT_EQ(mock.stats().requests, sent += n);

  // A lock file that does not hold a process id is not ours: refused, left as it is.
  const std::string foreign_lock = "owned by something else\n";
  write("locked.jsonl.lock", foreign_lock);
  r = run_cli(batch("in.jsonl", "locked.jsonl", mock.base_url()), opts());
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(contains(r.err, "locked.jsonl.lock exists and is not a flexllm lock file")) << r.err;
  EXPECT_EQ(bytes("locked.jsonl.lock"), foreign_lock);
  EXPECT_FALSE(exists("locked.jsonl"));
  EXPECT_EQ(mock.stats().requests, sent);
}

// Issue point 4: a write that fails (here EFBIG under a file size limit) stops the batch with
// exit 3, leaves whole records only, and a rerun completes without re-sending what was kept.
TEST_F(CliCheckpoint, FileSizeLimitFailsWithExit3AndARerunCompletes) {
  MockServer mock(echo());
  const int n = 3000;
  const rlim_t limit = 64 * 1024;
  write("in.jsonl", make_input(n));
  std::vector<std::string> args =
      batch("in.jsonl", "out.jsonl", mock.base_url(), {"--flush-interval", "0.05"});
  CliResult r;
  {
    rlimit old{};
    ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
    ASSERT_TRUE(old.rlim_max == RLIM_INFINITY || old.rlim_max >= limit);
    rlimit lowered = old;
    lowered.rlim_cur = limit;
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lowered), 0);
    std::unique_ptr<CliProcess> p;
    try {
      p = std::make_unique<CliProcess>(args, opts());
    } catch (...) {
      ::setrlimit(RLIMIT_FSIZE, &old);
      throw;
    }
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &old), 0);  // the child keeps the lowered limit
    r = p->finish();
  }
  EXPECT_EQ(r.status, 3) << r.err;
  EXPECT_TRUE(contains(r.err, "out.jsonl")) << r.err;
  EXPECT_TRUE(contains(r.err, "File too large")) << r.err;

  const std::string text = bytes("out.jsonl");
  ASSERT_FALSE(text.empty());
  EXPECT_LE(text.size(), limit);
  EXPECT_EQ(text.back(), '\n');
  auto recs = records("out.jsonl");
  std::set<int> seen;
  for (const auto& rec : recs) {
    EXPECT_EQ(rec["status"], "success") << rec.dump();
    EXPECT_TRUE(seen.insert(rec["index"].get<int>()).second) << "index twice: " << rec.dump();
  }
  const uint64_t kept = recs.size();
  const uint64_t served = mock.stats().requests;
  EXPECT_GT(kept, 100u);  // the limit was hit part-way, not at once
  EXPECT_LT(served, static_cast<uint64_t>(n)) << "the batch went on after the failure";
  EXPECT_LE(served, kept + 1000) << "kept " << kept;

  // Without the limit: the rest is sent, what the file kept is not.
  r = run_cli(args, opts());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(mock.stats().requests - served, n - kept);
  expect_complete("out.jsonl", n);
}

// Issue point 5: a changed input line is redone; when the redo fails, the record says so: the
// old success of the other prompt is never kept for it.
TEST_F(CliCheckpoint, AChangedLineWhoseRedoFailsIsRecordedAsAFailure) {
  MockServer mock(echo());
  const int n = 10;
  write("in.jsonl", make_input(n));
  std::vector<std::string> args = batch("in.jsonl", "out.jsonl", mock.base_url());
  ASSERT_EQ(run_cli(args, opts()).status, 0);
  const auto before = records("out.jsonl");
  ASSERT_EQ(before.size(), static_cast<size_t>(n));

  std::string in = make_input(n);
  const std::string line4 = "{\"prompt\": \"p3\"}\n";
  in.replace(in.find(line4), line4.size(), "{\"prompt\": \"changed\"}\n");
  write("in.jsonl", in);
  MockConfig failing;
  failing.faults.http_error = 1.0;
  failing.error_status = 500;
  MockServer down(failing);
  CliResult r =
      run_cli(batch("in.jsonl", "out.jsonl", down.base_url(), {"--retry-times", "0"}), opts());
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_EQ(down.stats().requests, 1u);  // only the changed line was sent
  EXPECT_TRUE(contains(r.err,
                       "1 checkpoint record(s) belong to a different input than now "
                       "(first at index 3)"))
      << r.err;
  auto recs = records("out.jsonl");
  ASSERT_EQ(recs.size(), static_cast<size_t>(n));  // compacted: one record per index
  for (int i = 0; i < n; ++i) {
    SCOPED_TRACE(recs[i].dump());
    EXPECT_EQ(recs[i]["index"], i);
    if (i == 3) {
      EXPECT_EQ(recs[i]["status"], "error");
      EXPECT_FALSE(recs[i].contains("output"));
      EXPECT_TRUE(contains(recs[i].value("error", ""), "500"));
      EXPECT_EQ(recs[i]["attempts"], 1);
      EXPECT_NE(recs[i]["key"], before[i]["key"]);
    } else {
      EXPECT_EQ(recs[i]["status"], "success");
      EXPECT_EQ(recs[i]["output"], "p" + std::to_string(i));
      EXPECT_EQ(recs[i]["key"], before[i]["key"]);
    }
  }
}

// Issue point 6a: a finished output of other prompts is another job's: refused, left unchanged.
TEST_F(CliCheckpoint, ADifferentInputIsRefusedAsADifferentJob) {
  MockServer mock(echo());
  const int n = 10;
  write("in.jsonl", make_input(n));
  ASSERT_EQ(run_cli(batch("in.jsonl", "out.jsonl", mock.base_url()), opts()).status, 0);
  const std::string done = bytes("out.jsonl");
  write("other.jsonl", make_input(n, "q"));
  CliResult r = run_cli(batch("other.jsonl", "out.jsonl", mock.base_url()), opts());
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(contains(r.err, "out.jsonl holds the results of a different job")) << r.err;
  EXPECT_TRUE(contains(r.err, "--overwrite")) << r.err;
  EXPECT_EQ(bytes("out.jsonl"), done);
  EXPECT_EQ(mock.stats().requests, static_cast<uint64_t>(n));
  EXPECT_FALSE(exists("out.jsonl.bak"));
  EXPECT_FALSE(exists("out.jsonl.lock"));
}

// Issue point 6b: an input that got shorter keeps the records past its end until --prune.
TEST_F(CliCheckpoint, AShorterInputKeepsRecordsPastItsEndUntilPrune) {
  MockServer mock(echo());
  const int n = 10;
  write("in.jsonl", make_input(n));
  ASSERT_EQ(run_cli(batch("in.jsonl", "out.jsonl", mock.base_url()), opts()).status, 0);
  write("in.jsonl", make_input(6));
  CliResult r = run_cli(batch("in.jsonl", "out.jsonl", mock.base_url()), opts());
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "4 record(s) in out.jsonl are past the input's end")) << r.err;
  EXPECT_TRUE(contains(r.err, "--prune")) << r.err;
  expect_complete("out.jsonl", n);
  EXPECT_EQ(mock.stats().requests, static_cast<uint64_t>(n));  // all restored

  r = run_cli(batch("in.jsonl", "out.jsonl", mock.base_url(), {"--prune"}), opts());
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "dropped 4 record(s) past the input's end from out.jsonl")) << r.err;
  expect_complete("out.jsonl", 6);
  EXPECT_EQ(mock.stats().requests, static_cast<uint64_t>(n));
}

// Issue point 8: nothing listens at the endpoint: the batch stops after max(20, concurrency)
// connection failures instead of trying every item, exits 1, and counts the retries it made.
TEST_F(CliCheckpoint, ADeadEndpointStopsTheBatch) {
  const int n = 3000;
  const uint16_t port = dead_port();
  ASSERT_NE(port, 0);
  write("in.jsonl", make_input(n));
  write("cfg.yaml", "batch:\n  retry_delay: 0.01\n");
  const auto t0 = Clock::now();
  // Progress on: without a TTY the command prints progress lines and a "batch: …" summary.
  CliResult r =
      run_cli({"--config", "cfg.yaml", "batch", "in.jsonl", "-o", "out.jsonl", "-m", "mock-model",
               "--base-url", "http://127.0.0.1:" + std::to_string(port) + "/v1", "--retry-times",
               "3", "-c", "10"},
              opts());
  const double took = seconds_since(t0);
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_LT(took, 10.0) << r.err;
  EXPECT_TRUE(contains(r.err, "endpoint unreachable:")) << r.err;
  EXPECT_TRUE(contains(r.err, "not run")) << r.err;

  auto recs = records("out.jsonl");
  // max(20, concurrency) failures stop it; failures that came back together with the 20th are
  // recorded too: at most one per request the batch had out (twice the concurrency, 20).
  EXPECT_GE(recs.size(), 20u);
  EXPECT_LE(recs.size(), 40u);
  std::set<int> seen;
  for (const auto& rec : recs) {
    SCOPED_TRACE(rec.dump());
    EXPECT_EQ(rec["status"], "error");
    EXPECT_EQ(rec["error_kind"], "connection");
    EXPECT_EQ(rec["attempts"], 4);
    EXPECT_GT(rec.value("latency", 0.0), 0.0);
    EXPECT_TRUE(seen.insert(rec["index"].get<int>()).second);
  }

  // "stopped after N item(s) could not connect; M not run"
  const std::string stopped_after = "stopped after ";
  const size_t at = r.err.find(stopped_after);
  ASSERT_NE(at, std::string::npos) << r.err;
  size_t failed = 0, not_run = 0;
  ASSERT_EQ(std::sscanf(r.err.c_str() + at + stopped_after.size(),
                        "%zu item(s) could not connect; %zu not run", &failed, &not_run),
            2)
      << r.err;
  EXPECT_EQ(failed, recs.size());
  // The rest of the input was not run (docs/checkpoint.md: "the rest as not run").
  EXPECT_EQ(failed + not_run, static_cast<size_t>(n)) << r.err;

  // The summary, and the progress line printed just before it, which counts the retries.
  const size_t summary_at = r.err.rfind("\nbatch: ");
  ASSERT_NE(summary_at, std::string::npos) << r.err;
  const size_t summary_end = r.err.find('\n', summary_at + 1);
  const std::string summary =
      r.err.substr(summary_at + 1, summary_end == std::string::npos ? std::string::npos
                                                                    : summary_end - summary_at - 1);
  EXPECT_TRUE(contains(summary, std::to_string(recs.size()) + " failed")) << summary;
  const size_t summary_retries_at = summary.find(" retries |");
  ASSERT_NE(summary_retries_at, std::string::npos) << summary;
  const size_t number_at = summary.rfind(' ', summary_retries_at - 1) + 1;
  EXPECT_GE(std::stoul(summary.substr(number_at, summary_retries_at - number_at)), 3 * recs.size())
      << summary;
  const size_t progress_at = r.err.rfind('\n', summary_at - 1);
  const std::string progress = r.err.substr(progress_at == std::string::npos ? 0 : progress_at + 1,
                                            summary_at - progress_at - 1);
  const size_t retries_at = progress.find("| retries ");
  ASSERT_NE(retries_at, std::string::npos) << progress;
  size_t retries = 0;
  ASSERT_EQ(std::sscanf(progress.c_str() + retries_at, "| retries %zu |", &retries), 1) << progress;
  EXPECT_GE(retries, 3 * recs.size()) << progress;  // 3 retries for each failure
}

// Issue point 9: SIGTERM and SIGHUP stop after the grace period with 128 + the signal; what hung
// is not recorded, and a rerun completes every index once.
TEST_F(CliCheckpoint, SigtermAndSighupStopAfterTheGraceAndARerunCompletes) {
  MockConfig hang;
  hang.faults.hang = 1.0;
  MockServer stuck(hang);
  const int n = 50;
  write("in.jsonl", make_input(n));
  for (const auto& [sig, name] : {std::pair{SIGTERM, "term"}, std::pair{SIGHUP, "hup"}}) {
    SCOPED_TRACE(name);
    const std::string out = std::string("out_") + name + ".jsonl";
    const uint64_t before = stuck.stats().requests;
    CliProcess p(batch("in.jsonl", out, stuck.base_url()), opts());
    ASSERT_TRUE(
        stuck.wait_for([&](const MockStats& st) { return st.requests >= before + 10; }, 30s));
    const auto t0 = Clock::now();
    p.signal(sig);
    CliResult r = p.finish();
    const double took = seconds_since(t0);
    EXPECT_EQ(r.status, 128 + sig) << r.err;
    EXPECT_LT(took, 3.5) << r.err;
    EXPECT_GE(took, 1.5) << "requests in flight got no grace period: " << r.err;
    EXPECT_TRUE(contains(r.err, "stopping: no new requests")) << r.err;
    EXPECT_TRUE(contains(r.err, "stopped; rerun the same command")) << r.err;
    EXPECT_TRUE(records(out).empty()) << bytes(out);  // nothing was answered

    MockServer normal(echo());
    r = run_cli(batch("in.jsonl", out, normal.base_url()), opts());
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(normal.stats().requests, static_cast<uint64_t>(n));
    expect_complete(out, n);
  }
}

// Issue point 9: a second Ctrl-C cancels what is in flight at once.
TEST_F(CliCheckpoint, SecondSigintExitsWithinASecond) {
  MockConfig hang;
  hang.faults.hang = 1.0;
  MockServer stuck(hang);
  const int n = 50;
  write("in.jsonl", make_input(n));
  CliProcess p(batch("in.jsonl", "out.jsonl", stuck.base_url()), opts());
  ASSERT_TRUE(stuck.wait_for([](const MockStats& st) { return st.requests >= 10; }, 30s));
  const auto first = Clock::now();
  p.signal(SIGINT);
  ASSERT_TRUE(p.wait_for_stderr("stopping: no new requests"));
  const auto second = Clock::now();
  p.signal(SIGINT);
  CliResult r = p.finish();
  EXPECT_EQ(r.status, 130) << r.err;
  EXPECT_LT(seconds_since(second), 1.0) << r.err;
  EXPECT_LT(seconds_since(first), 1.9) << "it waited for the grace period: " << r.err;
  EXPECT_TRUE(contains(r.err, "stopping now")) << r.err;
  EXPECT_TRUE(records("out.jsonl").empty());

  MockServer normal(echo());
  r = run_cli(batch("in.jsonl", "out.jsonl", normal.base_url()), opts());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(normal.stats().requests, static_cast<uint64_t>(n));
  expect_complete("out.jsonl", n);
}

// Issue point 9: Ctrl-C while some requests are answered and others hang: everything the mock
// answered (before the signal and during the grace) is in the file; the rerun sends only the rest.
TEST_F(CliCheckpoint, SigintRecordsEveryAnsweredRequest) {
  MockConfig mixed = echo();
  mixed.latency_ms = {50, 50};
  mixed.faults.hang = 0.3;
  mixed.fault_draws = flexllm::mock::FaultDraws::independent;
  mixed.seed = 7;
  MockServer mock(mixed);
  const int n = 200;
  write("in.jsonl", make_input(n));
  std::vector<std::string> args = batch("in.jsonl", "out.jsonl", mock.base_url(), {"-c", "16"});
  CliProcess p(args, opts());
  ASSERT_TRUE(mock.wait_for([](const MockStats& st) { return answered_ok(st) >= 10; }, 30s));
  const uint64_t answered_before = answered_ok(mock.stats(false));
  const auto t0 = Clock::now();
  p.signal(SIGINT);
  CliResult r = p.finish();
  EXPECT_EQ(r.status, 130) << r.err;
  EXPECT_LT(seconds_since(t0), 3.5) << r.err;

  const MockStats st = mock.stats(false);
  const uint64_t ok = st.count(Outcome::ok);  // every ok request had 50 ms, well within the grace
  auto recs = records("out.jsonl");
  std::set<int> seen;
  for (const auto& rec : recs) {
    SCOPED_TRACE(rec.dump());
    EXPECT_EQ(rec["status"], "success");
    EXPECT_EQ(rec["output"], "p" + std::to_string(rec["index"].get<int>()));
    EXPECT_TRUE(seen.insert(rec["index"].get<int>()).second);
  }
  EXPECT_GE(recs.size(), answered_before);
  EXPECT_EQ(recs.size(), ok) << "answered requests lost (or recorded twice)";
  EXPECT_LT(recs.size(), static_cast<size_t>(n));

  MockServer normal(echo());
  r = run_cli(batch("in.jsonl", "out.jsonl", normal.base_url()), opts());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(normal.stats().requests, n - recs.size());
  expect_complete("out.jsonl", n);
}

}  // namespace
