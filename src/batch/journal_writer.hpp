// Appends a batch's records to its output file with group commit: write + fdatasync every flush
// interval, off the caller's and the I/O thread (docs/checkpoint.md, "Writing").
#pragma once

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
  // Opens (creating) `path` for appending after truncating it to `valid_bytes` (repairing a torn
  // last line). Throws InvalidRequestError naming the path when it cannot be written.
  JournalWriter(const std::string& path, uint64_t valid_bytes,
                std::chrono::milliseconds flush_interval);
  ~JournalWriter();  // close()

  // Queues the record of `item` (formatted straight into the queue); durable at the next flush.
  // Returns where it will be in the file (offset and length; key left empty).
  RecordRef append(const BatchResultItem& item, const RecordKey& key, std::string_view input);
  // Queues a record line formatted earlier (append_record) for item `index`.
  RecordRef append_line(size_t index, std::string_view line, bool success);
  // Final write, then fsync unless `sync` is false (a compaction that fsyncs its own copy
  // follows at once).
  void close(bool sync = true);

 private:
  void run();
  void write_out(const std::string& batch, bool sync = true);

  std::string path_;
  int fd_ = -1;
  std::chrono::milliseconds interval_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t end_ = 0;  // file offset after the last queued record
  std::string pending_;
  std::string writing_;  // swapped with pending_ at each flush; both keep their capacity
  bool closing_ = false;
  std::thread thread_;
};

}  // namespace flexllm::detail
