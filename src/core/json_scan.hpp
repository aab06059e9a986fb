// Finding values inside JSON text we wrote ourselves, without parsing it: a request body embeds
// the messages verbatim, and a checkpoint record can reuse those bytes.
#pragma once

#include <cstring>
#include <string_view>

namespace flexllm::detail {

// The end (one past) of the JSON value starting at s[start] (an array, object, string or
// scalar); npos when the text ends first.
inline size_t json_value_end(std::string_view s, size_t start) {
  if (start >= s.size()) return std::string_view::npos;
  const char first = s[start];
  if (first != '[' && first != '{' && first != '"') {  // a scalar: up to the next delimiter
    size_t end = s.find_first_of(",]} \t\r\n", start);
    return end == std::string_view::npos ? s.size() : end;
  }
  int depth = 0;
  for (size_t i = start; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '"') {
      // A string: jump from quote to quote (memchr), stepping over escaped characters. Most of a
      // messages array is string content, so this is most of the scan.
      for (;;) {
        const void* q = std::memchr(s.data() + i + 1, '"', s.size() - i - 1);
        if (!q) return std::string_view::npos;
        const size_t quote = static_cast<size_t>(static_cast<const char*>(q) - s.data());
        size_t backslashes = 0;
        while (quote - backslashes > i + 1 && s[quote - backslashes - 1] == '\\') ++backslashes;
        i = quote;
        if (backslashes % 2 == 0) break;  // not escaped: the string ends here
      }
      if (depth == 0) return i + 1;
    } else if (c == '[' || c == '{') {
      ++depth;
    } else if (c == ']' || c == '}') {
      if (--depth == 0) return i + 1;
    }
  }
  return std::string_view::npos;
}

// The last element of the JSON array `array` (compact text, as nlohmann writes it); "" when empty
// or not an array.
inline std::string_view json_last_element(std::string_view array) {
  if (array.size() < 2 || array.front() != '[') return {};
  size_t pos = 1, last = std::string_view::npos, last_end = 0;
  while (pos < array.size() && array[pos] != ']') {
    size_t end = json_value_end(array, pos);
    if (end == std::string_view::npos) return {};
    last = pos;
    last_end = end;
    pos = end;
    if (pos < array.size() && array[pos] == ',') ++pos;
  }
  return last == std::string_view::npos ? std::string_view() : array.substr(last, last_end - last);
}

}  // namespace flexllm::detail
