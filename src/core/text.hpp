// Small text helpers shared by the parsers.
#pragma once

#include <string_view>

namespace flexllm::detail {

inline bool is_space(char c) noexcept {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f' || c == '\v';
}

inline std::string_view trim_left(std::string_view s) noexcept {
  size_t i = 0;
  while (i < s.size() && is_space(s[i])) ++i;
  return s.substr(i);
}

inline std::string_view trim_right(std::string_view s) noexcept {
  size_t n = s.size();
  while (n > 0 && is_space(s[n - 1])) --n;
  return s.substr(0, n);
}

inline std::string_view trim(std::string_view s) noexcept {
  return trim_right(trim_left(s));
}

// ASCII case-insensitive equality (HTTP header names and tokens).
inline bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

// Whether a comma-separated header value ("keep-alive, Upgrade") lists `token`.
inline bool has_header_token(std::string_view value, std::string_view token) noexcept {
  while (!value.empty()) {
    size_t comma = value.find(',');
    if (iequals(trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

// The tags reasoning models wrap their thinking in, at the start of the content.
inline constexpr std::string_view kThinkOpen = "<think>";
inline constexpr std::string_view kThinkClose = "</think>";

}  // namespace flexllm::detail
