// The checkpoint journal of a batch (SPEC §6): one JSONL record per finished item, appended with
// group commit (write + fsync every flush interval, off the caller's and the I/O thread), read
// back on resume, compacted to one record per index when the batch completes.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "flexllm/batch.hpp"

namespace flexllm::detail {

using RecordKey = std::array<uint8_t, 16>;  // XXH3-128 of the request body

RecordKey record_key(std::string_view request_body);
std::string key_hex(const RecordKey& key);

// What resume needs of a record, without holding its text: where it is in the file.
struct RecordRef {
  uint64_t index = 0;
  uint64_t offset = 0;
  RecordKey key{};
  uint32_t length = 0;  // without the newline
  bool success = false;
};  // 40 bytes: a million finished records cost 40 MB to resume

struct JournalScan {
  std::vector<RecordRef> records;  // sorted by index; the last record of each index wins
  uint64_t valid_bytes = 0;        // the file up to its last complete line
  size_t malformed = 0;
};

// Reads an existing journal. A torn last line (no newline) is left out of valid_bytes; a line that
// is not a record is skipped with a warning naming its line number. nullopt when the file does
// not exist.
std::optional<JournalScan> scan_journal(const std::string& path,
                                        const std::function<void(const std::string&)>& warn);

// The full record at `ref` as an item (status restored). nullopt if it cannot be parsed.
std::optional<BatchResultItem> read_record(int fd, const RecordRef& ref);

// The input as a record stores it (SaveInput::full: the messages; last: the last message; none:
// nothing), serialised once when the request is sent.
std::string saved_input(const json& messages, SaveInput save_input);

// One record line (no newline) for a finished item; `input` is saved_input()'s text ("" = none).
std::string format_record(const BatchResultItem& item, const RecordKey& key,
                          std::string_view input);
// The same, appended to `out`.
void append_record(std::string& out, const BatchResultItem& item, const RecordKey& key,
                   std::string_view input);

// Sorts references by index and keeps one per index: its last success, else its last record (the
// order of records of one index is their order in the file).
void resolve_records(std::vector<RecordRef>& records);

// Rewrites the journal with one record per index (a success when there is one, else the last
// record), sorted by index, through a temporary file renamed over it.
void compact_journal(const std::string& path);
// The same from references already resolved (resolve_records) that cover the whole file: no
// re-reading of the records to find them. A file that already is its compacted form (every line
// kept, in index order) is left as it is.
void compact_journal(const std::string& path, const std::vector<RecordRef>& records);

}  // namespace flexllm::detail
