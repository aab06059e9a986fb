// Runs a batch over a client's engine: pulls inputs from a source, restores what the checkpoint
// already holds, keeps a bounded window of requests in flight, records every outcome in the
// journal, and hands completed items to the caller's thread in groups.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "batch/journal.hpp"
#include "batch/progress.hpp"
#include "engine/client_core.hpp"
#include "flexllm/batch.hpp"

namespace flexllm::detail {

class BatchRunner {
 public:
  // `total`: the number of inputs when known (progress, ETA).
  BatchRunner(ClientCore& core, BatchOptions options, MessageSource source,
              std::optional<size_t> total);
  ~BatchRunner();  // an unfinished batch is stopped: in-flight requests finish and are recorded

  // Up to batch_size newly completed items (blocks for at least one); false once all are done.
  bool next(std::vector<BatchResultItem>& out);
  BatchSummary summary() const;

  // A finished request, from the I/O thread.
  struct Outcome {
    size_t index = 0;
    RecordKey key{};
    json input;  // kept only when the record saves it
    std::optional<ChatResult> result;
    std::optional<Error> error;
  };
  // Where finished requests land, from the I/O thread. Shared with the jobs so that a job
  // handing over its outcome never touches a runner that has already gone.
  struct Inbox {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Outcome> completed;
    void put(Outcome outcome);
  };

 private:
  void prepare();
  void dispatch();
  void take_completions(std::vector<BatchResultItem>& ready);
  void account(const BatchResultItem& item);
  void finish();
  json metadata_for(size_t index) const;

  ClientCore& core_;
  BatchOptions options_;
  MessageSource source_;
  std::optional<size_t> total_;
  size_t window_;

  std::shared_ptr<Inbox> inbox_ = std::make_shared<Inbox>();

  // Caller's thread only.
  bool prepared_ = false;
  bool exhausted_ = false;
  bool finished_ = false;
  size_t next_index_ = 0;
  size_t in_flight_ = 0;
  std::vector<RecordRef> checkpoint_;  // sorted by index
  size_t checkpoint_cursor_ = 0;
  int checkpoint_fd_ = -1;
  std::unique_ptr<JournalWriter> writer_;
  std::deque<BatchResultItem> ready_;
  BatchSummary summary_;
  std::vector<double> latencies_;
  Clock::time_point start_{};
  std::unique_ptr<Progress> progress_;
};

}  // namespace flexllm::detail
