// chat_completions_batch and the iterator against the in-process mock: alignment, metadata,
// checkpoint/resume rules, crash safety, stop signal.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "client_support.hpp"

extern char** environ;

namespace flexllm::test {
namespace {

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "flexllm_" + std::to_string(getpid()) + "_" + name;
}

std::vector<json> read_records(const std::string& path) {
  std::ifstream in(path);
  std::vector<json> out;
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  return out;
}

// Indices the mock was asked for since its last reset (the echo prompt is "p<i>").
std::multiset<size_t> requested(const MockServer& mock) {
  std::multiset<size_t> out;
  for (const auto& a : mock.stats().arrivals) out.insert(std::stoul(a.last_user.substr(1)));
  return out;
}

TEST(Batch, ItemsAreAlignedWithInputsWhateverTheCompletionOrder) {
  MockServer mock({.latency_ms = {1, 40}, .echo = true});
  LLMClient client(config_for(mock, {.concurrency_limit = 16}));
  auto inputs = prompts(300);
  BatchResult r = client.chat_completions_batch(inputs);
  ASSERT_EQ(r.items.size(), 300u);
  for (size_t i = 0; i < 300; ++i) {
    EXPECT_EQ(r.items[i].index, i);
    EXPECT_EQ(r.items[i].status, ItemStatus::success);
    EXPECT_EQ(r.items[i].content(), "p" + std::to_string(i));
  }
  EXPECT_EQ(r.summary.total, 300u);
  EXPECT_EQ(r.summary.success, 300u);
  EXPECT_EQ(r.summary.failed, 0u);
  EXPECT_GT(r.summary.usage.total_tokens, 0);
  EXPECT_GT(r.summary.latency_p99, 0);
  EXPECT_GE(r.summary.latency_p99, r.summary.latency_p50);
}

TEST(Batch, FailuresAreItemsNotExceptions) {
  MockServer mock({.echo = true, .faults = {.http_error = 0.25}, .error_status = 400});
  LLMClient client(config_for(mock, {.retry_times = 0}));
  std::vector<json> inputs = prompts(100);
  inputs[7] = json::array({{{"content", "no role"}}});  // invalid: fails alone, before I/O
  BatchResult r = client.chat_completions_batch(inputs);
  EXPECT_EQ(r.items[7].status, ItemStatus::error);
  EXPECT_EQ(r.items[7].error->kind(), ErrorKind::invalid_request);
  EXPECT_EQ(r.summary.success + r.summary.failed, 100u);
  // One attempt each: every injected error is a failed item, and nothing else fails but item 7.
  // (Independent draws: binomial(99, 0.25), 25 ± 4.3; the bounds are 5 deviations away.)
  EXPECT_EQ(r.summary.failed, mock.stats(false).count(Outcome::http_error) + 1);
  EXPECT_GT(r.summary.failed, 3u);
  EXPECT_LT(r.summary.failed, 47u);
  EXPECT_EQ(r.summary.errors["http"] + r.summary.errors["invalid_request"], r.summary.failed);
  for (const auto& item : r.items)
    if (item.status == ItemStatus::error) {
      EXPECT_TRUE(item.content().empty());
    }
}

TEST(Batch, MetadataRoundTripsThroughItemsAndTheFile) {
  MockServer mock({.echo = true});
  LLMClient client(config_for(mock));
  std::string out = temp_path("meta.jsonl");
  std::remove(out.c_str());
  std::vector<json> meta;
  for (int i = 0; i < 20; ++i) meta.push_back({{"row", i}, {"tag", "t" + std::to_string(i)}});
  BatchResult r =
      client.chat_completions_batch(prompts(20), {.output_file = out, .metadata_list = meta});
  for (size_t i = 0; i < 20; ++i) EXPECT_EQ(r.items[i].metadata, meta[i]);
  auto records = read_records(out);
  ASSERT_EQ(records.size(), 20u);
  for (size_t i = 0; i < 20; ++i) {
    EXPECT_EQ(records[i]["index"], i) << "compacted in index order";
    EXPECT_EQ(records[i]["status"], "success");
    EXPECT_EQ(records[i]["metadata"], meta[i]);
    EXPECT_EQ(records[i]["output"], "p" + std::to_string(i));
    EXPECT_EQ(records[i]["input"], prompts(20)[i]);
    EXPECT_EQ(records[i]["key"].get<std::string>().size(), 32u);
    EXPECT_TRUE(records[i]["usage"].is_object());
  }
  // Restored items bring their metadata back too.
  BatchResult again =
      client.chat_completions_batch(prompts(20), {.output_file = out, .metadata_list = meta});
  EXPECT_EQ(again.summary.restored, 20u);
  EXPECT_EQ(again.items[3].metadata, meta[3]);
  std::remove(out.c_str());
}

// A source may bring each input's metadata (and say an input is unusable) itself: the metadata
// reaches items and records whether answered, cached or restored; an unusable input fails alone.
TEST(Batch, SourceItemsCarryTheirMetadataAndErrors) {
  MockServer mock({.latency_ms = {1, 20}, .echo = true});
  LLMClient client(config_for(mock, {.concurrency_limit = 4}));
  std::string out = temp_path("source_items.jsonl");
  std::remove(out.c_str());
  auto source = [] {
    auto i = std::make_shared<size_t>(0);
    return MessageSource([i]() -> std::optional<SourceItem> {
      if (*i >= 30) return std::nullopt;
      size_t n = (*i)++;
      if (n == 7) return SourceItem{json(), json{{"row", 7}}, "in.jsonl:8: not valid JSON"};
      return SourceItem{prompts(30)[n], json{{"row", n}}};
    });
  };
  for (int run = 0; run < 2; ++run) {
    BatchResult r = client.chat_completions_batch(source(), {.output_file = out});
    ASSERT_EQ(r.items.size(), 30u);
    for (size_t i = 0; i < 30; ++i) EXPECT_EQ(r.items[i].metadata, (json{{"row", i}})) << i;
    EXPECT_EQ(r.items[7].status, ItemStatus::error);
    ASSERT_TRUE(r.items[7].error);
    EXPECT_EQ(r.items[7].error->kind(), ErrorKind::invalid_request);
    EXPECT_NE(std::string(r.items[7].error->what()).find("in.jsonl:8"), std::string::npos);
    EXPECT_EQ(r.summary.failed, 1u);
    EXPECT_EQ(run == 0 ? r.summary.success : r.summary.restored, 29u);
  }
  EXPECT_EQ(mock.stats().requests, 29u);  // the unusable input was never sent
  auto records = read_records(out);
  ASSERT_EQ(records.size(), 30u);
  EXPECT_EQ(records[12]["metadata"], (json{{"row", 12}}));
  EXPECT_EQ(records[7]["status"], "error");
  std::remove(out.c_str());
}

TEST(Batch, BadOptionsFailBeforeAnyRequest) {
  MockServer mock({.echo = true});
  LLMClient client(config_for(mock));
  EXPECT_THROW(client.chat_completions_batch(prompts(5), {.metadata_list = {json(1), json(2)}}),
               InvalidRequestError);
  EXPECT_THROW(
      client.chat_completions_batch(prompts(5), {.output_file = "/nonexistent-dir/x/out.jsonl"}),
      CheckpointError);
  EXPECT_EQ(mock.stats(false).requests, 0u);
}

TEST(Batch, RerunRestoresDoneItemsWithoutSendingThem) {
  MockServer mock({.latency_ms = {1, 10}, .echo = true});
  LLMClient client(config_for(mock, {.concurrency_limit = 8}));
  std::string out = temp_path("resume.jsonl");
  std::remove(out.c_str());
  auto inputs = prompts(150);
  std::vector<json> first(inputs.begin(), inputs.begin() + 100);
  client.chat_completions_batch(first, {.output_file = out});
  mock.reset_stats();
  BatchResult r = client.chat_completions_batch(inputs, {.output_file = out});
  EXPECT_EQ(r.summary.restored, 100u);
  EXPECT_EQ(r.summary.success, 50u);
  for (size_t i = 0; i < 150; ++i) {
    EXPECT_EQ(r.items[i].status, i < 100 ? ItemStatus::restored : ItemStatus::success) << i;
    EXPECT_EQ(r.items[i].content(), "p" + std::to_string(i)) << "restored outputs are returned";
  }
  std::multiset<size_t> asked = requested(mock);
  EXPECT_EQ(asked.size(), 50u);
  EXPECT_EQ(*asked.begin(), 100u) << "no request for an index already done";
  EXPECT_EQ(read_records(out).size(), 150u);
  std::remove(out.c_str());
}

TEST(Batch, ChangedInputsAreRedoneAndReported) {
  MockServer mock({.echo = true});
  LLMClient client(config_for(mock));
  std::string out = temp_path("changed.jsonl");
  std::remove(out.c_str());
  auto inputs = prompts(100);
  client.chat_completions_batch(inputs, {.output_file = out});
  std::mt19937 rng(11);
  std::set<size_t> changed;
  while (changed.size() < 4) changed.insert(10 + rng() % 80);
  for (size_t i : changed) inputs[i] = user("p" + std::to_string(i) + " (edited)");
  mock.reset_stats();
  std::vector<std::string> warnings;
  BatchResult r = client.chat_completions_batch(
      inputs,
      {.output_file = out, .on_warning = [&](const std::string& w) { warnings.push_back(w); }});
  EXPECT_EQ(r.summary.key_mismatches, 4u);
  EXPECT_EQ(std::set<size_t>(r.summary.first_mismatches.begin(), r.summary.first_mismatches.end()),
            changed);
  EXPECT_EQ(r.summary.restored, 96u);
  EXPECT_EQ(mock.stats(false).requests, 4u);
  for (size_t i : changed) EXPECT_EQ(r.items[i].content(), "p" + std::to_string(i) + " (edited)");
  ASSERT_FALSE(warnings.empty());
  EXPECT_NE(warnings.back().find("4 checkpoint record(s)"), std::string::npos) << warnings.back();
  auto records = read_records(out);
  ASSERT_EQ(records.size(), 100u) << "one record per index after compaction";
  for (size_t i : changed) EXPECT_EQ(records[i]["output"], "p" + std::to_string(i) + " (edited)");
  std::remove(out.c_str());
}

TEST(Batch, ErrorRecordsAreRetriedOnRerun) {
  MockServer mock({.seed = 4, .echo = true, .faults = {.http_error = 0.3}});
  LLMClient client(config_for(mock, {.retry_times = 0}));
  std::string out = temp_path("errors.jsonl");
  std::remove(out.c_str());
  BatchResult first = client.chat_completions_batch(prompts(80), {.output_file = out});
  // One attempt each, so the failures are the faults among the first 80 draws of seed 4: fixed,
  // whatever the order of arrival (binomial(80, 0.3) = 24 ± 4.1 over seeds).
  ASSERT_EQ(first.summary.failed, mock.stats(false).count(Outcome::http_error));
  ASSERT_GT(first.summary.failed, 10u);
  size_t errors_in_file = 0;
  for (const json& rec : read_records(out))
    if (rec["status"] == "error") {
      ++errors_in_file;
      EXPECT_TRUE(rec["error"].is_string());
      EXPECT_EQ(rec["error_kind"], "http");
    }
  EXPECT_EQ(errors_in_file, first.summary.failed);
  mock.update({.echo = true});
  mock.reset_stats();
  BatchResult second = client.chat_completions_batch(prompts(80), {.output_file = out});
  EXPECT_EQ(second.summary.success, first.summary.failed);
  EXPECT_EQ(second.summary.restored, 80 - first.summary.failed);
  EXPECT_EQ(mock.stats(false).requests, first.summary.failed);
  for (const json& rec : read_records(out)) EXPECT_EQ(rec["status"], "success");
  std::remove(out.c_str());
}

TEST(Batch, TornLastLineAndMalformedLinesAreSkippedAndRepaired) {
  MockServer mock({.echo = true});
  LLMClient client(config_for(mock));
  std::string out = temp_path("torn.jsonl");
  std::remove(out.c_str());
  client.chat_completions_batch(prompts(30), {.output_file = out});
  {
    // A garbage line in the middle and a record cut mid-write at the end.
    auto lines = read_records(out);
    std::ofstream rewrite(out, std::ios::trunc);
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i == 2) rewrite << "this is not a record\n";
      rewrite << lines[i].dump() << "\n";
    }
    rewrite << R"({"index":31,"status":"succ)";
  }
  mock.reset_stats();
  std::vector<std::string> warnings;
  BatchResult r = client.chat_completions_batch(
      prompts(32),
      {.output_file = out, .on_warning = [&](const std::string& w) { warnings.push_back(w); }});
  EXPECT_EQ(r.summary.restored, 30u);
  EXPECT_EQ(r.summary.success, 2u);
  EXPECT_EQ(mock.stats(false).requests, 2u);
  ASSERT_GE(warnings.size(), 2u);
  EXPECT_NE(warnings[0].find(":3: not a checkpoint record"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[1].find("incomplete"), std::string::npos) << warnings[1];
  auto records = read_records(out);  // every line parses again
  ASSERT_EQ(records.size(), 32u);
  for (size_t i = 0; i < 32; ++i) EXPECT_EQ(records[i]["index"], i);
  std::remove(out.c_str());
}

TEST(Batch, IteratorYieldsEveryIndexOnceRestoredIncluded) {
  MockServer mock({.latency_ms = {1, 20}, .echo = true});
  LLMClient client(config_for(mock, {.concurrency_limit = 8}));
  std::string out = temp_path("iter.jsonl");
  std::remove(out.c_str());
  client.chat_completions_batch(prompts(40), {.output_file = out});
  size_t next = 0;
  MessageSource source = [&]() -> std::optional<json> {
    if (next >= 200) return std::nullopt;
    return user("p" + std::to_string(next++));
  };
  std::map<size_t, ItemStatus> seen;
  BatchIterator it =
      client.iter_chat_completions_batch(source, {.output_file = out, .batch_size = 16});
  for (const BatchResultItem& item : it) {
    EXPECT_TRUE(seen.emplace(item.index, item.status).second) << "index " << item.index << " twice";
    EXPECT_EQ(item.content(), "p" + std::to_string(item.index));
  }
  ASSERT_EQ(seen.size(), 200u);
  for (size_t i = 0; i < 200; ++i)
    EXPECT_EQ(seen[i], i < 40 ? ItemStatus::restored : ItemStatus::success) << i;
  EXPECT_EQ(it.summary().restored, 40u);
  EXPECT_EQ(read_records(out).size(), 200u);
  std::remove(out.c_str());
}

TEST(Batch, JsonlSourceReadsMessagesAndNamesBadLines) {
  std::string path = temp_path("in.jsonl");
  {
    std::ofstream f(path);
    f << R"([{"role":"user","content":"a"}])"
      << "\n\n"
      << R"({"messages":[{"role":"user","content":"b"}],"id":7})"
      << "\n"
      << "{oops\n";
  }
  MessageSource src = jsonl_messages(path);
  ASSERT_TRUE(src.knows_size());
  EXPECT_EQ(src.size(), 3u) << "non-blank lines";
  EXPECT_EQ((*src())[0]["content"], "a");
  EXPECT_EQ((*src())[0]["content"], "b");
  try {
    src();
    ADD_FAILURE() << "a bad line must throw";
  } catch (const InvalidRequestError& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":4"), std::string::npos) << e.what();
  }
  EXPECT_THROW(jsonl_messages(temp_path("missing.jsonl")), InvalidRequestError);
  std::remove(path.c_str());
}

// A line over the limit (64 MiB by default; small here) is bad input like a line that is not JSON:
// jsonl_messages throws naming file and line, jsonl_requests fails that item alone and the batch
// goes on, and a rerun resumes around it.
TEST(Batch, JsonlLinesOverTheLimitAreNamedBadLines) {
  std::string path = temp_path("long_lines.jsonl");
  const std::string huge(3 << 20, 'x');  // read blocks are 256 KiB: the line spans many
  {
    std::ofstream f(path);
    f << R"({"prompt":"p0"})"
      << "\n"
      << R"({"prompt":")" << huge << R"("})"
      << "\n"
      << R"({"prompt":"p2"})"
      << "\n\n"
      << R"({"prompt":")" << std::string(5000, 'y') << R"("})"
      << "\n"
      << R"({"prompt":"p5"})"
      << "\n";
  }
  MessageSource messages = jsonl_messages(path, 4096);
  EXPECT_EQ(messages.size(), 5u);
  EXPECT_TRUE(messages.skip());  // line 1 passed over (not a messages line)
  try {
    messages();
    ADD_FAILURE() << "a line over the limit must throw";
  } catch (const InvalidRequestError& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":2: line longer than 4 KiB"), std::string::npos)
        << e.what();
  }

  MockServer mock({.echo = true});
  LLMClient client(config_for(mock));
  std::string out = temp_path("long_lines_out.jsonl");
  std::remove(out.c_str());
  std::vector<std::string> bad_lines;
  JsonlRequestOptions options{
      .on_bad_line = [&](const std::string& why) { bad_lines.push_back(why); },
      .max_line_bytes = 4096};
  for (int run = 0; run < 2; ++run) {
    bad_lines.clear();
    BatchResult r =
        client.chat_completions_batch(jsonl_requests(path, options), {.output_file = out});
    ASSERT_EQ(r.items.size(), 5u);
    EXPECT_EQ(r.summary.failed, 2u);
    EXPECT_EQ(run == 0 ? r.summary.success : r.summary.restored, 3u);
    for (size_t i : {1u, 3u}) {
      ASSERT_EQ(r.items[i].status, ItemStatus::error) << i;
      EXPECT_EQ(r.items[i].error->kind(), ErrorKind::invalid_request);
      const std::string where = path + ":" + std::to_string(i == 1 ? 2 : 5) + ": line longer than";
      EXPECT_NE(std::string(r.items[i].error->what()).find(where), std::string::npos)
          << r.items[i].error->what();
    }
    EXPECT_EQ(r.items[4].content(), "p5");
    ASSERT_EQ(bad_lines.size(), 2u);
  }
  EXPECT_EQ(mock.stats().requests, 3u);  // the long lines were never sent, and done once
  std::remove(out.c_str());
  std::remove(path.c_str());
}

// A new file is written in index order while completions allow it (records that finish early wait
// a little for those before them): it is then its own compacted form and is not rewritten. When a
// straggler keeps them waiting past half a flush interval, they are written in completion order and
// compaction sorts the file (a new file replaces it).
TEST(Batch, FilesAreWrittenInOrderOrCompacted) {
  MockServer fast({.latency_ms = {1, 8}, .echo = true});
  MockServer slow({.latency_ms = {1, 60}, .echo = true});
  std::string out = temp_path("compact.jsonl");
  auto inode = [&] {
    struct stat st {};
    EXPECT_EQ(::stat(out.c_str(), &st), 0);
    return st.st_ino;
  };
  auto check_sorted = [&](size_t n) {
    auto records = read_records(out);
    ASSERT_EQ(records.size(), n);
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(records[i]["index"], i);
  };
  for (bool stragglers : {false, true}) {
    std::remove(out.c_str());
    std::ofstream(out).close();  // an empty file: its inode tells whether it was replaced
    const auto before = inode();
    LLMClient client(config_for(stragglers ? slow : fast, {.concurrency_limit = 16}));
    client.chat_completions_batch(
        prompts(120), {.output_file = out, .flush_interval = stragglers ? 10ms : 1000ms});
    check_sorted(120);
    if (stragglers) {
      EXPECT_NE(inode(), before) << "written out of order, so compacted into a new file";
    } else {
      EXPECT_EQ(inode(), before) << "written in order: no rewrite";
    }
  }
  // A resumed run appends new records after old ones: merged into one sorted file.
  LLMClient client(config_for(fast, {.concurrency_limit = 16}));
  client.chat_completions_batch(prompts(200), {.output_file = out});
  check_sorted(200);
  std::remove(out.c_str());
}

// chat_completions_batch over a lazy source: input-aligned like the vector form, with the same
// resume rules, whether or not the source knows its size.
TEST(Batch, InputAlignedBatchOverALazySource) {
  MockServer mock({.latency_ms = {1, 30}, .echo = true});
  LLMClient client(config_for(mock, {.concurrency_limit = 12}));
  std::string out = temp_path("source.jsonl");
  std::remove(out.c_str());
  client.chat_completions_batch(prompts(25), {.output_file = out});
  mock.reset_stats();
  for (bool sized : {false, true}) {
    size_t next = 0;
    auto next_prompt = [&]() -> std::optional<json> {
      if (next >= 150) return std::nullopt;
      return user("p" + std::to_string(next++));
    };
    MessageSource source = sized ? MessageSource(next_prompt, 150) : MessageSource(next_prompt);
    std::vector<json> metadata;
    for (size_t i = 0; i < 150; ++i) metadata.push_back({{"row", i}});
    std::vector<std::string> warnings;
    BatchResult r = client.chat_completions_batch(
        source, {.output_file = out,
                 .metadata_list = metadata,
                 .on_warning = [&](const std::string& w) { warnings.push_back(w); }});
    ASSERT_EQ(r.items.size(), 150u) << "sized " << sized;
    for (size_t i = 0; i < 150; ++i) {
      EXPECT_EQ(r.items[i].index, i);
      EXPECT_EQ(r.items[i].content(), "p" + std::to_string(i));
      EXPECT_EQ(r.items[i].metadata["row"], i);
    }
    EXPECT_TRUE(warnings.empty()) << warnings.front();
    if (!sized) {
      // First pass: 25 restored from the vector run, 125 answered now.
      EXPECT_EQ(r.summary.restored, 25u);
      EXPECT_EQ(r.summary.success, 125u);
      EXPECT_EQ(requested(mock).size(), 125u);
      EXPECT_EQ(requested(mock).count(3), 0u) << "a restored index was requested again";
    } else {
      EXPECT_EQ(r.summary.restored, 150u) << "a rerun sends nothing";
      EXPECT_EQ(requested(mock).size(), 125u);
    }
  }
  // A metadata list of the wrong length cannot be checked before a lazy source ends: a warning.
  size_t next = 0;
  std::vector<std::string> warnings;
  client.chat_completions_batch(
      MessageSource([&]() -> std::optional<json> {
        if (next >= 3) return std::nullopt;
        return user("p" + std::to_string(next++));
      }),
      {.metadata_list = {json(1)},
       .on_warning = [&](const std::string& w) { warnings.push_back(w); }});
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("1 entries for 3 inputs"), std::string::npos) << warnings[0];
  std::remove(out.c_str());
}

// A stop request on a sized source: nothing more is pulled or started (requests still waiting for
// a concurrency slot are not sent), what runs finishes, the rest is reported not run.
TEST(Batch, StopOnASizedSourceReportsTheRestNotRun) {
  MockServer mock({.latency_ms = {5, 5}, .echo = true});
  LLMClient client(config_for(mock, {.concurrency_limit = 4}));
  auto stop = std::make_shared<StopSignal>();
  size_t next = 0;
  MessageSource source(
      [&]() -> std::optional<json> {
        if (next >= 100) return std::nullopt;
        json messages = user("p" + std::to_string(next++));
        if (next == 10) stop->request();  // with the 10th input: no 11th is pulled
        return messages;
      },
      100);
  BatchResult r = client.chat_completions_batch(source, {.stop = stop});
  ASSERT_EQ(r.items.size(), 100u);
  EXPECT_EQ(next, 10u) << "no input is pulled after the stop";
  EXPECT_GE(r.summary.success, 1u);
  EXPECT_LE(r.summary.success, 10u);
  EXPECT_EQ(r.summary.failed, 0u);
  EXPECT_EQ(r.summary.not_run, 100u - r.summary.success);
  EXPECT_EQ(mock.stats(false).requests, r.summary.success) << "nothing sent was left unrecorded";
  for (size_t i = 10; i < 100; ++i) {
    ASSERT_EQ(r.items[i].status, ItemStatus::error) << i;
    EXPECT_EQ(r.items[i].error->kind(), ErrorKind::cancelled);
  }
}

TEST(Batch, StopSignalLetsInFlightFinishAndRecordsThem) {
  MockServer mock({.latency_ms = {10, 10}, .echo = true});
  LLMClient client(config_for(mock, {.concurrency_limit = 5}));
  std::string out = temp_path("stop.jsonl");
  std::remove(out.c_str());
  auto stop = std::make_shared<StopSignal>();
  std::thread stopper([&] {
    EXPECT_TRUE(mock.wait_for([](const MockStats& st) { return st.requests >= 20; }, 10s));
    stop->request();
  });
  BatchResult r = client.chat_completions_batch(prompts(500), {.output_file = out, .stop = stop});
  stopper.join();
  EXPECT_GT(r.summary.not_run, 0u);
  EXPECT_EQ(r.summary.success + r.summary.not_run, 500u);
  EXPECT_EQ(mock.stats(false).requests, r.summary.success) << "every request sent was recorded";
  EXPECT_EQ(read_records(out).size(), r.summary.success);
  for (const auto& item : r.items)
    if (item.status == ItemStatus::error) {
      EXPECT_EQ(item.error->kind(), ErrorKind::cancelled);
    }
  // A rerun finishes the rest.
  BatchResult rest = client.chat_completions_batch(prompts(500), {.output_file = out});
  EXPECT_EQ(rest.summary.restored, r.summary.success);
  EXPECT_EQ(rest.summary.success + rest.summary.restored, 500u);
  std::remove(out.c_str());
}

// A child process running a batch is killed with SIGKILL at random moments; each rerun resumes.
// At the end every index is in the file exactly once, all success, and after each kill no index
// already in the file was requested again.
TEST(BatchCrash, KillNineAtRandomMomentsLosesNothingDurable) {
  MockServer mock({.latency_ms = {2, 15}, .echo = true});
  std::string out = temp_path("crash.jsonl");
  std::remove(out.c_str());
  const size_t n = 600;
  std::mt19937 rng(2026);
  auto run_child = [&](std::optional<uint64_t> kill_after) {
    std::string url = mock.base_url(), count = std::to_string(n);
    std::vector<char*> argv = {const_cast<char*>(FLEXLLM_BATCH_CHILD), url.data(), out.data(),
                               count.data(), nullptr};
    pid_t pid;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    EXPECT_EQ(posix_spawn(&pid, FLEXLLM_BATCH_CHILD, &fa, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    if (kill_after) {
      mock.wait_for([&](const MockStats& st) { return st.requests >= *kill_after; }, 30s);
      kill(pid, SIGKILL);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
  };
  auto durable = [&] {
    std::set<size_t> done;
    std::ifstream in(out);
    for (std::string line; std::getline(in, line);) {
      json rec = json::parse(line, nullptr, false);
      if (!rec.is_discarded() && rec["status"] == "success")
        done.insert(rec["index"].get<size_t>());
    }
    return done;
  };
  std::set<size_t> done;
  for (int kill_round = 0; kill_round < 4; ++kill_round) {
    mock.reset_stats();
    uint64_t after = 10 + rng() % 120;
    run_child(after);
    std::multiset<size_t> asked = requested(mock);
    for (size_t i : asked)
      EXPECT_FALSE(done.count(i)) << "index " << i << " was durable, yet requested again";
    done = durable();
  }
  mock.reset_stats();
  int status = run_child(std::nullopt);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  for (size_t i : requested(mock)) EXPECT_FALSE(done.count(i)) << i;
  auto records = read_records(out);
  ASSERT_EQ(records.size(), n);
  for (size_t i = 0; i < n; ++i) {
    EXPECT_EQ(records[i]["index"], i);
    EXPECT_EQ(records[i]["status"], "success");
    EXPECT_EQ(records[i]["output"], "p" + std::to_string(i));
  }
  std::remove(out.c_str());
}

}  // namespace
}  // namespace flexllm::test
