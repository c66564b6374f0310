// UTF-8 checks for text read from untrusted files (names, keys, JSON headers). Internal to io/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sdn::io_detail {

// Decodes the code point at s[i] and advances i; false (i unchanged) when the bytes there are
// not well-formed UTF-8: overlong forms, surrogates and code points past U+10FFFF are refused.
inline bool next_code_point(const uint8_t* s, size_t n, size_t& i, uint32_t& cp) {
  const uint8_t c = s[i];
  size_t len;
  if (c < 0x80) {
    cp = c;
    ++i;
    return true;
  } else if ((c & 0xe0) == 0xc0) {
    len = 2, cp = c & 0x1fu;
  } else if ((c & 0xf0) == 0xe0) {
    len = 3, cp = c & 0x0fu;
  } else if ((c & 0xf8) == 0xf0) {
    len = 4, cp = c & 0x07u;
  } else {
    return false;
  }
  if (n - i < len) return false;
  for (size_t k = 1; k < len; ++k) {
    if ((s[i + k] & 0xc0) != 0x80) return false;
    cp = (cp << 6) | (s[i + k] & 0x3fu);
  }
  static const uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
  i += len;
  return true;
}

// Index of the first byte that is not part of well-formed UTF-8, or n when all of it is.
inline size_t utf8_error_at(const uint8_t* s, size_t n) {
  size_t i = 0;
  uint32_t cp;
  while (i < n && next_code_point(s, n, i, cp)) {
  }
  return i;
}

inline bool valid_utf8(std::string_view s) {
  return utf8_error_at(reinterpret_cast<const uint8_t*>(s.data()), s.size()) == s.size();
}

// Well-formed UTF-8 without control characters (C0, DEL, C1).
inline bool printable_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  size_t i = 0;
  uint32_t cp;
  while (i < s.size()) {
    if (!next_code_point(p, s.size(), i, cp)) return false;
    if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0)) return false;
  }
  return true;
}

}  // namespace sdn::io_detail
