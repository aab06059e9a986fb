// Lowercase hexadecimal text of byte strings: checkpoint record keys, cache keys, content hashes.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace flexllm::detail {

inline constexpr char kHexDigits[] = "0123456789abcdef";

inline void append_hex(std::string& out, std::span<const uint8_t> bytes) {
  for (uint8_t b : bytes) {
    out.push_back(kHexDigits[b >> 4]);
    out.push_back(kHexDigits[b & 0xf]);
  }
}

// The value of a lowercase hex digit, or -1.
inline int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Reads exactly 2 * out.size() lowercase hex digits into `out`; false (out unspecified) otherwise.
inline bool parse_hex(std::string_view hex, std::span<uint8_t> out) noexcept {
  if (hex.size() != 2 * out.size()) return false;
  for (size_t i = 0; i < out.size(); ++i) {
    const int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

}  // namespace flexllm::detail
