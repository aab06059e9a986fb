#include "batch/output_file.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>
#include <simdjson.h>

#include "batch/journal.hpp"
#include "core/file_io.hpp"

namespace flexllm::detail {
namespace {

using Reason = CheckpointError::Reason;

[[noreturn]] void io_error(const std::string& what, const std::string& path, int err) {
  throw CheckpointError(Reason::io, fmt::format("{} {}: {}", what, path, std::strerror(err)), path);
}

// Does `text` match the start of `pattern` as far as it goes? Advances both.
bool prefix_of(std::string_view& text, std::string_view pattern) {
  const size_t n = std::min(text.size(), pattern.size());
  if (text.substr(0, n) != pattern.substr(0, n)) return false;
  text.remove_prefix(n);
  return true;
}

// The start of a record as format_record() writes it, up to its key: a first write cut short
// leaves some prefix of this.
bool record_prefix(std::string_view text) {
  if (!prefix_of(text, R"({"index":)")) return false;
  if (text.empty()) return true;
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return false;
  text.remove_prefix(digits);
  if (text.empty()) return true;
  if (!prefix_of(text, R"(,"status":")")) return false;
  if (text.empty()) return true;
  std::string_view status = text.starts_with('s') ? "success" : "error";
  if (!prefix_of(text, status)) return false;
  if (!prefix_of(text, R"(","key":")")) return false;
  size_t hex = 0;
  while (hex < text.size() && hex < 32 &&
         ((text[hex] >= '0' && text[hex] <= '9') || (text[hex] >= 'a' && text[hex] <= 'f')))
    ++hex;
  if (hex < std::min<size_t>(32, text.size())) return false;
  text.remove_prefix(hex);
  return text.empty() || text.front() == '"';
}

// The file's first line, or its first `limit` bytes when the line is longer (no newline then).
std::string first_line(int fd, size_t limit, bool& complete) {
  std::string head;
  complete = false;
  char buf[64 << 10];
  while (head.size() < limit) {
    ssize_t n = fileio::pread_some(fd, buf, sizeof buf, static_cast<off_t>(head.size()));
    if (n <= 0) break;
    std::string_view got(buf, static_cast<size_t>(n));
    size_t nl = got.find('\n');
    if (nl != std::string_view::npos) {
      head.append(got.substr(0, nl));
      complete = true;
      return head;
    }
    head.append(got);
  }
  return head;
}

// rename(from, to) unless `to` exists (then EEXIST).
int rename_no_replace(const std::string& from, const std::string& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS) return errno;
  // A file system without RENAME_NOREPLACE: a hard link fails on an existing name just the same.
  if (::link(from.c_str(), to.c_str()) != 0) return errno;
  return ::unlink(from.c_str()) == 0 ? 0 : errno;
}

}  // namespace

std::string parent_directory(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

bool looks_like_checkpoint(std::string_view head) {
  if (head.empty()) return false;
  const size_t nl = head.find('\n');
  if (nl == std::string_view::npos) return record_prefix(head);
  RecordRef ref;
  simdjson::dom::parser parser;
  return parse_record_line(head.substr(0, nl), ref, parser);
}

OutputFile::OutputFile(const std::string& path, bool overwrite) : shown_(path), path_(path) {
  // A link is followed: the records go where it points, and it stays a link (a rename over the
  // link itself would replace it with a plain file).
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
    char* real = ::realpath(path.c_str(), nullptr);
    if (real) {
      path_ = real;
      std::free(real);
    } else if (errno != ENOENT) {
      io_error("cannot follow the link", path, errno);
    }
  }
  lock_path_ = path_ + ".lock";
  lock();
  try {
    check(overwrite);
  } catch (...) {
    ::unlink(lock_path_.c_str());
    ::close(lock_fd_);
    lock_fd_ = -1;
    throw;
  }
}

OutputFile::~OutputFile() {
  if (lock_fd_ < 0) return;
  // Removed while still held: a run that opens it meanwhile finds, once it has the lock, that its
  // file is no longer the one at this path, and starts over (see lock()).
  ::unlink(lock_path_.c_str());
  ::close(lock_fd_);
}

void OutputFile::lock() {
  for (int tries = 0; tries < 100; ++tries) {
    bool created = true;
    int fd = ::open(lock_path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno == EEXIST) {
      created = false;
      fd = ::open(lock_path_.c_str(), O_RDWR | O_CLOEXEC);
      if (fd < 0 && errno == ENOENT) continue;  // removed in between
    }
    if (fd < 0)
      io_error(fmt::format("cannot write {}: cannot create its lock file", shown_), lock_path_,
               errno);
    // An existing lock file must be one of ours: a process id and a newline (or empty, when its
    // creator was killed before writing one).
    char text[32] = {};
    ssize_t n = ::pread(fd, text, sizeof text - 1, 0);
    long holder = std::atol(text);
    if (!created && n > 0) {
      std::string_view t(text, static_cast<size_t>(n));
      const bool ours = t.find_first_not_of("0123456789\n") == std::string_view::npos &&
                        t.find('\n') == t.size() - 1 && t.size() > 1;
      if (!ours) {
        ::close(fd);
        throw CheckpointError(
            Reason::not_a_checkpoint,
            fmt::format("{} exists and is not a flexllm lock file: left unchanged; remove it, or "
                        "choose another output file",
                        lock_path_),
            lock_path_);
      }
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int err = errno;
      ::close(fd);
      if (err != EWOULDBLOCK) io_error("cannot lock", lock_path_, err);
      throw CheckpointError(
          Reason::locked,
          holder > 0
              ? fmt::format("{} is being written by another flexllm batch (pid {}); wait for it "
                            "to end or stop it (kill {}), or choose another output file",
                            shown_, holder, holder)
              : fmt::format("{} is being written by another flexllm batch; wait for it to end, "
                            "or choose another output file",
                            shown_),
          shown_);
    }
    // The holder before us may have removed the file after we opened it: then ours is no longer
    // the lock file at that path, and another run could lock the new one. Start over.
    struct stat mine {
    }, now{};
    if (::fstat(fd, &mine) != 0 || ::stat(lock_path_.c_str(), &now) != 0 ||
        mine.st_ino != now.st_ino || mine.st_dev != now.st_dev) {
      ::close(fd);
      continue;
    }
    const std::string pid = fmt::format("{}\n", ::getpid());
    if (::ftruncate(fd, 0) != 0 ||
        ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
      int err = errno;
      ::close(fd);
      io_error("cannot write the lock file", lock_path_, err);
    }
    lock_fd_ = fd;
    return;
  }
  throw CheckpointError(Reason::io,
                        fmt::format("cannot lock {}: its lock file keeps being replaced", shown_),
                        shown_);
}

void OutputFile::check(bool overwrite) {
  int fd = fileio::open_file(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return;  // a new file
    io_error("cannot read the output file", shown_, errno);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw CheckpointError(
        Reason::not_a_checkpoint,
        fmt::format("{} is not a regular file; choose another output file", shown_), shown_);
  }
  if (st.st_size == 0) {
    ::close(fd);
    return;
  }
  bool complete = false;
  std::string head = first_line(fd, 1 << 20, complete);
  ::close(fd);
  if (overwrite) {
    for (int n = 0;; ++n) {
      std::string bak = n == 0 ? path_ + ".bak" : fmt::format("{}.bak.{}", path_, n);
      int err = rename_no_replace(path_, bak);
      if (err == EEXIST) continue;
      if (err) io_error(fmt::format("cannot move the old output to {}:", bak), shown_, err);
      backup_ = bak;
      break;
    }
    if (int err = fileio::sync_parent_dir(path_))
      io_error("cannot sync the directory of", shown_, err);
    return;
  }
  // A line longer than what was read: its start is all there is to check.
  const bool ours = complete ? looks_like_checkpoint(head + '\n') : record_prefix(head);
  if (!ours)
    throw CheckpointError(
        Reason::not_a_checkpoint,
        fmt::format(
            "{} exists and is not a flexllm checkpoint (its first line is not a result "
            "record): left unchanged; choose another output file, or start afresh with "
            "BatchOptions::overwrite (flexllm batch --overwrite), which keeps it as {}.bak)",
            shown_, shown_),
        shown_);
}

}  // namespace flexllm::detail
