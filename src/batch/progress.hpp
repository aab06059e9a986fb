// Live progress of a batch on stderr: one redrawn line on a terminal (throttled), a plain line
// every few seconds otherwise, and a final summary.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "flexllm/batch.hpp"

namespace flexllm::detail {

class Progress {
 public:
  // `rate`: the client's current rate cap (requests/s), shown when finite.
  Progress(std::optional<size_t> total, std::function<double()> rate);
  void update(const BatchSummary& s, size_t in_flight, bool force = false);
  // The total, learnt after the start (counting a big input waits until the first requests
  // are out).
  void set_total(size_t total) { total_ = total; }
  void finish(const BatchSummary& s);

  // The status line itself (tested without a terminal).
  static std::string line(const BatchSummary& s, std::optional<size_t> total, size_t in_flight,
                          double rate);

 private:
  std::optional<size_t> total_;
  std::function<double()> rate_;
  bool tty_;
  std::chrono::steady_clock::time_point last_{};
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace flexllm::detail
