// `flexllm list`, `set-model` and `init` as a user runs them: the built binary in a child process
// with a fresh HOME and working directory (never the developer's ~/.flexllm).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cli_run.hpp"

namespace {

namespace fs = std::filesystem;
using flexllm::test::CliOptions;
using flexllm::test::CliResult;
using flexllm::test::run_cli;

constexpr const char* kSecret = "sk-test-SECRETSECRET-9876";
constexpr const char* kEnvSecret = "sk-env-ENVSECRETVALUE-5555";

// A fresh HOME and working directory, removed at the end.
struct Sandbox {
  std::string root;
  std::string home;
  std::string cwd;
  Sandbox() {
    std::string tmpl = ::testing::TempDir() + "flexllm_cli_cfg_XXXXXX";
    root = mkdtemp(tmpl.data());
    home = root + "/home";
    cwd = root + "/work";
    fs::create_directories(home);
    fs::create_directories(cwd);
  }
  ~Sandbox() { fs::remove_all(root); }

  std::string user_config() const { return home + "/.flexllm/config.yaml"; }

  CliResult run(std::vector<std::string> args, std::map<std::string, std::string> env = {}) const {
    CliOptions o;
    o.home = home;
    o.cwd = cwd;
    o.env = std::move(env);
    o.limit = std::chrono::seconds(30);
    return run_cli(std::move(args), o);
  }
};

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The line of `text` that contains `part` ("" if none).
std::string line_with(const std::string& text, const std::string& part) {
  size_t at = text.find(part);
  if (at == std::string::npos) return "";
  size_t start = text.rfind('\n', at);
  start = start == std::string::npos ? 0 : start + 1;
  size_t end = text.find('\n', at);
  return text.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

std::string config_text() {
  return std::string(R"(# Team models   (hand-written; keep my formatting)
#    indented comment

default: local    # the everyday model

models:
  # a local vLLM
  - name: local
    id: Qwen/Qwen2.5-7B-Instruct
    base_url:   http://localhost:8000/v1
  - name: gpt           # OpenAI
    id: gpt-4o-mini
    base_url: https://api.openai.com/v1
    api_key: )") +
         kSecret + R"(
    system: |
      Be brief.
      default: not a key (inside a block scalar)

batch:
  concurrency: 8   # small GPU
  endpoints:
    - base_url: http://gpu1:8000/v1
      api_key: )" +
         kSecret + R"(
)";
}

TEST(CliConfigE2E, ListShowsModelsTheDefaultAndMaskedKeys) {
  Sandbox s;
  write(s.user_config(), config_text());
  CliResult r = s.run({"list"}, {{"FLEXLLM_API_KEY", kEnvSecret}});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "config: " + s.user_config())) << r.out;
  std::string local = line_with(r.out, "Qwen/Qwen2.5-7B-Instruct");
  EXPECT_EQ(local.rfind("  * local", 0), 0u) << r.out;
  EXPECT_TRUE(has(local, "http://localhost:8000/v1")) << local;
  std::string gpt = line_with(r.out, "gpt-4o-mini");
  EXPECT_EQ(gpt.rfind("    gpt", 0), 0u) << r.out;
  EXPECT_TRUE(has(gpt, "sk-\u20269876")) << gpt;
  EXPECT_TRUE(has(r.out, "http://gpu1:8000/v1")) << r.out;  // the batch endpoints
  EXPECT_TRUE(has(r.out, "sk-\u20265555")) << r.out;        // the environment's key, masked
  for (const char* secret : {kSecret, kEnvSecret, "SECRETSECRET", "ENVSECRETVALUE"}) {
    EXPECT_FALSE(has(r.out, secret)) << r.out;
    EXPECT_FALSE(has(r.err, secret)) << r.err;
  }
}

TEST(CliConfigE2E, ListWithoutAFileShowsTheEnvironmentsEndpoint) {
  Sandbox s;
  CliResult r = s.run({"list"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "no config file")) << r.out;
  EXPECT_TRUE(has(r.out, "flexllm init")) << r.out;
  EXPECT_TRUE(has(r.out, "FLEXLLM_BASE_URL")) << r.out;  // how to configure one

  r = s.run({"list"}, {{"FLEXLLM_BASE_URL", "http://env-host:9000/v1"},
                       {"FLEXLLM_MODEL", "env-model"},
                       {"OPENAI_API_KEY", kEnvSecret}});
  EXPECT_EQ(r.status, 0) << r.err;
  std::string used = line_with(r.out, "requests go to");
  EXPECT_TRUE(has(used, "env-model at http://env-host:9000/v1")) << r.out;
  EXPECT_TRUE(has(r.out, "base_url from FLEXLLM_BASE_URL;")) << r.out;
  EXPECT_FALSE(has(r.out, kEnvSecret)) << r.out;
}

TEST(CliConfigE2E, ListUsesFlexllmYamlInTheWorkingDirectory) {
  Sandbox s;
  write(s.user_config(), "models:\n  - id: from-home\n");
  write(s.cwd + "/flexllm.yaml", "models:\n  - id: from-cwd\n");
  CliResult r = s.run({"list"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "from-cwd")) << r.out;
  EXPECT_FALSE(has(r.out, "from-home")) << r.out;
}

// ./flexllm.yaml is whatever the working directory holds: announced when used; skipped, saying
// why, when another user owns it or group or others may write it (the home config is used then).
TEST(CliConfigE2E, AWorkingDirectoryConfigIsAnnouncedOrSkippedWithTheReason) {
  Sandbox s;
  write(s.user_config(), "models:\n  - id: from-home\n");
  const std::string local = s.cwd + "/flexllm.yaml";
  write(local, "models:\n  - id: from-cwd\n");
  ASSERT_EQ(chmod(local.c_str(), 0644), 0);
  CliResult r = s.run({"list"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "from-cwd")) << r.out;
  EXPECT_EQ(r.err,
            "flexllm list: using ./flexllm.yaml (the config file in the working directory)\n");
  // The commands that send requests announce it too.
  r = s.run({"ask", "--mock", "hi"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "flexllm: using ./flexllm.yaml")) << r.err;

  ASSERT_EQ(chmod(local.c_str(), 0666), 0);
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"list"}, std::vector<std::string>{"ask", "--mock", "hi"}}) {
    r = s.run(args);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(has(r.err,
                    "warning: ignoring ./flexllm.yaml: it is writable by group and others "
                    "(mode 0666); whoever can change it could send your requests and keys "
                    "to a server of theirs"))
        << r.err;
    EXPECT_FALSE(has(r.err, "using ./flexllm.yaml")) << r.err;
  }
  r = s.run({"list"});
  EXPECT_TRUE(has(r.out, "from-home")) << r.out;
  EXPECT_FALSE(has(r.out, "from-cwd")) << r.out;
  // set-model edits the file it would use: the home one.
  r = s.run({"set-model", "from-home"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, s.user_config())) << r.out;
  EXPECT_EQ(read(local), "models:\n  - id: from-cwd\n");

  // Another user's file, however private (only root can give a file away: as another user, the
  // rule is checked in tests/unit/cli_config_test.cpp with the user as a parameter).
  if (geteuid() == 0) {
    ASSERT_EQ(chmod(local.c_str(), 0644), 0);
    ASSERT_EQ(chown(local.c_str(), 65534, 65534), 0);
    r = s.run({"list"});
    EXPECT_TRUE(has(r.err, "warning: ignoring ./flexllm.yaml: it is owned by another user, "))
        << r.err;
    EXPECT_TRUE(has(r.out, "from-home")) << r.out;
  }
}

TEST(CliConfigE2E, AConfigFileOverOneMebibyteIsAnErrorNamingIt) {
  Sandbox s;
  const std::string big = s.root + "/big.yaml";
  write(big, std::string(2 << 20, '#'));
  CliResult r = s.run({"list", "--config", big});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_EQ(r.err, "flexllm list: config file " + big +
                       " is 2097152 bytes; a config file may be at most 1 MiB (1048576 bytes): "
                       "is it the right file?\n");
  // (A file without a size, a pipe or a device, is read no further than the limit either:
  // tests/unit/cli_config_test.cpp, with a pipe that offers 2 MiB.)
}

TEST(CliConfigE2E, SetModelEditsOnlyTheDefaultLine) {
  Sandbox s;
  std::string path = s.user_config();
  write(path, config_text());
  ASSERT_EQ(chmod(path.c_str(), 0640), 0);
  CliResult r = s.run({"set-model", "gpt"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "default model: gpt (" + path + ")\n");
  std::string expected = config_text();
  const std::string before = "default: local    # the everyday model";
  expected.replace(expected.find(before), before.size(), "default: gpt    # the everyday model");
  EXPECT_EQ(read(path), expected);
  EXPECT_EQ(mode_of(path), 0640u);
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  r = s.run({"list"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(line_with(r.out, "gpt-4o-mini").rfind("  * gpt", 0), 0u) << r.out;
  EXPECT_EQ(line_with(r.out, "Qwen/Qwen2.5-7B-Instruct").rfind("    local", 0), 0u) << r.out;

  // By id too; and a file without `default:` gets one.
  write(path, "# mine\nmodels:\n  - id: a\n  - id: b\n");
  r = s.run({"set-model", "b"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(read(path), "# mine\ndefault: b\nmodels:\n  - id: a\n  - id: b\n");
}

TEST(CliConfigE2E, SetModelRefusesAnUnknownNameOrAMissingFile) {
  Sandbox s;
  std::string path = s.user_config();
  write(path, config_text());
  CliResult r = s.run({"set-model", "llama"});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err.rfind("flexllm set-model: ", 0), 0u) << r.err;
  EXPECT_TRUE(has(r.err, "'llama'")) << r.err;
  EXPECT_TRUE(has(r.err, "known: local, gpt")) << r.err;
  EXPECT_EQ(read(path), config_text());

  Sandbox empty;
  r = empty.run({"set-model", "gpt"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err.rfind("flexllm set-model: ", 0), 0u) << r.err;
  EXPECT_TRUE(has(r.err, "flexllm init")) << r.err;
  EXPECT_FALSE(fs::exists(empty.user_config()));
}

TEST(CliConfigE2E, InitWritesAPrivateTemplateOnceUnlessForced) {
  Sandbox s;
  std::string path = s.user_config();
  CliResult r = s.run({"init"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, path)) << r.out;
  EXPECT_TRUE(has(r.out, "flexllm list")) << r.out;
  ASSERT_TRUE(fs::exists(path));
  EXPECT_EQ(mode_of(path), 0600u);
  EXPECT_EQ(mode_of(s.home + "/.flexllm"), 0700u);
  const std::string tmpl = read(path);
  EXPECT_TRUE(has(tmpl, "models:")) << tmpl;

  // The template is a working config: list reads it without warnings.
  r = s.run({"list"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(line_with(r.out, "http://localhost:8000/v1").rfind("  * local", 0), 0u) << r.out;

  write(path, "default: mine\n");
  r = s.run({"init"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err.rfind("flexllm init: ", 0), 0u) << r.err;
  EXPECT_TRUE(has(r.err, "already exists")) << r.err;
  EXPECT_TRUE(has(r.err, "--force")) << r.err;
  EXPECT_EQ(read(path), "default: mine\n");

  r = s.run({"init", "--force"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(read(path), tmpl);
  EXPECT_EQ(mode_of(path), 0600u);
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  // --config names the file to write.
  r = s.run({"init", "--config", "team.yaml"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(read(s.cwd + "/team.yaml"), tmpl);
  EXPECT_EQ(mode_of(s.cwd + "/team.yaml"), 0600u);
}

TEST(CliConfigE2E, AnUnusableConfigExitsWith2NamingFileAndLine) {
  Sandbox s;
  std::string path = s.user_config();
  write(path, "models:\n  - id: a\n    base_url: http://a\nbatch:\n  concurrency: ten\n");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"list"}, std::vector<std::string>{"set-model", "a"}}) {
    CliResult r = s.run(args);
    EXPECT_EQ(r.status, 2) << args[0];
    EXPECT_EQ(r.err.rfind("flexllm " + args[0] + ": ", 0), 0u) << r.err;
    EXPECT_TRUE(has(r.err, path + ":5: batch.concurrency: expected a positive integer, got 'ten'"))
        << r.err;
  }
  write(path, "models:\n  - id: a\n  base_url: [\n");
  CliResult r = s.run({"list"});
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(has(r.err, path + ":")) << r.err;
  EXPECT_TRUE(has(r.err, "invalid YAML")) << r.err;

  // Unknown keys only warn.
  write(path, "models:\n  - id: a\n    base_url: http://a\nbatch:\n  concurency: 3\n");
  r = s.run({"list"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, path + ":5: unknown key 'concurency' in batch")) << r.err;
}

TEST(CliConfigE2E, ConfigFlagBeforeOrAfterTheCommand) {
  Sandbox s;
  write(s.user_config(), "models:\n  - id: from-home\n");
  std::string team = s.root + "/team.yaml";
  write(team, "models:\n  - id: from-team\n    base_url: http://team/v1\n");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--config", team, "list"},
        std::vector<std::string>{"list", "--config", team},
        std::vector<std::string>{"--config=" + team, "list"}}) {
    CliResult r = s.run(args);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(has(r.out, "config: " + team)) << r.out;
    EXPECT_TRUE(has(r.out, "from-team")) << r.out;
    EXPECT_FALSE(has(r.out, "from-home")) << r.out;
  }
  // FLEXLLM_CONFIG as well.
  CliResult r = s.run({"list"}, {{"FLEXLLM_CONFIG", team}});
  EXPECT_TRUE(has(r.out, "from-team")) << r.out;

  write(team, "models:\n  - id: a\n  - id: b\n");
  r = s.run({"--config", team, "set-model", "b"});
  EXPECT_EQ(r.status, 0) << r.err;
  r = s.run({"set-model", "a", "--config", team});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(read(team), "default: a\nmodels:\n  - id: a\n  - id: b\n");
  EXPECT_EQ(read(s.user_config()), "models:\n  - id: from-home\n");

  // A --config that does not exist is an error, never a fall back to another file.
  r = s.run({"list", "--config", s.root + "/missing.yaml"});
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(has(r.err, "missing.yaml does not exist")) << r.err;
}

}  // namespace
