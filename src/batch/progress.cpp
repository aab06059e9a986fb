#include "batch/progress.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>

#include <fmt/format.h>

namespace flexllm::detail {

Progress::Progress(std::optional<size_t> total, std::function<double()> rate)
    : total_(total), rate_(std::move(rate)), tty_(isatty(STDERR_FILENO) == 1) {}

std::string Progress::line(const BatchSummary& s, std::optional<size_t> total, size_t in_flight,
                           double rate) {
  const size_t done = s.success + s.failed + s.cached + s.restored;
  const double elapsed = s.elapsed.count();
  const size_t now_done = s.success + s.failed + s.cached;
  const double rps = elapsed > 0 ? static_cast<double>(now_done) / elapsed : 0;
  std::string out;
  if (total && *total > 0) {
    out = fmt::format("{}/{} {:5.1f}%", done, *total,
                      100.0 * static_cast<double>(done) / static_cast<double>(*total));
  } else {
    out = fmt::format("{} done", done);
  }
  out += fmt::format(" | {:.1f} req/s", rps);
  if (total && rps > 0 && done < *total)
    out += fmt::format(" | ETA {:.0f}s", static_cast<double>(*total - done) / rps);
  out += fmt::format(" | ok {} failed {} cached {} restored {}", s.success, s.failed, s.cached,
                     s.restored);
  out += fmt::format(" | retries {} | pending {} | tokens {}", s.retries, in_flight,
                     s.usage.total_tokens);
  if (std::isfinite(rate)) out += fmt::format(" | rate {:.1f}/s", rate);
  return out;
}

void Progress::update(const BatchSummary& s, size_t in_flight, bool force) {
  const auto now = std::chrono::steady_clock::now();
  const auto every = tty_ ? std::chrono::milliseconds(100) : std::chrono::milliseconds(5000);
  if (!force && now - last_ < every) return;
  last_ = now;
  std::string text = line(s, total_, in_flight, rate_ ? rate_() : INFINITY);
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s", text.c_str());
  } else {
    std::fprintf(stderr, "%s\n", text.c_str());
  }
  std::fflush(stderr);
}

void Progress::finish(const BatchSummary& s) {
  update(s, 0, true);
  if (tty_) std::fputc('\n', stderr);
  std::string errors;
  for (const auto& [kind, n] : s.errors) errors += fmt::format(" {}={}", kind, n);
  std::fprintf(stderr,
               "batch: %zu items in %.2f s: %zu ok, %zu failed, %zu cached, %zu restored%s, "
               "%zu retries | %.1f items/s | latency p50 %.3f s, p95 %.3f s, p99 %.3f s | %lld "
               "tokens%s%s\n",
               s.total, s.elapsed.count(), s.success, s.failed, s.cached, s.restored,
               s.not_run ? fmt::format(", {} not run (stopped)", s.not_run).c_str() : "", s.retries,
               s.throughput, s.latency_p50, s.latency_p95, s.latency_p99,
               static_cast<long long>(s.usage.total_tokens),
               errors.empty() ? "" : " | errors:", errors.c_str());
  std::fflush(stderr);
}

}  // namespace flexllm::detail
