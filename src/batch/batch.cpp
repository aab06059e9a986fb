// The batch entry points of LLMClient, the iterator, and JSONL sources.
#include <algorithm>
#include <deque>
#include <fstream>

#include <fmt/format.h>

#include "batch/input_formats.hpp"
#include "batch/line_reader.hpp"
#include "batch/runner.hpp"
#include "flexllm/client.hpp"

namespace flexllm {

const char* to_string(ItemStatus status) noexcept {
  switch (status) {
    case ItemStatus::success: return "success";
    case ItemStatus::error: return "error";
    case ItemStatus::cached: return "cached";
    case ItemStatus::restored: return "restored";
  }
  return "unknown";
}

const std::string& BatchResultItem::content() const {
  static const std::string kEmpty;
  return result ? result->content : kEmpty;
}

BatchIterator::BatchIterator(std::unique_ptr<detail::BatchRunner> runner)
    : runner_(std::move(runner)) {}
BatchIterator::BatchIterator(BatchIterator&&) noexcept = default;
BatchIterator& BatchIterator::operator=(BatchIterator&&) noexcept = default;
BatchIterator::~BatchIterator() = default;

std::optional<BatchResultItem> BatchIterator::next() {
  if (position_ >= group_.size()) {
    position_ = 0;
    if (!runner_ || !runner_->next(group_)) {
      group_.clear();
      return std::nullopt;
    }
  }
  return std::move(group_[position_++]);
}

BatchSummary BatchIterator::summary() const {
  return runner_ ? runner_->summary() : BatchSummary{};
}

namespace {

// Items a stop request left undone.
BatchResultItem not_run_item(size_t index, const BatchOptions& options) {
  BatchResultItem item;
  item.index = index;
  item.status = ItemStatus::error;
  item.error = std::make_shared<const Error>(ErrorKind::cancelled,
                                             "not run: the batch was stopped before this request");
  if (index < options.metadata_list.size()) item.metadata = options.metadata_list[index];
  return item;
}

}  // namespace

namespace detail {

BatchResult run_aligned_batch(std::unique_ptr<BatchTarget> target,
                              const std::vector<json>& messages_list, const BatchOptions& options) {
  if (!options.metadata_list.empty() && options.metadata_list.size() != messages_list.size())
    throw InvalidRequestError(Error(
        ErrorKind::invalid_request,
        fmt::format("BatchOptions.metadata_list has {} entries for {} inputs: give one per input",
                    options.metadata_list.size(), messages_list.size())));
  BatchRunner runner(std::move(target), options, messages_list);
  BatchResult out;
  out.items.resize(messages_list.size());
  std::vector<bool> seen(messages_list.size(), false);
  std::vector<BatchResultItem> group;
  while (runner.next(group))
    for (BatchResultItem& item : group) {
      seen[item.index] = true;
      out.items[item.index] = std::move(item);
    }
  for (size_t i = 0; i < seen.size(); ++i)
    if (!seen[i]) out.items[i] = not_run_item(i, options);
  out.summary = runner.summary();
  return out;
}

BatchResult run_aligned_batch(std::unique_ptr<BatchTarget> target, MessageSource source,
                              const BatchOptions& options) {
  BatchRunner runner(std::move(target), options, std::move(source));
  BatchResult out;
  // A source that knows its size gets its results allocated once. Otherwise items wait in a
  // deque (no reallocation peaks) and move to their places at the end, each deque block freed as
  // it empties.
  const std::optional<size_t> expected = runner.expected_total();
  if (expected) out.items.resize(*expected);
  std::deque<BatchResultItem> waiting;
  std::vector<bool> seen(expected.value_or(0), false);
  size_t count = 0;
  std::vector<BatchResultItem> group;
  while (runner.next(group))
    for (BatchResultItem& item : group) {
      count = std::max(count, item.index + 1);
      if (item.index < out.items.size()) {
        seen[item.index] = true;
        out.items[item.index] = std::move(item);
      } else {
        waiting.push_back(std::move(item));
      }
    }
  if (count > out.items.size()) {
    out.items.resize(count);
    seen.resize(count, false);
  }
  for (; !waiting.empty(); waiting.pop_front()) {
    seen[waiting.front().index] = true;
    out.items[waiting.front().index] = std::move(waiting.front());
  }
  // Unseen indices below the count were left undone by a stop request; so were those up to a
  // known size.
  for (size_t i = 0; i < out.items.size(); ++i)
    if (!seen[i]) out.items[i] = not_run_item(i, options);
  out.summary = runner.summary();
  if (!options.metadata_list.empty() && options.metadata_list.size() != out.items.size())
    runner.warn(fmt::format("BatchOptions.metadata_list has {} entries for {} inputs",
                            options.metadata_list.size(), out.items.size()));
  return out;
}

}  // namespace detail

namespace {

// Lines of `path` holding something other than spaces, tabs and carriage returns: what
// jsonl_messages() will yield. One sequential pass in 1 MiB blocks.
size_t count_nonblank_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> block(1 << 20);
  size_t count = 0;
  bool content = false;  // the current line has a non-blank character
  while (in) {
    in.read(block.data(), static_cast<std::streamsize>(block.size()));
    for (std::streamsize i = 0; i < in.gcount(); ++i) {
      const char c = block[static_cast<size_t>(i)];
      if (c == '\n') {
        count += content;
        content = false;
      } else if (c != ' ' && c != '\t' && c != '\r') {
        content = true;
      }
    }
  }
  return count + content;
}

}  // namespace

MessageSource jsonl_messages(const std::string& path, size_t max_line_bytes) {
  auto in = std::make_shared<detail::LineReader>(path, max_line_bytes);
  auto next = [in, path]() -> std::optional<json> {
    std::string_view line;
    if (!in->next(line)) return std::nullopt;
    if (in->too_long())
      throw InvalidRequestError(Error(
          ErrorKind::invalid_request,
          fmt::format("{}:{}: {}", path, in->line_no(), detail::too_long_line(in->max_line()))));
    json value = json::parse(line.begin(), line.end(), nullptr, false);
    if (value.is_array()) return value;
    if (value.is_object() && value.contains("messages")) return value["messages"];
    throw InvalidRequestError(
        Error(ErrorKind::invalid_request,
              fmt::format("{}:{}: expected a messages array or an object with \"messages\"", path,
                          in->line_no())));
  };
  auto skip = [in] {
    std::string_view line;
    return in->next(line);
  };
  MessageSource source(std::move(next),
                       MessageSource::Size([path] { return count_nonblank_lines(path); }));
  source.with_skip(std::move(skip)).with_reopen([path, max_line_bytes] {
    return jsonl_messages(path, max_line_bytes);
  });
  return source;
}

MessageSource jsonl_requests(const std::string& path, JsonlRequestOptions options) {
  const bool from_stdin = path == "-";
  struct State {
    State(const std::string& path, std::string n, JsonlRequestOptions o)
        : in(path, o.max_line_bytes), name(std::move(n)), options(std::move(o)) {}
    detail::LineReader in;
    std::string name;
    JsonlRequestOptions options;
  };
  auto st = std::make_shared<State>(path, from_stdin ? "<stdin>" : path, std::move(options));
  auto next = [st]() -> std::optional<SourceItem> {
    std::string_view line;
    if (!st->in.next(line)) return std::nullopt;
    SourceItem item;
    if (st->in.too_long()) {
      item.error = detail::too_long_line(st->in.max_line());
    } else {
      json record = json::parse(line.begin(), line.end(), nullptr, false);
      item = record.is_discarded()
                 ? SourceItem{json(), json(),
                              "not valid JSON: " + detail::describe_parse_error(std::string(line))}
                 : detail::request_from_record(std::move(record), st->options.system);
    }
    if (!item.error.empty()) {
      item.error = fmt::format("{}:{}: {}", st->name, st->in.line_no(), item.error);
      if (st->options.on_bad_line) st->options.on_bad_line(item.error);
    }
    return item;
  };
  if (from_stdin) return MessageSource(std::move(next));
  // A file can be passed over line by line without parsing, and read again: a resumed batch
  // sends new work first and checks restored lines on a second reader.
  auto skip = [st] {
    std::string_view line;
    return st->in.next(line);
  };
  MessageSource source(std::move(next),
                       MessageSource::Size([path] { return count_nonblank_lines(path); }));
  source.with_skip(std::move(skip)).with_reopen([path, options = st->options] {
    return jsonl_requests(path, options);
  });
  return source;
}

}  // namespace flexllm
