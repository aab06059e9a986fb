#include "batch/journal_writer.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include <fmt/format.h>

#include "core/file_io.hpp"
#include "flexllm/errors.hpp"

namespace flexllm::detail {
namespace {

// A write also happens whenever this much is queued: memory stays bounded, and the two buffers
// (queue and the one being written) are allocated once at this size.
constexpr size_t kFlushBytes = 1 << 20;

// "cannot write out.jsonl: No space left on device (write)". `err` is the errno captured right at
// the failing call: read later, another call may have changed it.
std::string os_failure(std::string_view what, const std::string& path, int err,
                       std::string_view op) {
  return fmt::format("cannot {} {}: {} ({})", what, path, std::strerror(err), op);
}

}  // namespace

JournalWriter::JournalWriter(const std::string& path, uint64_t valid_bytes,
                             std::chrono::milliseconds flush_interval)
    : path_(path), interval_(flush_interval) {
  auto refuse = [&](std::string message) {
    if (fd_ >= 0) fileio::close_file(fd_);
    fd_ = -1;
    throw CheckpointError(CheckpointError::Reason::io, std::move(message), path);
  };

  // Opening without O_CREAT first tells whether this run creates the file, whose directory entry
  // must then be made durable. Read access is for checking the cut below.
  bool created = false;
  fd_ = fileio::open_file(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd_ < 0 && errno == ENOENT) {
    fd_ = fileio::open_file(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    created = fd_ >= 0;
  }
  if (fd_ < 0) {
    const int err = errno;
    refuse(os_failure("open", path, err, "open"));
  }
  if (created) {
    if (const int err = fileio::sync_parent_dir(path))
      refuse(os_failure("sync the directory of", path, err, "fsync"));
  }

  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    const int err = errno;
    refuse(os_failure("stat", path, err, "fstat"));
  }
  const bool cut = static_cast<uint64_t>(st.st_size) > valid_bytes;
  if (cut) {
    // A torn last line: a write cut by a crash. Appending after it would glue the next record to
    // it, so it goes.
    if (fileio::truncate_file(fd_, static_cast<off_t>(valid_bytes)) != 0) {
      const int err = errno;
      refuse(os_failure("cut the torn last line of", path, err, "ftruncate"));
    }
    if (::fstat(fd_, &st) != 0) {
      const int err = errno;
      refuse(os_failure("stat", path, err, "fstat"));
    }
  }
  // Checked whether cut or not: the file may also have changed since it was read.
  if (static_cast<uint64_t>(st.st_size) != valid_bytes) {
    refuse(fmt::format("cannot resume {}: it is {} bytes long where {} were expected{}", path,
                       st.st_size, valid_bytes, cut ? " after cutting its torn last line" : ""));
  }
  if (valid_bytes > 0) {
    char last = 0;
    const ssize_t n = fileio::pread_some(fd_, &last, 1, static_cast<off_t>(valid_bytes - 1));
    if (n < 0) {
      const int err = errno;
      refuse(os_failure("read the end of", path, err, "pread"));
    }
    if (n != 1 || last != '\n')
      refuse(fmt::format("cannot resume {}: it does not end on a whole record at byte {}", path,
                         valid_bytes));
  }
  if (::lseek(fd_, static_cast<off_t>(valid_bytes), SEEK_SET) < 0) {
    const int err = errno;
    refuse(os_failure("seek in", path, err, "lseek"));
  }
  end_ = written_end_ = valid_bytes;
  pending_.reserve(kFlushBytes + (64 << 10));
  writing_.reserve(kFlushBytes + (64 << 10));
  try {
    thread_ = std::thread([this] { run(); });
  } catch (...) {
    fileio::close_file(fd_);
    fd_ = -1;
    throw;
  }
}

JournalWriter::~JournalWriter() {
  close();
}

RecordRef JournalWriter::append(const BatchResultItem& item, const RecordKey& key,
                                std::string_view input) {
  RecordRef ref;
  ref.index = item.index;
  ref.success = item.status != ItemStatus::error;
  ref.offset = end_;
  bool full;
  {
    std::lock_guard lock(mu_);
    if (failed_.load(std::memory_order_relaxed)) return ref;  // dropped: no write after a gap
    const size_t start = pending_.size();
    append_record(pending_, item, key, input);
    ref.length = static_cast<uint32_t>(pending_.size() - start);
    pending_.push_back('\n');
    full = pending_.size() >= kFlushBytes;
  }
  end_ += ref.length + 1;
  if (full) cv_.notify_one();  // memory stays bounded: flush early rather than buffer more
  return ref;
}

RecordRef JournalWriter::append_line(size_t index, std::string_view line, bool success) {
  RecordRef ref;
  ref.index = index;
  ref.success = success;
  ref.offset = end_;
  ref.length = static_cast<uint32_t>(line.size());
  bool full;
  {
    std::lock_guard lock(mu_);
    if (failed_.load(std::memory_order_relaxed)) return ref;
    pending_.append(line);
    pending_.push_back('\n');
    full = pending_.size() >= kFlushBytes;
  }
  end_ += ref.length + 1;
  if (full) cv_.notify_one();
  return ref;
}

std::string JournalWriter::failure() const {
  std::lock_guard lock(mu_);
  return failure_;
}

// Durability runs on a clock: every flush interval what is queued is written and fdatasync'd.
// In between, 1 MiB queued is written at once (memory stays bounded) and their writeback is
// started without waiting (sync_file_range), so the next fdatasync — above all the last one, which
// a caller waits for — finds little left to do.
void JournalWriter::run() {
  std::unique_lock lock(mu_);
  auto next_sync = std::chrono::steady_clock::now() + interval_;
  for (;;) {
    cv_.wait_until(lock, next_sync, [this] { return closing_ || pending_.size() >= kFlushBytes; });
    if (closing_) return;  // close() writes what is left, and decides on the last fsync
    writing_.swap(pending_);
    lock.unlock();
    const bool due = std::chrono::steady_clock::now() >= next_sync;
    write_out(writing_, due);
    if (due) next_sync = std::chrono::steady_clock::now() + interval_;
    writing_.clear();
    if (failed()) return;  // nothing more is written; close() still closes the file
    lock.lock();
  }
}

// Group commit: everything queued since the last flush, in one write; then an fdatasync, or only
// the start of the writeback.
void JournalWriter::write_out(const std::string& batch, bool sync) {
  if (failed()) return;
  if (!batch.empty()) {
    size_t written = 0;
    if (const int err = fileio::write_all(fd_, batch.data(), batch.size(), &written)) {
      // What reached the file may end mid-record: cut it back to the last whole one, so the file
      // still ends on a record and a later run appends after it cleanly.
      const size_t newline = written == 0 ? std::string::npos : batch.rfind('\n', written - 1);
      const uint64_t keep = written_end_ + (newline == std::string::npos ? 0 : newline + 1);
      std::string message = os_failure("write", path_, err, "write");
      if (fileio::truncate_file(fd_, static_cast<off_t>(keep)) != 0) {
        const int cut_err = errno;
        message += fmt::format(
            ", and cutting it back to its last whole record failed: {} (ftruncate): the last "
            "record may be torn; the next run cuts it",
            std::strerror(cut_err));
      }
      fail(std::move(message));
      return;
    }
    if (!sync)
      fileio::start_writeback(fd_, static_cast<off_t>(written_end_),
                              static_cast<off_t>(batch.size()));
    written_end_ += batch.size();
    unsynced_ = true;
  }
  // Also after an empty batch: an early (1 MiB) flush before it was written but not synced.
  if (sync && unsynced_) {
    if (fileio::datasync(fd_) != 0) {
      // After a failed fdatasync Linux may have dropped the dirty pages: what was written cannot
      // be trusted to be on disk, and writing more would only hide that.
      const int err = errno;
      fail(os_failure("sync", path_, err, "fdatasync"));
      return;
    }
    unsynced_ = false;
  }
}

void JournalWriter::fail(std::string message) {
  std::lock_guard lock(mu_);
  if (failed_.load(std::memory_order_relaxed)) return;  // the first failure is the one to report
  failure_ = std::move(message);
  pending_.clear();  // dropped: never written after the failure
  failed_.store(true, std::memory_order_release);
}

void JournalWriter::close(bool sync) noexcept {
  if (fd_ < 0) return;
  {
    std::lock_guard lock(mu_);
    closing_ = true;
  }
  cv_.notify_all();
  thread_.join();
  writing_.swap(pending_);  // the thread is gone: both buffers are ours
  write_out(writing_, sync);
  writing_.clear();
  if (fileio::close_file(fd_) != 0) {
    const int err = errno;
    fail(os_failure("close", path_, err, "close"));
  }
  fd_ = -1;
}

}  // namespace flexllm::detail
