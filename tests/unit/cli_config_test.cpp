// The command's configuration (apps/flexllm/config.hpp): parsing, the file search, the precedence
// of flags, environment and file, and the text edit of set-model.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "config.hpp"

namespace flexllm::cli {
namespace {

namespace fs = std::filesystem;

struct Warnings {
  std::vector<std::string> list;
  Warn sink() {
    return [this](const std::string& m) { list.push_back(m); };
  }
};

Config parse(const std::string& text, Warnings* w = nullptr) {
  return parse_config(text, "cfg.yaml", w ? w->sink() : Warn{});
}

// The ConfigError's message, or "" when `text` parses.
std::string error_of(const std::string& text) {
  try {
    parse(text);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

const char* kFull = R"(# my models
default: qwen
system: Be brief.
models:
  - name: qwen
    id: Qwen/Qwen3-32B
    provider: openai
    base_url: http://gpu1:8000/v1
    api_key: sk-local-0000
    system: Think first.
  - id: gpt-4o-mini
    base_url: https://api.openai.com/v1
    api_key: sk-openai-1234567890
  - name: gem
    id: gemini-2.0-flash
    provider: gemini
    base_url: https://generativelanguage.googleapis.com/v1beta
batch:
  model: gem
  concurrency: 64
  max_qps: 12.5
  adaptive: yes
  cache: true
  cache_ttl: 3600
  timeout: 90
  retry_times: 0
  retry_delay: 0.5
  flush_interval: 2
  save_input: last
  fallback: false
  load_balance: weighted
  endpoints:
    - base_url: http://gpu1:8000/v1
      weight: 3
      concurrency: 32
      max_qps: 40
    - base_url: http://gpu2:8000/v1
      api_key: k2
      model: other-model
      provider: openai
)";

TEST(CliConfig, ParsesAFullConfig) {
  Warnings w;
  Config c = parse(kFull, &w);
  EXPECT_TRUE(w.list.empty()) << w.list.front();
  EXPECT_EQ(c.path, "cfg.yaml");
  EXPECT_EQ(c.default_model, "qwen");
  EXPECT_EQ(c.system, "Be brief.");
  ASSERT_EQ(c.models.size(), 3u);
  EXPECT_EQ(c.models[0].name, "qwen");
  EXPECT_EQ(c.models[0].id, "Qwen/Qwen3-32B");
  EXPECT_EQ(c.models[0].provider, "openai");
  EXPECT_EQ(c.models[0].base_url, "http://gpu1:8000/v1");
  EXPECT_EQ(c.models[0].api_key, "sk-local-0000");
  EXPECT_EQ(c.models[0].system, "Think first.");
  EXPECT_EQ(c.models[0].line, 5);
  EXPECT_EQ(c.models[1].name, "gpt-4o-mini");  // the id when no name
  EXPECT_EQ(c.models[1].provider, "");
  EXPECT_FALSE(c.models[1].system);
  EXPECT_EQ(c.models[1].line, 11);
  EXPECT_EQ(c.models[2].provider, "gemini");
  EXPECT_EQ(c.models[2].api_key, "");

  const BatchSection& b = c.batch;
  EXPECT_EQ(b.model, "gem");
  EXPECT_EQ(b.concurrency, 64);
  EXPECT_EQ(b.max_qps, 12.5);
  EXPECT_EQ(b.adaptive, true);
  EXPECT_EQ(b.cache, true);
  EXPECT_EQ(b.cache_ttl, 3600);
  EXPECT_EQ(b.timeout, 90);
  EXPECT_EQ(b.retry_times, 0);
  EXPECT_EQ(b.retry_delay, 0.5);
  EXPECT_EQ(b.flush_interval, 2);
  EXPECT_EQ(b.save_input, "last");
  EXPECT_EQ(b.fallback, false);
  EXPECT_EQ(b.load_balance, "weighted");
  ASSERT_EQ(b.endpoints.size(), 2u);
  EXPECT_EQ(b.endpoints[0].base_url, "http://gpu1:8000/v1");
  EXPECT_EQ(b.endpoints[0].weight, 3);
  EXPECT_EQ(b.endpoints[0].concurrency, 32);
  EXPECT_EQ(b.endpoints[0].max_qps, 40);
  EXPECT_EQ(b.endpoints[0].api_key, "");
  EXPECT_EQ(b.endpoints[1].api_key, "k2");
  EXPECT_EQ(b.endpoints[1].model, "other-model");
  EXPECT_EQ(b.endpoints[1].provider, "openai");
  EXPECT_EQ(b.endpoints[1].weight, 1);
  EXPECT_FALSE(b.endpoints[1].concurrency);

  EXPECT_EQ(c.find("qwen"), &c.models[0]);
  EXPECT_EQ(c.find("Qwen/Qwen3-32B"), &c.models[0]);
  EXPECT_EQ(c.find("gpt-4o-mini"), &c.models[1]);
  EXPECT_EQ(c.find("nope"), nullptr);
}

TEST(CliConfig, EmptyFilesAndEmptyValuesAreValid) {
  for (const char* text : {"", "\n", "# only a comment\n", "---\n", "models:\nbatch:\n"}) {
    Warnings w;
    Config c = parse(text, &w);
    EXPECT_TRUE(c.models.empty()) << text;
    EXPECT_FALSE(c.default_model) << text;
    EXPECT_TRUE(c.batch.endpoints.empty()) << text;
    EXPECT_TRUE(w.list.empty()) << text;
  }
  Config c = parse("models:\n  - id: m\n    api_key:\n    system: ~\nbatch:\n  concurrency:\n");
  EXPECT_EQ(c.models[0].api_key, "");
  EXPECT_FALSE(c.models[0].system);
  EXPECT_FALSE(c.batch.concurrency);
  // A name a model is sent by (not an entry) is a valid default when there are no entries.
  EXPECT_EQ(parse("default: gpt-4o\n").default_model, "gpt-4o");
}

TEST(CliConfig, TypeErrorsNameFileLineAndField) {
  const std::pair<std::string, std::string> cases[] = {
      {"models:\n  - id: a\n  - id: b\n    base_url: [x]\n",
       "cfg.yaml:4: models[1].base_url: expected a string"},
      {"batch:\n  concurrency: ten\n",
       "cfg.yaml:2: batch.concurrency: expected a positive integer, got 'ten'"},
      {"batch:\n  concurrency: 0\n", "cfg.yaml:2: batch.concurrency: expected a positive integer"},
      {"batch:\n  concurrency: 2.5\n",
       "cfg.yaml:2: batch.concurrency: expected a positive integer"},
      {"batch:\n\n  max_qps: 0\n", "cfg.yaml:3: batch.max_qps: expected a positive number"},
      {"batch:\n  retry_times: -1\n",
       "cfg.yaml:2: batch.retry_times: expected a non-negative integer, got '-1'"},
      {"batch:\n  timeout: -5\n", "cfg.yaml:2: batch.timeout: expected a non-negative number"},
      {"batch:\n  retry_delay: soon\n", "cfg.yaml:2: batch.retry_delay: expected a non-negative"},
      {"batch:\n  cache_ttl: [1]\n", "cfg.yaml:2: batch.cache_ttl: expected a non-negative"},
      {"batch:\n  flush_interval: x\n", "cfg.yaml:2: batch.flush_interval:"},
      {"batch:\n  adaptive: maybe\n",
       "cfg.yaml:2: batch.adaptive: expected true or false, got 'maybe'"},
      {"batch:\n  save_input: some\n",
       "cfg.yaml:2: batch.save_input: expected one of full, last, none, got 'some'"},
      {"batch:\n  load_balance: fastest\n",
       "cfg.yaml:2: batch.load_balance: expected one of round_robin, weighted, random, fallback, "
       "least_busy, latency, got 'fastest'"},
      {"batch:\n  endpoints:\n    - base_url: http://a\n      weight: -1\n",
       "cfg.yaml:4: batch.endpoints[0].weight: expected a non-negative number, got '-1'"},
      {"batch:\n  endpoints:\n    - base_url: http://a\n    - model: m\n",
       "cfg.yaml:4: batch.endpoints[1]: 'base_url' is required"},
      {"batch:\n  endpoints: http://a\n", "cfg.yaml:2: batch.endpoints: expected a list"},
      {"batch: 3\n", "cfg.yaml:1: batch: expected a map"},
      {"models:\n  - id: a\n    provider: mistral\n",
       "cfg.yaml:3: models[0].provider: expected one of auto, openai, gemini, claude, got "
       "'mistral'"},
      {"models:\n  - name: a\n    base_url: http://x\n",
       "cfg.yaml:2: models[0]: 'id' is required (the model id sent to the server)"},
      {"models:\n  - id: a\n  - just-a-name\n", "cfg.yaml:3: models[1]: expected an entry"},
      {"models:\n  id: a\n", "cfg.yaml:2: models: expected a list"},
      {"system:\n  - a\n", "cfg.yaml:2: system: expected a string"},
      {"- a\n- b\n", "cfg.yaml:1: expected a map"},
      {"default: qwen\nmodels:\n  - id: a\n  - id: b\n    name: bee\n",
       "cfg.yaml:1: default: 'qwen' names no entry of models (known: a, bee)"},
      {"models:\n  - id: a\n   bad: x\n", "cfg.yaml:3:4: invalid YAML: end of sequence not found"},
      {"default: a: b\n", "cfg.yaml:1:"},
      {"models: [\n  {id: a}\n", "invalid YAML: "},
  };
  for (const auto& [text, says] : cases) {
    std::string e = error_of(text);
    EXPECT_NE(e.find(says), std::string::npos) << "config:\n" << text << "error: " << e;
  }
  // Malformed YAML: FILE:LINE:COL.
  std::string e = error_of("a: 1\nb: [1, 2\nc: 3\n");
  EXPECT_EQ(e.rfind("cfg.yaml:", 0), 0u) << e;
  EXPECT_NE(e.find(": invalid YAML: "), std::string::npos) << e;
  EXPECT_NE(e.find("cfg.yaml:3:"), std::string::npos) << e;
}

TEST(CliConfig, UnknownKeysWarnWithTheirLineAndAreIgnored) {
  Warnings w;
  Config c = parse(R"(default: a
colour: blue
models:
  - id: a
    base_urll: http://x
batch:
  concurency: 10
  endpoints:
    - base_url: http://e
      wieght: 2
)",
                   &w);
  ASSERT_EQ(w.list.size(), 4u);
  EXPECT_NE(w.list[0].find("cfg.yaml:2: unknown key 'colour' at the top level (known: default, "
                           "system, models, batch); ignored"),
            std::string::npos)
      << w.list[0];
  EXPECT_NE(w.list[1].find("cfg.yaml:5: unknown key 'base_urll' in models[0]"), std::string::npos)
      << w.list[1];
  EXPECT_NE(w.list[1].find("did you mean 'base_url'?"), std::string::npos) << w.list[1];
  EXPECT_NE(w.list[2].find("cfg.yaml:7: unknown key 'concurency' in batch (known: model, "
                           "concurrency, max_qps,"),
            std::string::npos)
      << w.list[2];
  EXPECT_NE(w.list[2].find("; ignored"), std::string::npos) << w.list[2];
  EXPECT_NE(w.list[3].find("cfg.yaml:10: unknown key 'wieght' in batch.endpoints[0]"),
            std::string::npos)
      << w.list[3];
  EXPECT_EQ(c.models.at(0).base_url, "");
  EXPECT_FALSE(c.batch.concurrency);
  EXPECT_EQ(c.batch.endpoints.at(0).weight, 1);

  // No warning sink at all is fine too.
  EXPECT_NO_THROW(parse_config("x: 1\n", "f", Warn{}));
}

TEST(CliConfig, RepeatedKeysAndNamesWarn) {
  Warnings w;
  Config c =
      parse("default: a\ndefault: b\nmodels:\n  - id: a\n  - id: b\n  - id: c\n    name: a\n", &w);
  EXPECT_EQ(c.default_model, "b");
  ASSERT_EQ(w.list.size(), 2u);
  EXPECT_NE(w.list[0].find("cfg.yaml:2: key 'default' given twice"), std::string::npos);
  EXPECT_NE(w.list[1].find("cfg.yaml:6: models[2]: name 'a'"), std::string::npos) << w.list[1];
}

TEST(CliConfig, EnvironmentVariablesExpandInKeysAndUrlsOnly) {
  setenv("FLEXLLM_TEST_KEY", "sk-from-env", 1);
  setenv("FLEXLLM_TEST_HOST", "gpu7", 1);
  unsetenv("FLEXLLM_TEST_UNSET");
  Config c = parse(R"(models:
  - id: ${FLEXLLM_TEST_KEY}
    base_url: http://${FLEXLLM_TEST_HOST}:8000/v1
    api_key: ${FLEXLLM_TEST_KEY}
  - id: b
    api_key: ${FLEXLLM_TEST_UNSET}
    base_url: x${not a name}y${FLEXLLM_TEST_HOST}$HOME${unclosed
batch:
  endpoints:
    - base_url: http://${FLEXLLM_TEST_HOST}/v1
      api_key: pre-${FLEXLLM_TEST_KEY}
)");
  EXPECT_EQ(c.models[0].id, "${FLEXLLM_TEST_KEY}");  // not expanded
  EXPECT_EQ(c.models[0].base_url, "http://gpu7:8000/v1");
  EXPECT_EQ(c.models[0].api_key, "sk-from-env");
  EXPECT_EQ(c.models[1].api_key, "");  // unset: empty
  EXPECT_EQ(c.models[1].base_url, "x${not a name}ygpu7$HOME${unclosed");
  EXPECT_EQ(c.batch.endpoints[0].base_url, "http://gpu7/v1");
  EXPECT_EQ(c.batch.endpoints[0].api_key, "pre-sk-from-env");
  unsetenv("FLEXLLM_TEST_KEY");
  unsetenv("FLEXLLM_TEST_HOST");
}

// A fresh directory, removed at the end.
struct TempDir {
  std::string path;
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "flexllm_cfg_XXXXXX";
    path = mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path); }
  std::string write(const std::string& rel, const std::string& text) const {
    fs::path p = fs::path(path) / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }
};

// Sets HOME and the working directory for a test, restoring both.
struct Place {
  std::string old_home;
  bool had_home;
  fs::path old_cwd = fs::current_path();
  Place(const std::string& home, const std::string& cwd) {
    const char* h = getenv("HOME");
    had_home = h != nullptr;
    if (h) old_home = h;
    setenv("HOME", home.c_str(), 1);
    fs::current_path(cwd);
  }
  ~Place() {
    if (had_home)
      setenv("HOME", old_home.c_str(), 1);
    else
      unsetenv("HOME");
    fs::current_path(old_cwd);
  }
};

TEST(CliConfig, FindConfigOrder) {
  TempDir home, cwd, other;
  Place place(home.path, cwd.path);
  EnvSettings env;
  EXPECT_EQ(user_config_path(), home.path + "/.flexllm/config.yaml");
  EXPECT_EQ(find_config("", env), "");  // nothing anywhere

  std::string user = home.write(".flexllm/config.yaml", "default: u\n");
  EXPECT_EQ(find_config("", env), user);

  cwd.write("flexllm.yaml", "default: local\n");
  EXPECT_EQ(find_config("", env), "./flexllm.yaml");
  EXPECT_EQ(load_config(find_config("", env), {}).default_model, "local");

  std::string named = other.write("env.yaml", "");
  env.config = named;
  EXPECT_EQ(find_config("", env), named);

  std::string flag = other.write("flag.yaml", "");
  EXPECT_EQ(find_config(flag, env), flag);

  // An explicit file must exist (never a silent fall back to another one).
  try {
    find_config(other.path + "/missing.yaml", env);
    ADD_FAILURE() << "no error for a missing --config";
  } catch (const ConfigError& e) {
    EXPECT_NE(
        std::string(e.what()).find("config file " + other.path + "/missing.yaml does not exist"),
        std::string::npos)
        << e.what();
  }
  env.config = other.path + "/gone.yaml";
  try {
    find_config("", env);
    ADD_FAILURE() << "no error for a missing FLEXLLM_CONFIG";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("gone.yaml does not exist"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("FLEXLLM_CONFIG"), std::string::npos);
  }
  EXPECT_EQ(find_config(flag, env), flag);  // --config wins even over a bad FLEXLLM_CONFIG
}

// ./flexllm.yaml is found, not named: used (and said so) only when it is the user's and nobody
// else may write it; otherwise skipped, saying why, for the next file in the search.
TEST(CliConfig, AWorkingDirectoryConfigOthersCouldChangeIsSkipped) {
  TempDir home, cwd;
  Place place(home.path, cwd.path);
  EnvSettings env;
  std::string user = home.write(".flexllm/config.yaml", "default: u\n");
  std::string local = cwd.write("flexllm.yaml", "default: local\n");
  std::vector<std::string> told;
  auto tell = [&told](const std::string& m) { told.push_back(m); };

  ASSERT_EQ(chmod(local.c_str(), 0644), 0);
  EXPECT_EQ(find_config("", env, tell), "./flexllm.yaml");
  ASSERT_EQ(told.size(), 1u);
  EXPECT_EQ(told[0], "using ./flexllm.yaml (the config file in the working directory)");

  const std::pair<mode_t, const char*> cases[] = {
      {0666, "it is writable by group and others (mode 0666)"},
      {0664, "it is writable by its group (mode 0664)"},
      {0646, "it is writable by others (mode 0646)"},
  };
  for (const auto& [mode, why] : cases) {
    told.clear();
    ASSERT_EQ(chmod(local.c_str(), mode), 0);
    EXPECT_EQ(find_config("", env, tell), user) << why;
    ASSERT_EQ(told.size(), 1u);
    EXPECT_EQ(told[0].rfind(std::string("warning: ignoring ./flexllm.yaml: ") + why, 0), 0u)
        << told[0];
    EXPECT_NE(told[0].find("chmod go-w"), std::string::npos) << told[0];
    EXPECT_NE(told[0].find("--config ./flexllm.yaml"), std::string::npos) << told[0];
  }
  // Named, it is used as it is: the user chose it.
  told.clear();
  EXPECT_EQ(find_config("./flexllm.yaml", env, tell), "./flexllm.yaml");
  EXPECT_TRUE(told.empty());

  // Another user's file (checked for a user who is not its owner: the same as root or not).
  ASSERT_EQ(chmod(local.c_str(), 0644), 0);
  EXPECT_EQ(untrusted_reason(local, geteuid()), "");
  const std::string why = untrusted_reason(local, geteuid() + 1);
  EXPECT_EQ(why.rfind("it is owned by another user, ", 0), 0u) << why;
  EXPECT_NE(why.find("(uid " + std::to_string(geteuid()) + ")"), std::string::npos) << why;
  // No file: nothing to say.
  EXPECT_EQ(untrusted_reason(cwd.path + "/none.yaml", geteuid()), "");
}

TEST(CliConfig, AConfigFileOverOneMebibyteIsRefusedUnread) {
  TempDir dir;
  std::string line = "# " + std::string(1021, 'x') + "\n";  // 1 KiB
  std::string text;
  for (int i = 0; i < 1024; ++i) text += line;
  std::string at_limit = dir.write("limit.yaml", text);  // exactly 1 MiB: read
  EXPECT_EQ(read_config_file(at_limit).size(), kMaxConfigBytes);
  EXPECT_NO_THROW(load_config(at_limit, {}));
  std::string big = dir.write("big.yaml", text + "default: m\n");
  try {
    load_config(big, {});
    ADD_FAILURE() << "a config file over 1 MiB was read";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "config file " + big +
                  " is 1048587 bytes; a config file may be at most 1 MiB (1048576 bytes): is it "
                  "the right file?");
  }
  // A file without a size (a pipe here, a device such as /dev/zero alike) is read no further
  // than the limit: 2 MiB offered, an error after 1 MiB (and a bounded test if it were not).
  const std::string fifo = dir.path + "/pipe.yaml";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::thread writer([&] {
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);  // a reader that stops early: EPIPE, not death
    const int fd = open(fifo.c_str(), O_WRONLY);
    const std::string chunk(64 * 1024, '#');
    for (int i = 0; fd >= 0 && i < 32; ++i)
      if (write(fd, chunk.data(), chunk.size()) < 0) break;
    if (fd >= 0) close(fd);
  });
  std::string what;
  try {
    read_config_file(fifo);
  } catch (const ConfigError& e) {
    what = e.what();
  }
  // Whatever happened, a writer still waiting for a reader goes.
  if (const int fd = open(fifo.c_str(), O_RDONLY | O_NONBLOCK); fd >= 0) close(fd);
  writer.join();
  EXPECT_EQ(what, "config file " + fifo +
                      " is over 1 MiB; a config file may be at most 1 MiB (1048576 bytes): is it "
                      "the right file?");
}

TEST(CliConfig, LoadConfig) {
  TempDir dir;
  EXPECT_TRUE(load_config("", {}).path.empty());
  std::string p = dir.write("c.yaml", "models:\n  - id: m\n    base_url: [1]\n");
  try {
    load_config(p, {});
    ADD_FAILURE();
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(p + ":3: models[0].base_url: expected a string", 0), 0u)
        << e.what();
  }
  EXPECT_THROW(load_config(dir.path + "/none.yaml", {}), ConfigError);
  EXPECT_THROW(load_config(dir.path, {}), ConfigError);
  std::string ok = dir.write("ok.yaml", "default: m\n");
  EXPECT_EQ(load_config(ok, {}).path, ok);
}

TEST(CliConfig, EnvSettingsPreferFlexllmVariables) {
  const char* names[] = {"FLEXLLM_BASE_URL", "OPENAI_BASE_URL", "FLEXLLM_API_KEY", "OPENAI_API_KEY",
                         "FLEXLLM_MODEL",    "OPENAI_MODEL",    "FLEXLLM_CONFIG"};
  std::vector<std::pair<std::string, std::optional<std::string>>> saved;
  for (const char* n : names) {
    const char* v = getenv(n);
    saved.emplace_back(n, v ? std::optional<std::string>(v) : std::nullopt);
    unsetenv(n);
  }
  setenv("OPENAI_BASE_URL", "http://openai", 1);
  setenv("OPENAI_API_KEY", "ok", 1);
  setenv("FLEXLLM_API_KEY", "fk", 1);
  setenv("FLEXLLM_MODEL", "", 1);  // empty = unset
  setenv("OPENAI_MODEL", "om", 1);
  setenv("FLEXLLM_CONFIG", "/c.yaml", 1);
  EnvSettings e = EnvSettings::from_environment();
  EXPECT_EQ(e.base_url, "http://openai");
  EXPECT_EQ(e.api_key, "fk");
  EXPECT_EQ(e.model, "om");
  EXPECT_EQ(e.config, "/c.yaml");
  for (const auto& [n, v] : saved)
    if (v)
      setenv(n.c_str(), v->c_str(), 1);
    else
      unsetenv(n.c_str());
}

FlagSettings flags(std::string base_url, std::string api_key = "", std::string model = "") {
  FlagSettings f;
  f.base_url = std::move(base_url);
  f.api_key = std::move(api_key);
  f.model = std::move(model);
  return f;
}

EnvSettings envs(std::string base_url, std::string api_key = "", std::string model = "") {
  EnvSettings e;
  e.base_url = std::move(base_url);
  e.api_key = std::move(api_key);
  e.model = std::move(model);
  return e;
}

const char* kTwoModels = R"(default: local
system: global prompt
models:
  - name: local
    id: qwen-7b
    base_url: http://local:8000/v1
    system: local prompt
  - name: ds
    id: deepseek-chat
    provider: openai
    base_url: https://api.deepseek.com/v1
    api_key: sk-deepseek-123456
  - name: bare
    id: bare-model
    api_key: sk-bare-key-123456
)";

TEST(CliConfigResolve, NothingConfiguredGivesNothing) {
  EXPECT_FALSE(resolve_endpoint(Config{}, FlagSettings{}, EnvSettings{}));
  EXPECT_FALSE(resolve_endpoint(Config{}, flags("", "", "gpt-4o"), EnvSettings{}));
  EXPECT_FALSE(resolve_endpoint(Config{}, flags("", "k"), envs("", "", "m")));
  // A model without a base_url anywhere gives nothing either.
  EXPECT_FALSE(resolve_endpoint(parse("models:\n  - id: m\n"), FlagSettings{}, EnvSettings{}));
  std::string help = no_endpoint_help();
  for (const char* says :
       {"--base-url URL", "--api-key KEY", "-m MODEL", "FLEXLLM_BASE_URL", "FLEXLLM_API_KEY",
        "FLEXLLM_MODEL", "OPENAI_", "flexllm init", "~/.flexllm/config.yaml", "--mock"})
    EXPECT_NE(help.find(says), std::string::npos) << says;
}

TEST(CliConfigResolve, DefaultEntryAlone) {
  Config c = parse(kTwoModels);
  auto r = resolve_endpoint(c, FlagSettings{}, EnvSettings{});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->model, "qwen-7b");
  EXPECT_EQ(r->base_url, "http://local:8000/v1");
  EXPECT_EQ(r->api_key, "");
  EXPECT_EQ(r->system, "local prompt");
  EXPECT_EQ(r->entry, &c.models[0]);
  EXPECT_EQ(r->base_url_from, "cfg.yaml (model 'local')");
  // Without `default:` the first entry is the default.
  Config first = parse(
      "models:\n  - id: a\n    base_url: http://a\n  - id: b\n    base_url: "
      "http://b\n");
  EXPECT_EQ(resolve_endpoint(first, FlagSettings{}, EnvSettings{})->model, "a");
}

TEST(CliConfigResolve, EnvironmentBeatsTheFileFieldByField) {
  Config c = parse(kTwoModels);
  EnvSettings env = envs("http://env/v1", "env-key");
  auto r = resolve_endpoint(c, FlagSettings{}, env);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->base_url, "http://env/v1");
  EXPECT_EQ(r->api_key, "env-key");
  EXPECT_EQ(r->model, "qwen-7b");  // the default entry's model, the environment's endpoint
  EXPECT_NE(r->base_url_from.find("BASE_URL"), std::string::npos) << r->base_url_from;

  // FLEXLLM_MODEL naming an entry picks it, but at the environment's level: env base_url wins.
  env.model = "ds";
  r = resolve_endpoint(c, FlagSettings{}, env);
  EXPECT_EQ(r->model, "deepseek-chat");
  EXPECT_EQ(r->provider, "openai");
  EXPECT_EQ(r->base_url, "http://env/v1");
  EXPECT_EQ(r->api_key, "env-key");
  EXPECT_EQ(r->entry, &c.models[1]);
  EXPECT_EQ(r->system, "global prompt");  // ds has none of its own
  // … and with no env base_url, the entry's endpoint is used.
  r = resolve_endpoint(c, FlagSettings{}, envs("", "", "ds"));
  EXPECT_EQ(r->base_url, "https://api.deepseek.com/v1");
  EXPECT_EQ(r->api_key, "sk-deepseek-123456");

  // FLEXLLM_MODEL naming no entry: sent verbatim, to the default entry's endpoint.
  r = resolve_endpoint(c, FlagSettings{}, envs("", "", "llama-3"));
  EXPECT_EQ(r->model, "llama-3");
  EXPECT_EQ(r->base_url, "http://local:8000/v1");
  EXPECT_EQ(r->system, "global prompt");  // not the local entry's: another model

  // Environment only, no file.
  r = resolve_endpoint(Config{}, FlagSettings{}, envs("http://e", "k", "m"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->base_url, "http://e");
  EXPECT_EQ(r->api_key, "k");
  EXPECT_EQ(r->model, "m");
  EXPECT_EQ(r->entry, nullptr);
  EXPECT_FALSE(r->system);
  // A file with only `default:` (no entries): its model at the environment's endpoint.
  r = resolve_endpoint(parse("default: gpt-4o\nsystem: s\n"), FlagSettings{}, envs("http://e"));
  EXPECT_EQ(r->model, "gpt-4o");
  EXPECT_EQ(r->system, "s");
}

TEST(CliConfigResolve, FlagsBeatEverything) {
  Config c = parse(kTwoModels);
  EnvSettings env = envs("http://env/v1", "env-key", "ds");
  auto r = resolve_endpoint(c, flags("http://flag/v1", "flag-key", "bare"), env);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->base_url, "http://flag/v1");
  EXPECT_EQ(r->base_url_from, "--base-url");
  EXPECT_EQ(r->api_key, "flag-key");
  EXPECT_EQ(r->model, "bare-model");
  EXPECT_EQ(r->entry, &c.models[2]);

  r = resolve_endpoint(c, flags("http://flag/v1"), EnvSettings{});
  EXPECT_EQ(r->base_url, "http://flag/v1");
  EXPECT_EQ(r->model, "qwen-7b");
  r = resolve_endpoint(c, flags("", "flag-key"), env);
  EXPECT_EQ(r->api_key, "flag-key");
  EXPECT_EQ(r->base_url, "http://env/v1");
}

TEST(CliConfigResolve, AnEntryPickedByDashMBeatsTheEnvironment) {
  Config c = parse(kTwoModels);
  EnvSettings env = envs("http://env/v1", "env-key", "local");
  // -m ds: that endpoint, not ds's model at whatever the environment says.
  auto r = resolve_endpoint(c, flags("", "", "ds"), env);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->model, "deepseek-chat");
  EXPECT_EQ(r->base_url, "https://api.deepseek.com/v1");
  EXPECT_EQ(r->api_key, "sk-deepseek-123456");
  EXPECT_EQ(r->base_url_from, "cfg.yaml (model 'ds')");
  EXPECT_EQ(r->provider, "openai");
  // By id as well.
  EXPECT_EQ(resolve_endpoint(c, flags("", "", "deepseek-chat"), env)->base_url,
            "https://api.deepseek.com/v1");
  // An entry with its own base_url and no key: the environment's key is not sent to it.
  r = resolve_endpoint(c, flags("", "", "local"), env);
  EXPECT_EQ(r->base_url, "http://local:8000/v1");
  EXPECT_EQ(r->api_key, "");
  EXPECT_EQ(r->system, "local prompt");
  // An entry without base_url: the environment's endpoint and key, the entry's model; the
  // entry's key only when the environment has none.
  r = resolve_endpoint(c, flags("", "", "bare"), env);
  EXPECT_EQ(r->base_url, "http://env/v1");
  EXPECT_EQ(r->api_key, "env-key");
  EXPECT_EQ(r->model, "bare-model");
  r = resolve_endpoint(c, flags("", "", "bare"), envs("http://env/v1", "", ""));
  EXPECT_EQ(r->api_key, "sk-bare-key-123456");
  // Flags still beat the entry.
  r = resolve_endpoint(c, flags("http://flag", "fk", "ds"), env);
  EXPECT_EQ(r->base_url, "http://flag");
  EXPECT_EQ(r->api_key, "fk");
  EXPECT_EQ(r->model, "deepseek-chat");
}

// TLS files of an entry: relative to the config file, `~/` at home, and they go with the entry's
// base_url only (like its key).
TEST(CliConfigResolve, TlsFilesFollowTheEntrysBaseUrl) {
  const char* text = R"(models:
  - name: gw
    id: m
    base_url: https://gateway.internal/v1
    ca_cert: certs/ca.pem
    client_cert: /etc/flexllm/client.pem
    client_key: ~/keys/client.key
)";
  Config c = parse_config(text, "/home/u/.flexllm/config.yaml", {});
  ASSERT_EQ(c.models.size(), 1u);
  EXPECT_EQ(c.models[0].ca_cert, "/home/u/.flexllm/certs/ca.pem");
  EXPECT_EQ(c.models[0].client_cert, "/etc/flexllm/client.pem");
  const char* home = std::getenv("HOME");
  EXPECT_EQ(c.models[0].client_key, std::string(home ? home : "") + "/keys/client.key");
  auto r = resolve_endpoint(c, flags("", "", "gw"), envs("", "", ""));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->ca_cert, "/home/u/.flexllm/certs/ca.pem");
  EXPECT_EQ(r->client_cert, "/etc/flexllm/client.pem");
  // Another base_url (a flag): the entry's TLS identity is not sent to it.
  r = resolve_endpoint(c, flags("https://elsewhere/v1", "", "gw"), envs("", "", ""));
  EXPECT_EQ(r->ca_cert, "");
  EXPECT_EQ(r->client_cert, "");
  EXPECT_EQ(r->client_key, "");
}

TEST(CliConfigResolve, DashMNamingNoEntry) {
  Config c = parse(kTwoModels);
  // Sent verbatim to the default entry's endpoint…
  auto r = resolve_endpoint(c, flags("", "", "qwen-72b"), EnvSettings{});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->model, "qwen-72b");
  EXPECT_EQ(r->base_url, "http://local:8000/v1");
  EXPECT_EQ(r->system, "global prompt");
  // … or to the environment's / the flags'.
  r = resolve_endpoint(c, flags("", "", "qwen-72b"), envs("http://env", "ek"));
  EXPECT_EQ(r->base_url, "http://env");
  EXPECT_EQ(r->api_key, "ek");
  EXPECT_EQ(r->model, "qwen-72b");
  r = resolve_endpoint(Config{}, flags("http://f", "", "x"), EnvSettings{});
  EXPECT_EQ(r->model, "x");
  EXPECT_EQ(r->base_url, "http://f");
  // No base_url for it anywhere, while the file has models: an error naming them.
  Config no_urls = parse("models:\n  - id: a\n  - id: b\n");
  try {
    resolve_endpoint(no_urls, flags("", "", "zzz"), EnvSettings{});
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("'zzz'"), std::string::npos) << m;
    EXPECT_NE(m.find("known: a, b"), std::string::npos) << m;
  }
}

// set-model's edit: only the value of the top-level `default:` changes.
TEST(CliConfigSetModel, ReplacesOnlyTheValue) {
  const std::string before = R"(# flexllm config   
#   with   odd   spacing	and tabs

system: |
  You are helpful.
  default: not-me (this is inside a block scalar)
models:   # the list
  - name: a    # first
    id: "a-id"
    nested:
      default: nope
  -   name:  b
      id: b
default:   old-model   # the default model
batch:
  concurrency:    4      # keep
# trailing comment
)";
  const std::string after = R"(# flexllm config   
#   with   odd   spacing	and tabs

system: |
  You are helpful.
  default: not-me (this is inside a block scalar)
models:   # the list
  - name: a    # first
    id: "a-id"
    nested:
      default: nope
  -   name:  b
      id: b
default:   b   # the default model
batch:
  concurrency:    4      # keep
# trailing comment
)";
  EXPECT_EQ(set_default_model(before, "b"), after);
}

TEST(CliConfigSetModel, ValueForms) {
  EXPECT_EQ(set_default_model("default: a\n", "b"), "default: b\n");
  EXPECT_EQ(set_default_model("default: a", "b"), "default: b");  // no final newline
  EXPECT_EQ(set_default_model("default: 'a x'  # c\nm: 1\n", "b"), "default: b  # c\nm: 1\n");
  EXPECT_EQ(set_default_model("default: \"a\\\"x\" # c\n", "b"), "default: b # c\n");
  EXPECT_EQ(set_default_model("default:\nmodels:\n", "b"), "default: b\nmodels:\n");
  EXPECT_EQ(set_default_model("default:   # pick one\n", "b"), "default: b   # pick one\n");
  EXPECT_EQ(set_default_model("default: ~\n", "b"), "default: b\n");
  EXPECT_EQ(set_default_model("default: a#b\n", "c"), "default: c\n");  // '#' inside a plain value
  EXPECT_EQ(set_default_model("default: a\r\nx: 1\r\n", "b"), "default: b\r\nx: 1\r\n");
  EXPECT_EQ(set_default_model("\"default\": a\n", "b"), "\"default\": b\n");
  // Names YAML would read differently are quoted.
  EXPECT_EQ(set_default_model("default: a\n", "org/model-7b:latest"),
            "default: org/model-7b:latest\n");
  EXPECT_EQ(set_default_model("default: a\n", "a: b"), "default: 'a: b'\n");
  EXPECT_EQ(set_default_model("default: a\n", "x #1"), "default: 'x #1'\n");
  EXPECT_EQ(set_default_model("default: a\n", "it's"), "default: it's\n");
  EXPECT_EQ(set_default_model("default: a\n", "*star"), "default: '*star'\n");
  EXPECT_EQ(set_default_model("default: a\n", "null"), "default: 'null'\n");
  EXPECT_EQ(set_default_model("default: a\n", "- x"), "default: '- x'\n");
  EXPECT_EQ(set_default_model("default: a\n", "'q'"), "default: '''q'''\n");
  for (const std::string name : {"a: b", "#x", "null", "~", "[x]", "{y}", " pad ", "it's", "-",
                                 "tab\there", "line\nbreak", "a\"b", "@at", "%p", "x:"}) {
    Config c = parse_config(set_default_model("default: a\n", name), "t", {});
    EXPECT_EQ(c.default_model, name) << set_default_model("default: a\n", name);
  }
}

TEST(CliConfigSetModel, InsertsWhenAbsent) {
  // Before the first key, after the file's header comment block.
  EXPECT_EQ(set_default_model("# header\n# more\n\nmodels:\n  - id: a\n", "a"),
            "# header\n# more\n\ndefault: a\nmodels:\n  - id: a\n");
  // Above the comment block that belongs to the first key.
  EXPECT_EQ(set_default_model("# header\n\n# the models\nmodels:\n  - id: a\n", "a"),
            "# header\n\ndefault: a\n\n# the models\nmodels:\n  - id: a\n");
  // A header glued to the first key stays first.
  EXPECT_EQ(set_default_model("# header\nmodels:\n  - id: a\n", "a"),
            "# header\ndefault: a\nmodels:\n  - id: a\n");
  EXPECT_EQ(set_default_model("models:\n  - id: a\n", "a"), "default: a\nmodels:\n  - id: a\n");
  EXPECT_EQ(set_default_model("---\nmodels: []\n", "a"), "---\ndefault: a\nmodels: []\n");
  // A `default:` that is not a top-level key does not count.
  EXPECT_EQ(set_default_model("batch:\n  default: x\n", "a"), "default: a\nbatch:\n  default: x\n");
  // Nor does one inside a quoted string that spans lines, or a commented-out one.
  EXPECT_EQ(set_default_model("system: \"first line\ndefault: inside quotes\"\n", "a"),
            "default: a\nsystem: \"first line\ndefault: inside quotes\"\n");
  EXPECT_EQ(set_default_model("# default: old\nmodels: []\n", "a"),
            "# default: old\ndefault: a\nmodels: []\n");
  EXPECT_EQ(set_default_model("models: []\n#default: x\n", "a"),
            "default: a\nmodels: []\n#default: x\n");
  // No keys at all: appended.
  EXPECT_EQ(set_default_model("", "a"), "default: a\n");
  EXPECT_EQ(set_default_model("# nothing yet", "a"), "# nothing yet\ndefault: a\n");
  EXPECT_EQ(set_default_model("# nothing yet\n", "a"), "# nothing yet\ndefault: a\n");
  EXPECT_EQ(set_default_model("x: 1\r\n", "a"), "default: a\r\nx: 1\r\n");
}

TEST(CliConfigSetModel, RefusesWhatItCannotEditSafely) {
  for (const char* text : {"{default: a}\n", "default: |\n  a\n", "default:\n  a\n",
                           "default: a\n  continued\n", "default: [a]\n", "- a\n", "a: [1\n"})
    EXPECT_THROW(set_default_model(text, "b"), ConfigError) << text;
}

TEST(CliConfig, TemplateParsesWithoutWarnings) {
  Warnings w;
  std::string t = config_template();
  Config c = parse_config(t, "template", w.sink());
  EXPECT_TRUE(w.list.empty()) << w.list.front();
  ASSERT_EQ(c.models.size(), 2u);
  EXPECT_EQ(c.default_model, "local");
  EXPECT_EQ(c.models[0].base_url, "http://localhost:8000/v1");
  EXPECT_EQ(c.models[1].base_url, "https://api.openai.com/v1");
  EXPECT_NE(t.find("api_key: ${OPENAI_API_KEY}"), std::string::npos);
  EXPECT_NE(t.find("system:"), std::string::npos);
  for (const char* key : {"model", "concurrency", "max_qps", "adaptive", "cache", "cache_ttl",
                          "timeout", "retry_times", "retry_delay", "flush_interval", "save_input",
                          "endpoints", "fallback", "load_balance"})
    EXPECT_NE(t.find(std::string("  # ") + key + ":"), std::string::npos) << key;
  // Uncommenting the batch keys gives a valid batch section.
  std::string on;
  bool in_batch = false;
  for (size_t start = 0; start < t.size();) {
    size_t end = t.find('\n', start);
    std::string line = t.substr(start, end - start);
    start = end + 1;
    if (line == "batch:") in_batch = true;
    if (in_batch && line.rfind("  # ", 0) == 0) line = "  " + line.substr(4);
    on += line + "\n";
  }
  Warnings w2;
  Config c2 = parse_config(on, "template", w2.sink());
  EXPECT_TRUE(w2.list.empty()) << w2.list.front();
  EXPECT_EQ(c2.batch.concurrency, 10);
  EXPECT_EQ(c2.batch.endpoints.size(), 2u);
  // set-model works on it.
  EXPECT_EQ(parse_config(set_default_model(t, "gpt"), "t", {}).default_model, "gpt");
}

TEST(CliConfig, MaskKey) {
  EXPECT_EQ(mask_key(""), "(none)");
  EXPECT_EQ(mask_key("short"), "****");
  EXPECT_EQ(mask_key("sk-12345678"), "****");
  EXPECT_EQ(mask_key("sk-proj-abcdefghijklmnop1234"), "sk-\u20261234");
  EXPECT_EQ(mask_key("sk-proj-abcdefghijklmnop1234").find("abcdef"), std::string::npos);
}

}  // namespace
}  // namespace flexllm::cli
