// Sorting a checkpoint's record references by index with bounded memory: the latest record of
// each index, in index order, whatever the size of the file. Up to one chunk of references is
// sorted in memory; beyond that, sorted runs spill to an unnamed temporary file and are merged.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "batch/journal.hpp"

namespace flexllm::detail {

struct RefSpill;  // the temporary file sorted runs spill to

// The references a RefSorter produced: one per index (the one latest in the file), by index.
// Read through any number of independent cursors.
class SortedRefs {
 public:
  class Cursor {
   public:
    // The current reference (nullptr at the end).
    const RecordRef* get() const;
    void advance();
    // Moves to the first reference whose index is at least `index`; returns it if its index is
    // exactly `index`.
    const RecordRef* seek(uint64_t index);

   private:
    friend class SortedRefs;
    void load();
    // Shared with the SortedRefs: a cursor stays valid when they move or go.
    std::shared_ptr<const std::vector<RecordRef>> memory_;
    std::shared_ptr<const RefSpill> spill_;
    uint64_t spill_offset_ = 0;
    uint64_t count_ = 0;
    uint64_t pos_ = 0;
    uint64_t block_start_ = 0;
    std::vector<RecordRef> block_;  // a window of the spilled run (empty when in memory)
  };

  SortedRefs() = default;
  uint64_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  Cursor cursor() const;

 private:
  friend class RefSorter;
  uint64_t count_ = 0;
  std::shared_ptr<const std::vector<RecordRef>> memory_;  // when everything fit in one chunk
  std::shared_ptr<const RefSpill> spill_;                 // else: the final run in the spill file
  uint64_t spill_offset_ = 0;                             // where that run starts (bytes)
};

class RefSorter {
 public:
  // References of up to `chunk` records are sorted in memory; more spill to an unnamed file in
  // `spill_dir` (the output's directory: the temporary's size follows the job, so it belongs on
  // the job's disk, not in a RAM-backed /tmp).
  static constexpr size_t kChunk = 64 * 1024;
  explicit RefSorter(std::string spill_dir, size_t chunk = kChunk);
  ~RefSorter();
  RefSorter(const RefSorter&) = delete;
  RefSorter& operator=(const RefSorter&) = delete;

  // References in file order (offsets increasing).
  void add(const RecordRef& ref);
  // Sorts and merges what was added. Throws CheckpointError (io) when the spill file fails.
  SortedRefs finish();

 private:
  struct Run {
    uint64_t offset;  // bytes into the spill file
    uint64_t count;
  };
  void spill_chunk();
  Run merge(const std::vector<Run>& runs);

  std::string dir_;
  size_t chunk_;
  // Every reference so far above the one before (a compacted file): chunks need no sorting, and
  // the runs they spill to follow each other already — no merge.
  bool in_order_ = true;
  std::optional<uint64_t> last_index_;
  uint64_t spilled_ = 0;
  std::vector<RecordRef> buffer_;
  std::shared_ptr<RefSpill> spill_;
  uint64_t spill_end_ = 0;
  std::vector<Run> runs_;
};

// Sorts references by (index, file offset) and keeps the last of each index: the latest record
// in the file wins, whatever its status.
void resolve_records(std::vector<RecordRef>& records);

}  // namespace flexllm::detail
