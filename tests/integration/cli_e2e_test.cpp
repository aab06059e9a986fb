// The `flexllm` command end to end: the built binary in a child process against mock servers
// started here (or its own embedded one with --mock), with a fresh HOME and working directory.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "cli_run.hpp"
#include "flexllm/mock/server.hpp"

namespace {

using flexllm::test::CliOptions;
using flexllm::test::CliProcess;
using flexllm::test::CliResult;
using flexllm::test::run_cli;
using json = nlohmann::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("flexllm_cli_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "home");
  }
  void TearDown() override { fs::remove_all(dir_); }

  CliOptions opts(std::string stdin_text = {}) const {
    CliOptions o;
    o.home = (dir_ / "home").string();
    o.cwd = dir_.string();
    o.stdin_text = std::move(stdin_text);
    return o;
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(path(name)) << text;
  }
  std::vector<json> records(const std::string& name) const {
    std::vector<json> out;
    std::ifstream in(path(name));
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) out.push_back(json::parse(line));
    return out;
  }

  fs::path dir_;
};

flexllm::mock::MockConfig echo() {
  flexllm::mock::MockConfig c;
  c.echo = true;
  c.record_bodies = true;
  return c;
}

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST_F(Cli, BatchTakesEveryInputFormatAndKeepsMetadata) {
  flexllm::mock::MockServer mock(echo());
  write("in.jsonl",
        R"({"id": "m", "messages": [{"role": "user", "content": "from messages"}]}
{"id": "p", "prompt": "from prompt", "system": "sys"}
{"id": "q", "q": "from q"}

{"id": "qq", "question": "from question", "extra": {"k": [1, 2]}}
{"id": "a", "instruction": "do this", "input": "with that"}
[{"role": "user", "content": "bare array"}]
"bare string"
)");
  CliResult r = run_cli({"batch", "in.jsonl", "-o", "out.jsonl", "--base-url", mock.base_url(),
                         "-m", "mock-model", "--no-progress"},
                        opts());
  ASSERT_EQ(r.status, 0) << r.err;
  auto recs = records("out.jsonl");
  ASSERT_EQ(recs.size(), 7u);
  const std::vector<std::string> answers = {"from messages", "from prompt",          "from q",
                                            "from question", "do this\n\nwith that", "bare array",
                                            "bare string"};
  const std::vector<std::string> ids = {"m", "p", "q", "qq", "a"};
  for (size_t i = 0; i < recs.size(); ++i) {
    EXPECT_EQ(recs[i]["index"], i);
    EXPECT_EQ(recs[i]["status"], "success") << recs[i].dump();
    EXPECT_EQ(recs[i]["output"], answers[i]) << recs[i].dump();
    if (i < ids.size()) {
      EXPECT_EQ(recs[i]["metadata"]["id"], ids[i]) << recs[i].dump();
    }
  }
  EXPECT_EQ(recs[3]["metadata"]["extra"], (json{{"k", {1, 2}}}));
  // The system field became the system message of its request.
  bool saw_system = false;
  for (const auto& a : mock.stats().arrivals) {
    json body = json::parse(a.body);
    if (body["messages"][0]["role"] == "system") {
      saw_system = true;
      EXPECT_EQ(body["messages"][0]["content"], "sys");
    }
  }
  EXPECT_TRUE(saw_system);
}

TEST_F(Cli, BatchReadsStdin) {
  flexllm::mock::MockServer mock(echo());
  CliResult r =
      run_cli({"batch", "-", "-o", "out.jsonl", "--base-url", mock.base_url(), "--no-progress"},
              opts("{\"prompt\": \"one\"}\n{\"prompt\": \"two\"}\n"));
  ASSERT_EQ(r.status, 0) << r.err;
  auto recs = records("out.jsonl");
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[1]["output"], "two");
}

TEST_F(Cli, MalformedLinesAreReportedByLineAndTheRestIsKept) {
  flexllm::mock::MockServer mock(echo());
  write("in.jsonl",
        "{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n{\"prompt\": \"c\",}\n"
        "{\"text\": \"no prompt\"}\n{\"prompt\": \"e\"}\n");
  std::vector<std::string> args = {"batch",      "in.jsonl",      "-o",           "out.jsonl",
                                   "--base-url", mock.base_url(), "--no-progress"};
  CliResult r = run_cli(args, opts());
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("in.jsonl:3: not valid JSON"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("in.jsonl:4: expected a field"), std::string::npos) << r.err;
  auto recs = records("out.jsonl");
  ASSERT_EQ(recs.size(), 5u);
  for (size_t i : {0, 1, 4}) EXPECT_EQ(recs[i]["status"], "success") << recs[i].dump();
  for (size_t i : {2, 3}) {
    EXPECT_EQ(recs[i]["status"], "error");
    EXPECT_NE(recs[i].dump().find("in.jsonl:" + std::to_string(i + 1)), std::string::npos)
        << recs[i].dump();
  }
  EXPECT_EQ(mock.stats().requests, 3u);

  // Fixed input: only the two lines that failed are sent; the rest is restored.
  write("in.jsonl",
        "{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n{\"prompt\": \"c\"}\n"
        "{\"prompt\": \"d\"}\n{\"prompt\": \"e\"}\n");
  r = run_cli(args, opts());
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(mock.stats().requests, 5u);
  recs = records("out.jsonl");
  ASSERT_EQ(recs.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(recs[i]["status"], "success");
    EXPECT_EQ(recs[i]["output"], std::string(1, static_cast<char>('a' + i)));
  }
}

TEST_F(Cli, ExitCodes) {
  flexllm::mock::MockConfig failing;
  failing.faults.http_error = 1.0;
  flexllm::mock::MockServer mock(failing);
  write("in.jsonl", "{\"prompt\": \"x\"}\n");
  CliResult r = run_cli({"batch", "in.jsonl", "-o", "out.jsonl", "--base-url", mock.base_url(),
                         "--retry-times", "0", "--no-progress"},
                        opts());
  EXPECT_EQ(r.status, 1) << r.err;  // failures
  r = run_cli({"ask", "--base-url", mock.base_url(), "--retry-times", "0", "hi"}, opts());
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("500"), std::string::npos) << r.err;
  r = run_cli({"batch", "missing.jsonl", "-o", "out.jsonl", "--mock"}, opts());
  EXPECT_EQ(r.status, 2) << r.err;  // bad input: names the file
  EXPECT_NE(r.err.find("missing.jsonl"), std::string::npos) << r.err;
  r = run_cli({"batch", "in.jsonl", "-o", "out.jsonl", "--thinking", "lots", "--mock"}, opts());
  EXPECT_EQ(r.status, 2) << r.err;  // a bad flag value
  r = run_cli({"batch", "in.jsonl", "-o", "./in.jsonl", "--mock"}, opts());
  EXPECT_EQ(r.status, 2) << r.err;  // would overwrite its own input
  EXPECT_NE(r.err.find("both the input and the output"), std::string::npos) << r.err;
  r = run_cli({"ask", "--mock", "--provider", "claude", "hi"}, opts());
  EXPECT_EQ(r.status, 2) << r.err;  // until the Claude issue: says so
  EXPECT_NE(r.err.find("not supported yet"), std::string::npos) << r.err;
  r = run_cli({"no-such-command"}, opts());
  EXPECT_EQ(r.status, 2) << r.err;
}

TEST_F(Cli, NothingConfiguredSaysHowToConfigure) {
  CliResult r = run_cli({"ask", "hello"}, opts());
  EXPECT_EQ(r.status, 1);
  for (const char* hint : {"--base-url", "FLEXLLM_BASE_URL", "flexllm init", "--mock"})
    EXPECT_NE(r.err.find(hint), std::string::npos) << hint << " missing from: " << r.err;
}

TEST_F(Cli, MockNeedsNoConfigurationAtAll) {
  CliResult r = run_cli({"ask", "--mock", "hello"}, opts());
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_GT(r.out.size(), 5u);
  write("in.jsonl", "{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n");
  r = run_cli({"batch", "in.jsonl", "-o", "out.jsonl", "--mock"}, opts());
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(records("out.jsonl").size(), 2u);
  EXPECT_NE(r.err.find("batch: 2 items"), std::string::npos) << r.err;  // the summary
  r = run_cli({"test", "--mock"}, opts());
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("chat:     ok"), std::string::npos) << r.out;
  r = run_cli({"models", "--mock", "--mock-args", "--model a,b"}, opts());
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "a\nb\n");
}

TEST_F(Cli, AskPutsPipedTextBeforeTheQuestionAndStreams) {
  flexllm::mock::MockServer mock(echo());
  CliResult r = run_cli({"ask", "--base-url", mock.base_url(), "what", "is", "this?"},
                        opts("some context\n"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "some context\n\nwhat is this?\n");
  auto st = mock.stats();
  ASSERT_EQ(st.arrivals.size(), 1u);
  EXPECT_TRUE(st.arrivals[0].stream);
  r = run_cli({"ask", "--base-url", mock.base_url(), "--no-stream", "--system", "S", "plain"},
              opts());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "plain\n");
  json body = json::parse(mock.stats().arrivals.back().body);
  EXPECT_EQ(body["messages"][0], (json{{"role", "system"}, {"content", "S"}}));
  EXPECT_FALSE(mock.stats().arrivals.back().stream);
}

TEST_F(Cli, ChatKeepsHistoryThroughStdin) {
  flexllm::mock::MockServer mock(echo());
  CliResult r = run_cli({"chat", "--base-url", mock.base_url()},
                        opts("first\nsecond\n/clear\nthird\n/exit\nnever sent\n"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "first\nsecond\nthird\n");
  auto st = mock.stats();
  ASSERT_EQ(st.arrivals.size(), 3u);
  auto count = [&](size_t i) { return json::parse(st.arrivals[i].body)["messages"].size(); };
  EXPECT_EQ(count(0), 1u);
  EXPECT_EQ(count(1), 3u);  // first, its answer, second
  EXPECT_EQ(count(2), 1u);  // after /clear
}

// Ctrl-C while an answer streams abandons that answer only: the chat goes on, without it.
TEST_F(Cli, ChatCtrlCAbandonsTheAnswerNotTheChat) {
  flexllm::mock::MockConfig slow = echo();
  slow.token_rate = 20;  // the first answer takes ~2 s to stream
  flexllm::mock::MockServer mock(slow);
  std::string long_question;
  for (int i = 0; i < 40; ++i) long_question += "word" + std::to_string(i) + " ";
  CliProcess p({"chat", "--base-url", mock.base_url()}, opts(long_question + "\n"));
  ASSERT_TRUE(p.wait_for_stdout("word1"));
  p.signal(SIGINT);
  ASSERT_TRUE(p.wait_for_stderr("interrupted"));
  // Not over: the next question is answered, without the abandoned turn in its history.
  p.send("short\n");
  ASSERT_TRUE(p.wait_for_stdout("short"));
  CliResult r = p.finish();  // stdin closes: Ctrl-D
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.find("word39"), std::string::npos) << "the answer went on: " << r.out;
  auto st = mock.stats();
  ASSERT_EQ(st.arrivals.size(), 2u);
  EXPECT_EQ(json::parse(st.arrivals[1].body)["messages"].size(), 1u);
}

// flags > environment > file; -m naming a file entry picks that entry's endpoint.
TEST_F(Cli, ConfigEnvAndFlagPrecedence) {
  flexllm::mock::MockServer file_mock(echo()), env_mock(echo()), flag_mock(echo()),
      named_mock(echo());
  write("flexllm.yaml",
        "default: main\nmodels:\n  - id: file-model\n    name: main\n    base_url: " +
            file_mock.base_url() +
            "\n  - id: named-model\n    name: other\n"
            "    base_url: " +
            named_mock.base_url() + "\n");
  auto ask = [&](std::vector<std::string> extra, std::map<std::string, std::string> env) {
    CliOptions o = opts();
    o.env = std::move(env);
    CliResult r = run_cli(with({"ask", "--no-stream"}, extra), o);
    EXPECT_EQ(r.status, 0) << r.err;
  };
  auto model_of_last = [](flexllm::mock::MockServer& m) {
    return json::parse(m.stats().arrivals.back().body)["model"].get<std::string>();
  };
  ask({"q1"}, {});
  EXPECT_EQ(file_mock.stats().requests, 1u);
  EXPECT_EQ(model_of_last(file_mock), "file-model");
  ask({"q2"}, {{"FLEXLLM_BASE_URL", env_mock.base_url()}, {"FLEXLLM_MODEL", "env-model"}});
  EXPECT_EQ(env_mock.stats().requests, 1u);
  EXPECT_EQ(model_of_last(env_mock), "env-model");
  ask({"q3"}, {{"OPENAI_BASE_URL", env_mock.base_url()}});  // the OpenAI names work too
  EXPECT_EQ(env_mock.stats().requests, 2u);
  ask({"--base-url", flag_mock.base_url(), "-m", "flag-model", "q4"},
      {{"FLEXLLM_BASE_URL", env_mock.base_url()}});
  EXPECT_EQ(flag_mock.stats().requests, 1u);
  EXPECT_EQ(model_of_last(flag_mock), "flag-model");
  ask({"-m", "other", "q5"}, {{"FLEXLLM_BASE_URL", env_mock.base_url()}});
  EXPECT_EQ(named_mock.stats().requests, 1u);
  EXPECT_EQ(model_of_last(named_mock), "named-model");
  // --config points elsewhere (before or after the subcommand).
  write("alt.yaml", "models:\n  - id: alt-model\n    base_url: " + flag_mock.base_url() + "\n");
  CliResult r = run_cli({"--config", "alt.yaml", "ask", "--no-stream", "q6"}, opts());
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(model_of_last(flag_mock), "alt-model");
  EXPECT_EQ(file_mock.stats().requests, 1u);
  EXPECT_EQ(env_mock.stats().requests, 2u);
}

TEST_F(Cli, BatchSettingsFromTheConfigFileAndAPoolOfEndpoints) {
  flexllm::mock::MockServer a(echo()), b(echo());
  write("flexllm.yaml",
        "models:\n  - id: m\nbatch:\n  concurrency: 2\n  endpoints:\n"
        "    - base_url: " +
            a.base_url() + "\n    - base_url: " + b.base_url() + "\n");
  std::string in;
  for (int i = 0; i < 40; ++i) in += "{\"prompt\": \"p" + std::to_string(i) + "\"}\n";
  write("in.jsonl", in);
  CliResult r = run_cli({"batch", "in.jsonl", "-o", "out.jsonl"}, opts());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(a.stats().requests + b.stats().requests, 40u);
  EXPECT_GT(a.stats().requests, 0u);
  EXPECT_GT(b.stats().requests, 0u);
  EXPECT_LE(a.stats().max_in_flight, 2u);
  EXPECT_NE(r.err.find("a pool of 2 endpoints"), std::string::npos) << r.err;

  // --endpoints on the command line, with a strategy: round robin splits the work evenly.
  r = run_cli({"batch", "in.jsonl", "-o", "out2.jsonl", "--endpoints",
               b.base_url() + "," + a.base_url(), "--load-balance", "round_robin"},
              opts());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(a.stats().requests + b.stats().requests, 80u);
  EXPECT_EQ(records("out2.jsonl").size(), 40u);
}

// Ctrl-C: no new requests, those in flight finish and are saved; the rerun does the rest, and
// no index is ever requested twice.
TEST_F(Cli, SigintStopsCleanlyAndARerunCompletesEveryIndexOnce) {
  flexllm::mock::MockConfig slow = echo();
  slow.latency_ms = {20, 60};
  flexllm::mock::MockServer mock(slow);
  const int n = 300;
  std::string in;
  for (int i = 0; i < n; ++i) in += "{\"prompt\": \"p" + std::to_string(i) + "\"}\n";
  write("in.jsonl", in);
  std::vector<std::string> args = {"batch",         "in.jsonl", "-o", "out.jsonl",    "--base-url",
                                   mock.base_url(), "-c",       "8",  "--no-progress"};
  {
    CliProcess p(args, opts());
    ASSERT_TRUE(mock.wait_for([](const auto& st) { return st.requests >= 40; }, 30s));
    p.signal(SIGINT);
    CliResult r = p.finish();
    EXPECT_EQ(r.status, 130) << r.err;
    EXPECT_NE(r.err.find("rerun"), std::string::npos) << r.err;
  }
  auto first = records("out.jsonl");
  const uint64_t sent_first = mock.stats().requests;
  EXPECT_EQ(first.size(), sent_first);  // every request sent was recorded
  EXPECT_LT(first.size(), static_cast<size_t>(n));
  std::set<size_t> seen;
  for (const auto& rec : first) EXPECT_TRUE(seen.insert(rec["index"].get<size_t>()).second);

  CliResult r = run_cli(args, opts());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(mock.stats().requests, static_cast<uint64_t>(n));  // nothing asked twice
  auto all = records("out.jsonl");
  ASSERT_EQ(all.size(), static_cast<size_t>(n));
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i]["index"], i);
    EXPECT_EQ(all[i]["status"], "success");
    EXPECT_EQ(all[i]["output"], "p" + std::to_string(i));
  }
}

// The request flags reach every request of a batch; --save-input and --cache do what they say.
TEST_F(Cli, BatchFlagsReachTheRequestsAndTheRecords) {
  flexllm::mock::MockServer mock(echo());
  write("in.jsonl", "{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n");
  std::vector<std::string> common = {"--base-url",
                                     mock.base_url(),
                                     "-m",
                                     "m1",
                                     "--no-progress",
                                     "--thinking",
                                     "false",
                                     "--temperature",
                                     "0.25",
                                     "--max-tokens",
                                     "7",
                                     "--system",
                                     "S",
                                     "--save-input",
                                     "none"};
  CliResult r = run_cli(with({"batch", "in.jsonl", "-o", "out.jsonl"}, common), opts());
  ASSERT_EQ(r.status, 0) << r.err;
  auto st = mock.stats();
  ASSERT_EQ(st.arrivals.size(), 2u);
  for (const auto& a : st.arrivals) {
    json body = json::parse(a.body);
    EXPECT_EQ(body["model"], "m1");
    EXPECT_EQ(body["temperature"], 0.25);
    EXPECT_EQ(body["max_tokens"], 7);
    EXPECT_EQ(body["chat_template_kwargs"]["enable_thinking"], false) << body.dump();
    EXPECT_EQ(body["messages"][0], (json{{"role", "system"}, {"content", "S"}}));
  }
  for (const auto& rec : records("out.jsonl")) EXPECT_FALSE(rec.contains("input")) << rec.dump();

  // --cache: a second batch over the same prompts (another output file) asks nothing.
  auto cached = with({"batch", "in.jsonl", "--cache", "-o"}, common);
  cached.insert(cached.begin() + 4, "c1.jsonl");
  CliOptions o = opts();
  o.env["XDG_CACHE_HOME"] = path("cache");
  r = run_cli(cached, o);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(mock.stats().requests, 4u);
  cached[4] = "c2.jsonl";
  r = run_cli(cached, o);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(mock.stats().requests, 4u);  // both answered by the cache
  EXPECT_NE(r.err.find("0 ok, 0 failed, 2 cached"), std::string::npos) << r.err;
  EXPECT_EQ(records("c2.jsonl").size(), 2u);
}

// http://user:password@host/v1 works (libcurl carries the user info) and its password shows
// nowhere: not in the progress header, errors, records or the summary of a pool; nor the key.
TEST_F(Cli, TheUserInfoOfABaseUrlShowsNowhere) {
  const std::string password = "hunter2secret";
  const std::string key = "sk-live-SECRET-0123456789abcdef";
  auto with_user_info = [&](const flexllm::mock::MockServer& m) {
    return "http://user:" + password + "@" + m.base_url().substr(7);
  };
  auto slurp = [&](const std::string& name) {
    std::ifstream in(path(name), std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  flexllm::mock::MockServer fine(echo());
  flexllm::mock::MockConfig mc;
  mc.faults.http_error = 1.0;
  mc.error_status = 401;  // quotes the bearer token back, as some servers do
  flexllm::mock::MockServer failing(mc);
  write("in.jsonl", "{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n");
  CliOptions o = opts();
  o.env = {{"FLEXLLM_API_KEY", key}};
  std::vector<CliResult> runs;

  runs.push_back(run_cli({"batch", "in.jsonl", "-o", "ok.jsonl", "--base-url", with_user_info(fine),
                          "-m", "mock-model"},
                         o));
  EXPECT_EQ(runs.back().status, 0) << runs.back().err;
  EXPECT_EQ(fine.stats().requests, 2u);
  EXPECT_NE(runs.back().err.find("via mock-model at http://***@127.0.0.1:" +
                                 std::to_string(fine.port()) + "/v1 (--base-url)"),
            std::string::npos)
      << runs.back().err;

  runs.push_back(run_cli({"batch", "in.jsonl", "-o", "failed.jsonl", "--base-url",
                          with_user_info(failing), "-m", "mock-model", "--retry-times", "0"},
                         o));
  EXPECT_EQ(runs.back().status, 1) << runs.back().err;
  const std::string failed = slurp("failed.jsonl");
  EXPECT_NE(failed.find("HTTP 401 from http://***@127.0.0.1:"), std::string::npos) << failed;
  EXPECT_NE(failed.find("Incorrect API key provided: [redacted]"), std::string::npos) << failed;

  runs.push_back(run_cli({"batch", "in.jsonl", "-o", "pool.jsonl", "--endpoints",
                          with_user_info(fine) + "," + with_user_info(fine), "-m", "mock-model"},
                         o));
  EXPECT_EQ(runs.back().status, 0) << runs.back().err;
  EXPECT_NE(runs.back().err.find("  http://***@127.0.0.1:"), std::string::npos)
      << runs.back().err;  // the pool's summary lines

  runs.push_back(run_cli({"ask", "--base-url", with_user_info(failing), "-m", "mock-model",
                          "--retry-times", "0", "hi"},
                         o));
  EXPECT_EQ(runs.back().status, 1) << runs.back().err;
  EXPECT_NE(runs.back().err.find("http://***@127.0.0.1:"), std::string::npos) << runs.back().err;

  CliOptions listing = o;
  listing.env["FLEXLLM_BASE_URL"] = with_user_info(fine);
  runs.push_back(run_cli({"list"}, listing));
  EXPECT_EQ(runs.back().status, 0) << runs.back().err;
  EXPECT_NE(runs.back().out.find("http://***@127.0.0.1:"), std::string::npos) << runs.back().out;

  for (const CliResult& r : runs) {
    for (const std::string& secret : {password, key}) {
      EXPECT_EQ(r.out.find(secret), std::string::npos) << r.out;
      EXPECT_EQ(r.err.find(secret), std::string::npos) << r.err;
    }
  }
  for (const char* file : {"ok.jsonl", "failed.jsonl", "pool.jsonl"}) {
    EXPECT_EQ(slurp(file).find(password), std::string::npos) << file;
    EXPECT_EQ(slurp(file).find(key), std::string::npos) << file;
  }
}

// A key on the command line is visible in ps and kept in shell history: the help points to the
// environment and the config file, and a run that got one says so (never showing it).
TEST_F(Cli, AnApiKeyOnTheCommandLineIsWarnedAbout) {
  const std::string key = "sk-live-SECRET-0123456789abcdef";
  CliResult r = run_cli({"ask", "--mock", "--api-key", key, "hi"}, opts());
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("flexllm: warning: --api-key: a key on the command line is visible to "
                       "other users of this host (ps) and kept in shell history; put it in "
                       "FLEXLLM_API_KEY or the config file"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find(key), std::string::npos) << r.err;
  r = run_cli({"ask", "--mock", "hi"}, opts());
  EXPECT_EQ(r.err.find("--api-key"), std::string::npos) << r.err;
  r = run_cli({"ask", "--help"}, opts());
  const size_t at = r.out.find("--api-key");
  ASSERT_NE(at, std::string::npos) << r.out;
  const std::string help = r.out.substr(at, r.out.find("\n  -", at) - at);
  for (const char* says : {"FLEXLLM_API_KEY", "config file", "ps", "shell history"})
    EXPECT_NE(help.find(says), std::string::npos) << says << " missing from: " << help;
}

// A cache directory others may write could hold planted answers: the command says so and runs
// without the cache rather than read it.
TEST_F(Cli, ACacheDirectoryOthersMayWriteIsNotUsed) {
  const std::string cache = path("xdg/flexllm/responses");
  fs::create_directories(cache);
  ASSERT_EQ(chmod(cache.c_str(), 0777), 0);
  write("in.jsonl", "{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n");
  CliOptions o = opts();
  o.env = {{"XDG_CACHE_HOME", path("xdg")}};
  CliResult r = run_cli({"batch", "in.jsonl", "-o", "out.jsonl", "--mock", "--cache"}, o);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(records("out.jsonl").size(), 2u);
  EXPECT_NE(r.err.find("flexllm: warning: response cache disabled: the cache directory " + cache +
                       " is writable by group and others (mode 0777)"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("poisoning"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(cache + "/responses.sqlite3"));
  // Made private, it is used.
  ASSERT_EQ(chmod(cache.c_str(), 0700), 0);
  r = run_cli({"batch", "in.jsonl", "-o", "out2.jsonl", "--mock", "--cache"}, o);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err.find("response cache disabled"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(cache + "/responses.sqlite3"));
}

TEST_F(Cli, EveryCommandHasHelpWithExamples) {
  for (const char* cmd :
       {"ask", "chat", "batch", "models", "list", "set-model", "test", "init", "mock"}) {
    CliResult r = run_cli({cmd, "--help"}, opts());
    EXPECT_EQ(r.status, 0) << cmd;
    EXPECT_NE(r.out.find("Examples"), std::string::npos) << cmd << ":\n" << r.out;
  }
  CliResult v = run_cli({"--version"}, opts());
  EXPECT_EQ(v.status, 0);
  EXPECT_EQ(v.out.rfind("flexllm ", 0), 0u) << v.out;
}

}  // namespace
