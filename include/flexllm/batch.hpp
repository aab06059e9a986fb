// Batch processing with a crash-safe checkpoint (SPEC §6): input-aligned results, or an iterator
// over a lazy source in completion order with bounded memory.
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

// Asks a running batch to stop: no new request is sent, those in flight finish and are recorded,
// then the batch returns (the rest is reported as not run). Thread-safe; Ctrl-C handlers and
// budget limits use it.
class StopSignal {
 public:
  void request() noexcept { stop_.store(true, std::memory_order_release); }
  bool requested() const noexcept { return stop_.load(std::memory_order_acquire); }

 private:
  std::atomic<bool> stop_{false};
};

struct BatchOptions {
  // LLMClientPool: one shared queue that every endpoint pulls from when it has a free slot
  // (instead of the pool's load_balance choice per request). A single client ignores it.
  bool distribute = false;
  std::string output_file{};          // JSONL checkpoint; a rerun resumes from it ("" = none)
  std::vector<json> metadata_list{};  // one per input (or empty): kept in records and items
  SaveInput save_input = SaveInput::full;
  bool show_progress =
      false;  // progress on stderr (a redrawn line on a TTY, else a line every 5 s)
  std::chrono::milliseconds flush_interval{1000};  // group commit: write + fsync this often
  size_t batch_size = 1;     // the iterator yields items in groups of up to this many
  RequestOptions request{};  // applied to every request of the batch
  std::shared_ptr<StopSignal> stop{};
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
  std::chrono::duration<double> latency{};

  // The answer text ("" for an error).
  const std::string& content() const;
};

struct BatchSummary {
  size_t total = 0;
  size_t success = 0;
  size_t failed = 0;
  size_t cached = 0;
  size_t restored = 0;
  size_t not_run = 0;                      // left undone by a stop request
  size_t retries = 0;                      // extra attempts over the whole batch
  size_t key_mismatches = 0;               // checkpoint records whose input changed (redone)
  std::vector<size_t> first_mismatches{};  // their first indices (up to 10)
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
};

// Messages from a JSONL file, one request per line: a messages array, or an object with
// "messages" (other fields are ignored here). Blank lines are skipped. Throws InvalidRequestError
// naming the file and line for a line that is neither. Its size is the number of non-blank lines,
// counted by one extra pass over the file when first asked for.
MessageSource jsonl_messages(const std::string& path);

struct JsonlRequestOptions {
  // A system message for records that bring none of their own ("" = none).
  std::string system{};
  // Called for each line that cannot be used (its text names file and line); that line's item
  // fails without a request (SourceItem::error) and the batch goes on.
  std::function<void(const std::string&)> on_bad_line{};
};

// Requests from a JSONL file, or standard input when `path` is "-", one per non-blank line, in
// any of these forms (SPEC §14):
//   {"messages": [...]}                         a chat as is
//   {"prompt"|"q"|"question": "…", "system"?}   one user message (+ a system message)
//   {"instruction": "…", "input"?: "…", "system"?}  alpaca: instruction, blank line, input
//   [...]                                       a bare messages array
//   "…"                                         a bare prompt string
// Every other field of an object travels as the item's metadata (an object; null when none).
// A line that is not JSON or in none of these forms fails its own item (SourceItem::error:
// "FILE:LINE: …") instead of the batch. Throws InvalidRequestError when the file cannot be
// opened. A file's size is its non-blank lines (one extra pass when asked); stdin's is unknown.
MessageSource jsonl_requests(const std::string& path, JsonlRequestOptions options = {});

}  // namespace flexllm
