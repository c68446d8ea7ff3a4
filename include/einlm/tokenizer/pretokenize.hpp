// einlm/tokenizer/pretokenize.hpp — the GPT-2 pre-tokenizer, written by hand (no regex engine).
//
// Contract: for well-formed UTF-8 input, the pieces are byte-for-byte those of Python's `regex`
// module running GPT-2's pattern
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// with `findall`, for every code point whose class (letter / number / White_Space / other) is the
// same in Unicode 15.0 (unicode_tables.hpp) and in the Unicode version of that module. The pattern
// is implemented as these rules, applied at the start of each piece:
//   1. ' followed by s t m d re ve ll (lowercase only) is a piece (a contraction);
//   2. U+0020 followed by a letter, number or other character joins the run of that class;
//   3. a letter, number or other character starts a maximal run of its class;
//   4. a White_Space run [i, k) is one piece when it ends the text; otherwise, if it has two or more
//      characters, [i, k-1) is a piece and its last character starts the next piece (rule 2 when it
//      is U+0020, else a one-character piece).
// The pieces concatenate to the input exactly.
//
// Invalid UTF-8: every byte that is not part of a well-formed sequence is a piece of its own, and
// it ends the text on both sides of it, the way a special token does: the text before it is split
// as if the text ended there. Nothing is rejected or replaced, so byte strings round-trip.
//
// Work is linear in the input length (each byte is classified a bounded number of times); the
// `pretokenize_stats` counter lets tests assert it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "einlm/tokenizer/unicode_tables.hpp"
#include "einlm/tokenizer/utf8.hpp"

namespace einlm::tokenizer {

/// How the GPT-2 pattern sees a code point.
enum class char_class : std::uint8_t { other = 0, letter = 1, number = 2, space = 3 };

/// The class of a Unicode scalar value (Unicode 15.0; unassigned code points are `other`).
constexpr char_class classify(char32_t cp) noexcept {
  if (cp >= 0x110000) return char_class::other;
  const unsigned block = detail::unicode_stage1[cp >> 8];
  const unsigned byte = detail::unicode_stage2[block * 64 + ((cp & 0xFF) >> 2)];
  return static_cast<char_class>((byte >> ((cp & 3) * 2)) & 3);
}

/// Work done by the pre-tokenizer (for tests that assert linear time by counting).
struct pretokenize_stats {
  std::uint64_t units = 0;   // classifications of a character or invalid byte (<= 3 per byte)
  std::uint64_t pieces = 0;  // pieces emitted
};

namespace detail {

// Classes as the splitter sees them: the four char_class values plus an invalid byte.
inline constexpr std::uint8_t k_other = 0, k_letter = 1, k_number = 2, k_space = 3, k_invalid = 4;

struct ascii_class_table {
  std::uint8_t c[128];
  constexpr ascii_class_table() : c{} {
    for (unsigned i = 0; i < 128; ++i) c[i] = static_cast<std::uint8_t>(classify(i));
  }
};
inline constexpr ascii_class_table ascii_classes{};

/// One character (or one invalid byte) of the input.
struct unit {
  std::uint8_t cls;  // k_other .. k_invalid
  std::uint8_t len;  // bytes
};

inline unit unit_at(const unsigned char* p, const unsigned char* end) noexcept {
  if (*p < 0x80) return {ascii_classes.c[*p], 1};
  const auto n = utf8_sequence_length(p, end);
  if (n == 0) return {k_invalid, 1};
  return {static_cast<std::uint8_t>(classify(utf8_decode(p, n))), static_cast<std::uint8_t>(n)};
}

/// Length of the contraction starting at p (which holds '), or 0.
inline std::size_t contraction_length(const unsigned char* p, const unsigned char* end) noexcept {
  if (end - p < 2) return 0;
  switch (p[1]) {
    case 's': case 't': case 'm': case 'd': return 2;
    case 'r': case 'v': return (end - p >= 3 && p[2] == 'e') ? 3 : 0;
    case 'l': return (end - p >= 3 && p[2] == 'l') ? 3 : 0;
    default: return 0;
  }
}

/// End of the maximal run of class `cls` starting at p.
inline const unsigned char* run_end(const unsigned char* p, const unsigned char* end,
                                    std::uint8_t cls, std::uint64_t& units) noexcept {
  // ASCII fast path: most text stays here.
  while (p < end) {
    ++units;
    if (*p < 0x80) {
      if (ascii_classes.c[*p] != cls) break;
      ++p;
      continue;
    }
    const unit u = unit_at(p, end);
    if (u.cls != cls) break;
    p += u.len;
  }
  return p;
}

/// Splits [begin, end) into GPT-2 pieces, calling emit(const char* piece, size_t length) for each.
/// `end_is_final`: the text ends at `end` (true), or it continues with a character that is not
/// White_Space (false; only valid when the text before `end` ends with a White_Space character
/// other than U+0020 — see find_safe_split).
template <class Emit>
void split_gpt2(const char* begin, const char* end, bool end_is_final, Emit&& emit,
                pretokenize_stats* stats = nullptr) {
  auto p = reinterpret_cast<const unsigned char*>(begin);
  const auto e = reinterpret_cast<const unsigned char*>(end);
  std::uint64_t units = 0, pieces = 0;
  auto out = [&](const unsigned char* a, const unsigned char* b) {
    ++pieces;
    emit(reinterpret_cast<const char*>(a), static_cast<std::size_t>(b - a));
  };
  while (p < e) {
    const unit u = unit_at(p, e);
    ++units;
    if (u.cls == k_invalid) {
      out(p, p + 1);
      ++p;
      continue;
    }
    if (*p == '\'') {
      if (const auto n = contraction_length(p, e)) {
        out(p, p + n);
        p += n;
        continue;
      }
    }
    if (u.cls != k_space) {  // rule 3: a run of letters, numbers or other characters
      const auto q = run_end(p + u.len, e, u.cls, units);
      out(p, q);
      p = q;
      continue;
    }
    if (*p == ' ' && p + 1 < e) {  // rule 2: a space joins the run that follows it
      const unit v = unit_at(p + 1, e);
      if (v.cls != k_space && v.cls != k_invalid) {
        ++units;
        const auto q = run_end(p + 1 + v.len, e, v.cls, units);
        out(p, q);
        p = q;
        continue;
      }
    }
    // rule 4: a White_Space run
    const unsigned char* last = p;
    const unsigned char* q = p + u.len;
    std::size_t count = 1;
    unit v{k_invalid, 0};
    while (q < e) {
      v = unit_at(q, e);
      ++units;
      if (v.cls != k_space) break;
      last = q;
      q += v.len;
      ++count;
    }
    const bool at_end = (q == e) ? end_is_final : (v.cls == k_invalid);
    if (at_end) {
      out(p, q);
      p = q;
    } else if (count >= 2) {
      out(p, last);  // the last character is handled as the start of the next piece
      p = last;
    } else {
      out(p, q);
      p = q;
    }
  }
  if (stats) {
    stats->units += units;
    stats->pieces += pieces;
  }
}

}  // namespace detail

/// Calls f(std::string_view piece) for each GPT-2 piece of `text`, in order.
template <class F>
void for_each_piece(std::string_view text, F&& f, pretokenize_stats* stats = nullptr) {
  detail::split_gpt2(
      text.data(), text.data() + text.size(), true,
      [&](const char* p, std::size_t n) { f(std::string_view(p, n)); }, stats);
}

/// The GPT-2 pieces of `text` (views into it).
inline std::vector<std::string_view> pretokenize(std::string_view text,
                                                 pretokenize_stats* stats = nullptr) {
  std::vector<std::string_view> pieces;
  pieces.reserve(text.size() / 4 + 1);
  for_each_piece(text, [&](std::string_view s) { pieces.push_back(s); }, stats);
  return pieces;
}

/// A position in [from, text.size()] where the text can be cut so that splitting both parts
/// (the first with end_is_final = false) gives the pieces of the whole; text.size() when there is
/// none in [from, from + max_scan). A cut at p is safe when the characters before and after p are
///   (a) White_Space other than U+0020 (a newline, typically), then not White_Space; or
///   (b) letter, number or other (but not an apostrophe), then a different one of the three,
/// because no piece of GPT-2's pattern can contain such a pair of characters.
inline std::size_t find_safe_split(std::string_view text, std::size_t from,
                                   std::size_t max_scan = std::size_t(-1)) noexcept {
  auto base = reinterpret_cast<const unsigned char*>(text.data());
  const auto e = base + text.size();
  if (from >= text.size()) return text.size();
  // Resynchronise on a character boundary: skip continuation bytes.
  auto p = base + from;
  while (p < e && (*p & 0xC0) == 0x80) ++p;
  const auto stop = (max_scan >= std::size_t(e - p)) ? e : p + max_scan;
  std::uint8_t prev = detail::k_invalid;  // class of the previous character
  bool prev_blocks = true;                // the previous character cannot end a piece early
  while (p < stop) {
    const auto u = detail::unit_at(p, e);
    if (u.cls != detail::k_invalid && !prev_blocks && prev != detail::k_invalid) {
      if (prev == detail::k_space ? u.cls != detail::k_space
                                  : (u.cls != detail::k_space && u.cls != prev))
        return static_cast<std::size_t>(p - base);
    }
    prev = u.cls;
    prev_blocks = (*p == ' ' || *p == '\'');
    p += u.len;
  }
  return text.size();
}

}  // namespace einlm::tokenizer
