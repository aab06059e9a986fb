// `flexllm ask "…"`: one question, the answer streamed to stdout. Text piped to stdin is put
// before the question (`git diff | flexllm ask "review this"`).
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <iterator>

#include "commands.hpp"
#include "endpoint.hpp"

namespace flexllm::cli {

ChatResult print_answer(ChatClient& client, const json& messages, const RequestOptions& options,
                        bool stream, const std::atomic<bool>* interrupt) {
  if (!stream) {
    ChatResult r = client.chat_completions(messages, options);
    if (r.reasoning && !r.reasoning->empty()) std::fprintf(stderr, "%s\n", r.reasoning->c_str());
    std::fwrite(r.content.data(), 1, r.content.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    return r;
  }
  const bool tty_err = isatty(STDERR_FILENO) != 0;
  bool thinking = false;
  ChatResult result;
  for (const StreamEvent& ev : client.chat_completions_stream(messages, options)) {
    if (interrupt && interrupt->load()) {
      std::fputs(tty_err && thinking ? "\033[0m\n" : "\n", thinking ? stderr : stdout);
      std::fflush(stdout);
      throw Error(ErrorKind::cancelled, "interrupted");
    }
    switch (ev.kind) {
      case StreamEvent::thinking:
        if (!thinking && tty_err) std::fputs("\033[2m", stderr);  // reasoning dimmed
        thinking = true;
        std::fwrite(ev.text.data(), 1, ev.text.size(), stderr);
        break;
      case StreamEvent::content:
        if (thinking) {
          std::fputs(tty_err ? "\033[0m\n" : "\n", stderr);
          thinking = false;
        }
        std::fwrite(ev.text.data(), 1, ev.text.size(), stdout);
        std::fflush(stdout);
        break;
      case StreamEvent::done:
        if (ev.result) result = *ev.result;
        break;
      default: break;
    }
  }
  if (thinking) std::fputs(tty_err ? "\033[0m\n" : "\n", stderr);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  return result;
}

json first_messages(const std::optional<std::string>& system, const std::string& user) {
  json messages = json::array();
  if (system && !system->empty()) messages.push_back({{"role", "system"}, {"content", *system}});
  messages.push_back({{"role", "user"}, {"content", user}});
  return messages;
}

namespace {

struct AskOptions {
  CommonOptions common;
  RequestFlags request;
  std::vector<std::string> words;
  bool no_stream = false;
};

int run_ask(const AskOptions& o) {
  std::string question;
  for (const std::string& w : o.words) question += (question.empty() ? "" : " ") + w;
  if (!isatty(STDIN_FILENO)) {
    std::string piped{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
    while (!piped.empty() && (piped.back() == '\n' || piped.back() == '\r')) piped.pop_back();
    if (!piped.empty()) question = question.empty() ? piped : piped + "\n\n" + question;
  }
  if (question.empty()) {
    std::fprintf(stderr,
                 "flexllm ask: nothing to ask: give the question as arguments or on stdin\n");
    return kExitBadInput;
  }
  Session session = open_session(o.common);
  LLMClient client(session.client_config(o.common));
  const std::optional<std::string> system =
      o.request.system.empty() ? session.endpoint.system : o.request.system;
  print_answer(client, first_messages(system, question), request_options(o.request), !o.no_stream);
  return kExitOk;
}

}  // namespace

Runner add_ask_command(CLI::App& app) {
  auto o = std::make_shared<AskOptions>();
  CLI::App* cmd = app.add_subcommand("ask", "Ask one question; the answer streams to stdout");
  cmd->footer(R"(Text piped to stdin comes before the question. Reasoning, when the model shows it,
goes to stderr, so stdout holds the answer alone.

Examples:
  flexllm ask "What is the capital of France?"
  flexllm ask -m qwen --thinking high "Prove that there are infinitely many primes"
  git diff | flexllm ask "Review this change"
  flexllm ask --mock "Hello"                  # no endpoint needed: the embedded mock answers)");
  add_common_options(cmd, o->common);
  add_request_options(cmd, o->request);
  cmd->add_flag("--no-stream", o->no_stream, "Print the answer when it is complete");
  cmd->add_option("question", o->words, "The question (several words are joined)");
  return [o] { return run_guarded("ask", [&] { return run_ask(*o); }); };
}

}  // namespace flexllm::cli
