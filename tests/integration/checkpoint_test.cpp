// The batch output file as the library uses it, against the in-process mock: one writer at a
// time, only checkpoints are written, write failures stop the batch and leave whole records,
// latest record wins, stops within their grace, an unreachable endpoint stops the batch, resume
// sends new work first (docs/checkpoint.md).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <thread>

#include "client_support.hpp"
#include "core/file_io.hpp"

namespace flexllm::test {
namespace {

namespace fs = std::filesystem;
using Reason = CheckpointError::Reason;
using Clock = std::chrono::steady_clock;

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<json> records_of(const std::string& path) {
  std::vector<json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  return out;
}

// Every line a record, one per index 0..n-1, each with `status`.
void expect_one_each(const std::string& path, size_t n, const std::string& status = "success") {
  const std::string text = read_all(path);
  ASSERT_TRUE(text.empty() || text.back() == '\n');
  std::set<size_t> seen;
  for (const json& r : records_of(path)) {
    EXPECT_TRUE(seen.insert(r["index"].get<size_t>()).second) << r["index"] << " twice";
    EXPECT_EQ(r["status"], status) << r.dump();
  }
  EXPECT_EQ(seen.size(), n);
  if (!seen.empty()) {
    EXPECT_EQ(*seen.rbegin(), n - 1);
  }
}

int dead_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

template <class F>
CheckpointError checkpoint_error_of(F&& fn) {
  try {
    fn();
  } catch (const CheckpointError& e) {
    return e;
  }
  ADD_FAILURE() << "no CheckpointError was thrown";
  return CheckpointError(Reason::io, "none", "");
}

class CheckpointFile : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/flexllm-ckpt-it-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    out_ = dir_ + "/out.jsonl";
  }
  void TearDown() override {
    detail::fileio::clear_faults();
    fs::remove_all(dir_);
  }
  std::string dir_, out_;
};

TEST_F(CheckpointFile, ASecondRunOnTheSameFileIsRefusedBeforeAnyRequest) {
  MockServer mock({.latency_ms = {100, 100}, .echo = true});
  LLMClient client(config_for(mock, {.concurrency_limit = 4}));
  std::thread first([&] {
    BatchResult r = client.chat_completions_batch(prompts(40), {.output_file = out_});
    EXPECT_EQ(r.summary.success, 40u);
  });
  ASSERT_TRUE(mock.wait_for([](const MockStats& s) { return s.requests >= 1; }, 10s));
  LLMClient other(config_for(mock));
  CheckpointError e = checkpoint_error_of(
      [&] { other.chat_completions_batch(prompts(40, "q"), {.output_file = out_}); });
  EXPECT_EQ(e.reason(), Reason::locked);
  EXPECT_NE(std::string(e.what()).find(out_), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("pid " + std::to_string(getpid())), std::string::npos)
      << e.what();
  first.join();
  for (const mock::Arrival& a : mock.stats().arrivals)
    EXPECT_EQ(a.last_user[0], 'p') << "the refused run sent nothing: " << a.last_user;
  expect_one_each(out_, 40);
  EXPECT_FALSE(fs::exists(out_ + ".lock")) << "released at the end";
  // And now it is free.
  BatchResult again = other.chat_completions_batch(prompts(40), {.output_file = out_});
  EXPECT_EQ(again.summary.restored, 40u);
}

TEST_F(CheckpointFile, AFileThatIsNotACheckpointIsLeftByteForByte) {
  MockServer mock({.echo = true});
  LLMClient client(config_for(mock));
  const std::string notes = "my notes\n{\"id\": 1}\n";
  std::ofstream(out_) << notes;
  CheckpointError e = checkpoint_error_of(
      [&] { client.chat_completions_batch(prompts(3), {.output_file = out_}); });
  EXPECT_EQ(e.reason(), Reason::not_a_checkpoint);
  EXPECT_NE(std::string(e.what()).find("not a flexllm checkpoint"), std::string::npos);
  EXPECT_EQ(read_all(out_), notes);
  EXPECT_EQ(mock.stats(false).requests, 0u);
  EXPECT_FALSE(fs::exists(out_ + ".lock"));

  // overwrite: the old file goes to .bak, then .bak.1 — a backup is never replaced.
  std::vector<std::string> warnings;
  BatchResult r = client.chat_completions_batch(
      prompts(3), {.output_file = out_, .overwrite = true, .on_warning = [&](const std::string& w) {
                     warnings.push_back(w);
                   }});
  EXPECT_EQ(r.summary.success, 3u);
  EXPECT_EQ(read_all(out_ + ".bak"), notes);
  ASSERT_FALSE(warnings.empty());
  EXPECT_NE(warnings[0].find(".bak"), std::string::npos) << warnings[0];
  const std::string done = read_all(out_);
  client.chat_completions_batch(prompts(3), {.output_file = out_, .overwrite = true});
  EXPECT_EQ(read_all(out_ + ".bak"), notes);
  EXPECT_EQ(read_all(out_ + ".bak.1"), done);
  expect_one_each(out_, 3);
}

TEST_F(CheckpointFile, AnotherJobsFileIsRefusedAndAnEditedJobIsRedone) {
  MockServer mock({.echo = true});
  LLMClient client(config_for(mock));
  client.chat_completions_batch(prompts(30), {.output_file = out_});
  const std::string done = read_all(out_);
  mock.reset_stats();
  CheckpointError e = checkpoint_error_of(
      [&] { client.chat_completions_batch(prompts(30, "other "), {.output_file = out_}); });
  EXPECT_EQ(e.reason(), Reason::different_job);
  EXPECT_NE(std::string(e.what()).find("different job"), std::string::npos) << e.what();
  EXPECT_EQ(read_all(out_), done);
  EXPECT_EQ(mock.stats(false).requests, 0u);
  // Another model is another job too.
  e = checkpoint_error_of([&] {
    client.chat_completions_batch(prompts(30),
                                  {.output_file = out_, .request = {.model = "other-model"}});
  });
  EXPECT_EQ(e.reason(), Reason::different_job);
  EXPECT_EQ(read_all(out_), done);

  // A few inputs edited: they are redone, the rest restored.
  std::vector<json> edited = prompts(30);
  edited[3] = user("edited 3");
  edited[17] = user("edited 17");
  BatchResult r = client.chat_completions_batch(edited, {.output_file = out_});
  EXPECT_EQ(r.summary.restored, 28u);
  EXPECT_EQ(r.summary.success, 2u);
  EXPECT_EQ(r.summary.key_mismatches, 2u);
  auto recs = records_of(out_);
  ASSERT_EQ(recs.size(), 30u);
  EXPECT_EQ(recs[3]["output"], "edited 3");
}

// The redo of an edited input fails: the file's answer for it is that failure, never the old
// success.
TEST_F(CheckpointFile, AFailedRedoReplacesTheStaleSuccess) {
  MockConfig config{.echo = true};
  MockServer mock(config);
  LLMClient client(config_for(mock, {.retry_times = 0}));
  client.chat_completions_batch(prompts(10), {.output_file = out_});
  config.faults.http_error = 1.0;
  mock.update(config);
  std::vector<json> edited = prompts(10);
  edited[3] = user("edited 3");
  BatchResult r = client.chat_completions_batch(edited, {.output_file = out_});
  EXPECT_EQ(r.summary.failed, 1u);
  EXPECT_EQ(r.summary.restored, 9u);
  auto recs = records_of(out_);
  ASSERT_EQ(recs.size(), 10u);
  EXPECT_EQ(recs[3]["status"], "error");
  EXPECT_EQ(recs[3]["attempts"], 1);
  EXPECT_GT(recs[3]["latency"].get<double>(), 0.0);
}

TEST_F(CheckpointFile, RecordsPastAShorterInputAreKeptAndCountedOrPruned) {
  MockServer mock({.echo = true});
  LLMClient client(config_for(mock));
  client.chat_completions_batch(prompts(10), {.output_file = out_});
  BatchResult r = client.chat_completions_batch(prompts(6), {.output_file = out_});
  EXPECT_EQ(r.summary.restored, 6u);
  EXPECT_EQ(r.summary.beyond_input, 4u);
  EXPECT_EQ(records_of(out_).size(), 10u);
  r = client.chat_completions_batch(prompts(6), {.output_file = out_, .prune = true});
  EXPECT_EQ(r.summary.beyond_input, 4u);
  expect_one_each(out_, 6);
}

// A write that fails part-way (disk full): the batch stops sending, fails with the OS error, and
// the file ends on a whole record; a rerun continues from there.
TEST_F(CheckpointFile, AFailedWriteStopsTheBatchAndARerunContinues) {
  for (detail::fileio::Op op : {detail::fileio::Op::write, detail::fileio::Op::fdatasync}) {
    SCOPED_TRACE(detail::fileio::to_string(op));
    fs::remove(out_);
    MockServer mock({.latency_ms = {1, 3}, .echo = true});
    LLMClient client(config_for(mock, {.concurrency_limit = 8}));
    const size_t n = 3000;
    // A short write lands first (half a record reaches the file), then the failure.
    if (op == detail::fileio::Op::write) detail::fileio::inject_short_write(3, 100);
    detail::fileio::inject(op, 3, op == detail::fileio::Op::write ? ENOSPC : EIO);
    CheckpointError e = checkpoint_error_of([&] {
      client.chat_completions_batch(prompts(n), {.output_file = out_, .flush_interval = 20ms});
    });
    detail::fileio::clear_faults();
    EXPECT_EQ(e.reason(), Reason::io);
    EXPECT_NE(std::string(e.what()).find(out_), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(op == detail::fileio::Op::write ? "No space left on device"
                                                                         : "Input/output error"),
              std::string::npos)
        << e.what();
    const size_t sent = mock.stats(false).requests;
    EXPECT_LT(sent, n) << "the batch stopped sending";
    const std::string text = read_all(out_);
    ASSERT_FALSE(text.empty());
    EXPECT_EQ(text.back(), '\n');
    auto kept = records_of(out_);  // every line parses
    EXPECT_FALSE(fs::exists(out_ + ".lock"));
    mock.reset_stats();
    BatchResult r = client.chat_completions_batch(prompts(n), {.output_file = out_});
    EXPECT_EQ(r.summary.restored, kept.size());
    EXPECT_EQ(r.summary.success + r.summary.restored, n);
    EXPECT_EQ(mock.stats(false).requests, n - kept.size()) << "nothing recorded is sent again";
    expect_one_each(out_, n);
  }
}

TEST_F(CheckpointFile, AFailedCompactionFailsTheBatchAndTheJournalStaysUsable) {
  MockServer mock({.latency_ms = {0, 5}, .echo = true});
  LLMClient client(config_for(mock, {.concurrency_limit = 8}));
  // Out of order on purpose: a file with records past the end needs compacting when pruned.
  client.chat_completions_batch(prompts(50), {.output_file = out_});
  detail::fileio::inject(detail::fileio::Op::rename, 1, EIO);
  CheckpointError e = checkpoint_error_of(
      [&] { client.chat_completions_batch(prompts(40), {.output_file = out_, .prune = true}); });
  detail::fileio::clear_faults();
  EXPECT_EQ(e.reason(), Reason::io);
  EXPECT_NE(std::string(e.what()).find("Input/output error"), std::string::npos) << e.what();
  EXPECT_EQ(records_of(out_).size(), 50u) << "the journal as it was";
  EXPECT_FALSE(fs::exists(out_ + ".compact.tmp"));
  BatchResult r = client.chat_completions_batch(prompts(40), {.output_file = out_, .prune = true});
  EXPECT_EQ(r.summary.restored, 40u);
  expect_one_each(out_, 40);
}

// Stops end a batch whose requests hang: request() after its grace, request_now() at once. What
// is cut short is not recorded (a rerun sends it) and counts as not run.
TEST_F(CheckpointFile, StopsEndHangingRequestsWithinTheirGrace) {
  MockServer mock({.faults = {.hang = 1.0}});
  LLMClient client(config_for(mock, {.concurrency_limit = 4, .timeout = 60s}));
  for (int level : {1, 2}) {
    SCOPED_TRACE(level);
    fs::remove(out_);
    mock.reset_stats();
    auto stop = std::make_shared<StopSignal>();
    Clock::time_point asked;
    std::thread stopper([&] {
      EXPECT_TRUE(mock.wait_for([](const MockStats& s) { return s.in_flight >= 4; }, 10s));
      asked = Clock::now();
      level == 1 ? stop->request() : stop->request_now();
    });
    BatchResult r = client.chat_completions_batch(
        prompts(20), {.output_file = out_, .stop = stop, .stop_grace = 500ms});
    const auto took = Clock::now() - asked;
    stopper.join();
    EXPECT_LT(took, level == 1 ? 1500ms : 500ms);
    if (level == 1) {
      EXPECT_GE(took, 450ms) << "in flight got their grace";
    }
    EXPECT_EQ(r.summary.not_run, 20u);
    EXPECT_EQ(r.summary.failed, 0u);
    EXPECT_TRUE(read_all(out_).empty()) << "nothing finished, nothing recorded";
  }
}

// A retry waiting on a long server hint is dropped by a stop, not waited out.
TEST_F(CheckpointFile, AStopDropsRetriesWaitingOnTheServersHint) {
  MockServer mock({.faults = {.rate_429 = 1.0}, .retry_after = 30s});
  LLMClient client(
      config_for(mock, {.concurrency_limit = 4, .retry_times = 5, .max_retry_delay = 60s}));
  auto stop = std::make_shared<StopSignal>();
  std::thread stopper([&] {
    EXPECT_TRUE(mock.wait_for([](const MockStats& s) { return s.requests >= 4; }, 10s));
    stop->request();
  });
  const auto start = Clock::now();
  BatchResult r = client.chat_completions_batch(prompts(8), {.output_file = out_, .stop = stop});
  stopper.join();
  EXPECT_LT(Clock::now() - start, 5s);
  EXPECT_EQ(r.summary.not_run, 8u);
  // A 429 handled before the stop scheduled a retry, counted then; one after it schedules none.
  EXPECT_LE(r.summary.retries, mock.stats(false).count(Outcome::rate_limited));
}

TEST_F(CheckpointFile, AnUnreachableEndpointStopsTheBatchWithItsReason) {
  LLMClient client({.base_url = "http://127.0.0.1:" + std::to_string(dead_port()) + "/v1",
                    .model = "m",
                    .concurrency_limit = 10,
                    .retry_times = 2,
                    .retry_delay = 1ms,
                    .proxy = ""});
  BatchResult r = client.chat_completions_batch(prompts(500), {.output_file = out_});
  EXPECT_EQ(r.summary.aborted.rfind("endpoint unreachable: ", 0), 0u) << r.summary.aborted;
  // The first 20 failures stop it; others that came back together with the 20th are recorded
  // too: at most one per request the batch had out (twice the concurrency, 20).
  EXPECT_GE(r.summary.failed, 20u);
  EXPECT_LE(r.summary.failed, 40u);
  EXPECT_EQ(r.summary.not_run, 500u - r.summary.failed);
  EXPECT_GE(r.summary.retries, 2 * r.summary.failed) << "two retries each, counted";
  auto recs = records_of(out_);
  ASSERT_EQ(recs.size(), r.summary.failed);
  for (const json& rec : recs) {
    EXPECT_EQ(rec["status"], "error");
    EXPECT_EQ(rec["error_kind"], "connection");
    EXPECT_EQ(rec["attempts"], 3);
    EXPECT_GT(rec["latency"].get<double>(), 0.0);
  }
}

// Retries are counted as they happen, equal to the failed attempts the server saw.
TEST_F(CheckpointFile, RetriesAreCountedAsTheyHappen) {
  MockServer mock({.seed = 5,
                   .echo = true,
                   .faults = {.http_error = 0.3},
                   .fault_draws = mock::FaultDraws::independent});
  LLMClient client(
      config_for(mock, {.concurrency_limit = 8, .retry_times = 20, .retry_delay = 1ms}));
  BatchResult r = client.chat_completions_batch(prompts(300));
  EXPECT_EQ(r.summary.success, 300u);
  EXPECT_EQ(r.summary.retries, mock.stats(false).count(Outcome::http_error));
  EXPECT_GT(r.summary.retries, 0u);
}

// Resuming from a file: the first request is for the first input the checkpoint lacks (new work
// goes first); restored inputs are still checked, and an edited one is redone. Without loading
// restored items, their usage is still totalled.
TEST_F(CheckpointFile, AResumeSendsNewWorkFirstAndStillChecksRestoredInputs) {
  MockServer mock({.echo = true, .record_bodies = false});
  LLMClient client(config_for(mock, {.concurrency_limit = 4}));
  const std::string in = dir_ + "/in.jsonl";
  auto write_input = [&](size_t n, size_t edited) {
    std::ofstream f(in);
    for (size_t i = 0; i < n; ++i)
      f << json{{"prompt", i == edited ? "edited" : "p" + std::to_string(i)}}.dump() << "\n";
  };
  write_input(200, SIZE_MAX);
  BatchResult first = client.chat_completions_batch(jsonl_requests(in), {.output_file = out_});
  ASSERT_EQ(first.summary.success, 200u);
  write_input(250, 100);  // 50 new lines, and line 100 edited
  mock.reset_stats();
  size_t restored_items = 0;
  BatchIterator it = client.iter_chat_completions_batch(
      jsonl_requests(in), {.output_file = out_, .load_restored = false});
  for (const BatchResultItem& item : it)
    if (item.status == ItemStatus::restored) {
      ++restored_items;
      EXPECT_FALSE(item.result) << "not read back";
    }
  BatchSummary s = it.summary();
  EXPECT_EQ(restored_items, 199u);
  EXPECT_EQ(s.restored, 199u);
  EXPECT_EQ(s.success, 51u);
  EXPECT_EQ(s.key_mismatches, 1u);
  auto arrivals = mock.stats().arrivals;
  ASSERT_EQ(arrivals.size(), 51u);
  EXPECT_EQ(arrivals.front().last_user, "p200") << "new work first";
  EXPECT_TRUE(std::any_of(arrivals.begin(), arrivals.end(), [](const mock::Arrival& a) {
    return a.last_user == "edited";
  })) << "checked, then redone";
  auto recs = records_of(out_);
  ASSERT_EQ(recs.size(), 250u);
  EXPECT_EQ(recs[100]["output"], "edited");
  int64_t tokens = 0;
  for (const json& rec : recs) tokens += rec["usage"]["total_tokens"].get<int64_t>();
  EXPECT_EQ(s.usage.total_tokens, tokens) << "restored items' usage is totalled unread";
}

}  // namespace
}  // namespace flexllm::test
