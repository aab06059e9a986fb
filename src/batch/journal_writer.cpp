#include "batch/journal_writer.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>

namespace flexllm::detail {
namespace {

// A write also happens whenever this much is queued: memory stays bounded, and the two buffers
// (queue and the one being written) are allocated once at this size.
constexpr size_t kFlushBytes = 1 << 20;

[[noreturn]] void io_error(const std::string& what, const std::string& path) {
  throw InvalidRequestError(Error(ErrorKind::invalid_request,
                                  fmt::format("{} {}: {}", what, path, std::strerror(errno))));
}

}  // namespace

JournalWriter::JournalWriter(const std::string& path, uint64_t valid_bytes,
                             std::chrono::milliseconds flush_interval)
    : path_(path), interval_(flush_interval) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) io_error("cannot write the output file", path);
  struct stat st {};
  if (::fstat(fd_, &st) == 0 && static_cast<uint64_t>(st.st_size) > valid_bytes) {
    if (::ftruncate(fd_, static_cast<off_t>(valid_bytes)) != 0) {
      ::close(fd_);
      io_error("cannot repair the output file", path);
    }
  }
  end_ = static_cast<uint64_t>(::lseek(fd_, 0, SEEK_END));
  pending_.reserve(kFlushBytes + (64 << 10));
  writing_.reserve(kFlushBytes + (64 << 10));
  thread_ = std::thread([this] { run(); });
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
    pending_.append(line);
    pending_.push_back('\n');
    full = pending_.size() >= kFlushBytes;
  }
  end_ += ref.length + 1;
  if (full) cv_.notify_one();
  return ref;
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
    lock.lock();
  }
}

// Group commit: everything queued since the last flush, in one write; then an fdatasync, or only
// the start of the writeback.
void JournalWriter::write_out(const std::string& batch, bool sync) {
  if (batch.empty()) return;
  const off_t start = ::lseek(fd_, 0, SEEK_CUR);
  size_t done = 0;
  while (done < batch.size()) {
    ssize_t n = ::write(fd_, batch.data() + done, batch.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "flexllm: writing %s failed: %s\n", path_.c_str(), std::strerror(errno));
      return;
    }
    done += static_cast<size_t>(n);
  }
  if (sync) {
    ::fdatasync(fd_);
  } else if (start >= 0) {
    ::sync_file_range(fd_, start, static_cast<off_t>(batch.size()), SYNC_FILE_RANGE_WRITE);
  }
}

void JournalWriter::close(bool sync) {
  if (fd_ < 0) return;
  {
    std::lock_guard lock(mu_);
    closing_ = true;
  }
  cv_.notify_all();
  thread_.join();
  write_out(pending_, sync);
  pending_.clear();
  ::close(fd_);
  fd_ = -1;
}

}  // namespace flexllm::detail
