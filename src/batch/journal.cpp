#include "batch/journal.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>

#include <fmt/format.h>
#include <simdjson.h>

#include "core/hex.hpp"
#include "core/json_write.hpp"

namespace flexllm::detail {
namespace {

bool parse_key(std::string_view hex, RecordKey& key) {
  return parse_hex(hex, key);
}

[[noreturn]] void io_error(const std::string& what, const std::string& path) {
  throw InvalidRequestError(Error(ErrorKind::invalid_request,
                                  fmt::format("{} {}: {}", what, path, std::strerror(errno))));
}

// The header fields of a record line: the fast path reads the prefix format_record() writes;
// anything else (a file edited by hand) goes through a JSON parser.
bool parse_header(std::string_view line, RecordRef& ref, simdjson::dom::parser& parser) {
  constexpr std::string_view kIndex = R"({"index":)";
  if (line.starts_with(kIndex)) {
    size_t i = kIndex.size(), index = 0;
    bool digits = false;
    while (i < line.size() && line[i] >= '0' && line[i] <= '9') {
      index = index * 10 + static_cast<size_t>(line[i++] - '0');
      digits = true;
    }
    std::string_view rest = line.substr(i);
    bool success = rest.starts_with(R"(,"status":"success","key":")");
    bool error = rest.starts_with(R"(,"status":"error","key":")");
    if (digits && (success || error)) {
      rest.remove_prefix(success ? 27 : 25);
      if (rest.size() > 33 && rest[32] == '"' && parse_key(rest.substr(0, 32), ref.key)) {
        ref.index = index;
        ref.success = success;
        return true;
      }
    }
  }
  simdjson::padded_string padded(line);
  simdjson::dom::element doc;
  if (parser.parse(padded).get(doc)) return false;
  uint64_t index = 0;
  std::string_view status, key;
  if (doc["index"].get_uint64().get(index) || doc["status"].get_string().get(status) ||
      doc["key"].get_string().get(key) || !parse_key(key, ref.key))
    return false;
  if (status != "success" && status != "error") return false;
  ref.index = static_cast<size_t>(index);
  ref.success = status == "success";
  return true;
}

std::string optional_text(simdjson::dom::element doc, const char* field) {
  std::string_view s;
  if (doc[field].get_string().get(s)) return {};
  return std::string(s);
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

std::optional<JournalScan> scan_journal(const std::string& path,
                                        const std::function<void(const std::string&)>& warn) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    io_error("cannot read the checkpoint", path);
  }
  JournalScan scan;
  struct stat st {};
  if (::fstat(fd, &st) == 0) scan.records.reserve(static_cast<size_t>(st.st_size) / 160 + 16);
  simdjson::dom::parser parser;
  std::string carry;  // a line split across reads
  std::vector<char> buf(1 << 20);
  uint64_t file_offset = 0;  // of buf[0]
  size_t line_no = 0;
  auto handle = [&](std::string_view line, uint64_t offset) {
    ++line_no;
    if (line.empty()) return;
    RecordRef ref;
    if (!parse_header(line, ref, parser)) {
      ++scan.malformed;
      warn(fmt::format("{}:{}: not a checkpoint record, skipped", path, line_no));
      return;
    }
    ref.offset = offset;
    ref.length = static_cast<uint32_t>(line.size());
    scan.records.push_back(ref);
  };
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      io_error("cannot read the checkpoint", path);
    }
    if (n == 0) break;
    std::string_view data(buf.data(), static_cast<size_t>(n));
    size_t pos = 0;
    while (pos < data.size()) {
      size_t nl = data.find('\n', pos);
      if (nl == std::string_view::npos) {
        carry.append(data.substr(pos));
        break;
      }
      if (carry.empty()) {
        handle(data.substr(pos, nl - pos), file_offset + pos);
      } else {
        uint64_t start = file_offset + pos - carry.size();
        carry.append(data.substr(pos, nl - pos));
        handle(carry, start);
        carry.clear();
      }
      pos = nl + 1;
      scan.valid_bytes = file_offset + pos;
    }
    file_offset += static_cast<uint64_t>(n);
  }
  ::close(fd);
  if (!carry.empty())
    warn(fmt::format("{}:{}: last line is incomplete (an interrupted write): ignored, repaired",
                     path, line_no + 1));
  resolve_records(scan.records);
  scan.records.shrink_to_fit();
  return scan;
}

void resolve_records(std::vector<RecordRef>& records) {
  // Sorted in place by (index, position in the file), then deduplicated in place (no second copy
  // of a million references).
  std::sort(records.begin(), records.end(), [](const RecordRef& a, const RecordRef& b) {
    return a.index != b.index ? a.index < b.index : a.offset < b.offset;
  });
  size_t kept = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    const RecordRef& r = records[i];
    if (kept > 0 && records[kept - 1].index == r.index) {
      if (r.success || !records[kept - 1].success) records[kept - 1] = r;
    } else {
      records[kept++] = r;
    }
  }
  records.resize(kept);
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
    out.append(R"(,"attempts":)");
    append_int(out, r.attempts);
  } else if (item.error) {
    out.append(R"(,"error":)");
    append_json_string(out, item.error->what());
    out.append(R"(,"error_kind":")");
    out.append(to_string(item.error->kind()));
    out.push_back('"');
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

void compact_journal(const std::string& path) {
  auto scan = scan_journal(path, [](const std::string&) {});
  if (scan) compact_journal(path, scan->records);
}

void compact_journal(const std::string& path, const std::vector<RecordRef>& records) {
  // Already compact: every line is kept and they follow each other in index order.
  bool compact = true;
  uint64_t expected = 0;
  for (const RecordRef& ref : records) {
    if (ref.offset != expected) {
      compact = false;
      break;
    }
    expected += ref.length + 1;
  }
  struct stat st {};
  if (compact && ::stat(path.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) == expected) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      const bool synced = ::fsync(fd) == 0;  // its last records may not be on disk yet
      ::close(fd);
      if (synced) return;
    }
  }
  int in = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) io_error("cannot read the checkpoint", path);
  std::string tmp = path + ".compact.tmp";
  int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) {
    ::close(in);
    io_error("cannot write", tmp);
  }
  std::string buffer;
  buffer.reserve(1 << 20);
  bool ok = true;
  auto flush = [&] {
    size_t done = 0;
    while (done < buffer.size()) {
      ssize_t n = ::write(out, buffer.data() + done, buffer.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        ok = false;
        return;
      }
      done += static_cast<size_t>(n);
    }
    buffer.clear();
  };
  // Records come out in index order but were written in completion order, which is nearly the
  // same: a large window slides forward through the file, so it is read about once instead of
  // one pread per record. A record far from the window (a file in another order) is read alone.
  constexpr uint64_t kWindow = 4 << 20, kBehind = 256 << 10;
  std::string window, single;
  uint64_t window_start = 0;
  for (const RecordRef& ref : records) {
    const uint64_t window_end = window_start + window.size();
    if (ref.offset >= window_start && ref.offset + ref.length <= window_end) {
      buffer.append(window, ref.offset - window_start, ref.length).push_back('\n');
    } else if (ref.offset >= window_start && ref.offset < window_end + kWindow) {
      window_start = ref.offset > kBehind ? ref.offset - kBehind : 0;
      window.resize(std::max<uint64_t>(kWindow, ref.offset - window_start + ref.length));
      ssize_t n = ::pread(in, window.data(), window.size(), static_cast<off_t>(window_start));
      if (n < 0 || static_cast<uint64_t>(n) < ref.offset - window_start + ref.length) {
        ok = false;
        break;
      }
      window.resize(static_cast<size_t>(n));
      buffer.append(window, ref.offset - window_start, ref.length).push_back('\n');
    } else {
      single.resize(ref.length);
      if (::pread(in, single.data(), ref.length, static_cast<off_t>(ref.offset)) !=
          static_cast<ssize_t>(ref.length)) {
        ok = false;
        break;
      }
      buffer.append(single).push_back('\n');
    }
    if (buffer.size() >= (1 << 20)) flush();
  }
  if (ok) flush();
  ok = ok && ::fsync(out) == 0;
  ::close(out);
  ::close(in);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    io_error("cannot compact the checkpoint", path);
  }
  // The rename is durable once the directory is.
  std::string dir =
      path.substr(0, path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/'));
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace flexllm::detail
