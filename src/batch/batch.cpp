// The batch entry points of LLMClient, the iterator, and JSONL sources.
#include <fstream>

#include <fmt/format.h>

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

BatchResult LLMClient::chat_completions_batch(const std::vector<json>& messages_list,
                                              const BatchOptions& options) {
  if (!options.metadata_list.empty() && options.metadata_list.size() != messages_list.size())
    throw InvalidRequestError(Error(
        ErrorKind::invalid_request,
        fmt::format("BatchOptions.metadata_list has {} entries for {} inputs: give one per input",
                    options.metadata_list.size(), messages_list.size())));
  detail::BatchRunner runner(core(), options, messages_list);
  BatchResult out;
  out.items.resize(messages_list.size());
  std::vector<bool> seen(messages_list.size(), false);
  std::vector<BatchResultItem> group;
  while (runner.next(group))
    for (BatchResultItem& item : group) {
      seen[item.index] = true;
      out.items[item.index] = std::move(item);
    }
  // Items a stop request left undone.
  for (size_t i = 0; i < seen.size(); ++i) {
    if (seen[i]) continue;
    BatchResultItem& item = out.items[i];
    item.index = i;
    item.status = ItemStatus::error;
    item.error = Error(ErrorKind::cancelled, "not run: the batch was stopped before this request");
    if (i < options.metadata_list.size()) item.metadata = options.metadata_list[i];
  }
  out.summary = runner.summary();
  return out;
}

BatchIterator LLMClient::iter_chat_completions_batch(MessageSource source, BatchOptions options) {
  return BatchIterator(
      std::make_unique<detail::BatchRunner>(core(), std::move(options), std::move(source)));
}

MessageSource jsonl_messages(const std::string& path) {
  auto in = std::make_shared<std::ifstream>(path);
  if (!*in)
    throw InvalidRequestError(
        Error(ErrorKind::invalid_request,
              fmt::format("cannot open {}: no such file or unreadable", path)));
  auto line_no = std::make_shared<size_t>(0);
  return [in, line_no, path]() -> std::optional<json> {
    std::string line;
    while (std::getline(*in, line)) {
      ++*line_no;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      json value = json::parse(line, nullptr, false);
      if (value.is_array()) return value;
      if (value.is_object() && value.contains("messages")) return value["messages"];
      throw InvalidRequestError(
          Error(ErrorKind::invalid_request,
                fmt::format("{}:{}: expected a messages array or an object with \"messages\"", path,
                            *line_no)));
    }
    return std::nullopt;
  };
}

}  // namespace flexllm
