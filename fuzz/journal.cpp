// The checkpoint journal: record lines (the fast prefix reader and the JSON fallback), the scan
// of a whole file (line accounting, offsets, the torn tail), reading records back; and the round
// trip: a record written by format_record() scans and reads back as what was written.
#include <sys/mman.h>
#include <unistd.h>

#include <simdjson.h>

#include "batch/journal.hpp"
#include "core/hex.hpp"
#include "fuzz.hpp"

namespace flexllm::fuzz {
namespace {

using detail::RecordKey;
using detail::RecordRef;

// A file in memory (memfd), rewritten for each input: scan_journal() opens it by path.
class MemFile {
 public:
  MemFile() : fd_(::memfd_create("flexllm-fuzz-journal", MFD_CLOEXEC)) {
    FLEXLLM_FUZZ_CHECK(fd_ >= 0, "memfd_create failed");
  }
  ~MemFile() { ::close(fd_); }
  void write(std::string_view bytes) {
    FLEXLLM_FUZZ_CHECK(::ftruncate(fd_, 0) == 0, "ftruncate");
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::pwrite(fd_, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
      FLEXLLM_FUZZ_CHECK(n > 0, "pwrite");
      done += static_cast<size_t>(n);
    }
  }
  int fd() const { return fd_; }
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_;
};

MemFile& file() {
  static MemFile f;
  return f;
}

uint32_t clamp32(int64_t v) {
  return static_cast<uint32_t>(std::clamp<int64_t>(v, 0, UINT32_MAX));
}

// When the line is a JSON record (what the reader's fallback accepts), the reader agrees with it.
void check_against_json(std::string_view line, bool accepted, const RecordRef& ref,
                        simdjson::dom::parser& parser) {
  simdjson::padded_string padded(line);
  simdjson::dom::element doc;
  if (parser.parse(padded).get(doc)) return;
  uint64_t index = 0;
  std::string_view status, key;
  RecordKey k{};
  if (doc["index"].get_uint64().get(index) || doc["status"].get_string().get(status) ||
      doc["key"].get_string().get(key) || !detail::parse_hex(key, k) ||
      (status != "success" && status != "error"))
    return;
  FLEXLLM_FUZZ_CHECK(accepted, "a JSON record refused: {:?}", line);
  FLEXLLM_FUZZ_CHECK(ref.index == index && ref.key == k && ref.success == (status == "success"),
                     "read as index {} success {}, JSON says {} {:?}: {:?}", ref.index, ref.success,
                     index, status, line);
}

void scan(std::string_view input, simdjson::dom::parser& parser) {
  MemFile& f = file();
  f.write(input);
  std::vector<RecordRef> refs;
  std::vector<std::string> warnings;
  auto result = detail::scan_journal(
      f.path(), [&](const std::string& w) { warnings.push_back(w); },
      [&](const RecordRef& ref) { refs.push_back(ref); });
  FLEXLLM_FUZZ_CHECK(result.has_value(), "an existing file not found");
  const detail::JournalScan& s = *result;
  const size_t last_nl = input.rfind('\n');
  const uint64_t valid = last_nl == std::string_view::npos ? 0 : last_nl + 1;
  FLEXLLM_FUZZ_CHECK(s.valid_bytes == valid, "valid bytes {}, the last newline ends at {}",
                     s.valid_bytes, valid);
  FLEXLLM_FUZZ_CHECK(s.torn_tail == (valid < input.size()), "torn tail {} with {} bytes after",
                     s.torn_tail, input.size() - valid);
  uint64_t lines = 0, empty = 0;
  for (size_t at = 0; at < valid;) {
    size_t nl = input.find('\n', at);
    ++lines;
    if (nl == at) ++empty;
    at = nl + 1;
  }
  FLEXLLM_FUZZ_CHECK(s.records + s.malformed + empty == lines,
                     "{} records + {} malformed + {} empty lines != {} lines", s.records,
                     s.malformed, empty, lines);
  FLEXLLM_FUZZ_CHECK(refs.size() == s.records, "{} refs for {} records", refs.size(), s.records);
  FLEXLLM_FUZZ_CHECK(warnings.size() == s.malformed + (s.torn_tail ? 1 : 0),
                     "{} warnings for {} malformed lines", warnings.size(), s.malformed);
  for (const std::string& w : warnings)
    FLEXLLM_FUZZ_CHECK(w.starts_with(f.path() + ":"), "a warning without the file: {:?}", w);
  uint64_t max_index = 0;
  bool in_order = s.malformed == 0 && empty == 0 && !s.torn_tail;
  for (size_t i = 0; i < refs.size(); ++i) {
    const RecordRef& ref = refs[i];
    FLEXLLM_FUZZ_CHECK(ref.offset + ref.length < valid && input[ref.offset + ref.length] == '\n' &&
                           (ref.offset == 0 || input[ref.offset - 1] == '\n'),
                       "record {} at {}+{} is not a line", i, ref.offset, ref.length);
    RecordRef again;
    FLEXLLM_FUZZ_CHECK(
        detail::parse_record_line(input.substr(ref.offset, ref.length), again, parser) &&
            again.index == ref.index && again.key == ref.key && again.success == ref.success,
        "record {} reads differently alone", i);
    if (i > 0 && ref.index <= refs[i - 1].index) in_order = false;
    max_index = std::max(max_index, ref.index);
    if (auto item = detail::read_record(f.fd(), ref))
      FLEXLLM_FUZZ_CHECK(item->index == ref.index && item->status == ItemStatus::restored,
                         "record {} read back as index {}", i, item->index);
  }
  FLEXLLM_FUZZ_CHECK(s.in_order == in_order, "in_order {}, expected {}", s.in_order, in_order);
  FLEXLLM_FUZZ_CHECK(s.max_index == (refs.empty() ? std::nullopt : std::optional(max_index)),
                     "max index {}", s.max_index.value_or(0));
}

// A record built from the input: written, scanned, read back.
void round_trip(std::string_view input, simdjson::dom::parser& parser) {
  Bytes in(input);
  BatchResultItem item;
  const uint64_t index = in.u64();
  item.index = index >> (in.u8() % 64);  // small indices too
  item.status = in.flag() ? ItemStatus::success : ItemStatus::error;
  RecordKey key{};
  in.fill(key);
  ChatResult r;
  if (in.flag()) {
    Usage& u = r.usage.emplace();
    u.prompt_tokens = static_cast<int64_t>(in.u64() >> (24 + in.u8() % 40));
    u.completion_tokens = static_cast<int64_t>(in.u64() >> (24 + in.u8() % 40));
    u.total_tokens = static_cast<int64_t>(in.u64() >> (24 + in.u8() % 40));
    if (in.flag()) u.reasoning_tokens = static_cast<int64_t>(in.u64() >> 40);
  }
  r.content = in.str();
  if (in.flag()) r.reasoning = in.str();
  for (int n = in.u8() % 3; n > 0; --n)
    r.tool_calls.push_back({in.str(), "function", in.str(), in.str()});
  r.finish_reason = in.str();
  r.attempts = in.u8();
  if (item.status == ItemStatus::success) {
    item.result = r;
  } else {
    item.error = std::make_shared<Error>(ErrorKind::http, in.str());
    item.attempts = in.u8();
  }
  const std::string saved_input = in.flag() ? R"([{"role":"user","content":"hi"}])" : "";
  const std::string line = detail::format_record(item, key, saved_input);

  RecordRef ref;
  FLEXLLM_FUZZ_CHECK(detail::parse_record_line(line, ref, parser), "a written record refused: {:?}",
                     line);
  const bool success = item.status == ItemStatus::success;
  FLEXLLM_FUZZ_CHECK(ref.index == item.index && ref.key == key && ref.success == success,
                     "written index {} success {}, read {} {}", item.index, success, ref.index,
                     ref.success);
  if (success && r.usage) {
    FLEXLLM_FUZZ_CHECK(ref.prompt_tokens == clamp32(r.usage->prompt_tokens) &&
                           ref.completion_tokens == clamp32(r.usage->completion_tokens) &&
                           ref.total_tokens == clamp32(r.usage->total_tokens),
                       "usage {} {} {} read as {} {} {}", r.usage->prompt_tokens,
                       r.usage->completion_tokens, r.usage->total_tokens, ref.prompt_tokens,
                       ref.completion_tokens, ref.total_tokens);
  } else {
    FLEXLLM_FUZZ_CHECK(
        ref.prompt_tokens == 0 && ref.completion_tokens == 0 && ref.total_tokens == 0,
        "usage read from a record without one");
  }

  // Text that is not UTF-8 cannot come back through JSON; the rest must come back as written.
  // Each text alone: pieces that are not UTF-8 may join into UTF-8.
  std::vector<std::string_view> texts = {r.content, r.finish_reason};
  if (r.reasoning) texts.push_back(*r.reasoning);
  for (const ToolCall& c : r.tool_calls) texts.insert(texts.end(), {c.id, c.name, c.arguments});
  for (std::string_view t : texts)
    if (!simdjson::validate_utf8(t.data(), t.size())) return;
  if (!success) return;
  MemFile& f = file();
  f.write(line + "\n");
  ref.offset = 0;
  ref.length = static_cast<uint32_t>(line.size());
  auto back = detail::read_record(f.fd(), ref);
  FLEXLLM_FUZZ_CHECK(back && back->result, "a written record cannot be read back: {:?}", line);
  const ChatResult& b = *back->result;
  std::optional<std::string> want_reasoning;
  if (r.reasoning && !r.reasoning->empty()) want_reasoning = r.reasoning;
  FLEXLLM_FUZZ_CHECK(b.content == r.content && b.reasoning == want_reasoning &&
                         b.finish_reason == r.finish_reason && b.tool_calls == r.tool_calls &&
                         b.usage == r.usage && b.attempts == r.attempts,
                     "read back differently: {:?}", line);
}

}  // namespace

void journal(std::string_view input) {
  thread_local simdjson::dom::parser parser;
  // Each line alone, as the resume reads it, then the file.
  for (size_t at = 0; at <= input.size();) {
    size_t nl = std::min(input.find('\n', at), input.size());
    std::string_view line = input.substr(at, nl - at);
    RecordRef ref;
    const bool accepted = detail::parse_record_line(line, ref, parser);
    check_against_json(line, accepted, ref, parser);
    at = nl + 1;
  }
  scan(input, parser);
  round_trip(input, parser);
}

}  // namespace flexllm::fuzz
