// Batch processing with a crash-safe checkpoint (docs/checkpoint.md): input-aligned results, or
// an iterator over a lazy source in completion order with bounded memory.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "flexllm/detail/pull_iterator.hpp"
#include "flexllm/errors.hpp"
#include "flexllm/types.hpp"

namespace flexllm {

enum class ItemStatus {
  success,   // answered now
  error,     // failed after the retries (error set)
  cached,    // served from the response cache
  restored,  // taken from the checkpoint file of an earlier run
};
const char* to_string(ItemStatus status) noexcept;

// How much of each input goes into the output file's records.
enum class SaveInput { full, last, none };

// Asks a running batch to stop. Thread-safe and async-signal-safe (a signal handler may call it);
// a running batch notices within 0.1 s. docs/checkpoint.md, "Stopping".
class StopSignal {
 public:
  // Stop sending: requests waiting to be retried are dropped, those in flight get
  // BatchOptions::stop_grace to finish and be recorded, then are cancelled. The rest is reported
  // as not run (a rerun does it).
  void request() noexcept { raise(1); }
  // Cancel what is in flight too, at once; what has finished is still recorded.
  void request_now() noexcept { raise(2); }
  bool requested() const noexcept { return level() > 0; }
  // 0 running, 1 request(), 2 request_now().
  int level() const noexcept { return level_.load(std::memory_order_acquire); }

 private:
  void raise(int to) noexcept {
    int now = level_.load(std::memory_order_relaxed);
    while (now < to && !level_.compare_exchange_weak(now, to, std::memory_order_acq_rel)) {
    }
  }
  std::atomic<int> level_{0};
  static_assert(std::atomic<int>::is_always_lock_free, "a signal handler may call request()");
};

struct BatchOptions {
  // LLMClientPool: one shared queue that every endpoint pulls from when it has a free slot
  // (instead of the pool's load_balance choice per request). A single client ignores it.
  bool distribute = false;
  // JSONL checkpoint; a rerun resumes from it ("" = none). Only a missing or empty file or a
  // flexllm checkpoint is written, by one run at a time (docs/checkpoint.md); otherwise the
  // batch throws CheckpointError before any request.
  std::string output_file{};
  // Start afresh: an existing output file is renamed to NAME.bak (NAME.bak.1, … when taken).
  bool overwrite = false;
  // Drop the file's records at or past the input's end when it is compacted (else they are kept
  // and counted in BatchSummary::beyond_input).
  bool prune = false;
  // Restored items are read back from the file and yielded with their stored output (true), or
  // only counted (false: a resume then reads no record bodies; the iterator does not yield them
  // and an input-aligned batch gives them status restored without a result).
  bool load_restored = true;
  std::vector<json> metadata_list{};  // one per input (or empty): kept in records and items
  SaveInput save_input = SaveInput::full;
  bool show_progress =
      false;  // progress on stderr (a redrawn line on a TTY, else a line every 5 s)
  std::chrono::milliseconds flush_interval{1000};  // group commit: write + fsync this often
  size_t batch_size = 1;     // the iterator yields items in groups of up to this many
  RequestOptions request{};  // applied to every request of the batch
  std::shared_ptr<StopSignal> stop{};
  // After a stop request, how long requests in flight may take to finish before they are
  // cancelled.
  std::chrono::milliseconds stop_grace{2000};
  // Warnings (a malformed checkpoint line, changed inputs): stderr when unset.
  std::function<void(const std::string&)> on_warning{};
};

struct BatchResultItem {
  size_t index = 0;
  ItemStatus status = ItemStatus::success;
  std::optional<ChatResult> result{};  // success, cached, restored
  // error: the typed failure (rethrow() raises its subclass). Shared, so an item stays small.
  std::shared_ptr<const Error> error{};
  json metadata{};
  // From submission to the outcome, retries included (a failure's too); restored: as recorded.
  std::chrono::duration<double> latency{};
  int attempts = 0;  // HTTP attempts made (0: none, e.g. an invalid input or a cache hit)

  // The answer text ("" for an error).
  const std::string& content() const;
};

struct BatchSummary {
  size_t total = 0;
  size_t success = 0;
  size_t failed = 0;
  size_t cached = 0;
  size_t restored = 0;
  size_t not_run = 0;                      // left undone by a stop (request or abort)
  size_t retries = 0;                      // extra attempts over the whole batch
  size_t key_mismatches = 0;               // checkpoint records whose input changed (redone)
  std::vector<size_t> first_mismatches{};  // their first indices (up to 10)
  // Records of the output file at or past the input's end: kept, unless BatchOptions::prune
  // dropped them at compaction.
  size_t beyond_input = 0;
  // Why the batch stopped by itself ("" = it did not): "endpoint unreachable: …" when the first
  // items all failed to connect (docs/checkpoint.md).
  std::string aborted{};
  std::chrono::duration<double> elapsed{};
  // From the start (checkpoint reading included) to the first request sent: how fast a resume
  // gets going.
  std::optional<std::chrono::duration<double>> first_request{};
  Usage usage{};
  std::optional<double> cost{};            // when pricing is known (cost tracking issue)
  std::map<std::string, size_t> errors{};  // by ErrorKind name
  double latency_p50 = 0, latency_p95 = 0, latency_p99 = 0;  // seconds, of requests sent now
  double throughput = 0;                                     // items answered now per second
};

struct BatchResult {
  std::vector<BatchResultItem> items;  // items[i] is input i
  BatchSummary summary;
};

namespace detail {
class BatchRunner;
}

// The items of iter_chat_completions_batch, in completion order, each index once (restored and
// cached items included). Iterating blocks until the next item; memory stays
// O(concurrency + batch_size) whatever the source's length. Destroying it early stops the batch:
// what is in flight finishes and is recorded.
class BatchIterator {
 public:
  explicit BatchIterator(std::unique_ptr<detail::BatchRunner> runner);
  BatchIterator(BatchIterator&&) noexcept;
  BatchIterator& operator=(BatchIterator&&) noexcept;
  ~BatchIterator();

  // The next item, or nullopt when the batch is over.
  std::optional<BatchResultItem> next();
  // Counts so far (final once next() returned nullopt).
  BatchSummary summary() const;

  using iterator = detail::PullIterator<BatchIterator, BatchResultItem>;
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  std::unique_ptr<detail::BatchRunner> runner_;
  std::vector<BatchResultItem> group_;
  size_t position_ = 0;
};

// One input of a MessageSource: the request's messages and what travels with it.
struct SourceItem {
  json messages;
  // Kept in the item and its record (null: BatchOptions::metadata_list's entry, if any).
  json metadata{};
  // Set when the input could not be read (e.g. "in.jsonl:7: not valid JSON …"): nothing is sent,
  // and the item fails with an InvalidRequestError carrying this text (recorded like any
  // failure, so a rerun after the input is fixed does that index again).
  std::string error{};
};

namespace detail {
template <class F>
concept YieldsInputs = std::is_invocable_r_v<std::optional<json>, F&> ||
                       std::is_invocable_r_v<std::optional<SourceItem>, F&>;
}  // namespace detail

// A lazy source of requests: a callable returning the next messages array (or SourceItem), or
// nullopt at the end (called on the batch caller's thread), and optionally how many it will
// yield. A known size gives the progress display a total and lets an input-aligned batch allocate
// its results once; it is asked for only when needed (an input-aligned batch, or show_progress).
class MessageSource {
 public:
  using Next = std::function<std::optional<SourceItem>()>;
  using Size = std::function<size_t()>;

  MessageSource() = default;
  // Any callable returning std::optional<json> (messages) or std::optional<SourceItem>,
  // optionally with its size (a count or a callable computing it on demand).
  template <class F>
  requires detail::YieldsInputs<F> MessageSource(F next)  // NOLINT: implicit, like std::function
      : next_(wrap(std::move(next))) {}
  template <class F>
  requires detail::YieldsInputs<F> MessageSource(F next, size_t size)
      : next_(wrap(std::move(next))), size_([size] { return size; }) {}
  template <class F>
  requires detail::YieldsInputs<F> MessageSource(F next, Size size)
      : next_(wrap(std::move(next))), size_(std::move(size)) {}

  // Optional, for resuming: how to pass over the next input without building it (false at the
  // end), and how to read the inputs again from the first (an independent second reader). With
  // a way to read again, a resumed batch sends the inputs its checkpoint lacks first and checks
  // the restored ones while those requests are in flight. jsonl_messages() and jsonl_requests()
  // on a file have both.
  using Skip = std::function<bool()>;
  using Reopen = std::function<MessageSource()>;
  MessageSource& with_skip(Skip skip) {
    skip_ = std::move(skip);
    return *this;
  }
  MessageSource& with_reopen(Reopen reopen) {
    reopen_ = std::move(reopen);
    return *this;
  }
  bool can_reopen() const { return static_cast<bool>(reopen_); }
  MessageSource reopen() const { return reopen_(); }  // only when can_reopen()
  // Passes over the next input (reading and dropping it when there is no Skip); false at the end.
  bool skip() const { return skip_ ? skip_() : next_().has_value(); }

  // The next input's messages (its metadata and error dropped), or nullopt at the end.
  std::optional<json> operator()() const {
    auto item = next_();
    if (!item) return std::nullopt;
    return std::move(item->messages);
  }
  // The next input whole, or nullopt at the end.
  std::optional<SourceItem> next_item() const { return next_(); }
  explicit operator bool() const { return static_cast<bool>(next_); }
  bool knows_size() const { return static_cast<bool>(size_); }
  size_t size() const { return size_(); }  // only when knows_size()

 private:
  template <class F>
  static Next wrap(F next) {
    if constexpr (std::is_invocable_r_v<std::optional<SourceItem>, F&> &&
                  !std::is_invocable_r_v<std::optional<json>, F&>) {
      return Next(std::move(next));
    } else {
      return [next = std::move(next)]() mutable -> std::optional<SourceItem> {
        std::optional<json> messages = next();
        if (!messages) return std::nullopt;
        return SourceItem{std::move(*messages)};
      };
    }
  }

  Next next_;
  Size size_;
  Skip skip_;
  Reopen reopen_;
};

// The longest line a JSONL input may have (64 MiB: room for inline images). A longer line is
// bad input like a line that is not JSON, and is passed over without being held in memory.
inline constexpr size_t kMaxJsonlLineBytes = size_t{64} << 20;

// Messages from a JSONL file, one request per line: a messages array, or an object with
// "messages" (other fields are ignored here). Blank lines are skipped. Throws InvalidRequestError
// naming the file and line for a line that is neither, or longer than `max_line_bytes`. Its size
// is the number of non-blank lines, counted by one extra pass over the file when first asked for.
MessageSource jsonl_messages(const std::string& path, size_t max_line_bytes = kMaxJsonlLineBytes);

struct JsonlRequestOptions {
  // A system message for records that bring none of their own ("" = none).
  std::string system{};
  // Called for each line that cannot be used (its text names file and line); that line's item
  // fails without a request (SourceItem::error) and the batch goes on.
  std::function<void(const std::string&)> on_bad_line{};
  // A longer line cannot be used (above).
  size_t max_line_bytes = kMaxJsonlLineBytes;
};

// Requests from a JSONL file, or standard input when `path` is "-", one per non-blank line, in
// any of these forms:
//   {"messages": [...]}                         a chat as is
//   {"prompt"|"q"|"question": "…", "system"?}   one user message (+ a system message)
//   {"instruction": "…", "input"?: "…", "system"?}  alpaca: instruction, blank line, input
//   [...]                                       a bare messages array
//   "…"                                         a bare prompt string
// Every other field of an object travels as the item's metadata (an object; null when none).
// A line that is not JSON, in none of these forms, or longer than options.max_line_bytes fails its
// own item (SourceItem::error: "FILE:LINE: …") instead of the batch. Throws InvalidRequestError
// when the file cannot be opened. A file's size is its non-blank lines (one extra pass when asked);
// stdin's is unknown.
MessageSource jsonl_requests(const std::string& path, JsonlRequestOptions options = {});

}  // namespace flexllm
