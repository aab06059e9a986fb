// Writing JSON text by hand on hot paths (request bodies, the mock server's replies): appends
// to a std::string, no DOM.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/hex.hpp"

namespace flexllm::detail {

// Appends `s` as a JSON string literal (quotes included). `s` must be UTF-8; control characters
// are escaped, everything else is copied through.
inline void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  size_t run = 0;  // start of the pending run of characters that need no escaping
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      case '\t': out.append("\\t"); break;
      default:
        out.append("\\u00");
        out.push_back(kHexDigits[c >> 4]);
        out.push_back(kHexDigits[c & 0xf]);
    }
  }
  out.append(s.data() + run, s.size() - run);
  out.push_back('"');
}

// A JSON string, or null when `s` is empty.
inline void append_json_string_or_null(std::string& out, std::string_view s) {
  if (s.empty()) {
    out.append("null");
  } else {
    append_json_string(out, s);
  }
}

inline void append_uint(std::string& out, uint64_t v) {
  char buf[24];
  char* end = buf + sizeof buf;
  char* p = end;
  do {
    *--p = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  out.append(p, static_cast<size_t>(end - p));
}

inline void append_int(std::string& out, int64_t v) {
  if (v < 0) {
    out.push_back('-');
    append_uint(out, 0 - static_cast<uint64_t>(v));
  } else {
    append_uint(out, static_cast<uint64_t>(v));
  }
}

// `v` with exactly `decimals` digits after the point (rounded), like printf's %.Nf, for finite
// values of moderate size (durations, prices); anything else is written as 0.
inline void append_fixed(std::string& out, double v, int decimals) {
  uint64_t scale = 1;
  for (int i = 0; i < decimals; ++i) scale *= 10;
  if (!(v > -9e12 && v < 9e12)) v = 0;  // NaN, infinities, beyond what this is for
  if (v < 0) {
    out.push_back('-');
    v = -v;
  }
  const auto scaled = static_cast<uint64_t>(v * static_cast<double>(scale) + 0.5);
  append_uint(out, scaled / scale);
  if (decimals <= 0) return;
  out.push_back('.');
  uint64_t frac = scaled % scale;
  char digits[20];
  for (int i = decimals - 1; i >= 0; --i) {
    digits[i] = static_cast<char>('0' + frac % 10);
    frac /= 10;
  }
  out.append(digits, static_cast<size_t>(decimals));
}

}  // namespace flexllm::detail
