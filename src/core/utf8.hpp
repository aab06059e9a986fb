// Repairing UTF-8: servers send text cut in the middle of a character, or bytes in another
// encoding, and an answer is worth keeping anyway (the bad bytes are shown as U+FFFD).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace flexllm::detail {

// Appends `s` with each ill-formed sequence replaced by U+FFFD. A truncated sequence (the
// longest start of one that could still have become a character, e.g. "\xE2\x82" before a
// non-continuation byte) is one replacement, any other bad byte one each: Unicode's "maximal
// subpart" practice, which browsers follow. Valid input is appended unchanged.
inline void append_valid_utf8(std::string& out, std::string_view s) {
  constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const size_t start = i;
    while (i < n && p[i] < 0x80) ++i;  // ASCII run
    out.append(s.data() + start, i - start);
    if (i == n) break;
    const unsigned char c = p[i];
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // no overlong forms
      if (c == 0xED) hi = 0x9F;  // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
    }
    size_t k = 1;  // bytes of the sequence that are well-formed so far
    if (len > 0 && i + 1 < n && p[i + 1] >= lo && p[i + 1] <= hi) {
      k = 2;
      while (k < len && i + k < n && (p[i + k] & 0xC0) == 0x80) ++k;
    }
    if (k == len) {
      out.append(s.data() + i, len);
    } else {
      out.append(kReplacement);
    }
    i += k;
  }
}

}  // namespace flexllm::detail
