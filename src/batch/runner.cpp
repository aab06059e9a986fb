#include "batch/runner.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

#include "core/json_scan.hpp"

namespace flexllm::detail {
namespace {

// A different job's file: this many success records checked (or all there are), none matching.
constexpr size_t kVerdictRecords = 20;
// Inputs read ahead, at most, to reach that verdict when the inputs cannot be read twice.
constexpr size_t kVerdictReadAhead = 4096;
// Restored inputs checked between two looks at the inbox.
constexpr size_t kVerifySlice = 256;
// How often a waiting runner looks at the stop signal, the writer and the grace period.
constexpr auto kPollInterval = std::chrono::milliseconds(100);

class VectorReader final : public InputReader {
 public:
  explicit VectorReader(const std::vector<json>& inputs) : inputs_(inputs) {}
  bool next(Pending& p) override {
    if (pos_ >= inputs_.size()) return false;
    p.messages = &inputs_[pos_++];
    return true;
  }
  bool skip() override { return pos_ < inputs_.size() && ++pos_; }
  std::unique_ptr<InputReader> reopen() const override {
    return std::make_unique<VectorReader>(inputs_);
  }

 private:
  const std::vector<json>& inputs_;
  size_t pos_ = 0;
};

class SourceReader final : public InputReader {
 public:
  explicit SourceReader(MessageSource source) : source_(std::move(source)) {}
  bool next(Pending& p) override {
    std::optional<SourceItem> item = source_.next_item();
    if (!item) return false;
    p.owned = std::move(item->messages);
    p.metadata = std::move(item->metadata);
    p.error = std::move(item->error);
    return true;
  }
  bool skip() override { return source_.skip(); }
  std::unique_ptr<InputReader> reopen() const override {
    if (!source_.can_reopen()) return nullptr;
    return std::make_unique<SourceReader>(source_.reopen());
  }

 private:
  MessageSource source_;
};

Usage usage_of(const RecordRef& ref) {
  Usage u;
  u.prompt_tokens = ref.prompt_tokens;
  u.completion_tokens = ref.completion_tokens;
  u.total_tokens = ref.total_tokens;
  return u;
}

}  // namespace

BatchRunner::BatchRunner(std::unique_ptr<BatchTarget> target, BatchOptions options,
                         const std::vector<json>& inputs)
    : BatchRunner(std::move(target), std::move(options), MessageSource()) {
  inputs_ = &inputs;
  total_ = inputs.size();
}

BatchRunner::BatchRunner(std::unique_ptr<BatchTarget> target, BatchOptions options,
                         MessageSource source)
    : target_(std::move(target)),
      options_(std::move(options)),
      source_(std::move(source)),
      window_(std::max<size_t>(2 * static_cast<size_t>(target_->concurrency()), 16)) {
  if (options_.batch_size == 0) options_.batch_size = 1;
  if (!options_.on_warning)
    options_.on_warning = [](const std::string& w) {
      std::fprintf(stderr, "flexllm: warning: %s\n", w.c_str());
    };
}

BatchRunner::~BatchRunner() {
  if (prepared_ && !finished_) {
    // Abandoned: send nothing more, let what is in flight finish and be recorded.
    internal_stop_ = std::max(internal_stop_, 1);
    std::vector<BatchResultItem> sink;
    try {
      while (in_flight_ > 0) {
        poll_stop();
        take_completions(sink);
      }
      finish();
    } catch (const std::exception& e) {  // a destructor must not throw: say it instead
      options_.on_warning(e.what());
    }
  }
  if (checkpoint_fd_ >= 0) ::close(checkpoint_fd_);
}

std::optional<size_t> BatchRunner::expected_total() {
  if (!total_ && !inputs_ && source_.knows_size()) total_ = source_.size();
  return total_;
}

json BatchRunner::metadata_for(size_t index) const {
  return index < options_.metadata_list.size() ? options_.metadata_list[index] : json();
}

void BatchRunner::prepare() {
  prepared_ = true;
  start_ = Clock::now();
  // The source's size is counted for the progress display once the first requests are out
  // (see next()): it is one more pass over the input.
  if (options_.show_progress && !inputs_ && !total_ && source_.knows_size())
    size_of_source_ = [source = source_] { return source.size(); };
  if (inputs_) {
    reader_ = std::make_unique<VectorReader>(*inputs_);
  } else {
    reader_ = std::make_unique<SourceReader>(std::move(source_));
    source_ = MessageSource();
  }
  held_slots_ = 4 * window_;
  if (!options_.output_file.empty()) open_checkpoint();
  if (options_.show_progress)
    progress_ =
        std::make_unique<Progress>(expected_total(), [this] { return target_->current_rate(); });
}

// Takes the file, reads what it holds, decides whether it is this job's, and only then opens it
// for appending (cutting a torn last line): a file refused is left byte-for-byte as it was.
void BatchRunner::open_checkpoint() {
  output_ = std::make_unique<OutputFile>(options_.output_file, options_.overwrite);
  if (!output_->backup().empty())
    options_.on_warning(fmt::format("{}: the old file was moved to {}; starting afresh",
                                    output_->shown(), output_->backup()));
  const std::string& path = output_->path();
  RefSorter sorter(parent_directory(path));
  bool any_success = false;
  scan_ = scan_journal(path, options_.on_warning, [&](const RecordRef& ref) {
    any_success = any_success || ref.success;
    sorter.add(ref);
  });
  refs_ = sorter.finish();
  n_cursor_ = refs_.cursor();
  if (!refs_.empty()) {
    checkpoint_fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (checkpoint_fd_ < 0)
      throw CheckpointError(
          CheckpointError::Reason::io,
          fmt::format("cannot read {}: {}", output_->shown(), std::strerror(errno)),
          output_->shown());
  }
  if (any_success) {
    verifier_ = reader_->reopen();
    if (verifier_) {
      v_done_ = false;
      v_cursor_ = refs_.cursor();
    }
    settle_verdict();
  }
  // Held records wait at most half a flush interval, and the writer flushes twice as often, so a
  // record is still durable within one flush interval.
  writer_ = std::make_unique<JournalWriter>(path, scan_ ? scan_->valid_bytes : 0,
                                            options_.flush_interval / 2);
  if (scan_ && scan_->max_index) last_appended_ = scan_->max_index;
  appends_sorted_ = !scan_ || scan_->in_order;
}

// The first success records are checked before anything is sent or written: when none of them is
// this job's, the file belongs to another job, and is refused untouched.
void BatchRunner::settle_verdict() {
  auto pending = [&] { return matched_ == 0 && compared_ < kVerdictRecords; };
  if (verifier_) {
    while (pending() && !v_done_) verify_some(1);
  } else {
    // One pass: read ahead (the inputs wait in the lookahead) until enough were checked.
    while (pending() && !n_done_ && lookahead_.size() < kVerdictReadAhead) {
      const size_t before = lookahead_.size();
      pull_lookahead();
      if (lookahead_.size() == before) break;
    }
  }
  const bool exhausted = verifier_ ? v_done_ : n_done_;
  if (matched_ == 0 && compared_ > 0 && (compared_ >= kVerdictRecords || exhausted))
    throw CheckpointError(
        CheckpointError::Reason::different_job,
        fmt::format("{} holds the results of a different job: none of the {} success records "
                    "checked matches the request its input makes now (other prompts, model or "
                    "options); left unchanged. Choose another output file, or start afresh "
                    "with BatchOptions::overwrite (flexllm batch --overwrite), which keeps it "
                    "as {}.bak",
                    output_->shown(), compared_, output_->shown()),
        output_->shown());
}

// Builds the request of `p` and compares its key with the record's.
bool BatchRunner::check_against_record(Pending& p) {
  ++compared_;
  if (!p.error.empty()) return false;
  try {
    target_->check_chat(p.input(), options_.request);
  } catch (const Error&) {
    return false;  // dispatch_one reports it
  }
  std::tie(p.url, p.body) = target_->chat_request(p.input(), options_.request);
  p.key = record_key(p.body);
  p.built = true;
  p.matches = p.key == p.record->key;
  if (p.matches) ++matched_;
  return p.matches;
}

// Pass V: up to `limit` restored candidates checked, in index order. False when it has ended.
bool BatchRunner::verify_some(size_t limit) {
  for (size_t done = 0; done < limit && !v_done_; ++done) {
    if (options_.load_restored && ready_.size() >= window_) return true;  // the caller reads first
    const RecordRef* ref = v_cursor_.get();
    while (ref && !ref->success) {
      v_cursor_.advance();
      ref = v_cursor_.get();
    }
    if (!ref || (n_done_ && ref->index >= n_index_)) {
      v_done_ = true;
      break;
    }
    const RecordRef record = *ref;
    v_cursor_.advance();
    for (; v_index_ < record.index; ++v_index_)
      if (!verifier_->skip()) {
        v_done_ = true;
        return false;
      }
    Pending p;
    if (!verifier_->next(p)) {
      v_done_ = true;
      break;
    }
    p.index = v_index_++;
    p.record = record;
    if (check_against_record(p)) {
      restore(p);
    } else {
      if (summary_.key_mismatches++ < 10) summary_.first_mismatches.push_back(p.index);
      redo_.push_back(std::move(p));
    }
  }
  return !v_done_;
}

// An input whose record answers it: an item restored from the file (read back, or only counted).
void BatchRunner::restore(Pending& p) {
  json metadata = p.metadata.is_null() ? metadata_for(p.index) : std::move(p.metadata);
  if (options_.load_restored) {
    if (auto item = read_record(checkpoint_fd_, *p.record)) {
      if (item->metadata.is_null()) item->metadata = std::move(metadata);
      item->attempts = item->result ? item->result->attempts : 0;
      account(*item);
      ready_.push_back(std::move(*item));
      return;
    }
  }
  BatchResultItem item;
  item.index = p.index;
  item.status = ItemStatus::restored;
  item.metadata = std::move(metadata);
  account(item);
  Usage u = usage_of(*p.record);
  summary_.usage.prompt_tokens += u.prompt_tokens;
  summary_.usage.completion_tokens += u.completion_tokens;
  summary_.usage.total_tokens += u.total_tokens;
  ready_.push_back(std::move(item));
}

// Pass N has read the last input: their count is known, and so are the records beyond it.
void BatchRunner::end_of_inputs() {
  n_done_ = true;
  if (!total_) total_ = n_index_;
  n_cursor_.seek(n_index_);
  for (; n_cursor_.get(); n_cursor_.advance()) ++summary_.beyond_input;
  lookahead_.shrink_to_fit();
}

// Pulls inputs (pass N) while the window has room, up to kLookahead. Those the checkpoint answers
// are passed over when pass V will check them, else checked here. With a cache, the rest are
// looked up together: one store round trip (a Redis MGET, one SQLite transaction) for all.
void BatchRunner::pull_lookahead() {
  CacheFront* cache = target_->cache();
  const bool read_cache = cache && !options_.request.skip_cache && !options_.request.return_raw;
  const size_t room =
      read_cache ? std::min(kLookahead, window_ - std::min(window_, in_flight_)) : 1;
  const size_t first = lookahead_.size();
  while (lookahead_.size() - first < std::max<size_t>(room, 1) && !n_done_) {
    const RecordRef* ref = n_cursor_.seek(n_index_);
    if (ref && ref->success && verifier_) {  // pass V's
      if (!reader_->skip()) {
        end_of_inputs();
        break;
      }
      ++n_index_;
      continue;
    }
    Pending p;
    if (!reader_->next(p)) {
      end_of_inputs();
      break;
    }
    p.index = n_index_++;
    if (ref) p.record = *ref;
    if (ref && ref->success && !check_against_record(p)) {
      if (summary_.key_mismatches++ < 10) summary_.first_mismatches.push_back(p.index);
    }
    lookahead_.push_back(std::move(p));
  }
  if (!read_cache || lookahead_.size() - first < 2) return;  // a single input looks itself up
  std::vector<CacheKey> keys;
  std::vector<Pending*> asked;
  for (size_t i = first; i < lookahead_.size(); ++i) {
    Pending& p = lookahead_[i];
    if (p.matches || !p.error.empty()) continue;  // the checkpoint answers first
    try {
      target_->check_chat(p.input(), options_.request);
      p.cache_key = target_->cache_key(p.input(), options_.request);
    } catch (const Error&) {
      continue;  // dispatch_one reports it
    }
    keys.push_back(p.cache_key);
    asked.push_back(&p);
  }
  auto hits = cache->get_many(keys);
  for (size_t i = 0; i < asked.size(); ++i) {
    asked[i]->looked_up = true;
    asked[i]->hit = std::move(hits[i]);
  }
}

void BatchRunner::dispatch() {
  // The stop signal itself, not only its application: a source may raise it as it is read.
  while (in_flight_ < window_ && ready_.size() < window_ && wanted_stop() == 0) {
    if (!redo_.empty()) {
      Pending p = std::move(redo_.front());
      redo_.pop_front();
      dispatch_one(p);
      continue;
    }
    if (lookahead_.empty() && !n_done_) pull_lookahead();
    if (lookahead_.empty()) break;
    Pending p = std::move(lookahead_.front());
    lookahead_.pop_front();
    dispatch_one(p);
  }
}

// One input: restored from the checkpoint, answered by the cache, joined to an identical request
// in flight, or sent. The request body is built only when something needs it (a hit without a
// checkpoint file needs nothing but the cache key).
void BatchRunner::dispatch_one(Pending& p) {
  if (p.matches) return restore(p);
  const size_t index = p.index;
  const json& messages = p.input();
  json metadata = p.metadata.is_null() ? metadata_for(index) : std::move(p.metadata);
  try {
    if (!p.error.empty()) throw InvalidRequestError(Error(ErrorKind::invalid_request, p.error));
    if (!p.looked_up && !p.built) target_->check_chat(messages, options_.request);
  } catch (const Error& e) {  // an invalid input fails its item, never the batch
    BatchResultItem item;
    item.index = index;
    item.status = ItemStatus::error;
    item.error = std::make_shared<const Error>(e);
    item.metadata = std::move(metadata);
    record(item, record_key(messages.dump()), saved_input(messages, options_.save_input),
           next_seq_++);
    account(item);
    ready_.push_back(std::move(item));
    return;
  }
  auto build = [&] {
    if (p.built) return;
    std::tie(p.url, p.body) = target_->chat_request(messages, options_.request);
    p.key = record_key(p.body);
    p.built = true;
  };
  // The input as its record keeps it. The body carries the messages already serialised: those
  // bytes are reused when it can.
  auto record_input = [&]() -> std::string {
    if (!writer_ || options_.save_input == SaveInput::none) return {};
    std::string_view embedded = target_->embedded_messages(p.body);
    if (options_.save_input == SaveInput::last) embedded = json_last_element(embedded);
    return embedded.empty() ? saved_input(messages, options_.save_input) : std::string(embedded);
  };
  CacheFront* cache = target_->cache();
  BatchOutcome seed;
  seed.index = index;
  seed.metadata = std::move(metadata);
  CacheTicket ticket{cache, {}, false};
  if (cache) {
    ticket.key = p.looked_up ? p.cache_key : target_->cache_key(messages, options_.request);
    if (!options_.request.skip_cache && !options_.request.return_raw) {
      if (auto hit = p.looked_up ? std::move(p.hit) : cache->get(ticket.key)) {
        BatchResultItem item;
        item.index = index;
        item.status = ItemStatus::cached;
        hit->endpoint = target_->endpoint_name();
        item.result = std::move(hit);
        item.metadata = std::move(seed.metadata);
        if (writer_) {
          build();
          record(item, p.key, record_input(), next_seq_++);
        }
        account(item);
        ready_.push_back(std::move(item));
        return;
      }
      build();
      seed.key = p.key;
      seed.input = record_input();
      seed.seq = next_seq_++;
      // An identical request in flight answers this one too: its outcome comes as this one's.
      seed.submitted = Clock::now();
      auto follow = [inbox = inbox_, seed](const ChatResult* r, const Error* e) mutable {
        if (r) {
          seed.result = *r;
        } else {
          seed.error = *e;
        }
        inbox->put(std::move(seed));
      };
      if (cache->join(ticket.key, std::move(follow))) {
        ++in_flight_;
        return;
      }
      ticket.lead = true;
    }
  }
  build();
  seed.key = p.key;
  if (!ticket.lead) seed.seq = next_seq_++;
  if (writer_ && options_.save_input != SaveInput::none && seed.input.empty()) {
    // The body goes out with the request and comes back with its outcome: the record takes the
    // messages from it then, instead of a copy made now.
    std::string_view embedded = target_->embedded_messages(p.body);
    if (options_.save_input == SaveInput::last) embedded = json_last_element(embedded);
    if (embedded.empty()) {
      seed.input = saved_input(messages, options_.save_input);
    } else {
      seed.input_at = static_cast<uint32_t>(embedded.data() - p.body.data());
      seed.input_len = static_cast<uint32_t>(embedded.size());
    }
  }
  send(p, ticket, std::move(seed));
}

void BatchRunner::send(Pending& p, CacheTicket ticket, BatchOutcome seed) {
  if (!summary_.first_request) summary_.first_request = Clock::now() - start_;
  ++in_flight_;
  target_->send({std::move(p.url), std::move(p.body)}, p.input(), options_.request, std::move(seed),
                inbox_, ticket);
}

bool BatchRunner::inbox_empty() {
  std::lock_guard lock(inbox_->mu);
  return inbox_->completed.empty();
}

// Waits (a bounded while) for completions, then records every one that is in.
void BatchRunner::take_completions(std::vector<BatchResultItem>& ready) {
  std::deque<BatchOutcome> batch;
  {
    std::unique_lock lock(inbox_->mu);
    auto until = Clock::now() + kPollInterval;
    if (auto deadline = hold_deadline()) until = std::min(until, *deadline);
    if (grace_end_) until = std::min(until, *grace_end_);
    inbox_->cv.wait_until(lock, until, [this] { return !inbox_->completed.empty(); });
    batch.swap(inbox_->completed);
  }
  for (BatchOutcome& o : batch) {
    --in_flight_;
    if (applied_stop_ > 0 && o.error && o.error->kind() == ErrorKind::cancelled) {
      // Cut short by the stop: not done, not recorded; a rerun sends it.
      ++cancelled_;
      skip_seq(o.seq);
      continue;
    }
    BatchResultItem item;
    item.index = o.index;
    item.metadata = o.metadata.is_null() ? metadata_for(o.index) : std::move(o.metadata);
    if (o.result) {
      if (o.result->cached) {  // answered by an identical request
        item.status = ItemStatus::cached;
        o.result->endpoint = target_->endpoint_name();
        o.result->latency = Clock::now() - o.submitted;
      } else {
        item.status = ItemStatus::success;
      }
      item.latency = o.result->latency;
      item.attempts = o.result->attempts;
      item.result = std::move(o.result);
    } else {
      item.status = ItemStatus::error;
      item.latency = o.latency;
      item.attempts = o.attempts;
      if (o.error) item.error = std::make_shared<const Error>(std::move(*o.error));
    }
    record(item, o.key, o.record_input(), o.seq);
    account(item);
    note_sent_outcome(item);
    ready.push_back(std::move(item));
  }
  if (auto deadline = hold_deadline(); deadline && Clock::now() >= *deadline) give_up_order();
}

// An endpoint that is not there: the first items to finish all failed to connect, none answered.
void BatchRunner::note_sent_outcome(const BatchResultItem& item) {
  if (reachable_known_ || item.status == ItemStatus::cached) return;
  if (item.status != ItemStatus::error || !item.error ||
      item.error->kind() != ErrorKind::connection) {
    reachable_known_ = item.status == ItemStatus::success ||
                       (item.error && item.error->kind() != ErrorKind::invalid_request);
    return;
  }
  const size_t enough = std::max<size_t>(20, static_cast<size_t>(target_->concurrency()));
  if (++connection_failures_ < enough) return;
  reachable_known_ = true;
  summary_.aborted = fmt::format("endpoint unreachable: {}", item.error->what());
  internal_stop_ = 2;
}

int BatchRunner::wanted_stop() const {
  return std::max(internal_stop_, options_.stop ? options_.stop->level() : 0);
}

// Applies a stop (asked for, or the runner's own): the requests see it through the inbox, a sweep
// ends those waiting (and, at level 2, those running), and the grace period starts.
void BatchRunner::poll_stop() {
  if (writer_ && write_failure_.empty() && writer_->failed()) {
    write_failure_ = writer_->failure();
    internal_stop_ = std::max(internal_stop_, 1);
  }
  int level = wanted_stop();
  if (level == 0) return;
  const auto now = Clock::now();
  if (!grace_end_) grace_end_ = now + options_.stop_grace;
  if (level == 1 && now >= *grace_end_) level = 2;
  if (level <= applied_stop_) return;
  applied_stop_ = level;
  lookahead_.clear();
  redo_.clear();
  inbox_->stop_level.store(level, std::memory_order_relaxed);
  target_->sweep();
}

void BatchRunner::record(const BatchResultItem& item, const RecordKey& key, std::string_view input,
                         uint64_t seq) {
  if (!writer_) return;
  if (in_order_ && seq != write_seq_ && seq - write_seq_ >= held_slots_)
    give_up_order();  // too far ahead of the first record still missing
  if (!in_order_ || seq == write_seq_) {
    append(item.index, &item, {}, key, input, item.status != ItemStatus::error);
    if (in_order_) {
      ++write_seq_;
      release_held(/*all=*/false);
    }
    return;
  }
  // Formatted into its slot (the slots keep their capacity: no allocation once warm).
  if (held_.empty()) held_.resize(held_slots_);  // the first time a record waits
  Held& slot = held_[seq % held_slots_];
  slot.line.clear();
  append_record(slot.line, item, key, input);
  slot.index = item.index;
  slot.success = item.status != ItemStatus::error;
  slot.waiting = true;
  slot.skipped = false;
  ++held_count_;
  hold_order_.push_back({Clock::now(), seq});
}

// To the writer, noting whether the file stays in index order.
void BatchRunner::append(size_t index, const BatchResultItem* item, std::string_view line,
                         const RecordKey& key, std::string_view input, bool success) {
  if (last_appended_ && index <= *last_appended_) appends_sorted_ = false;
  last_appended_ = index;
  if (item) {
    writer_->append(*item, key, input);
  } else {
    writer_->append_line(index, line, success);
  }
}

// A dispatched item that brings no record (cancelled by a stop): the ones after it need not wait.
void BatchRunner::skip_seq(uint64_t seq) {
  if (!writer_ || !in_order_) return;
  if (seq == write_seq_) {
    ++write_seq_;
    release_held(/*all=*/false);
    return;
  }
  if (seq - write_seq_ >= held_slots_) return give_up_order();
  if (held_.empty()) held_.resize(held_slots_);
  Held& slot = held_[seq % held_slots_];
  slot.waiting = true;
  slot.skipped = true;
  ++held_count_;
}

void BatchRunner::release_held(bool all) {
  for (size_t scanned = 0; held_count_ > 0 && scanned < held_slots_; ++scanned, ++write_seq_) {
    Held& slot = held_[write_seq_ % held_slots_];
    if (!slot.waiting) {
      if (!all) break;
      continue;
    }
    if (!slot.skipped) append(slot.index, nullptr, slot.line, {}, {}, slot.success);
    slot.waiting = false;
    --held_count_;
  }
  // Released records leave the front of the hold order; the next one there sets the deadline.
  while (!hold_order_.empty() && (held_count_ == 0 || hold_order_.front().second < write_seq_))
    hold_order_.pop_front();
}

// A straggler keeps the records after it waiting too long (or too many of them): write them now,
// in completion order from here on; compaction will sort the file.
void BatchRunner::give_up_order() {
  in_order_ = false;
  release_held(/*all=*/true);
}

std::optional<Clock::time_point> BatchRunner::hold_deadline() const {
  if (hold_order_.empty()) return std::nullopt;
  return hold_order_.front().first + options_.flush_interval / 2;
}

void BatchRunner::account(const BatchResultItem& item) {
  ++summary_.total;
  switch (item.status) {
    case ItemStatus::success: ++summary_.success; break;
    case ItemStatus::cached: ++summary_.cached; break;
    case ItemStatus::restored: ++summary_.restored; break;
    case ItemStatus::error:
      ++summary_.failed;
      ++summary_.errors[item.error ? to_string(item.error->kind()) : "unknown"];
      break;
  }
  if (item.result && item.status == ItemStatus::success)
    latencies_.add(item.result->latency.count());
  if (item.result && item.result->usage) {
    summary_.usage.prompt_tokens += item.result->usage->prompt_tokens;
    summary_.usage.completion_tokens += item.result->usage->completion_tokens;
    summary_.usage.total_tokens += item.result->usage->total_tokens;
  }
  summary_.retries = inbox_->retries.load(std::memory_order_relaxed);
  summary_.elapsed = Clock::now() - start_;
  if (progress_) progress_->update(summary_, in_flight_);
}

bool BatchRunner::next(std::vector<BatchResultItem>& out) {
  out.clear();
  if (finished_) return false;
  if (!prepared_) {
    try {
      prepare();
    } catch (...) {
      finished_ = true;  // refused before anything was sent: nothing to finish
      throw;
    }
  }
  for (;;) {
    poll_stop();
    dispatch();
    if (size_of_source_) {
      total_ = size_of_source_();
      size_of_source_ = nullptr;
      if (progress_) progress_->set_total(*total_);
    }
    while (!ready_.empty() && out.size() < options_.batch_size) {
      out.push_back(std::move(ready_.front()));
      ready_.pop_front();
    }
    if (out.size() >= options_.batch_size) return true;
    const bool running = applied_stop_ == 0;
    const bool to_send = running && (!n_done_ || !lookahead_.empty() || !redo_.empty());
    const bool to_verify = running && !v_done_;
    if (in_flight_ == 0) {
      if (!ready_.empty()) continue;
      if (to_verify) {
        verify_some(kVerifySlice);
        continue;
      }
      if (to_send) {
        if (!out.empty()) return true;
        continue;
      }
      finish();
      return !out.empty();
    }
    // Requests are out: check restored inputs while none has come back.
    if (to_verify && inbox_empty()) {
      verify_some(kVerifySlice);
      continue;
    }
    std::vector<BatchResultItem> fresh;
    take_completions(fresh);
    for (auto& item : fresh) ready_.push_back(std::move(item));
    if (progress_ && fresh.empty()) {  // nothing came back: retries and time still move
      summary_.retries = inbox_->retries.load(std::memory_order_relaxed);
      summary_.elapsed = Clock::now() - start_;
      progress_->update(summary_, in_flight_);
    }
  }
}

void BatchRunner::finish() {
  if (finished_) return;
  finished_ = true;
  const bool stopped = applied_stop_ > 0;
  summary_.retries = inbox_->retries.load(std::memory_order_relaxed);
  if (total_ && summary_.total < *total_) {
    summary_.not_run = *total_ - summary_.total;
  } else if (!total_) {
    summary_.not_run = cancelled_ + lookahead_.size() + redo_.size();
  }
  summary_.elapsed = Clock::now() - start_;
  summary_.latency_p50 = latencies_.percentile(0.50);
  summary_.latency_p95 = latencies_.percentile(0.95);
  summary_.latency_p99 = latencies_.percentile(0.99);
  const double secs = summary_.elapsed.count();
  summary_.throughput =
      secs > 0 ? static_cast<double>(summary_.success + summary_.failed + summary_.cached) / secs
               : 0;
  if (writer_) {
    // Compaction rewrites the file whole: only when the batch ran to its end, and only when it is
    // not already in order. Its copy is fsync'd before it replaces the journal, so the journal's
    // own last fsync is not needed then.
    release_held(/*all=*/true);  // a stop leaves gaps: whatever waits goes now
    const bool prune = options_.prune && summary_.beyond_input > 0;
    const bool compact = !stopped && (!appends_sorted_ || prune);
    writer_->close(/*sync=*/!compact);
    if (writer_->failed() && write_failure_.empty()) write_failure_ = writer_->failure();
    if (!write_failure_.empty()) {
      output_.reset();
      throw CheckpointError(
          CheckpointError::Reason::io,
          fmt::format("{}; the batch stopped (the file ends on its last whole record: rerun "
                      "to continue from there)",
                      write_failure_),
          options_.output_file);
    }
    if (compact) {
      CompactResult r = compact_journal(
          output_->path(), options_.prune ? std::optional<uint64_t>(n_index_) : std::nullopt,
          options_.on_warning);
      if (options_.prune) summary_.beyond_input = r.dropped;
    }
    output_.reset();  // the lock goes as soon as the file is final
  }
  if (summary_.key_mismatches > 0) {
    std::string first;
    for (size_t i : summary_.first_mismatches)
      first += (first.empty() ? "" : ", ") + std::to_string(i);
    options_.on_warning(fmt::format(
        "{}: {} checkpoint record(s) belong to a different input than now (first at index {}); "
        "they were redone",
        options_.output_file, summary_.key_mismatches, first));
  }
  if (progress_) {
    progress_->finish(summary_);
    if (std::string extra = target_->summary_lines(); !extra.empty())
      std::fputs(extra.c_str(), stderr);
  }
}

BatchSummary BatchRunner::summary() const {
  return summary_;
}

}  // namespace flexllm::detail
