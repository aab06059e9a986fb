// Batch scenarios S1 (with/without checkpoint), S3 (memory) and S4 (resume) of ../shared/bench.
//
//   batch_bench --base-url URL -n N -c C [--output FILE] [--iter|--source [--input JSONL]]
//               [--prefill K] [--pool K [--distribute]]
//   batch_bench --compact FILE        # S4: compaction time of an existing checkpoint
//   batch_bench --scan FILE           # reading a checkpoint and sorting its references
//
// --iter runs iter_chat_completions_batch over a generated lazy source (nothing held per item)
// (or over the JSONL file --input, through jsonl_messages) instead of chat_completions_batch over
// a vector; --source runs chat_completions_batch (input-aligned results) over that lazy source.
// --pool K runs the batch on an LLMClientPool of K endpoints (all URL, C/K in flight each,
// round robin; --distribute: the shared queue instead): the pool's routing overhead.
// --prefill K first writes K finished records for inputs 0..K-1 to FILE (not timed), so the run
// resumes them and sends only N-K requests. Prints one JSON line: wall, req/s, time to the first
// newly answered item, peak RSS, counts.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include <flexllm/flexllm.hpp>

#include "fixture_request.hpp"

#include "batch/journal.hpp"
#include "batch/output_file.hpp"
#include "batch/ref_sort.hpp"
#include "engine/client_core.hpp"

namespace {

// CPU seconds of the whole process (every thread), user + system.
double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return s(ru.ru_utime) + s(ru.ru_stime);
}

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

[[noreturn]] void usage() {
  std::fprintf(
      stderr,
      "usage: batch_bench --base-url URL -n N -c C [--output FILE] [--iter|--source [--input "
      "JSONL]] "
      "[--prefill K]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--compact") {
    // Times the compaction of an existing checkpoint file alone.
    const auto t0 = std::chrono::steady_clock::now();
    flexllm::detail::compact_journal(argv[2]);
    std::printf("{\"compact_s\":%.3f,\"peak_rss_mb\":%.1f}\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                peak_rss_mb());
    return 0;
  }
  if (argc == 3 && std::string(argv[1]) == "--scan") {
    // Times what a resume does before its first request: reading a checkpoint's records and
    // sorting their references.
    const auto t0 = std::chrono::steady_clock::now();
    flexllm::detail::RefSorter sorter(flexllm::detail::parent_directory(argv[2]));
    auto scan = flexllm::detail::scan_journal(
        argv[2], {}, [&](const flexllm::detail::RecordRef& r) { sorter.add(r); });
    const auto t1 = std::chrono::steady_clock::now();
    flexllm::detail::SortedRefs refs = sorter.finish();
    const auto t2 = std::chrono::steady_clock::now();
    std::printf("{\"records\":%llu,\"scan_s\":%.4f,\"sort_s\":%.4f,\"peak_rss_mb\":%.1f}\n",
                static_cast<unsigned long long>(scan ? scan->records : 0),
                std::chrono::duration<double>(t1 - t0).count(),
                std::chrono::duration<double>(t2 - t1).count(), peak_rss_mb());
    return refs.size() > 0 ? 0 : 1;
  }
  std::string base_url, output, input;
  size_t n = 0, prefill = 0;
  int c = 0;
  bool iter = false, from_source = false, distribute = false;
  size_t pool_size = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--base-url") {
      base_url = value();
    } else if (a == "-n") {
      n = std::strtoull(value().c_str(), nullptr, 10);
    } else if (a == "-c") {
      c = std::atoi(value().c_str());
    } else if (a == "--output") {
      output = value();
    } else if (a == "--input") {
      input = value();
    } else if (a == "--iter") {
      iter = true;
    } else if (a == "--source") {
      from_source = true;
    } else if (a == "--pool") {
      pool_size = std::strtoull(value().c_str(), nullptr, 10);
    } else if (a == "--distribute") {
      distribute = true;
    } else if (a == "--prefill") {
      prefill = std::strtoull(value().c_str(), nullptr, 10);
    } else {
      usage();
    }
  }
  if (base_url.empty() || n == 0 || c <= 0 || (prefill && output.empty())) usage();

  flexllm::LLMClient client({.base_url = base_url,
                             .api_key = "sk-bench-0000000000000000",
                             .model = "gpt-4o-mini",
                             .concurrency_limit = c,
                             .retry_times = 0,
                             .proxy = ""});
  std::unique_ptr<flexllm::LLMClientPool> pool;
  if (pool_size > 0) {
    flexllm::PoolConfig config{.defaults = {.retry_times = 0, .proxy = ""}};
    for (size_t i = 0; i < pool_size; ++i)
      config.endpoints.push_back({.base_url = base_url,
                                  .api_key = "sk-bench-0000000000000000",
                                  .model = "gpt-4o-mini",
                                  .concurrency_limit = std::max(1, c / static_cast<int>(pool_size)),
                                  .proxy = ""});
    pool = std::make_unique<flexllm::LLMClientPool>(std::move(config));
  }
  flexllm::ChatClient& runner = pool ? static_cast<flexllm::ChatClient&>(*pool) : client;
  const flexllm::RequestOptions request{.temperature = 0.2, .max_tokens = 256};
  if (prefill) {
    // Records as a finished run would have left them (keys computed the same way).
    std::ofstream f(output, std::ios::trunc);
    for (size_t i = 0; i < prefill; ++i) {
      auto [url, body] = client.core().chat_request(bench::fixture_messages(i), request, false);
      flexllm::BatchResultItem item;
      item.index = i;
      flexllm::ChatResult r;
      r.content = "Revenue grew 12% year over year.";
      r.usage = flexllm::Usage{48, 29, 77};
      r.finish_reason = "stop";
      r.attempts = 1;
      item.result = std::move(r);
      f << flexllm::detail::format_record(item, flexllm::detail::record_key(body), "") << '\n';
    }
  }
  const auto start = std::chrono::steady_clock::now();
  const double cpu_start = cpu_seconds();
  double first_new = -1;  // iterator: first new item answered; batch: first request sent
  size_t ok = 0, failed = 0, restored = 0;
  auto seen = [&](const flexllm::BatchResultItem& item) {
    if (item.status == flexllm::ItemStatus::restored) {
      ++restored;
      return;
    }
    if (iter && first_new < 0)
      first_new = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    item.status == flexllm::ItemStatus::error ? ++failed : ++ok;
  };
  flexllm::BatchOptions options{
      .distribute = distribute, .output_file = output, .request = request};
  if (getenv("BATCH_BENCH_NO_INPUT")) options.save_input = flexllm::SaveInput::none;
  size_t next = 0;
  flexllm::MessageSource source(
      [&]() -> std::optional<flexllm::json> {
        if (next >= n) return std::nullopt;
        return bench::fixture_messages(next++);
      },
      n);
  if (!input.empty()) source = flexllm::jsonl_messages(input);
  if (iter) {
    options.batch_size = 64;
    for (const auto& item : runner.iter_chat_completions_batch(source, options)) seen(item);
  } else if (from_source) {
    auto result = runner.chat_completions_batch(source, options);
    for (const auto& item : result.items) seen(item);
    if (result.summary.first_request) first_new = result.summary.first_request->count();
  } else {
    std::vector<flexllm::json> inputs;
    inputs.reserve(n);
    for (size_t i = 0; i < n; ++i) inputs.push_back(bench::fixture_messages(i));
    auto result = runner.chat_completions_batch(inputs, options);
    for (const auto& item : result.items) seen(item);
    if (result.summary.first_request) first_new = result.summary.first_request->count();
  }
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "{\"n\":%zu,\"ok\":%zu,\"failed\":%zu,\"restored\":%zu,\"wall_s\":%.3f,\"req_s\":%.0f,"
      "\"first_new_s\":%.3f,\"cpu_us_per_req\":%.2f,\"peak_rss_mb\":%.1f}\n",
      n, ok, failed, restored, wall, static_cast<double>(ok + failed) / wall, first_new,
      (cpu_seconds() - cpu_start) * 1e6 / static_cast<double>(n), peak_rss_mb());
  return failed == 0 ? 0 : 1;
}
