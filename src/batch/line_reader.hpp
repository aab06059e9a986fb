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
  explicit LineReader(const std::string& path);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // The next line holding more than spaces, tabs and carriage returns (without its newline); a
  // view valid until the next call. False at the end.
  bool next(std::string_view& line);
  // The number of the line last returned, 1-based, blank lines counted.
  size_t line_no() const { return line_no_; }

 private:
  bool fill();

  int fd_ = -1;
  bool own_fd_ = false;
  std::vector<char> buf_;
  size_t pos_ = 0, end_ = 0;
  std::string carry_;   // a line split across two blocks, so far
  std::string joined_;  // such a line whole, while it is the current one
  size_t line_no_ = 0;
  bool eof_ = false;
};

}  // namespace flexllm::detail
