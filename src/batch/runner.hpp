// Runs a batch over a client's engine: takes the output file (lock, checks), reads its
// checkpoint, pulls inputs, keeps a bounded window of requests in flight, records every outcome in
// the journal, and hands completed items to the caller's thread in groups (docs/checkpoint.md).
//
// Resuming reads the inputs in two passes when they can be read twice: pass N sends what the
// checkpoint lacks (passing over the others without parsing them), pass V checks the restored ones
// (their request's key against the record's) while those requests are in flight. Otherwise one
// pass does both, in input order.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "batch/journal.hpp"
#include "batch/journal_writer.hpp"
#include "batch/latency_histogram.hpp"
#include "batch/output_file.hpp"
#include "batch/progress.hpp"
#include "batch/ref_sort.hpp"
#include "batch/target.hpp"
#include "flexllm/batch.hpp"

namespace flexllm::detail {

// An input pulled ahead of its dispatch, possibly looked up in the cache or checked against its
// checkpoint record already.
struct Pending {
  size_t index = 0;
  const json* messages = nullptr;   // from a vector of inputs
  std::optional<json> owned;        // from a source
  json metadata;                    // from a source: what it gave with the input
  std::string error;                // from a source: the input could not be read
  std::optional<RecordRef> record;  // its latest checkpoint record
  // Built while checking it against its record (reused when it is sent).
  bool built = false;
  std::string url, body;
  RecordKey key{};
  bool matches = false;  // built, and the record's key is this request's
  // The cache lookup done for a group of inputs at once.
  bool looked_up = false;
  CacheKey cache_key{};
  std::optional<ChatResult> hit;

  const json& input() const { return owned ? *owned : *messages; }
};

// Where inputs come from: a vector or a MessageSource, once or (when it can) read again.
class InputReader {
 public:
  virtual ~InputReader() = default;
  virtual bool next(Pending& p) = 0;  // false at the end
  virtual bool skip() = 0;            // passes over the next input; false at the end
  virtual std::unique_ptr<InputReader> reopen() const = 0;  // nullptr: it cannot
};

class BatchRunner {
 public:
  BatchRunner(std::unique_ptr<BatchTarget> target, BatchOptions options, MessageSource source);
  BatchRunner(std::unique_ptr<BatchTarget> target, BatchOptions options,
              const std::vector<json>& inputs);
  ~BatchRunner();  // an unfinished batch is stopped: in-flight requests finish and are recorded

  // Up to batch_size newly completed items (blocks for at least one); false once all are done.
  // Throws CheckpointError when the output file cannot be used (before any request) or written.
  bool next(std::vector<BatchResultItem>& out);
  BatchSummary summary() const;
  // How many inputs the batch has, when known: the inputs' count, or the source's size (asked for
  // once, here).
  std::optional<size_t> expected_total();
  // Through BatchOptions::on_warning (stderr when unset).
  void warn(const std::string& message) const { options_.on_warning(message); }

 private:
  void prepare();
  void open_checkpoint();
  void settle_verdict();
  void pull_lookahead();
  void dispatch();
  void dispatch_one(Pending& p);
  void send(Pending& p, CacheTicket ticket, BatchOutcome seed);
  bool verify_some(size_t limit);
  bool check_against_record(Pending& p);
  void restore(Pending& p);
  void end_of_inputs();
  void take_completions(std::vector<BatchResultItem>& ready);
  bool inbox_empty();
  void poll_stop();
  int wanted_stop() const;
  void account(const BatchResultItem& item);
  void note_sent_outcome(const BatchResultItem& item);
  // Writes an item's record: at once, or held until the records dispatched before it are written.
  void record(const BatchResultItem& item, const RecordKey& key, std::string_view input,
              uint64_t seq);
  void append(size_t index, const BatchResultItem* item, std::string_view line,
              const RecordKey& key, std::string_view input, bool success);
  void skip_seq(uint64_t seq);
  void release_held(bool all);
  void give_up_order();
  std::optional<Clock::time_point> hold_deadline() const;
  void finish();
  json metadata_for(size_t index) const;

  std::unique_ptr<BatchTarget> target_;
  BatchOptions options_;
  MessageSource source_;
  const std::vector<json>* inputs_ = nullptr;
  std::optional<size_t> total_;
  std::function<size_t()> size_of_source_;  // counted after the first dispatch
  size_t window_;
  static constexpr size_t kLookahead = 64;

  std::shared_ptr<BatchInbox> inbox_ = std::make_shared<BatchInbox>();

  // ---- caller's thread only ----
  bool prepared_ = false;
  bool finished_ = false;
  size_t in_flight_ = 0;

  // Inputs: pass N (new work) and, when the inputs can be read again, pass V (restored ones).
  std::unique_ptr<InputReader> reader_, verifier_;
  size_t n_index_ = 0, v_index_ = 0;  // the index of each pass's next input
  bool n_done_ = false, v_done_ = true;
  std::deque<Pending> lookahead_;  // pulled by pass N
  std::deque<Pending> redo_;       // restored candidates whose record no longer matches

  // The checkpoint.
  std::unique_ptr<OutputFile> output_;
  std::optional<JournalScan> scan_;
  SortedRefs refs_;
  SortedRefs::Cursor n_cursor_, v_cursor_;
  int checkpoint_fd_ = -1;
  std::unique_ptr<JournalWriter> writer_;
  // Is the file (once this run's records are in) its own compacted form?
  bool appends_sorted_ = true;
  std::optional<uint64_t> last_appended_;
  // Is this a different job's file? Decided on the first success records checked.
  size_t compared_ = 0, matched_ = 0;

  // Records are written in dispatch order (`seq`) when completions allow — so a new file, or new
  // inputs after a compacted one, need no compaction: early ones wait (formatted, in a ring of
  // slots) for those dispatched before them, at most half a flush interval and at most
  // held_slots_ (4 windows) ahead of the first one missing.
  struct Held {
    std::string line;
    size_t index = 0;
    bool success = false;
    bool waiting = false;
    bool skipped = false;  // cancelled: no record comes for it
  };
  uint64_t next_seq_ = 0;   // the next dispatch order number
  uint64_t write_seq_ = 0;  // the first not written yet
  size_t held_slots_ = 0;
  bool in_order_ = true;
  std::vector<Held> held_;
  size_t held_count_ = 0;
  std::deque<std::pair<Clock::time_point, uint64_t>> hold_order_;  // (held at, seq)

  // Stopping: by request, when the endpoint proves unreachable, or when the file cannot be written.
  int internal_stop_ = 0;
  int applied_stop_ = 0;
  std::optional<Clock::time_point> grace_end_;
  std::string write_failure_;
  size_t cancelled_ = 0;  // in flight when the stop came, cancelled: not run
  bool reachable_known_ = false;
  size_t connection_failures_ = 0;

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
