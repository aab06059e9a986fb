#include "batch/runner.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <fmt/format.h>

#include "core/json_scan.hpp"

namespace flexllm::detail {
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
    exhausted_ = true;
    std::vector<BatchResultItem> sink;
    try {
      while (in_flight_ > 0) take_completions(sink);
      finish();
    } catch (const std::exception& e) {  // a destructor must not throw: say it instead
      options_.on_warning(e.what());
    }
  }
  if (checkpoint_fd_ >= 0) ::close(checkpoint_fd_);
}

void BatchRunner::prepare() {
  prepared_ = true;
  start_ = Clock::now();
  if (!options_.output_file.empty()) {
    auto scan = scan_journal(options_.output_file, options_.on_warning);
    uint64_t valid = 0;
    if (scan) {
      checkpoint_ = std::move(scan->records);
      valid = scan->valid_bytes;
    }
    // Opening for writing comes first: an unwritable path fails before any request.
    // A new file is written in index order when completions allow (see record()): then it is its
    // own compacted form. Held records wait at most half a flush interval, and the writer
    // flushes twice as often, so a record is still durable within one flush interval.
    in_order_ = valid == 0 && checkpoint_.empty();
    held_slots_ = 4 * window_;
    if (total_) written_.reserve(std::min(*total_, kMaxTracked));
    writer_ = std::make_unique<JournalWriter>(
        options_.output_file, valid,
        in_order_ ? options_.flush_interval / 2 : options_.flush_interval);
    if (!checkpoint_.empty())
      checkpoint_fd_ = ::open(options_.output_file.c_str(), O_RDONLY | O_CLOEXEC);
  }
  if (inputs_) {
    // What the checkpoint does not have goes first: new work starts at once, and the checking of
    // finished records (a request body and a hash each) overlaps with it.
    order_.reserve(inputs_->size());
    for (size_t i = 0; i < inputs_->size(); ++i) {
      const RecordRef* ref = checkpoint_record(i);
      if (!ref || !ref->success) order_.push_back(i);
    }
    for (size_t i = 0; i < inputs_->size(); ++i) {
      const RecordRef* ref = checkpoint_record(i);
      if (ref && ref->success) order_.push_back(i);
    }
  }
  if (options_.show_progress)
    progress_ =
        std::make_unique<Progress>(expected_total(), [this] { return target_->current_rate(); });
}

std::optional<size_t> BatchRunner::expected_total() {
  if (!total_ && !inputs_ && source_.knows_size()) total_ = source_.size();
  return total_;
}

const RecordRef* BatchRunner::checkpoint_record(size_t index) const {
  auto it = std::lower_bound(checkpoint_.begin(), checkpoint_.end(), index,
                             [](const RecordRef& r, size_t i) { return r.index < i; });
  return it != checkpoint_.end() && it->index == index ? &*it : nullptr;
}

json BatchRunner::metadata_for(size_t index) const {
  return index < options_.metadata_list.size() ? options_.metadata_list[index] : json();
}

// Pulls inputs while the window has room: restores what the checkpoint holds for the same
// request, answers what the cache holds, sends the rest.
void BatchRunner::dispatch() {
  while (in_flight_ < window_ && ready_.size() < window_) {
    if (options_.stop && options_.stop->requested()) {
      exhausted_ = true;
      lookahead_.clear();
      break;
    }
    if (lookahead_.empty() && !exhausted_) pull_lookahead();
    if (lookahead_.empty()) {
      exhausted_ = true;
      break;
    }
    Pending p = std::move(lookahead_.front());
    lookahead_.pop_front();
    dispatch_one(p);
  }
}

// The next inputs, as many as the window has room for (up to kLookahead). With a cache, they are
// looked up together: one store round trip (a Redis MGET, one SQLite transaction) for all of them
// instead of one each.
void BatchRunner::pull_lookahead() {
  CacheFront* cache = target_->cache();
  const bool read_cache = cache && !options_.request.skip_cache && !options_.request.return_raw;
  const size_t room =
      read_cache ? std::min(kLookahead, window_ - std::min(window_, in_flight_)) : 1;
  for (size_t i = 0; i < std::max<size_t>(room, 1); ++i) {
    Pending p;
    if (inputs_) {
      if (order_pos_ >= order_.size()) break;
      p.index = order_[order_pos_++];
      p.messages = &(*inputs_)[p.index];
    } else {
      std::optional<SourceItem> next = source_.next_item();
      if (!next) break;
      p.owned = std::move(next->messages);
      p.metadata = std::move(next->metadata);
      p.error = std::move(next->error);
      p.index = next_index_++;
    }
    lookahead_.push_back(std::move(p));
  }
  if (!read_cache || lookahead_.size() < 2) return;  // a single input looks itself up
  std::vector<CacheKey> keys;
  std::vector<Pending*> asked;
  for (Pending& p : lookahead_) {
    const RecordRef* ref = checkpoint_record(p.index);
    if ((ref && ref->success) || !p.error.empty()) continue;  // the checkpoint answers first
    const json& messages = p.owned ? *p.owned : *p.messages;
    try {
      target_->check_chat(messages, options_.request);
      p.key = target_->cache_key(messages, options_.request);
    } catch (const Error&) {
      continue;  // dispatch_one reports it
    }
    keys.push_back(p.key);
    asked.push_back(&p);
  }
  auto hits = cache->get_many(keys);
  for (size_t i = 0; i < asked.size(); ++i) {
    asked[i]->looked_up = true;
    asked[i]->hit = std::move(hits[i]);
  }
}

// One input: restored from the checkpoint, answered by the cache, joined to an identical request
// in flight, or sent. The request body is built only when something needs it (a hit without a
// checkpoint file needs nothing but the cache key).
void BatchRunner::dispatch_one(Pending& p) {
  const size_t index = p.index;
  const json& messages = p.owned ? *p.owned : *p.messages;
  Pending* looked_up = p.looked_up ? &p : nullptr;
  json metadata = p.metadata.is_null() ? metadata_for(index) : std::move(p.metadata);
  try {
    if (!p.error.empty()) throw InvalidRequestError(Error(ErrorKind::invalid_request, p.error));
    if (!looked_up) target_->check_chat(messages, options_.request);  // (a lookup checked it)
  } catch (const Error& e) {  // an invalid input fails its item, never the batch
    BatchResultItem item;
    item.index = index;
    item.status = ItemStatus::error;
    item.error = std::make_shared<const Error>(e);
    item.metadata = std::move(metadata);
    record(item, record_key(messages.dump()), saved_input(messages, options_.save_input));
    account(item);
    ready_.push_back(std::move(item));
    return;
  }
  std::string url, body;
  RecordKey key{};
  bool built = false;
  auto build = [&] {
    if (built) return;
    std::tie(url, body) = target_->chat_request(messages, options_.request);
    key = record_key(body);
    built = true;
  };
  // The input as its record keeps it. The body carries the messages already serialised: those
  // bytes are reused when it can.
  auto record_input = [&]() -> std::string {
    if (!writer_ || options_.save_input == SaveInput::none) return {};
    std::string_view embedded = target_->embedded_messages(body);
    if (options_.save_input == SaveInput::last) embedded = json_last_element(embedded);
    return embedded.empty() ? saved_input(messages, options_.save_input) : std::string(embedded);
  };
  if (const RecordRef* found = checkpoint_record(index)) {
    build();
    if (found->success && found->key == key) {
      if (auto item = read_record(checkpoint_fd_, *found)) {
        if (item->metadata.is_null()) item->metadata = std::move(metadata);
        account(*item);
        ready_.push_back(std::move(*item));
        return;
      }
    } else if (found->success) {
      // The input at this index changed since the record was written: redo it, and say so.
      if (summary_.key_mismatches++ < 10) summary_.first_mismatches.push_back(index);
    }
  }
  CacheFront* cache = target_->cache();
  CacheKey cache_key{};
  bool lead = false;
  BatchOutcome seed;
  seed.index = index;
  seed.metadata = std::move(metadata);
  if (cache) {
    cache_key = looked_up ? looked_up->key : target_->cache_key(messages, options_.request);
    if (!options_.request.skip_cache && !options_.request.return_raw) {
      if (auto hit = looked_up ? std::move(looked_up->hit) : cache->get(cache_key)) {
        BatchResultItem item;
        item.index = index;
        item.status = ItemStatus::cached;
        hit->endpoint = target_->endpoint_name();
        item.result = std::move(hit);
        item.metadata = std::move(seed.metadata);
        if (writer_) {
          build();
          record(item, key, record_input());
        }
        account(item);
        ready_.push_back(std::move(item));
        return;
      }
      build();
      seed.key = key;
      seed.input = record_input();
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
      if (cache->join(cache_key, std::move(follow))) {
        ++in_flight_;
        return;
      }
      lead = true;
    }
  }
  build();
  seed.key = key;
  if (writer_ && options_.save_input != SaveInput::none && seed.input.empty()) {
    // The body goes out with the request and comes back with its outcome: the record takes the
    // messages from it then, instead of a copy made now.
    std::string_view embedded = target_->embedded_messages(body);
    if (options_.save_input == SaveInput::last) embedded = json_last_element(embedded);
    if (embedded.empty()) {
      seed.input = saved_input(messages, options_.save_input);
    } else {
      seed.input_at = static_cast<uint32_t>(embedded.data() - body.data());
      seed.input_len = static_cast<uint32_t>(embedded.size());
    }
  }
  if (!summary_.first_request) summary_.first_request = Clock::now() - start_;
  ++in_flight_;
  target_->send({std::move(url), std::move(body)}, messages, options_.request, std::move(seed),
                inbox_, CacheTicket{cache, cache_key, lead});
}

// Waits for at least one completion, then records every one that is in.
void BatchRunner::take_completions(std::vector<BatchResultItem>& ready) {
  std::deque<BatchOutcome> batch;
  {
    std::unique_lock lock(inbox_->mu);
    auto arrived = [this] { return !inbox_->completed.empty(); };
    if (auto deadline = hold_deadline()) {
      if (!inbox_->cv.wait_until(lock, *deadline, arrived)) {
        lock.unlock();
        give_up_order();
        lock.lock();
        inbox_->cv.wait(lock, arrived);
      }
    } else {
      inbox_->cv.wait(lock, arrived);
    }
    batch.swap(inbox_->completed);
  }
  for (BatchOutcome& o : batch) {
    --in_flight_;
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
      item.result = std::move(o.result);
    } else {
      item.status = ItemStatus::error;
      if (o.error) item.error = std::make_shared<const Error>(std::move(*o.error));
    }
    record(item, o.key, o.record_input());
    account(item);
    ready.push_back(std::move(item));
  }
  if (auto deadline = hold_deadline(); deadline && Clock::now() >= *deadline) give_up_order();
}

void BatchRunner::record(const BatchResultItem& item, const RecordKey& key,
                         std::string_view input) {
  if (!writer_) return;
  if (in_order_ && item.index != next_write_ && item.index - next_write_ >= held_slots_)
    give_up_order();  // too far ahead of the first record still missing
  if (!in_order_ || item.index == next_write_) {
    track(writer_->append(item, key, input));
    if (in_order_) {
      ++next_write_;
      release_held(/*all=*/false);
    }
    return;
  }
  // Formatted into its slot (the slots keep their capacity: no allocation once warm).
  if (held_.empty()) held_.resize(held_slots_);  // the first time a record waits
  Held& slot = held_[item.index % held_slots_];
  slot.line.clear();
  append_record(slot.line, item, key, input);
  slot.success = item.status != ItemStatus::error;
  slot.waiting = true;
  ++held_count_;
  hold_order_.push_back({Clock::now(), item.index});
}

void BatchRunner::release_held(bool all) {
  for (size_t scanned = 0; held_count_ > 0 && scanned < held_slots_; ++scanned, ++next_write_) {
    Held& slot = held_[next_write_ % held_slots_];
    if (!slot.waiting) {
      if (!all) break;
      continue;
    }
    track(writer_->append_line(next_write_, slot.line, slot.success));
    slot.waiting = false;
    --held_count_;
  }
  // Released records leave the front of the hold order; the next one there sets the deadline.
  while (!hold_order_.empty() && (held_count_ == 0 || hold_order_.front().second < next_write_))
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

void BatchRunner::track(const RecordRef& ref) {
  if (!tracking_) return;
  if (written_.size() >= kMaxTracked) {
    // A long run: memory stays flat, and compaction finds the records by reading the file.
    tracking_ = false;
    std::vector<RecordRef>().swap(written_);
    return;
  }
  written_.push_back(ref);
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
  if (item.result && item.status == ItemStatus::success) {
    if (item.result->attempts > 1)
      summary_.retries += static_cast<size_t>(item.result->attempts - 1);
    latencies_.add(item.result->latency.count());
  }
  if (item.result && item.result->usage) {
    summary_.usage.prompt_tokens += item.result->usage->prompt_tokens;
    summary_.usage.completion_tokens += item.result->usage->completion_tokens;
    summary_.usage.total_tokens += item.result->usage->total_tokens;
  }
  summary_.elapsed = Clock::now() - start_;
  if (progress_) progress_->update(summary_, in_flight_);
}

bool BatchRunner::next(std::vector<BatchResultItem>& out) {
  out.clear();
  if (finished_) return false;
  if (!prepared_) prepare();
  for (;;) {
    dispatch();
    while (!ready_.empty() && out.size() < options_.batch_size) {
      out.push_back(std::move(ready_.front()));
      ready_.pop_front();
    }
    if (out.size() >= options_.batch_size) return true;
    if (in_flight_ == 0) {
      if (exhausted_ || (options_.stop && options_.stop->requested())) {
        if (ready_.empty()) {
          finish();
          return !out.empty();
        }
        continue;
      }
      if (!out.empty()) return true;
      continue;
    }
    std::vector<BatchResultItem> fresh;
    take_completions(fresh);
    for (auto& item : fresh) ready_.push_back(std::move(item));
  }
}

void BatchRunner::finish() {
  if (finished_) return;
  finished_ = true;
  const bool stopped = options_.stop && options_.stop->requested();
  if (total_ && summary_.total < *total_) summary_.not_run = *total_ - summary_.total;
  summary_.elapsed = Clock::now() - start_;
  summary_.latency_p50 = latencies_.percentile(0.50);
  summary_.latency_p95 = latencies_.percentile(0.95);
  summary_.latency_p99 = latencies_.percentile(0.99);
  const double secs = summary_.elapsed.count();
  summary_.throughput =
      secs > 0 ? static_cast<double>(summary_.success + summary_.failed + summary_.cached) / secs
               : 0;
  if (writer_) {
    // Compaction rewrites the file whole: only when the batch ran to its end. Its copy is
    // fsync'd before it replaces the journal, so the journal's own last fsync is not needed then.
    release_held(/*all=*/true);  // a stop leaves gaps: whatever waits goes now
    writer_->close(/*sync=*/stopped);
    if (!stopped) {
      if (tracking_) {
        // Where every record is is known: the old ones from the scan, this run's from the writer.
        // (Written in order, they are sorted and one per index already.)
        written_.insert(written_.end(), checkpoint_.begin(), checkpoint_.end());
        if (!in_order_) resolve_records(written_);
        compact_journal(options_.output_file, written_);
      } else {
        compact_journal(options_.output_file);
      }
    }
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
