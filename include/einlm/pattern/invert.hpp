// einlm/pattern/invert.hpp — a pattern with its sides exchanged, for the adjoints of einops
// operations (einlm/einops/adjoint.hpp).
//
// swap_sides<Capacity>("b s (h d) -> b h s d", rank 3) is the text "b h s d -> b s (h d)", built
// by a constexpr function: the right side's dimensions, " -> ", the left side's. The ellipsis is
// written out as rank-dependent named axes, because the swapped pattern may not keep it: "(...)"
// on the right becomes a bracket on the left (not allowed), and an ellipsis that a reduce removes
// would be on the right only. The names are ellipsis_axis_name(prefix, k): "ell0", "ell1", … with
// a prefix ("ell", "elll", …) that no axis of the pattern starts with, so they never collide.
// Dimensions of length 1 ("1", "()", "(1)") are written "()"; anonymous axes keep their digits
// (each remains distinct from every other axis). Capacity bounds the text's length:
// swapped_capacity(pattern size, rank) always suffices.
// Everything here is constexpr; a text whose pattern does not parse (or does not fit the rank) is
// returned with ok == false.
#pragma once

#include <cstddef>
#include <string_view>

#include "einlm/pattern/parse.hpp"

namespace einlm::pattern {

/// Longest prefix tried for the names of the ellipsis axes.
inline constexpr int max_ellipsis_prefix = 32;

/// Characters a swapped pattern can need: the pattern's, " -> ", and the ellipsis's names.
constexpr std::size_t swapped_capacity(std::size_t pattern_size, int rank) {
  return pattern_size + 8 + static_cast<std::size_t>(rank > 0 ? rank : 0) * (max_ellipsis_prefix + 4);
}

/// Length of the prefix "el…l" for the ellipsis axes' names: the shortest (at least "ell") that
/// no token of the pattern starts with; 0 when none up to max_ellipsis_prefix fits.
constexpr int ellipsis_prefix_length(std::string_view pattern) {
  for (int n = 3; n <= max_ellipsis_prefix; ++n) {
    bool clash = false;
    std::size_t i = 0;
    while (i < pattern.size() && !clash) {
      if (!detail::is_identifier_char(pattern[i])) {
        ++i;
        continue;
      }
      std::size_t j = i;
      while (j < pattern.size() && detail::is_identifier_char(pattern[j])) ++j;
      // Does the token [i, j) start with 'e' followed by n - 1 'l's?
      if (j - i >= static_cast<std::size_t>(n) && pattern[i] == 'e') {
        bool same = true;
        for (int k = 1; k < n; ++k)
          if (pattern[i + static_cast<std::size_t>(k)] != 'l') same = false;
        clash = same;
      }
      i = j;
    }
    if (!clash) return n;
  }
  return 0;
}

/// Writes the name of ellipsis axis k ("el…l" + k in decimal) to out; returns its length.
constexpr int ellipsis_axis_name(char* out, int prefix_length, int k) {
  int n = 0;
  out[n++] = 'e';
  for (int i = 1; i < prefix_length; ++i) out[n++] = 'l';
  char digits[12] = {};
  int d = 0;
  do {
    digits[d++] = static_cast<char>('0' + k % 10);
    k /= 10;
  } while (k > 0);
  while (d > 0) out[n++] = digits[--d];
  return n;
}

/// A pattern's text of at most Capacity characters.
template <std::size_t Capacity>
struct pattern_text {
  char chars[Capacity + 1] = {};
  std::size_t size = 0;
  bool ok = false;

  constexpr void append(std::string_view s) {
    for (char c : s)
      if (size < Capacity) chars[size++] = c;
  }
  constexpr std::string_view view() const { return std::string_view(chars, size); }
};

namespace detail {

/// Appends one side's dimensions, the ellipsis written out as `ellipsis_dims` names.
template <std::size_t Capacity>
constexpr void write_side(pattern_text<Capacity>& out, const side& s, int ellipsis_dims, int prefix_length) {
  bool first_token = true;
  auto separate = [&] {
    if (!first_token) out.append(" ");
    first_token = false;
  };
  auto write_axis = [&](const axis_ref& a, bool in_bracket) {
    if (!a.ellipsis) {
      if (in_bracket && out.size > 0 && out.chars[out.size - 1] != '(') out.append(" ");
      if (!in_bracket) separate();
      out.append(a.name);
      return;
    }
    for (int k = 0; k < ellipsis_dims; ++k) {
      if (in_bracket && out.size > 0 && out.chars[out.size - 1] != '(') out.append(" ");
      if (!in_bracket) separate();
      char name[max_ellipsis_prefix + 12] = {};
      const int n = ellipsis_axis_name(name, prefix_length, k);
      out.append(std::string_view(name, static_cast<std::size_t>(n)));
    }
  };
  for (int g = 0; g < s.n_groups; ++g) {
    const int first = s.group_first[g], size = s.group_size[g];
    if (!s.group_bracketed[g] && size == 1) {
      write_axis(s.axes[first], false);
      continue;
    }
    // A bracket, or a dimension of length 1 ("1"), written "(…)" / "()".
    separate();
    out.append("(");
    for (int k = 0; k < size; ++k) write_axis(s.axes[first + k], true);
    out.append(")");
  }
}

}  // namespace detail

/// The pattern with its sides exchanged and its ellipsis written out for an input of rank `rank`
/// (the rank of the original pattern's left side); see the file comment.
template <std::size_t Capacity>
constexpr pattern_text<Capacity> swap_sides(std::string_view pattern, int rank) {
  pattern_text<Capacity> out{};
  const arrow_split parts = split_arrow(pattern);
  if (!parts.ok) return out;
  const side left = parse_side(parts.left);
  const side right = parse_side(parts.right);
  if (!left.ok() || !right.ok()) return out;
  int ellipsis_dims = 0;
  if (left.has_ellipsis) {
    ellipsis_dims = rank - (left.n_groups - 1);
    if (ellipsis_dims < 0) return out;
  } else if (right.has_ellipsis) {
    return out;
  }
  const int prefix_length = ellipsis_prefix_length(pattern);
  if (prefix_length == 0) return out;
  if (pattern.size() + 8 + static_cast<std::size_t>(ellipsis_dims) * (max_ellipsis_prefix + 4) > Capacity) return out;
  detail::write_side(out, right, ellipsis_dims, prefix_length);
  out.append(" -> ");
  detail::write_side(out, left, ellipsis_dims, prefix_length);
  out.ok = true;
  return out;
}

}  // namespace einlm::pattern
