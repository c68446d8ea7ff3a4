// einlm/tokenizer/utf8.hpp — strict UTF-8 decoding, encoding, and Python-compatible repair.
//
// Contract:
//   * Well-formed means RFC 3629 / Unicode Table 3-7: no overlong forms, no surrogates
//     (U+D800..U+DFFF), nothing above U+10FFFF.
//   * utf8_sequence_length(p, end) returns the length (1..4) of the well-formed sequence that
//     starts at p, or 0 when p does not start one.
//   * utf8_maximal_subpart(p, end) returns the length (1..3) of the "maximal subpart of an
//     ill-formed subsequence" at p (Unicode §3.9, U+FFFD substitution of maximal subparts): the
//     longest prefix of a well-formed sequence that starts at p, at least one byte.
//   * to_valid_utf8(bytes) replaces each maximal subpart by U+FFFD. This is exactly what Python's
//     bytes.decode("utf-8", errors="replace") does, and what tiktoken's and CS336's decode() do.
//   * The tokenizer never rejects input for being invalid UTF-8; see pretokenize.hpp for how
//     invalid bytes are split.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "einlm/core/utf8.hpp"

namespace einlm::tokenizer {

namespace detail {

/// Allowed range of the second byte of a sequence by lead byte, for leads C2..F4 (Table 3-7).
struct utf8_lead {
  std::uint8_t length;  // 0: not a lead byte
  std::uint8_t lo, hi;  // range of the second byte
};

inline constexpr utf8_lead utf8_lead_info(unsigned char b) noexcept {
  if (b < 0x80) return {1, 0, 0};
  if (b < 0xC2) return {0, 0, 0};
  if (b < 0xE0) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b < 0xF0) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b < 0xF4) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

}  // namespace detail

/// Length (1..4) of the well-formed UTF-8 sequence starting at p, or 0 if none starts there.
inline std::size_t utf8_sequence_length(const unsigned char* p, const unsigned char* end) noexcept {
  const auto info = detail::utf8_lead_info(p[0]);
  if (info.length <= 1) return info.length;
  if (end - p < info.length) return 0;
  if (p[1] < info.lo || p[1] > info.hi) return 0;
  for (int i = 2; i < info.length; ++i)
    if ((p[i] & 0xC0) != 0x80) return 0;
  return info.length;
}

/// Length (1..3) of the maximal subpart of an ill-formed sequence at p: the longest prefix of a
/// well-formed sequence that starts at p (at least one byte). Only meaningful where
/// utf8_sequence_length(p, end) == 0.
inline std::size_t utf8_maximal_subpart(const unsigned char* p, const unsigned char* end) noexcept {
  const auto info = detail::utf8_lead_info(p[0]);
  if (info.length <= 1) return 1;
  std::size_t n = 1;
  if (p + 1 >= end || p[1] < info.lo || p[1] > info.hi) return n;
  ++n;
  for (int i = 2; i < info.length; ++i) {
    if (p + i >= end || (p[i] & 0xC0) != 0x80) return n;
    ++n;
  }
  return n;  // unreachable for an ill-formed sequence
}

/// Decodes the well-formed sequence of `len` bytes at p (as returned by utf8_sequence_length).
inline char32_t utf8_decode(const unsigned char* p, std::size_t len) noexcept {
  switch (len) {
    case 1: return p[0];
    case 2: return char32_t(p[0] & 0x1F) << 6 | (p[1] & 0x3F);
    case 3: return char32_t(p[0] & 0x0F) << 12 | char32_t(p[1] & 0x3F) << 6 | (p[2] & 0x3F);
    default:
      return char32_t(p[0] & 0x07) << 18 | char32_t(p[1] & 0x3F) << 12 |
             char32_t(p[2] & 0x3F) << 6 | (p[3] & 0x3F);
  }
}

using einlm::utf8_append;  // (einlm/core/utf8.hpp)

/// True when the whole string is well-formed UTF-8.
inline bool is_valid_utf8(std::string_view s) noexcept {
  auto p = reinterpret_cast<const unsigned char*>(s.data());
  const auto end = p + s.size();
  while (p < end) {
    // Eight ASCII bytes at a time.
    while (end - p >= 8) {
      std::uint64_t w;
      std::memcpy(&w, p, 8);
      if (w & 0x8080808080808080ull) break;
      p += 8;
    }
    if (p == end) break;
    if (*p < 0x80) {
      ++p;
      continue;
    }
    const auto n = utf8_sequence_length(p, end);
    if (n == 0) return false;
    p += n;
  }
  return true;
}

/// Replaces every maximal subpart of an ill-formed sequence by U+FFFD (Python's
/// errors="replace"); well-formed input is returned unchanged.
inline std::string to_valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  auto p = reinterpret_cast<const unsigned char*>(s.data());
  const auto begin = p;
  const auto end = p + s.size();
  auto run = p;  // start of the pending well-formed run
  while (p < end) {
    if (*p < 0x80) {
      ++p;
      continue;
    }
    const auto n = utf8_sequence_length(p, end);
    if (n != 0) {
      p += n;
      continue;
    }
    out.append(s.data() + (run - begin), static_cast<std::size_t>(p - run));
    out += "\xEF\xBF\xBD";
    p += utf8_maximal_subpart(p, end);
    run = p;
  }
  out.append(s.data() + (run - begin), static_cast<std::size_t>(p - run));
  return out;
}

/// Length of the longest suffix of s that is a proper prefix of some well-formed sequence (a
/// character cut in the middle by a chunk boundary): 0..3.
inline std::size_t utf8_incomplete_tail(std::string_view s) noexcept {
  auto p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  for (std::size_t k = 1; k <= 3 && k <= n; ++k) {
    const unsigned char b = p[n - k];
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: look further back
    const auto info = detail::utf8_lead_info(b);
    if (info.length <= k) return 0;  // ASCII, invalid lead, or a sequence already complete
    return utf8_maximal_subpart(p + n - k, p + n) == k ? k : 0;
  }
  return 0;
}

}  // namespace einlm::tokenizer
