#include "batch/journal.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>

#include <fmt/format.h>
#include <simdjson.h>

#include "batch/output_file.hpp"
#include "batch/ref_sort.hpp"
#include "core/file_io.hpp"
#include "core/hex.hpp"
#include "core/json_write.hpp"

namespace flexllm::detail {
namespace {

[[noreturn]] void io_error(const std::string& what, const std::string& path, int err) {
  throw CheckpointError(CheckpointError::Reason::io,
                        fmt::format("{} {}: {}", what, path, std::strerror(err)), path);
}

uint32_t clamp32(uint64_t v) {
  return static_cast<uint32_t>(std::min<uint64_t>(v, std::numeric_limits<uint32_t>::max()));
}

// Digits at `pos` of `s` (advancing it); false when there are none or they overflow 64 bits.
// Every index format_record() writes reads back, 20 digits too (found by fuzzing: they fell to
// the JSON reader, which refuses a record whose text is not UTF-8).
bool read_uint(std::string_view s, size_t& pos, uint64_t& value) {
  const size_t start = pos;
  value = 0;
  while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
    if (__builtin_mul_overflow(value, 10, &value) ||
        __builtin_add_overflow(value, static_cast<uint64_t>(s[pos++] - '0'), &value))
      return false;
  }
  return pos > start;
}

bool expect(std::string_view s, size_t& pos, std::string_view text) {
  // `pos` may be past the end: after an unterminated string (found by fuzzing: substr threw).
  if (pos > s.size() || s.substr(pos, text.size()) != text) return false;
  pos += text.size();
  return true;
}

// The usage format_record() writes right after the key (`rest` starts there); records of earlier
// versions had it after finish_reason. Only our own prefix is trusted: before finish_reason come
// only strings (output, reasoning, tool calls), in which a quote is escaped, so the first
// unescaped `"finish_reason":"` is the record's own.
bool read_usage_at(std::string_view line, size_t pos, RecordRef& ref) {
  uint64_t prompt = 0, completion = 0, total = 0;
  if (!(expect(line, pos, R"(,"usage":{"prompt_tokens":)") && read_uint(line, pos, prompt) &&
        expect(line, pos, R"(,"completion_tokens":)") && read_uint(line, pos, completion) &&
        expect(line, pos, R"(,"total_tokens":)") && read_uint(line, pos, total)))
    return false;
  ref.prompt_tokens = clamp32(prompt);
  ref.completion_tokens = clamp32(completion);
  ref.total_tokens = clamp32(total);
  return true;
}

void read_fast_usage(std::string_view rest, RecordRef& ref) {
  if (read_usage_at(rest, 0, ref)) return;
  constexpr std::string_view kFinish = R"("finish_reason":")";
  // memmem: a record is mostly text full of quotes, where a search by first character crawls.
  const void* at = ::memmem(rest.data(), rest.size(), kFinish.data(), kFinish.size());
  if (!at) return;
  size_t pos = static_cast<size_t>(static_cast<const char*>(at) - rest.data()) + kFinish.size();
  while (pos < rest.size() && rest[pos] != '"') pos += rest[pos] == '\\' ? 2 : 1;
  read_usage_at(rest, pos + 1, ref);
}

std::string optional_text(simdjson::dom::element doc, const char* field) {
  std::string_view s;
  if (doc[field].get_string().get(s)) return {};
  return std::string(s);
}

// Reads `fd` front to back in 1 MiB blocks, calling `line(text, offset)` for each complete line
// (without its newline); returns the offset after the last newline and whether bytes followed it.
template <class OnLine>
std::pair<uint64_t, bool> for_each_line(int fd, const std::string& path, OnLine&& line) {
  std::string carry;  // a line split across reads
  // No larger than the file (a small journal costs no more than its size: the fuzz target scans
  // thousands a second), not zeroed (read() fills what is used).
  struct stat st {};
  const size_t block = ::fstat(fd, &st) == 0 && st.st_size < (1 << 20)
                           ? std::max<size_t>(static_cast<size_t>(st.st_size), 4096)
                           : size_t{1} << 20;
  const std::unique_ptr<char[]> buf(new char[block]);
  uint64_t file_offset = 0, valid = 0;  // of buf[0]; after the last newline
  for (;;) {
    ssize_t n = fileio::read_some(fd, buf.get(), block);
    if (n < 0) io_error("cannot read the checkpoint", path, errno);
    if (n == 0) break;
    std::string_view data(buf.get(), static_cast<size_t>(n));
    size_t pos = 0;
    while (pos < data.size()) {
      size_t nl = data.find('\n', pos);
      if (nl == std::string_view::npos) {
        carry.append(data.substr(pos));
        break;
      }
      if (carry.empty()) {
        line(data.substr(pos, nl - pos), file_offset + pos);
      } else {
        uint64_t start = file_offset + pos - carry.size();
        carry.append(data.substr(pos, nl - pos));
        line(std::string_view(carry), start);
        carry.clear();
      }
      pos = nl + 1;
      valid = file_offset + pos;
    }
    file_offset += static_cast<uint64_t>(n);
  }
  return {valid, !carry.empty()};
}

}  // namespace

RecordKey record_key(std::string_view request_body) {
  XXH128_hash_t h = XXH3_128bits(request_body.data(), request_body.size());
  RecordKey key;
  for (int i = 0; i < 8; ++i) {
    key[i] = static_cast<uint8_t>(h.high64 >> (56 - 8 * i));
    key[8 + i] = static_cast<uint8_t>(h.low64 >> (56 - 8 * i));
  }
  return key;
}

std::string key_hex(const RecordKey& key) {
  std::string out;
  out.reserve(2 * key.size());
  append_hex(out, key);
  return out;
}

bool parse_record_line(std::string_view line, RecordRef& ref, simdjson::dom::parser& parser) {
  constexpr std::string_view kIndex = R"({"index":)";
  size_t pos = 0;
  uint64_t index = 0;
  if (expect(line, pos, kIndex) && read_uint(line, pos, index)) {
    const bool success = expect(line, pos, R"(,"status":"success","key":")");
    if (success || expect(line, pos, R"(,"status":"error","key":")")) {
      if (line.size() > pos + 33 && line[pos + 32] == '"' &&
          parse_hex(line.substr(pos, 32), ref.key)) {
        ref.index = index;
        ref.success = success;
        ref.prompt_tokens = ref.completion_tokens = ref.total_tokens = 0;
        if (success) read_fast_usage(line.substr(pos + 33), ref);
        return true;
      }
    }
  }
  simdjson::padded_string padded(line);
  simdjson::dom::element doc;
  if (parser.parse(padded).get(doc)) return false;
  std::string_view status, key;
  if (doc["index"].get_uint64().get(index) || doc["status"].get_string().get(status) ||
      doc["key"].get_string().get(key) || !parse_hex(key, ref.key))
    return false;
  if (status != "success" && status != "error") return false;
  ref.index = index;
  ref.success = status == "success";
  ref.prompt_tokens = ref.completion_tokens = ref.total_tokens = 0;
  simdjson::dom::object usage;
  if (ref.success && !doc["usage"].get_object().get(usage)) {
    uint64_t v = 0;
    if (!usage["prompt_tokens"].get_uint64().get(v)) ref.prompt_tokens = clamp32(v);
    if (!usage["completion_tokens"].get_uint64().get(v)) ref.completion_tokens = clamp32(v);
    if (!usage["total_tokens"].get_uint64().get(v)) ref.total_tokens = clamp32(v);
  }
  return true;
}

std::optional<JournalScan> scan_journal(const std::string& path, const Warn& warn,
                                        const std::function<void(const RecordRef&)>& sink) {
  int fd = fileio::open_file(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    io_error("cannot read the checkpoint", path, errno);
  }
  JournalScan scan;
  simdjson::dom::parser parser;
  uint64_t line_no = 0;
  try {
    auto [valid, torn] = for_each_line(fd, path, [&](std::string_view line, uint64_t offset) {
      ++line_no;
      RecordRef ref;
      if (line.empty() || !parse_record_line(line, ref, parser)) {
        scan.in_order = false;
        if (line.empty()) return;
        ++scan.malformed;
        if (warn) warn(fmt::format("{}:{}: not a checkpoint record, skipped", path, line_no));
        return;
      }
      if (scan.max_index && ref.index <= *scan.max_index) scan.in_order = false;
      scan.max_index = std::max(scan.max_index.value_or(0), ref.index);
      ref.offset = offset;
      ref.length = static_cast<uint32_t>(line.size());
      ++scan.records;
      sink(ref);
    });
    scan.valid_bytes = valid;
    scan.torn_tail = torn;
  } catch (...) {
    fileio::close_file(fd);
    throw;
  }
  fileio::close_file(fd);
  if (scan.torn_tail) {
    scan.in_order = false;
    if (warn)
      warn(fmt::format("{}:{}: last line is incomplete (an interrupted write): ignored, repaired",
                       path, line_no + 1));
  }
  return scan;
}

std::optional<BatchResultItem> read_record(int fd, const RecordRef& ref) {
  std::string line(ref.length, '\0');
  if (::pread(fd, line.data(), ref.length, static_cast<off_t>(ref.offset)) !=
      static_cast<ssize_t>(ref.length))
    return std::nullopt;
  thread_local simdjson::dom::parser parser;
  simdjson::padded_string padded(line);
  simdjson::dom::element doc;
  if (parser.parse(padded).get(doc)) return std::nullopt;
  BatchResultItem item;
  item.index = ref.index;
  item.status = ItemStatus::restored;
  ChatResult r;
  r.content = optional_text(doc, "output");
  if (std::string reasoning = optional_text(doc, "reasoning"); !reasoning.empty())
    r.reasoning = std::move(reasoning);
  r.finish_reason = optional_text(doc, "finish_reason");
  simdjson::dom::object usage;
  if (!doc["usage"].get_object().get(usage)) {
    Usage u;
    int64_t v = 0;
    if (!usage["prompt_tokens"].get_int64().get(v)) u.prompt_tokens = v;
    if (!usage["completion_tokens"].get_int64().get(v)) u.completion_tokens = v;
    if (!usage["total_tokens"].get_int64().get(v)) u.total_tokens = v;
    if (!usage["reasoning_tokens"].get_int64().get(v)) u.reasoning_tokens = v;
    r.usage = u;
  }
  simdjson::dom::array calls;
  if (!doc["tool_calls"].get_array().get(calls)) {
    for (simdjson::dom::element c : calls) {
      ToolCall tc;
      tc.id = optional_text(c, "id");
      tc.name = optional_text(c, "name");
      tc.arguments = optional_text(c, "arguments");
      r.tool_calls.push_back(std::move(tc));
    }
  }
  double latency = 0;
  if (!doc["latency"].get_double().get(latency)) r.latency = std::chrono::duration<double>(latency);
  int64_t attempts = 0;
  if (!doc["attempts"].get_int64().get(attempts)) r.attempts = static_cast<int>(attempts);
  simdjson::dom::element metadata;
  if (!doc["metadata"].get(metadata)) item.metadata = json::parse(simdjson::minify(metadata));
  item.latency = r.latency;
  item.result = std::move(r);
  return item;
}

std::string saved_input(const json& messages, SaveInput save_input) {
  if (save_input == SaveInput::none) return {};
  const json& saved = save_input == SaveInput::last && messages.is_array() && !messages.empty()
                          ? messages.back()
                          : messages;
  return saved.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string format_record(const BatchResultItem& item, const RecordKey& key,
                          std::string_view input) {
  std::string out;
  append_record(out, item, key, input);
  return out;
}

void append_record(std::string& out, const BatchResultItem& item, const RecordKey& key,
                   std::string_view input) {
  out.append(R"({"index":)");
  append_uint(out, item.index);
  const bool ok = item.status != ItemStatus::error;
  out.append(ok ? R"(,"status":"success","key":")" : R"(,"status":"error","key":")");
  append_hex(out, key);  // key_hex(), without a temporary
  out.push_back('"');
  if (ok && item.result) {
    const ChatResult& r = *item.result;
    // Usage first, right after the key: a resume reads it with the record's first bytes.
    if (r.usage) {
      // Numbers by hand: a record is written per item, and fmt's general path costs more than
      // the rest of the record together.
      out.append(R"(,"usage":{"prompt_tokens":)");
      append_int(out, r.usage->prompt_tokens);
      out.append(R"(,"completion_tokens":)");
      append_int(out, r.usage->completion_tokens);
      out.append(R"(,"total_tokens":)");
      append_int(out, r.usage->total_tokens);
      if (r.usage->reasoning_tokens) {
        out.append(R"(,"reasoning_tokens":)");
        append_int(out, *r.usage->reasoning_tokens);
      }
      out.push_back('}');
    }
    out.append(R"(,"output":)");
    append_json_string(out, r.content);
    if (r.reasoning) {
      out.append(R"(,"reasoning":)");
      append_json_string(out, *r.reasoning);
    }
    if (!r.tool_calls.empty()) {
      out.append(R"(,"tool_calls":[)");
      for (size_t i = 0; i < r.tool_calls.size(); ++i) {
        if (i) out.push_back(',');
        out.append(R"({"id":)");
        append_json_string(out, r.tool_calls[i].id);
        out.append(R"(,"type":"function","name":)");
        append_json_string(out, r.tool_calls[i].name);
        out.append(R"(,"arguments":)");
        append_json_string(out, r.tool_calls[i].arguments);
        out.push_back('}');
      }
      out.push_back(']');
    }
    out.append(R"(,"finish_reason":)");
    append_json_string(out, r.finish_reason);
    out.append(R"(,"attempts":)");
    append_int(out, r.attempts);
  } else {
    if (item.error) {
      out.append(R"(,"error":)");
      append_json_string(out, item.error->what());
      out.append(R"(,"error_kind":")");
      out.append(to_string(item.error->kind()));
      out.push_back('"');
    }
    out.append(R"(,"attempts":)");
    append_int(out, item.attempts);
  }
  out.append(R"(,"latency":)");
  append_fixed(out, item.latency.count(), 4);
  if (!item.metadata.is_null()) {
    out.append(R"(,"metadata":)");
    out.append(item.metadata.dump(-1, ' ', false, json::error_handler_t::replace));
  }
  if (!input.empty()) {
    out.append(R"(,"input":)");
    out.append(input);
  }
  out.push_back('}');
}

namespace {

// The file changed under a compaction: what it copied is not what the scan saw.
struct Changed {};

CompactResult compact_once(const std::string& path, std::optional<uint64_t> drop_from,
                           const Warn& warn, const std::function<void()>& after_scan) {
  RefSorter sorter(parent_directory(path));
  uint64_t beyond = 0;
  auto scan = scan_journal(path, warn, [&](const RecordRef& ref) { sorter.add(ref); });
  if (!scan) return {};
  SortedRefs refs = sorter.finish();
  if (after_scan) after_scan();
  if (drop_from)
    for (auto c = refs.cursor(); c.get(); c.advance())
      if (c.get()->index >= *drop_from) ++beyond;
  CompactResult result;
  result.records = refs.size() - beyond;
  result.dropped = beyond;
  if (scan->in_order && beyond == 0) {
    // Already compact; its last records may not be on disk yet.
    int fd = fileio::open_file(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) io_error("cannot open the checkpoint", path, errno);
    if (fileio::full_sync(fd) != 0) {
      int err = errno;
      fileio::close_file(fd);
      io_error("cannot sync the checkpoint", path, err);
    }
    if (fileio::close_file(fd) != 0) io_error("cannot close the checkpoint", path, errno);
    return result;
  }
  result.rewritten = true;
  int in = fileio::open_file(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) io_error("cannot read the checkpoint", path, errno);
  struct stat st {};
  ::fstat(in, &st);
  const std::string tmp = path + ".compact.tmp";
  ::unlink(tmp.c_str());  // a compaction killed earlier left it (we hold the lock)
  int out = fileio::open_file(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (out < 0) {
    int err = errno;
    fileio::close_file(in);
    io_error("cannot create", tmp, err);
  }
  auto fail = [&](const char* what, const std::string& name, int err) {
    fileio::close_file(out);
    fileio::close_file(in);
    ::unlink(tmp.c_str());
    io_error(what, name, err);
  };
  ::fchmod(out, st.st_mode & 07777);  // the file's mode survives (umask applied to 0600)
  std::string buffer;
  buffer.reserve(1 << 20);
  auto flush = [&] {
    size_t written = 0;
    if (int err = fileio::write_all(out, buffer.data(), buffer.size(), &written))
      fail("cannot write", tmp, err);
    buffer.clear();
  };
  simdjson::dom::parser parser;
  // Each record copied must be the one the scan found there.
  auto copy = [&](std::string_view line, const RecordRef& ref) {
    RecordRef check;
    if (line.size() != ref.length || !parse_record_line(line, check, parser) ||
        check.index != ref.index || check.key != ref.key || check.success != ref.success) {
      fileio::close_file(out);
      fileio::close_file(in);
      ::unlink(tmp.c_str());
      throw Changed{};
    }
    buffer.append(line).push_back('\n');
    if (buffer.size() >= (1 << 20)) flush();
  };
  // Records come out in index order but were written in completion order, which is nearly the
  // same: a large window slides forward through the file, so it is read about once instead of
  // one pread per record. A record far from the window (a file in another order) is read alone.
  constexpr uint64_t kWindow = 4 << 20, kBehind = 256 << 10;
  std::string window, single;
  uint64_t window_start = 0;
  for (auto c = refs.cursor(); const RecordRef* ref = c.get(); c.advance()) {
    if (drop_from && ref->index >= *drop_from) break;  // sorted: the rest are beyond too
    const uint64_t window_end = window_start + window.size();
    if (ref->offset >= window_start && ref->offset + ref->length <= window_end) {
      copy(std::string_view(window).substr(ref->offset - window_start, ref->length), *ref);
      continue;
    }
    if (ref->offset >= window_start && ref->offset < window_end + kWindow) {
      window_start = ref->offset > kBehind ? ref->offset - kBehind : 0;
      window.resize(std::max<uint64_t>(kWindow, ref->offset - window_start + ref->length));
      ssize_t n =
          fileio::pread_some(in, window.data(), window.size(), static_cast<off_t>(window_start));
      if (n < 0) fail("cannot read the checkpoint", path, errno);
      window.resize(static_cast<size_t>(n));
      if (window.size() < ref->offset - window_start + ref->length) copy({}, *ref);  // shrunk
      copy(std::string_view(window).substr(ref->offset - window_start, ref->length), *ref);
      continue;
    }
    single.resize(ref->length);
    ssize_t n = fileio::pread_some(in, single.data(), ref->length, static_cast<off_t>(ref->offset));
    if (n < 0) fail("cannot read the checkpoint", path, errno);
    single.resize(static_cast<size_t>(n));
    copy(single, *ref);
  }
  flush();
  if (fileio::full_sync(out) != 0) fail("cannot sync", tmp, errno);
  fileio::close_file(in);
  if (fileio::close_file(out) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    io_error("cannot close", tmp, err);
  }
  if (fileio::rename_file(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    io_error("cannot replace the checkpoint with its compacted copy", path, err);
  }
  // The rename is durable once the directory is.
  if (int err = fileio::sync_parent_dir(path)) io_error("cannot sync the directory of", path, err);
  return result;
}

}  // namespace

CompactResult compact_journal(const std::string& path, std::optional<uint64_t> drop_from,
                              const Warn& warn, const std::function<void()>& after_scan) {
  try {
    return compact_once(path, drop_from, warn, after_scan);
  } catch (const Changed&) {
  }
  // Something else wrote the file between the scan and the copy: once more from a fresh scan,
  // and if it changes again, give up rather than write anything wrong.
  try {
    return compact_once(path, drop_from, warn, after_scan);
  } catch (const Changed&) {
    throw CheckpointError(
        CheckpointError::Reason::io,
        fmt::format("{} changed while it was being compacted (is another program writing it?); "
                    "left as it was",
                    path),
        path);
  }
}

}  // namespace flexllm::detail
