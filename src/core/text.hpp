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

// The tags reasoning models wrap their thinking in, at the start of the content.
inline constexpr std::string_view kThinkOpen = "<think>";
inline constexpr std::string_view kThinkClose = "</think>";

}  // namespace flexllm::detail
