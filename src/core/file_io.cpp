#include "core/file_io.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <mutex>
#include <vector>

namespace flexllm::detail::fileio {
namespace {

constexpr size_t kOps = static_cast<size_t>(Op::close) + 1;

struct Fault {
  Op op;
  uint64_t call;  // fires at this value of the op's call counter
  int err;        // 0: a short write of `limit` bytes
  size_t limit;
};

// What a call must do instead of (or on top of) its syscall.
struct Verdict {
  int err = 0;
  bool short_write = false;
  size_t limit = 0;
};

// The normal path reads only `armed`: one relaxed load per operation. Everything else is read
// and written under the mutex, on the slow path taken while a fault is armed. Calls are counted
// only then; that is enough, as a fault's target is set from the count at the time it is armed.
struct FaultState {
  std::atomic<bool> armed{false};
  std::mutex mu;
  std::array<uint64_t, kOps> calls{};
  std::vector<Fault> faults;
};

constinit FaultState g_faults;  // constant-initialised: no guard on the normal path

FaultState& faults() {
  return g_faults;
}

Verdict check_slow(Op op) {
  FaultState& s = faults();
  std::lock_guard lock(s.mu);
  const uint64_t call = ++s.calls[static_cast<size_t>(op)];
  Verdict v;
  auto fired = [&](const Fault& f) {
    if (f.op != op || f.call != call) return false;
    if (f.err != 0) {
      v.err = f.err;
    } else {
      v.short_write = true;
      v.limit = f.limit;
    }
    return true;
  };
  s.faults.erase(std::remove_if(s.faults.begin(), s.faults.end(), fired), s.faults.end());
  if (s.faults.empty()) s.armed.store(false, std::memory_order_relaxed);
  return v;
}

inline Verdict check(Op op) {
  if (!faults().armed.load(std::memory_order_relaxed)) return {};
  return check_slow(op);
}

void arm(Fault fault, uint64_t nth) {
  if (nth == 0) return;
  FaultState& s = faults();
  std::lock_guard lock(s.mu);
  fault.call = s.calls[static_cast<size_t>(fault.op)] + nth;
  s.faults.push_back(fault);
  s.armed.store(true, std::memory_order_relaxed);
}

// A call that fails without reaching the kernel, as the real one would: -1 and errno.
int injected(int err) {
  errno = err;
  return -1;
}

// Consecutive writes that make no progress before write_all gives up. A regular file never does
// this (the kernel returns an error instead), so this only bounds the loop.
constexpr int kMaxStalledWrites = 8;

}  // namespace

const char* to_string(Op op) noexcept {
  switch (op) {
    case Op::open: return "open";
    case Op::read: return "read";
    case Op::write: return "write";
    case Op::pread: return "pread";
    case Op::fdatasync: return "fdatasync";
    case Op::fsync: return "fsync";
    case Op::ftruncate: return "ftruncate";
    case Op::rename: return "rename";
    case Op::close: return "close";
  }
  return "?";
}

void inject(Op op, uint64_t nth, int err) {
  if (err == 0) return;  // 0 means "short write" in Fault; a fault must fail
  arm(Fault{op, 0, err, 0}, nth);
}

void inject_short_write(uint64_t nth, size_t bytes) {
  arm(Fault{Op::write, 0, 0, bytes}, nth);
}

void clear_faults() {
  FaultState& s = faults();
  std::lock_guard lock(s.mu);
  s.faults.clear();
  s.calls.fill(0);
  s.armed.store(false, std::memory_order_relaxed);
}

int open_file(const char* path, int flags, mode_t mode) {
  if (Verdict v = check(Op::open); v.err) return injected(v.err);
  int fd;
  do fd = ::open(path, flags, mode);
  while (fd < 0 && errno == EINTR);
  return fd;
}

ssize_t read_some(int fd, void* data, size_t size) {
  if (Verdict v = check(Op::read); v.err) return injected(v.err);
  ssize_t n;
  do n = ::read(fd, data, size);
  while (n < 0 && errno == EINTR);
  return n;
}

ssize_t write_some(int fd, const void* data, size_t size) {
  const Verdict v = check(Op::write);
  if (v.err) return injected(v.err);
  if (v.short_write) {
    size = std::min(size, v.limit);
    if (size == 0) return 0;
  }
  ssize_t n;
  do n = ::write(fd, data, size);
  while (n < 0 && errno == EINTR);
  return n;
}

int write_all(int fd, const void* data, size_t size, size_t* written) {
  const char* p = static_cast<const char*>(data);
  size_t done = 0;
  int stalled = 0;
  while (done < size) {
    const ssize_t n = write_some(fd, p + done, size - done);
    if (n < 0) {
      const int err = errno;
      if (written) *written = done;
      return err;
    }
    if (n == 0 && ++stalled > kMaxStalledWrites) {
      if (written) *written = done;
      return EIO;
    }
    if (n > 0) stalled = 0;
    done += static_cast<size_t>(n);
  }
  if (written) *written = done;
  return 0;
}

ssize_t pread_some(int fd, void* data, size_t size, off_t offset) {
  if (Verdict v = check(Op::pread); v.err) return injected(v.err);
  ssize_t n;
  do n = ::pread(fd, data, size, offset);
  while (n < 0 && errno == EINTR);
  return n;
}

int datasync(int fd) {
  if (Verdict v = check(Op::fdatasync); v.err) return injected(v.err);
  int rc;
  do rc = ::fdatasync(fd);
  while (rc < 0 && errno == EINTR);
  return rc;
}

int full_sync(int fd) {
  if (Verdict v = check(Op::fsync); v.err) return injected(v.err);
  int rc;
  do rc = ::fsync(fd);
  while (rc < 0 && errno == EINTR);
  return rc;
}

int truncate_file(int fd, off_t size) {
  if (Verdict v = check(Op::ftruncate); v.err) return injected(v.err);
  int rc;
  do rc = ::ftruncate(fd, size);
  while (rc < 0 && errno == EINTR);
  return rc;
}

int rename_file(const char* from, const char* to) {
  if (Verdict v = check(Op::rename); v.err) return injected(v.err);
  int rc;
  do rc = ::rename(from, to);
  while (rc < 0 && errno == EINTR);
  return rc;
}

int close_file(int fd) {
  if (Verdict v = check(Op::close); v.err) {
    ::close(fd);  // the descriptor is released whatever close reports, as with the real call
    return injected(v.err);
  }
  return ::close(fd);
}

void start_writeback(int fd, off_t offset, off_t size) noexcept {
  ::sync_file_range(fd, offset, size, SYNC_FILE_RANGE_WRITE);
}

int sync_parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  const int fd = open_file(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  const int err = full_sync(fd) == 0 ? 0 : errno;
  // Closing a read-only directory descriptor cannot lose anything: its result does not matter.
  close_file(fd);
  return err;
}

}  // namespace flexllm::detail::fileio
