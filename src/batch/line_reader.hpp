// The lines of a JSONL input, read in large blocks: a resumed batch passes over hundreds of
// thousands of them without parsing, so a line must cost little more than finding its newline.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace flexllm::detail {

class LineReader {
 public:
  // Opens `path` ("-": standard input). Throws InvalidRequestError naming it when it cannot.
  // A line longer than `max_line` is not kept: next() reports it as too_long().
  explicit LineReader(const std::string& path, size_t max_line = size_t{64} << 20);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // The next line holding more than spaces, tabs and carriage returns (without its newline); a
  // view valid until the next call. False at the end.
  bool next(std::string_view& line);
  // The number of the line last returned, 1-based, blank lines counted.
  size_t line_no() const { return line_no_; }
  // The line last returned is longer than the limit: its view is empty, its bytes were passed
  // over to its newline without being kept.
  bool too_long() const { return too_long_; }
  size_t max_line() const { return max_line_; }
  // What the reader holds in memory: its block and the parts of lines split across blocks.
  size_t held_bytes() const { return buf_.capacity() + carry_.capacity() + joined_.capacity(); }

 private:
  bool fill();

  int fd_ = -1;
  bool own_fd_ = false;
  std::vector<char> buf_;
  size_t pos_ = 0, end_ = 0;
  std::string carry_;   // a line split across two blocks, so far
  std::string joined_;  // such a line whole, while it is the current one
  size_t line_no_ = 0;
  size_t max_line_;
  bool eof_ = false;
  bool too_long_ = false;
  bool skipping_ = false;      // passing over the rest of a line that is too long
  bool skipped_text_ = false;  // that line has more than blanks
};

}  // namespace flexllm::detail
