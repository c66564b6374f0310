// Helpers shared by the readers of untrusted model files (zip index, pickle, torch checkpoint).
// Internal to io/: not part of the engine's API.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "core/error.h"

namespace sdn::io_detail {

[[noreturn]] inline void bad(const std::string& msg) { fail(ErrorCode::ModelFormat, msg); }

// Little-endian reads; callers have checked that the bytes lie inside the file.
inline uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t rd32(const uint8_t* p) { return rd16(p) | (static_cast<uint32_t>(rd16(p + 2)) << 16); }
inline uint64_t rd64(const uint8_t* p) { return rd32(p) | (static_cast<uint64_t>(rd32(p + 4)) << 32); }

// Sizes and offsets come from the file, so every sum and product is checked for overflow.
inline bool add_ok(uint64_t a, uint64_t b, uint64_t* out) {
  if (a > std::numeric_limits<uint64_t>::max() - b) return false;
  *out = a + b;
  return true;
}

inline bool mul_ok(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return false;
  *out = a * b;
  return true;
}

// For error messages: names from the file may hold anything, so show them tamed and short.
inline std::string shown(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 120)) {
    const unsigned char u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? '?' : c;
  }
  if (s.size() > 120) out += "...";
  return out;
}

}  // namespace sdn::io_detail
