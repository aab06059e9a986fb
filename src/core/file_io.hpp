// The file operations of the checkpoint code, in one place so tests can make any of them fail:
// inject() arms a fault for the nth call of an operation, and the checkpoint code's handling of
// ENOSPC, EIO, short writes … is tested without a full disk or a failing drive.
//
// The operations behave like the syscalls they wrap, except that EINTR is retried (close is the
// exception: Linux releases the descriptor even when close returns EINTR, so it is not retried).
// A failure returns -1 with errno set unless the comment says otherwise; an injected fault sets
// errno to the injected value. Returning errno values rather than throwing keeps them usable from
// threads that must not throw (the journal's writer thread, destructors).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace flexllm::detail::fileio {

enum class Op { open, read, write, pread, fdatasync, fsync, ftruncate, rename, close };
const char* to_string(Op op) noexcept;  // the syscall's name: "write", "fdatasync", …

// Test hooks. Thread-safe. Each fault counts the calls of its operation from the moment it is
// armed: inject(Op::write, 3, ENOSPC) fails exactly the 3rd write made after the call, once.
// Faults armed for the same call: an error wins over a short write.
void inject(Op op, uint64_t nth, int err);  // nth is 1-based; 0 arms nothing
// The nth write (1-based) writes at most `bytes` (0 is allowed: a write that makes no progress).
void inject_short_write(uint64_t nth, size_t bytes);
void clear_faults();  // disarms every fault

int open_file(const char* path, int flags, mode_t mode = 0);
ssize_t read_some(int fd, void* data, size_t size);
ssize_t write_some(int fd, const void* data, size_t size);
// Writes all of `data`, completing short writes. Returns 0, or the errno of the call that failed,
// with *written = the bytes that did reach the file (counted before the failure).
int write_all(int fd, const void* data, size_t size, size_t* written);
ssize_t pread_some(int fd, void* data, size_t size, off_t offset);
int datasync(int fd);                   // fdatasync
int full_sync(int fd);                  // fsync
int truncate_file(int fd, off_t size);  // ftruncate
int rename_file(const char* from, const char* to);
int close_file(int fd);
// Starts the writeback of a range without waiting for it (sync_file_range). Advisory: errors are
// ignored — the next datasync() reports any that matter — and it is not a fault point.
void start_writeback(int fd, off_t offset, off_t size) noexcept;

// fsync of the directory holding `path` ("." for a bare name), so that a file created or renamed
// there survives a crash. Returns 0 or the errno of the open or fsync that failed.
int sync_parent_dir(const std::string& path);

}  // namespace flexllm::detail::fileio
