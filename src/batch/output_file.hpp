// Ownership of a batch's output file (docs/checkpoint.md): one writer at a time through a lock
// file beside it, and only a missing, empty or flexllm checkpoint file is ever written.
#pragma once

#include <string>
#include <string_view>

#include "flexllm/errors.hpp"

namespace flexllm::detail {

// Is this the beginning of a file flexllm may write to? True when its first line is a checkpoint
// record, or when the file holds nothing but the start of one (a first write cut short). Empty
// text is not a checkpoint (an empty file is writable for another reason).
bool looks_like_checkpoint(std::string_view head);

// The directory holding `path` ("." for a bare name).
std::string parent_directory(const std::string& path);

class OutputFile {
 public:
  // Takes the output at `path` for this run: resolves a symbolic link to its target, locks
  // TARGET.lock (CheckpointError locked, naming the holder's pid), and checks the file: missing,
  // empty or a checkpoint — else CheckpointError not_a_checkpoint, the file untouched. With
  // `overwrite`, an existing non-empty file is first renamed to TARGET.bak (or .bak.N: a backup is
  // never replaced) and the run starts afresh.
  OutputFile(const std::string& path, bool overwrite);
  ~OutputFile();  // releases the lock (the lock file is removed)
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  const std::string& path() const { return path_; }    // where the records go (links resolved)
  const std::string& shown() const { return shown_; }  // the path as given, for messages
  // Set when `overwrite` moved an existing file away: where it went.
  const std::string& backup() const { return backup_; }

 private:
  void lock();
  void check(bool overwrite);

  std::string shown_;
  std::string path_;
  std::string lock_path_;
  std::string backup_;
  int lock_fd_ = -1;
};

}  // namespace flexllm::detail
