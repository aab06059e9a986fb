// `flexllm chat`: a conversation on the terminal (or driven through stdin), with history and
// streamed answers. /exit, /quit or Ctrl-D ends it; /clear forgets the history.
#include <signal.h>
#include <unistd.h>

#include <atomic>

#include <cstdio>
#include <iostream>

#include "commands.hpp"
#include "endpoint.hpp"

namespace flexllm::cli {
namespace {

struct ChatOptions {
  CommonOptions common;
  RequestFlags request;
  bool no_stream = false;
};

// Ctrl-C while an answer streams abandons that answer (the chat goes on); at the prompt, or a
// second time before the first was noticed, it ends the chat.
std::atomic<bool> g_interrupt{false};

extern "C" void on_interrupt(int) {
  if (g_interrupt.exchange(true)) _exit(130);
}

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r");
  if (a == std::string::npos) return {};
  return s.substr(a, s.find_last_not_of(" \t\r") - a + 1);
}

int run_chat(const ChatOptions& o) {
  Session session = open_session(o.common);
  LLMClient client(session.client_config(o.common));
  const RequestOptions options = request_options(o.request);
  const std::optional<std::string> system =
      o.request.system.empty() ? session.endpoint.system : o.request.system;
  const bool tty = isatty(STDIN_FILENO) != 0;
  if (tty)
    std::fprintf(stderr,
                 "flexllm chat with %s\n/exit or Ctrl-D ends, /clear forgets the history.\n",
                 session.describe().c_str());
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);  // no SA_RESTART: Ctrl-C at the prompt ends the read

  json history = json::array();
  if (system && !system->empty()) history.push_back({{"role", "system"}, {"content", *system}});
  const size_t base = history.size();
  std::string line;
  int failures = 0;
  for (;;) {
    if (tty) {
      std::fputs("\n> ", stdout);
      std::fflush(stdout);
    }
    g_interrupt = false;
    if (!std::getline(std::cin, line)) break;
    const std::string text = trim(line);
    if (text.empty()) continue;
    if (text == "/exit" || text == "/quit") break;
    if (text == "/clear") {
      history.erase(history.begin() + static_cast<std::ptrdiff_t>(base), history.end());
      std::fputs("(history cleared)\n", stderr);
      continue;
    }
    if (text == "/help") {
      std::fputs("/exit or /quit ends the chat (so does Ctrl-D); /clear forgets the history.\n",
                 stderr);
      continue;
    }
    history.push_back({{"role", "user"}, {"content", text}});
    try {
      ChatResult r = print_answer(client, history, options, !o.no_stream, &g_interrupt);
      history.push_back({{"role", "assistant"}, {"content", r.content}});
    } catch (const Error& e) {
      // The question stays unanswered: it leaves the history, and the chat goes on.
      history.erase(history.end() - 1);
      if (e.kind() == ErrorKind::cancelled) {
        std::fputs("(interrupted: that question is forgotten)\n", stderr);
      } else {
        std::fprintf(stderr, "flexllm chat: %s\n", e.what());
        ++failures;
      }
    }
  }
  if (tty) std::fputc('\n', stdout);
  return failures == 0 ? kExitOk : kExitFailure;
}

}  // namespace

Runner add_chat_command(CLI::App& app) {
  auto o = std::make_shared<ChatOptions>();
  CLI::App* cmd = app.add_subcommand("chat", "Chat in the terminal, with history and streaming");
  cmd->footer(
      R"(Each line you type is a message; the model sees the whole conversation. /exit, /quit
or Ctrl-D ends the chat, /clear forgets the history. Ctrl-C while an answer streams abandons that
answer (the question is forgotten, the chat goes on); at the prompt it ends the chat. Lines can also come from a pipe. The exit
status is 1 when a question failed (the chat goes on after it), else 0.

Examples:
  flexllm chat
  flexllm chat -m deepseek --system "Answer in French"
  printf 'Hi\nWhat did I just say?\n' | flexllm chat --mock)");
  add_common_options(cmd, o->common);
  add_request_options(cmd, o->request);
  cmd->add_flag("--no-stream", o->no_stream, "Print each answer when it is complete");
  return [o] { return run_guarded("chat", [&] { return run_chat(*o); }); };
}

}  // namespace flexllm::cli
