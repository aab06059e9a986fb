// `flexllm batch IN.jsonl -o OUT.jsonl`: every line of the input as a request, through one
// endpoint or a pool, checkpointed in OUT (a rerun resumes), with live progress and a summary.
// Ctrl-C stops sending, lets the requests in flight finish and be recorded, and exits 130; a rerun
// does the rest.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "commands.hpp"
#include "endpoint.hpp"

namespace flexllm::cli {
namespace {

struct BatchCmdOptions {
  CommonOptions common;
  RequestFlags request;
  std::string input;
  std::string output;
  std::optional<int> concurrency;
  std::optional<double> max_qps;
  bool adaptive = false;
  bool cache = false;
  bool no_cache = false;
  std::string save_input;
  std::string endpoints;
  std::string load_balance;
  std::optional<double> flush_interval;
  bool no_progress = false;
  bool overwrite = false;
  bool prune = false;
};

// Ctrl-C, SIGTERM (timeout, systemd, Kubernetes) and SIGHUP (a closed terminal): the first asks
// the batch to stop (nothing new is sent; requests in flight get a grace period to finish and be
// recorded); the second cancels what is in flight at once (what has finished is still written);
// a third ends the process there and then (the checkpoint survives that: a torn last line is cut
// on resume). The exit status is 128 + the first signal's number.
std::atomic<StopSignal*> g_stop{nullptr};
std::atomic<int> g_signals{0};
std::atomic<int> g_first_signal{0};

extern "C" void on_stop_signal(int sig) {
  int expected = 0;
  g_first_signal.compare_exchange_strong(expected, sig);
  const int count = g_signals.fetch_add(1) + 1;
  StopSignal* stop = g_stop.load();
  auto say = [](const char* text, size_t size) {
    ssize_t ignored = write(STDERR_FILENO, text, size);
    (void)ignored;
  };
  if (count == 1) {
    if (stop) stop->request();
    static const char kMsg[] =
        "\nflexllm batch: stopping: no new requests; those in flight get 2 s to finish and are "
        "saved (again: stop at once)\n";
    say(kMsg, sizeof kMsg - 1);
  } else if (count == 2) {
    if (stop) stop->request_now();
    static const char kMsg[] =
        "\nflexllm batch: stopping now: requests in flight are cancelled; what has finished is "
        "saved (again: quit)\n";
    say(kMsg, sizeof kMsg - 1);
  } else {
    _exit(128 + g_first_signal.load());
  }
}

struct StopOnSignal {
  static constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
  struct sigaction old[3]{};
  explicit StopOnSignal(StopSignal* stop) {
    g_stop.store(stop);
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &sa, &old[i]);
  }
  ~StopOnSignal() {
    for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &old[i], nullptr);
    g_stop.store(nullptr);
  }
};

LoadBalance parse_load_balance(const std::string& name) {
  static const std::pair<const char*, LoadBalance> kNames[] = {
      {"round_robin", LoadBalance::round_robin}, {"weighted", LoadBalance::weighted},
      {"random", LoadBalance::random},           {"fallback", LoadBalance::fallback},
      {"least_busy", LoadBalance::least_busy},   {"latency", LoadBalance::latency}};
  for (const auto& [n, v] : kNames)
    if (name == n) return v;
  throw ConfigError(fmt::format(
      "unknown load balance '{}' (round_robin, weighted, random, fallback, least_busy, latency)",
      name));
}

SaveInput parse_save_input(const std::string& name) {
  if (name.empty() || name == "full") return SaveInput::full;
  if (name == "last") return SaveInput::last;
  if (name == "none") return SaveInput::none;
  throw ConfigError(fmt::format("unknown save_input '{}' (full, last or none)", name));
}

std::chrono::milliseconds seconds(double s) {
  return std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
}

int run_batch(BatchCmdOptions& o) {
  if (o.cache && o.no_cache) throw UsageError("--cache and --no-cache exclude each other");
  if (o.input != "-" && access(o.input.c_str(), R_OK) != 0)
    throw ConfigError(fmt::format("cannot read {}: {}", o.input, std::strerror(errno)));
  std::error_code ec;
  if (o.input != "-" && std::filesystem::equivalent(o.input, o.output, ec))
    throw ConfigError(
        fmt::format("{} is both the input and the output: the results would "
                    "overwrite the prompts; pick another -o",
                    o.output));

  // Endpoints for a pool: --endpoints, else the config's batch.endpoints.
  std::vector<EndpointEntry> pool_entries;
  for (const std::string& url : split_list(o.endpoints)) {
    EndpointEntry e;
    e.base_url = url;
    pool_entries.push_back(std::move(e));
  }
  Session session = open_session(o.common, [&](Config& config, FlagSettings& flags) {
    if (config.batch.model) config.default_model = config.batch.model;  // batches' own default
    if (pool_entries.empty() && !o.common.mock) pool_entries = config.batch.endpoints;
    // A pool needs no base_url of its own: its first endpoint stands in while the model and key
    // are resolved.
    if (!pool_entries.empty() && flags.base_url.empty() && !o.common.mock)
      flags.base_url = pool_entries.front().base_url;
  });
  if (o.common.mock) pool_entries.clear();
  const BatchSection& b = session.config.batch;

  CommonOptions common = o.common;
  if (!common.timeout) common.timeout = b.timeout;
  if (!common.retry_times) common.retry_times = b.retry_times;
  ClientConfig cc = session.client_config(common);
  cc.concurrency_limit = o.concurrency.value_or(b.concurrency.value_or(cc.concurrency_limit));
  cc.max_qps = o.max_qps ? o.max_qps : b.max_qps;
  cc.adaptive = o.adaptive || b.adaptive.value_or(false);
  if (b.retry_delay) cc.retry_delay = seconds(*b.retry_delay);
  if (o.cache || (!o.no_cache && b.cache.value_or(false))) {
    cc.cache = ResponseCacheConfig::ipc();
    if (b.cache_ttl) cc.cache.ttl = std::chrono::seconds(static_cast<int64_t>(*b.cache_ttl));
  }

  size_t bad_lines = 0;
  BatchOptions options;
  options.output_file = o.output;
  options.show_progress = !o.no_progress;
  options.save_input =
      parse_save_input(o.save_input.empty() ? b.save_input.value_or("full") : o.save_input);
  options.flush_interval = seconds(o.flush_interval.value_or(b.flush_interval.value_or(1.0)));
  options.request = request_options(o.request);
  options.stop = std::make_shared<StopSignal>();
  options.batch_size = 64;
  options.overwrite = o.overwrite;
  options.prune = o.prune;
  // The command shows counts and tokens of restored items, never their text: a resume reads
  // nothing of their records but the first bytes.
  options.load_restored = false;

  JsonlRequestOptions input_options;
  input_options.system =
      o.request.system.empty() ? session.endpoint.system.value_or("") : o.request.system;
  input_options.on_bad_line = [&bad_lines](const std::string& what) {
    if (++bad_lines <= 20) std::fprintf(stderr, "\nflexllm batch: %s\n", what.c_str());
  };
  MessageSource source = jsonl_requests(o.input, input_options);

  std::unique_ptr<ChatClient> client;
  if (pool_entries.empty()) {
    client = std::make_unique<LLMClient>(cc);
  } else {
    PoolConfig pc;
    for (const EndpointEntry& e : pool_entries) {
      EndpointConfig ep;
      ep.base_url = e.base_url;
      ep.api_key = e.api_key.empty() ? cc.api_key : e.api_key;
      ep.model = e.model.empty() ? cc.model : e.model;
      ep.provider = e.provider.empty() ? cc.provider : parse_provider(e.provider);
      ep.weight = e.weight;
      ep.concurrency_limit = e.concurrency.value_or(cc.concurrency_limit);
      ep.max_qps = e.max_qps ? e.max_qps : cc.max_qps;
      pc.endpoints.push_back(std::move(ep));
    }
    pc.fallback = b.fallback.value_or(true);
    std::string lb = o.load_balance.empty() ? b.load_balance.value_or("") : o.load_balance;
    // Without a strategy asked for, the endpoints share one queue, each taking work as it has
    // room (the fastest gets the most).
    options.distribute = lb.empty();
    if (!lb.empty()) pc.load_balance = parse_load_balance(lb);
    pc.defaults = cc;
    client = std::make_unique<LLMClientPool>(pc);
  }

  if (options.show_progress)
    std::fprintf(stderr, "flexllm batch: %s -> %s via %s\n",
                 o.input == "-" ? "<stdin>" : o.input.c_str(), o.output.c_str(),
                 pool_entries.empty()
                     ? session.describe().c_str()
                     : fmt::format("a pool of {} endpoints", pool_entries.size()).c_str());
  // A file size limit (ulimit -f) must fail a write with EFBIG, which the batch reports, rather
  // than kill the process in the middle of one.
  signal(SIGXFSZ, SIG_IGN);
  BatchSummary summary;
  try {
    StopOnSignal on_signal(options.stop.get());
    BatchIterator it = client->iter_chat_completions_batch(std::move(source), options);
    while (it.next()) {
    }
    summary = it.summary();
  } catch (const CheckpointError& e) {
    std::fprintf(stderr, "flexllm batch: %s\n", e.what());
    return e.reason() == CheckpointError::Reason::io ? kExitOutputFailed : kExitBadInput;
  }
  const bool stopped = options.stop->requested();
  if (!options.show_progress)
    std::fprintf(stderr, "flexllm batch: %zu items: %zu ok, %zu failed, %zu cached, %zu restored\n",
                 summary.total, summary.success, summary.failed, summary.cached, summary.restored);
  if (summary.beyond_input > 0)
    std::fprintf(stderr,
                 o.prune ? "flexllm batch: dropped %zu record(s) past the input's end from %s\n"
                         : "flexllm batch: %zu record(s) in %s are past the input's end (an input "
                           "that got shorter?): kept; rerun with --prune to drop them\n",
                 summary.beyond_input, o.output.c_str());
  if (bad_lines > 0)
    std::fprintf(stderr,
                 "flexllm batch: %zu input line(s) could not be used (%s); their records in %s "
                 "say why; fix them and rerun: the rest is restored, not re-sent\n",
                 bad_lines, bad_lines > 20 ? "the first 20 are listed above" : "listed above",
                 o.output.c_str());
  if (!summary.aborted.empty()) {
    std::fprintf(stderr,
                 "flexllm batch: %s\nflexllm batch: stopped after %zu item(s) could not connect; "
                 "%zu not run; rerun the same command once the endpoint answers\n",
                 summary.aborted.c_str(), summary.failed, summary.not_run);
    return kExitFailure;
  }
  if (stopped) {
    std::fprintf(stderr,
                 "flexllm batch: stopped; rerun the same command to finish (%s keeps "
                 "what is done)\n",
                 o.output.c_str());
    return 128 + (g_first_signal.load() ? g_first_signal.load() : SIGINT);
  }
  if (bad_lines > 0) return kExitBadInput;
  return summary.failed > 0 ? kExitFailure : kExitOk;
}

}  // namespace

Runner add_batch_command(CLI::App& app) {
  auto o = std::make_shared<BatchCmdOptions>();
  CLI::App* cmd = app.add_subcommand(
      "batch", "Run every line of a JSONL file as a request, checkpointed (a rerun resumes)");
  cmd->footer(R"(Input lines (JSONL), any of:
  {"messages": [{"role": "user", "content": "…"}]}
  {"prompt": "…", "system": "…"}          ("q" and "question" work as "prompt")
  {"instruction": "…", "input": "…"}      (alpaca)
  [{"role": "user", "content": "…"}]      or a bare "prompt string"
Every other field is kept as the record's metadata. OUT gets one JSON record per input line
(index, status, output, reasoning, usage, metadata, …), in input order once the batch is done.
Rerunning the same command restores what OUT holds and sends only the rest; failed items are
retried.

OUT is only written when it is missing, empty or a flexllm checkpoint, by one run at a time
(OUT.lock holds the running one's pid); --overwrite starts afresh keeping the old file as OUT.bak.
Ctrl-C, SIGTERM or SIGHUP stop cleanly; a second one cancels what is in flight.

Exit status: 0 all answered; 1 some failed, or the endpoint is unreachable; 2 bad input (unusable
lines are reported with their line numbers, recorded as failures, and everything else still
runs), or OUT is locked by another run, not a checkpoint, or another job's; 3 OUT could not be
written (disk full, file too large, I/O error: rerun once fixed); 128+N stopped by signal N.

Settings come from the flags, else the config's batch: section (see 'flexllm init').

Examples:
  flexllm batch prompts.jsonl -o results.jsonl
  flexllm batch prompts.jsonl -o results.jsonl -m qwen -c 64 --max-qps 20 --thinking false
  cat prompts.jsonl | flexllm batch - -o results.jsonl --cache
  flexllm batch prompts.jsonl -o results.jsonl --endpoints http://gpu1:8000/v1,http://gpu2:8000/v1
  flexllm batch examples/prompts.jsonl -o /tmp/out.jsonl --mock)");
  add_common_options(cmd, o->common);
  add_request_options(cmd, o->request);
  cmd->add_option("input", o->input, "JSONL file of requests ('-' reads stdin)")->required();
  cmd->add_option("-o,--output", o->output, "JSONL file of results (the checkpoint)")->required();
  cmd->add_option("-c,--concurrency", o->concurrency, "Requests in flight at most (default 10)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-qps", o->max_qps, "Requests per second at most (smooth)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--adaptive", o->adaptive, "Halve the rate on 429, grow it back on success");
  cmd->add_flag("--cache", o->cache, "Use the response cache shared by processes on this host");
  cmd->add_flag("--no-cache", o->no_cache, "Do not use the response cache (the default)");
  cmd->add_option("--save-input", o->save_input, "Input kept in records: full, last or none")
      ->check(CLI::IsMember({"full", "last", "none"}));
  cmd->add_option("--endpoints", o->endpoints,
                  "Base URLs of a pool, comma-separated (model and key as for one endpoint)");
  cmd->add_option("--load-balance", o->load_balance,
                  "Pool strategy (default: a shared queue each endpoint pulls from)")
      ->check(CLI::IsMember(
          {"round_robin", "weighted", "random", "fallback", "least_busy", "latency"}));
  cmd->add_option("--flush-interval", o->flush_interval,
                  "Seconds between checkpoint syncs (default 1)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--no-progress", o->no_progress, "No progress line or summary table");
  cmd->add_flag("--overwrite", o->overwrite,
                "Start afresh: move an existing OUT to OUT.bak (never replacing a backup)");
  cmd->add_flag("--prune", o->prune,
                "Drop OUT's records past the input's end (e.g. after the input got shorter)");
  return [o] { return run_guarded("batch", [&] { return run_batch(*o); }); };
}

}  // namespace flexllm::cli
