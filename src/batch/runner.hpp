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
#include "batch/journal_writer.hpp"
#include "batch/latency_histogram.hpp"
#include "batch/progress.hpp"
#include "batch/target.hpp"
#include "flexllm/batch.hpp"

namespace flexllm::detail {

class BatchRunner {
 public:
  // From a lazy source (indices in source order), or from `inputs` known up front: then the
  // indices the checkpoint does not hold are sent first, and the others are checked and restored
  // while those requests are in flight.
  BatchRunner(std::unique_ptr<BatchTarget> target, BatchOptions options, MessageSource source);
  BatchRunner(std::unique_ptr<BatchTarget> target, BatchOptions options,
              const std::vector<json>& inputs);
  ~BatchRunner();  // an unfinished batch is stopped: in-flight requests finish and are recorded

  // Up to batch_size newly completed items (blocks for at least one); false once all are done.
  bool next(std::vector<BatchResultItem>& out);
  BatchSummary summary() const;
  // How many inputs the batch has, when known: the inputs' count, or the source's size (asked for
  // once, here).
  std::optional<size_t> expected_total();
  // Through BatchOptions::on_warning (stderr when unset).
  void warn(const std::string& message) const { options_.on_warning(message); }

 private:
  void prepare();
  // An input pulled ahead of its dispatch, possibly looked up in the cache already.
  struct Pending {
    size_t index = 0;
    const json* messages = nullptr;  // inputs_ mode
    std::optional<json> owned;       // source mode
    json metadata;                   // source mode: what the source gave with it
    std::string error;               // source mode: the input could not be read
    bool looked_up = false;
    CacheKey key{};
    std::optional<ChatResult> hit;
  };
  void dispatch();
  void pull_lookahead();
  void dispatch_one(Pending& p);
  void take_completions(std::vector<BatchResultItem>& ready);
  void account(const BatchResultItem& item);
  void track(const RecordRef& ref);
  // Writes an item's record: at once, or held until the records before it are written.
  void record(const BatchResultItem& item, const RecordKey& key, std::string_view input);
  void release_held(bool all);
  void give_up_order();
  std::optional<Clock::time_point> hold_deadline() const;
  void finish();
  json metadata_for(size_t index) const;
  const RecordRef* checkpoint_record(size_t index) const;

  std::unique_ptr<BatchTarget> target_;
  BatchOptions options_;
  MessageSource source_;
  const std::vector<json>* inputs_ = nullptr;
  std::optional<size_t> total_;
  std::vector<size_t> order_;  // inputs_ mode: the dispatch order
  size_t order_pos_ = 0;
  size_t window_;
  static constexpr size_t kLookahead = 64;
  std::deque<Pending> lookahead_;

  std::shared_ptr<BatchInbox> inbox_ = std::make_shared<BatchInbox>();

  // Caller's thread only.
  bool prepared_ = false;
  bool exhausted_ = false;
  bool finished_ = false;
  size_t next_index_ = 0;
  size_t in_flight_ = 0;
  std::vector<RecordRef> checkpoint_;  // sorted by index
  int checkpoint_fd_ = -1;
  std::unique_ptr<JournalWriter> writer_;
  // Where this run's records are in the file, so that compaction need not read it to find them;
  // given up past kMaxTracked records (a run that long hardly notices one more read).
  static constexpr size_t kMaxTracked = 1 << 16;
  std::vector<RecordRef> written_;
  bool tracking_ = true;
  // Writing a new file in index order: records that complete early wait (formatted, in a ring of
  // slots by index) for the ones before them, at most half a flush interval and at most
  // held_slots_ (4 windows) indices ahead of the first one missing.
  struct Held {
    std::string line;
    bool success = false;
    bool waiting = false;
  };
  size_t held_slots_ = 0;
  bool in_order_ = false;
  size_t next_write_ = 0;  // the first index not written yet
  std::vector<Held> held_;
  size_t held_count_ = 0;
  std::deque<std::pair<Clock::time_point, size_t>> hold_order_;  // (held at, index), oldest first
  std::deque<BatchResultItem> ready_;
  BatchSummary summary_;
  LatencyHistogram latencies_;
  Clock::time_point start_{};
  std::unique_ptr<Progress> progress_;
};

// Input-aligned results (chat_completions_batch) of a batch on `target`. The vector form checks
// metadata_list's length before any request.
BatchResult run_aligned_batch(std::unique_ptr<BatchTarget> target,
                              const std::vector<json>& messages_list, const BatchOptions& options);
BatchResult run_aligned_batch(std::unique_ptr<BatchTarget> target, MessageSource source,
                              const BatchOptions& options);

}  // namespace flexllm::detail
