#include "transport/sse.hpp"

#include <cstring>

namespace flexllm::detail {

namespace {

constexpr char kBom[] = "\xEF\xBB\xBF";

const char* find_char(const char* p, const char* end, char c) noexcept {
  return static_cast<const char*>(std::memchr(p, c, static_cast<size_t>(end - p)));
}

// A line may be as long as "data: " and the event cap (a data line whose value is exactly the
// cap is fine). The line cap holds wherever the line lies, in one chunk or carried over several:
// whether a stream fails must not depend on how the network cut it (found by fuzzing: a long
// comment passed in one read and failed in two).
constexpr size_t kLineSlack = 6;

size_t line_cap(size_t max_event_bytes) noexcept {
  return max_event_bytes > SIZE_MAX - kLineSlack ? SIZE_MAX : max_event_bytes + kLineSlack;
}

}  // namespace

SseDecoder::Status SseDecoder::feed_impl(std::string_view bytes, Sink sink, void* ctx) {
  if (status_ != Status::ok) return status_;

  // The stream may start with a UTF-8 BOM, which is not content (it can arrive split too).
  while (bom_matched_ < 3 && !bytes.empty()) {
    if (bytes[0] == kBom[bom_matched_]) {
      ++bom_matched_;
      bytes.remove_prefix(1);
      continue;
    }
    const unsigned matched = bom_matched_;
    bom_matched_ = 3;
    // Not a BOM after all: the bytes taken for one were content.
    if (matched > 0 && feed_impl(std::string_view(kBom, matched), sink, ctx) != Status::ok)
      return status_;
  }

  const char* p = bytes.data();
  const char* const end = p + bytes.size();
  if (skip_lf_ && p != end) {
    skip_lf_ = false;
    if (*p == '\n') ++p;  // the LF of a CRLF split across two chunks
  }
  // Position of the next LF at or after p (end when none); kept across lines so that a stream
  // framed with bare CRs does not rescan the chunk for an LF on every line.
  const char* lf = nullptr;
  while (p != end) {
    if (lf == nullptr || lf < p) {
      lf = find_char(p, end, '\n');
      if (lf == nullptr) lf = end;
    }
    const char* eol;
    const char* next;
    if (const char* cr = find_char(p, lf, '\r')) {
      eol = cr;
      next = cr + 1;
      if (next == lf && lf != end) {
        next = lf + 1;  // CRLF
      } else if (next == end) {
        skip_lf_ = true;  // the LF may be the next chunk's first byte
      }
    } else if (lf != end) {
      eol = lf;
      next = lf + 1;
    } else {
      // No terminator in the rest of the chunk: keep the partial line for the next one.
      const size_t rest = static_cast<size_t>(end - p);
      if (line_.size() + rest > line_cap(max_event_bytes_)) {
        status_ = Status::too_large;
        return status_;
      }
      line_.append(p, rest);
      break;
    }

    bool go;
    const size_t n = static_cast<size_t>(eol - p);
    if (line_.size() + n > line_cap(max_event_bytes_)) {
      status_ = Status::too_large;
      return status_;
    }
    if (line_.empty()) {
      go = on_line(std::string_view(p, n), true, sink, ctx);
    } else {
      line_.append(p, n);
      go = on_line(line_, false, sink, ctx);
      line_.clear();
    }
    if (!go) return status_;
    p = next;
  }
  // The caller's bytes go away after this call: an event still open must own its data.
  if (data_in_view_) own_data();
  return status_;
}

bool SseDecoder::on_line(std::string_view line, bool in_input, Sink sink, void* ctx) {
  if (line.empty()) {
    // Dispatch. An event without data (e.g. only `event:` or `id:`) is dropped, per the spec.
    if (has_data_) {
      const SseEvent ev{event_, data_in_view_ ? data_view_ : std::string_view(data_)};
      const bool go = sink(ctx, ev);
      data_.clear();
      data_in_view_ = false;
      has_data_ = false;
      event_.clear();
      if (!go) {
        status_ = Status::stopped;
        return false;
      }
    } else {
      event_.clear();
    }
    return true;
  }
  // The hot path: "data: {…}".
  if (line.size() >= 5 && std::memcmp(line.data(), "data:", 5) == 0) {
    std::string_view value = line.substr(5);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
    return append_data(value, in_input);
  }
  if (line[0] == ':') return true;  // a comment (keep-alive)

  std::string_view field = line;
  std::string_view value;
  if (size_t colon = line.find(':'); colon != std::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    return append_data(value, in_input);  // "data" without a colon: an empty data line
  } else if (field == "event") {
    event_.assign(value);
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) last_event_id_.assign(value);
  } else if (field == "retry") {
    // At most 15 digits, and only those are multiplied: a longer value is ignored, not
    // overflowed (found by fuzzing).
    long long v = 0;
    bool digits = !value.empty() && value.size() <= 15;
    for (size_t i = 0; digits && i < value.size(); ++i) {
      if (value[i] < '0' || value[i] > '9') {
        digits = false;
      } else {
        v = v * 10 + (value[i] - '0');
      }
    }
    if (digits) retry_ms_ = v;
  }
  // Unknown fields are ignored, per the spec.
  return true;
}

bool SseDecoder::append_data(std::string_view value, bool in_input) {
  if (!has_data_) {
    if (value.size() > max_event_bytes_) {
      status_ = Status::too_large;
      return false;
    }
    has_data_ = true;
    if (in_input) {
      data_view_ = value;  // no copy while the event lies in the caller's chunk
      data_in_view_ = true;
    } else {
      data_.assign(value);
    }
    return true;
  }
  if (data_in_view_) own_data();
  if (data_.size() + 1 + value.size() > max_event_bytes_) {
    status_ = Status::too_large;
    return false;
  }
  data_.push_back('\n');
  data_.append(value);
  return true;
}

void SseDecoder::own_data() {
  data_.assign(data_view_);
  data_view_ = {};
  data_in_view_ = false;
}

}  // namespace flexllm::detail
