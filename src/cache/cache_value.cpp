#include "cache/cache_value.hpp"

#include <cstdint>
#include <limits>
#include <stdexcept>

namespace flexllm::detail {
namespace {

// Format 1: u8 format, u8 flags, str content, [str reasoning],
// [i64 prompt_tokens, i64 completion_tokens, i64 total_tokens, [i64 reasoning_tokens]],
// u32 tool call count, per call (str id, str type, str name, str arguments), str finish_reason.
// str = u32 byte length + bytes; integers little-endian. Nothing may follow.
constexpr uint8_t kFormat = 1;
constexpr uint8_t kHasReasoning = 1;
constexpr uint8_t kHasUsage = 2;
constexpr uint8_t kHasReasoningTokens = 4;
constexpr uint8_t kKnownFlags = kHasReasoning | kHasUsage | kHasReasoningTokens;
constexpr size_t kMinToolCallBytes = 4 * 4;  // four empty strings

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}

void put_i64(std::string& out, int64_t v) {
  const auto u = static_cast<uint64_t>(v);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(u >> (8 * i)));
}

void put_str(std::string& out, const std::string& s) {
  if (s.size() > std::numeric_limits<uint32_t>::max())
    throw std::length_error("a cached reply field is over 4 GiB, past what the cache can store");
  put_u32(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}

// Bounds-checked reading: every read fails (and the reader stays failed) rather than go past the
// end, so corrupt bytes can only make decoding fail.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}

  bool u8(uint8_t& v) {
    if (remaining() < 1) return false;
    v = static_cast<uint8_t>(bytes_[pos_++]);
    return true;
  }
  bool u32(uint32_t& v) {
    if (remaining() < 4) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<uint8_t>(bytes_[pos_++])} << (8 * i);
    return true;
  }
  bool i64(int64_t& v) {
    if (remaining() < 8) return false;
    uint64_t u = 0;
    for (int i = 0; i < 8; ++i) u |= uint64_t{static_cast<uint8_t>(bytes_[pos_++])} << (8 * i);
    v = static_cast<int64_t>(u);
    return true;
  }
  bool str(std::string& s) {
    uint32_t n = 0;
    if (!u32(n) || remaining() < n) return false;
    s.assign(bytes_.substr(pos_, n));
    pos_ += n;
    return true;
  }
  size_t remaining() const { return bytes_.size() - pos_; }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
};

}  // namespace

std::string encode_cache_value(const ChatResult& r) {
  size_t size = 2 + 4 + r.content.size() + 4 + 4 + r.finish_reason.size();
  if (r.reasoning) size += 4 + r.reasoning->size();
  if (r.usage) size += 4 * 8;
  for (const ToolCall& c : r.tool_calls)
    size += kMinToolCallBytes + c.id.size() + c.type.size() + c.name.size() + c.arguments.size();
  std::string out;
  out.reserve(size);
  uint8_t flags = 0;
  if (r.reasoning) flags |= kHasReasoning;
  if (r.usage) flags |= kHasUsage;
  if (r.usage && r.usage->reasoning_tokens) flags |= kHasReasoningTokens;
  out.push_back(static_cast<char>(kFormat));
  out.push_back(static_cast<char>(flags));
  put_str(out, r.content);
  if (r.reasoning) put_str(out, *r.reasoning);
  if (r.usage) {
    put_i64(out, r.usage->prompt_tokens);
    put_i64(out, r.usage->completion_tokens);
    put_i64(out, r.usage->total_tokens);
    if (r.usage->reasoning_tokens) put_i64(out, *r.usage->reasoning_tokens);
  }
  if (r.tool_calls.size() > std::numeric_limits<uint32_t>::max())
    throw std::length_error("a cached reply has more tool calls than the cache can store");
  put_u32(out, static_cast<uint32_t>(r.tool_calls.size()));
  for (const ToolCall& c : r.tool_calls) {
    put_str(out, c.id);
    put_str(out, c.type);
    put_str(out, c.name);
    put_str(out, c.arguments);
  }
  put_str(out, r.finish_reason);
  return out;
}

std::optional<ChatResult> decode_cache_value(std::string_view bytes) {
  Reader in(bytes);
  uint8_t format = 0, flags = 0;
  if (!in.u8(format) || format != kFormat || !in.u8(flags) || (flags & ~kKnownFlags) != 0 ||
      ((flags & kHasReasoningTokens) && !(flags & kHasUsage)))
    return std::nullopt;
  ChatResult r;
  r.cached = true;
  if (!in.str(r.content)) return std::nullopt;
  if (flags & kHasReasoning) {
    r.reasoning.emplace();
    if (!in.str(*r.reasoning)) return std::nullopt;
  }
  if (flags & kHasUsage) {
    Usage& u = r.usage.emplace();
    if (!in.i64(u.prompt_tokens) || !in.i64(u.completion_tokens) || !in.i64(u.total_tokens))
      return std::nullopt;
    if ((flags & kHasReasoningTokens) && !in.i64(u.reasoning_tokens.emplace())) return std::nullopt;
  }
  uint32_t calls = 0;
  // The count is checked against the bytes left before anything is allocated for it.
  if (!in.u32(calls) || calls > in.remaining() / kMinToolCallBytes) return std::nullopt;
  r.tool_calls.resize(calls);
  for (ToolCall& c : r.tool_calls) {
    if (!in.str(c.id) || !in.str(c.type) || !in.str(c.name) || !in.str(c.arguments))
      return std::nullopt;
  }
  if (!in.str(r.finish_reason) || in.remaining() != 0) return std::nullopt;
  return r;
}

}  // namespace flexllm::detail
