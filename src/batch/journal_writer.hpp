// Appends a batch's records to its output file with group commit: write + fdatasync every flush
// interval, off the caller's and the I/O thread (docs/checkpoint.md, "Writing").
//
// Guarantees:
// - The file only ever ends on a whole record, as far as the writer can see to it. The
//   constructor cuts a torn last line (a write cut by a crash) and checks the cut by reading the
//   last byte back. A flush that fails part-way (ENOSPC, EFBIG, EIO, …) is cut back to the last
//   whole record it wrote.
// - No failure is swallowed, and nothing is written after one. The first failure of a write,
//   fdatasync or close puts the writer in a failed state: it writes nothing more (records
//   appended later are dropped, so a record is never written after a gap) and failed() /
//   failure() report it — the message names the file, the operation and the OS error. The caller
//   polls failed() to stop its work and checks it after close(), which does not throw.
// - A new file's directory entry is made durable (fsync of the directory) before the first
//   record is written.
// - A record is durable at the first fdatasync after its append: within one flush interval.
//
// Cost: append() takes the mutex and formats into the queue, nothing more — no syscall per
// record. Every file call goes through fileio, so tests can make any of them fail.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "batch/journal.hpp"

namespace flexllm::detail {

class JournalWriter {
 public:
  // Opens (creating) `path` for appending after truncating it to `valid_bytes` (cutting a torn
  // last line) and checking that it ends there on a newline. Throws CheckpointError (reason io)
  // naming the path, what failed and the OS error.
  JournalWriter(const std::string& path, uint64_t valid_bytes,
                std::chrono::milliseconds flush_interval);
  ~JournalWriter();  // close()

  // Queues the record of `item` (formatted straight into the queue); durable at the next flush.
  // Returns where it will be in the file (offset and length; key left empty). Once failed(), the
  // record is dropped.
  RecordRef append(const BatchResultItem& item, const RecordKey& key, std::string_view input);
  // Queues a record line formatted earlier (append_record) for item `index`.
  RecordRef append_line(size_t index, std::string_view line, bool success);
  // Final write, then fdatasync unless `sync` is false (a compaction that fsyncs its own copy
  // follows at once), then close. Never throws: failed() tells whether everything reached the
  // file. Later calls do nothing.
  void close(bool sync = true) noexcept;

  // Whether a write, fdatasync or close failed; cheap enough to poll per item.
  bool failed() const noexcept { return failed_.load(std::memory_order_acquire); }
  // The first failure: "cannot write out.jsonl: No space left on device (write)"; "" when none.
  std::string failure() const;

 private:
  void run();
  // Writes `batch` at the end of the file, then fdatasyncs if `sync` (anything not yet synced),
  // or only starts the writeback. On a failure: cuts the file back and fails().
  void write_out(const std::string& batch, bool sync);
  void fail(std::string message);

  std::string path_;
  int fd_ = -1;
  std::chrono::milliseconds interval_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t end_ = 0;  // file offset after the last queued record (the appending thread's)
  std::string pending_;
  std::string writing_;  // swapped with pending_ at each flush; both keep their capacity
  bool closing_ = false;
  std::thread thread_;
  // Written by the writer thread, then by close() after joining it.
  uint64_t written_end_ = 0;  // file offset after the last record written
  bool unsynced_ = false;     // written since the last fdatasync
  std::atomic<bool> failed_{false};
  std::string failure_;  // under mu_; set once, before failed_
};

}  // namespace flexllm::detail
