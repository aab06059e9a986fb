// `flexllm models`: the models the endpoint offers. `flexllm test`: is the endpoint reachable,
// and does one tiny call work — with timings.
#include <chrono>
#include <cstdio>

#include <fmt/format.h>

#include "commands.hpp"
#include "endpoint.hpp"

namespace flexllm::cli {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

int run_models(const CommonOptions& o) {
  Session session = open_session(o);
  LLMClient client(session.client_config(o));
  for (const std::string& id : client.model_list()) std::printf("%s\n", id.c_str());
  return kExitOk;
}

int run_test(const CommonOptions& o) {
  Session session = open_session(o);
  ClientConfig cc = session.client_config(o);
  if (!o.retry_times) cc.retry_times = 0;  // a test reports the first failure as it is
  std::printf("endpoint: %s\n", session.describe().c_str());
  std::printf("api key:  %s\n", mask_key(cc.api_key).c_str());
  LLMClient client(cc);
  auto start = Clock::now();
  try {
    std::vector<std::string> models = client.model_list();
    std::string some;
    for (size_t i = 0; i < models.size() && i < 5; ++i) some += (i ? ", " : "") + models[i];
    std::printf("models:   ok in %.0f ms: %zu model(s)%s%s%s\n", ms_since(start), models.size(),
                models.empty() ? "" : " (", some.c_str(),
                models.empty() ? "" : (models.size() > 5 ? ", …)" : ")"));
  } catch (const Error& e) {
    // Some servers have no model list: the chat call below decides.
    std::printf("models:   failed in %.0f ms: %s\n", ms_since(start), e.what());
  }
  start = Clock::now();
  try {
    json messages = json::array({{{"role", "user"}, {"content", "Reply with the word OK."}}});
    ChatResult r = client.chat_completions(messages, {.max_tokens = 16});
    std::string answer = r.content.substr(0, 80);
    for (char& c : answer)
      if (c == '\n') c = ' ';
    std::printf("chat:     ok in %.0f ms: %s\n", ms_since(start), answer.c_str());
  } catch (const Error& e) {
    std::printf("chat:     failed in %.0f ms: %s\n", ms_since(start), e.what());
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

Runner add_models_command(CLI::App& app) {
  auto o = std::make_shared<CommonOptions>();
  CLI::App* cmd = app.add_subcommand("models", "List the models the endpoint offers");
  cmd->footer(R"(Asks the endpoint (GET /models) and prints one model id per line. 'flexllm list'
shows the models of the config file instead.

Examples:
  flexllm models
  flexllm models --base-url http://localhost:8000/v1)");
  add_common_options(cmd, *o);
  return [o] { return run_guarded("models", [&] { return run_models(*o); }); };
}

Runner add_test_command(CLI::App& app) {
  auto o = std::make_shared<CommonOptions>();
  CLI::App* cmd = app.add_subcommand(
      "test", "Check the endpoint: reachability, the model list and one tiny call, timed");
  cmd->footer(
      R"(Exit status 0 when the tiny chat call works, else 1. No retries unless --retry-times.

Examples:
  flexllm test
  flexllm test -m deepseek
  flexllm test --mock)");
  add_common_options(cmd, *o);
  return [o] { return run_guarded("test", [&] { return run_test(*o); }); };
}

}  // namespace flexllm::cli
