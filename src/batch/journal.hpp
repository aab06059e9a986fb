// The checkpoint journal of a batch (docs/checkpoint.md): one JSONL record per finished item,
// appended by the JournalWriter, read back on resume with bounded memory, compacted to one record
// per index when the batch completes.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "flexllm/batch.hpp"

namespace simdjson::dom {
class parser;
}

namespace flexllm::detail {

using RecordKey = std::array<uint8_t, 16>;  // XXH3-128 of the request body

RecordKey record_key(std::string_view request_body);
std::string key_hex(const RecordKey& key);

// What resume needs of a record, without holding its text: where it is in the file, its key, and
// its token counts (a resume that does not load restored items still totals their usage).
struct RecordRef {
  uint64_t index = 0;
  uint64_t offset = 0;
  RecordKey key{};
  uint32_t length = 0;  // without the newline
  // usage (0 when the record has none), clamped to 32 bits
  uint32_t prompt_tokens = 0, completion_tokens = 0, total_tokens = 0;
  bool success = false;
};  // 56 bytes

// The fields of `ref` a record line gives (not offset/length); false when the line is not a
// record. The prefix format_record() writes is read directly (usage too); anything else — a file
// edited by hand — goes through `parser`.
bool parse_record_line(std::string_view line, RecordRef& ref, simdjson::dom::parser& parser);

class SortedRefs;
using Warn = std::function<void(const std::string&)>;

struct JournalScan {
  uint64_t valid_bytes = 0;  // the file up to its last complete line
  uint64_t records = 0;      // record lines (every one, not one per index)
  uint64_t malformed = 0;    // lines that are not records (skipped)
  bool torn_tail = false;    // a last line without its newline (left out of valid_bytes)
  // Every line a record, each index above the one before: the file is its own compacted form.
  bool in_order = true;
  std::optional<uint64_t> max_index;
};

// Reads an existing journal once, front to back, handing each record's reference (file order) to
// `sink`. Lines that are not records are skipped with a warning naming their line number; a torn
// last line is reported and left out. nullopt when the file does not exist; CheckpointError (io)
// when it cannot be read.
std::optional<JournalScan> scan_journal(const std::string& path, const Warn& warn,
                                        const std::function<void(const RecordRef&)>& sink);

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

struct CompactResult {
  bool rewritten = false;  // false: the file already was its compacted form
  uint64_t records = 0;    // one per index, in the file now
  uint64_t dropped = 0;    // records at or past `drop_from`
};

// Rewrites the journal with the latest record of each index, sorted by index, through
// PATH.compact.tmp (written, fsync'd, renamed over PATH, directory fsync'd; permission bits kept).
// Each record copied is checked against the scan as it is read; a mismatch starts over from a
// fresh scan. Records with index >= `drop_from` are left out. A file already in its compacted form
// (and nothing to drop) is only fsync'd. The caller holds the output's lock. Throws
// CheckpointError (io) naming the file and the OS error. `after_scan` (tests) runs between each
// scan and its copy.
CompactResult compact_journal(const std::string& path, std::optional<uint64_t> drop_from = {},
                              const Warn& warn = {}, const std::function<void()>& after_scan = {});

}  // namespace flexllm::detail
