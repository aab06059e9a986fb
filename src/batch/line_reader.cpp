#include "batch/line_reader.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "flexllm/errors.hpp"

namespace flexllm::detail {
namespace {

constexpr size_t kBlock = 256 << 10;

bool blank(std::string_view line) {
  return line.find_first_not_of(" \t\r") == std::string_view::npos;
}

}  // namespace

LineReader::LineReader(const std::string& path, size_t max_line) : max_line_(max_line) {
  if (path == "-") {
    fd_ = STDIN_FILENO;
  } else {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0)
      throw InvalidRequestError(
          Error(ErrorKind::invalid_request,
                fmt::format("cannot open {}: {}", path, std::strerror(errno))));
    own_fd_ = true;
  }
  buf_.resize(kBlock);
}

LineReader::~LineReader() {
  if (own_fd_) ::close(fd_);
}

bool LineReader::fill() {
  if (eof_) return false;
  for (;;) {
    ssize_t n = ::read(fd_, buf_.data(), buf_.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {  // an unreadable rest ends the input like its end does
      eof_ = true;
      return false;
    }
    pos_ = 0;
    end_ = static_cast<size_t>(n);
    return true;
  }
}

bool LineReader::next(std::string_view& line) {
  too_long_ = false;
  for (;;) {
    if (pos_ >= end_ && !fill()) {
      if (skipping_) {  // a last line that is too long, without its newline
        ++line_no_;
        skipping_ = false;
        if (!skipped_text_) return false;
        too_long_ = true;
        line = {};
        return true;
      }
      if (carry_.empty()) return false;
      ++line_no_;  // a last line without its newline
      joined_ = std::move(carry_);
      carry_.clear();
      if (blank(joined_)) return false;
      line = joined_;
      return true;
    }
    const char* start = buf_.data() + pos_;
    const void* nl = std::memchr(start, '\n', end_ - pos_);
    const size_t len = nl ? static_cast<size_t>(static_cast<const char*>(nl) - start) : end_ - pos_;
    if (skipping_) {
      // Passing over a line that is too long: only whether it holds more than blanks is kept.
      skipped_text_ = skipped_text_ || !blank(std::string_view(start, len));
      pos_ += nl ? len + 1 : len;
      if (!nl) continue;
      ++line_no_;
      skipping_ = false;
      if (!skipped_text_) continue;  // blank after all, like count_nonblank_lines says
      too_long_ = true;
      line = {};
      return true;
    }
    if (carry_.size() + len > max_line_) {
      // Over the limit: what came of it so far is let go, and the rest is passed over above.
      skipping_ = true;
      skipped_text_ = !blank(carry_);
      std::string().swap(carry_);
      continue;
    }
    if (!nl) {
      carry_.append(start, len);
      pos_ = end_;
      continue;
    }
    pos_ += len + 1;
    ++line_no_;
    if (!carry_.empty()) {
      carry_.append(start, len);
      // Moved out so the next call starts clean; the view points at the moved-to string.
      joined_ = std::move(carry_);
      carry_.clear();
      if (blank(joined_)) continue;
      line = joined_;
      return true;
    }
    line = std::string_view(start, len);
    if (!blank(line)) return true;
  }
}

}  // namespace flexllm::detail
