// einlm/pattern/parse.hpp — the einops grammar, parsed by constexpr functions.
//
// parse_side("b (h w) c ...") turns one side of a pattern into a fixed-capacity description:
// axes (named, anonymous numbers, the ellipsis) and their grouping into dimensions, exactly as
// einops' ParsedExpression does (einops 0.8, parsing.py), including its errors:
//   - identifiers are runs of letters, digits and '_' (bytes ≥ 0x80 count as letters, so UTF-8
//     names such as "ß" work); a name may not start with a digit nor start or end with '_'
//     ('_' alone only where allowed: parse_shape and einsum);
//   - '...' at most once; other dots are errors;
//   - one level of brackets; '1' outside brackets and '()' are a dimension of length 1; '1' inside
//     brackets is dropped; 'N' > 1 is an anonymous axis, distinct from every other axis; '0' is an error;
//   - a repeated name is an error unless duplicates are allowed (einsum inputs).
// Errors are codes (error_code) plus the offending text; error_message() spells einops' sentence.
// Everything here is usable at compile time (patterns are template arguments) and at run time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace einlm::pattern {

/// Capacities: elementary axes named on one side, and dimensions (groups) on one side.
inline constexpr int max_side_axes = 24;
inline constexpr int max_side_groups = 16;

enum class error_code : std::uint8_t {
  none,
  // one side (ParsedExpression)
  unknown_character,        // Unknown character '{c}'
  dots_outside_ellipsis,    // Expression may contain dots only inside ellipsis (...)
  more_than_one_ellipsis,   // Expression may contain dots only inside ellipsis (...); only one ellipsis for tensor
  nested_brackets,          // Axis composition is one-level (brackets inside brackets not allowed)
  unbalanced_brackets,      // Brackets are not balanced
  unclosed_bracket,         // Imbalanced parentheses in expression: "{expr}"
  invalid_identifier,       // Invalid axis identifier: {x}\nnot a valid python identifier
  underscore_identifier,    // Invalid axis identifier: {x}\naxis name should should not start or end with underscore
  duplicate_axis,           // Indexing expression contains duplicate dimension "{x}"
  zero_anonymous_axis,      // Anonymous axis should have positive length, not 0
  too_many_axes,            // (capacity) einlm supports at most 24 axes and 16 dimensions per side
  // whole patterns (rearrange / reduce / repeat)
  missing_arrow,            // Pattern must contain '->' (einops: ValueError on unpacking)
  ellipsis_only_right,      // Ellipsis found in right side, but not left side of a pattern {p}
  ellipsis_parenthesized_left,  // Ellipsis inside parenthesis in the left side is not allowed: {p}
  anonymous_in_rearrange,   // Non-unitary anonymous axes are not supported in rearrange (exception is length 1)
  identifiers_one_side,     // Identifiers only on one side of expression (should be on both): {diff}
  unexpected_left_repeat,   // Unexpected identifiers on the left side of repeat: {diff}
  repeat_sizes_missing,     // Specify sizes for new axes in repeat: {axes}
  unexpected_right_reduce,  // Unexpected identifiers on the right side of reduce {op}: {diff}
  wrong_rank_ellipsis,      // Wrong shape: expected >={n} dims. Received {ndim}-dim tensor.
  wrong_rank,               // Wrong shape: expected {n} dims. Received {ndim}-dim tensor.
  invalid_axis_name,        // Invalid name for an axis ({x})
  axis_not_used,            // Axis {x} is not used in transform
  cannot_infer,             // Could not infer sizes for {unknown}
  cannot_divide,            // Shape mismatch, can't divide axis of length {L} in chunks of {K}
  length_mismatch,          // Shape mismatch, {L} != {K}
  mean_not_floating,        // reduce_mean is not available for non-floating tensors
  // einsum (einops' _compactify_pattern_for_einsum, then NumPy's einsum rules)
  einsum_missing_arrow,     // Einsum pattern must contain '->'.
  einsum_composition,       // Shape rearrangement is not yet supported in einsum.
  einsum_singleton,         // Singleton () axes are not yet supported in einsum.
  einsum_anonymous,         // Anonymous axes are not yet supported in einsum.
  einsum_too_many_axes,     // Too many axes in einsum.
  einsum_unknown_axis,      // Unknown axis {x} on right side of einsum {pattern}.
  einsum_no_tensors,        // `einops.einsum` takes at minimum two arguments: …
  einsum_operand_count,     // (NumPy) fewer/more operands provided to einstein sum function than specified …
  einsum_too_many_subscripts,  // (NumPy) einstein sum subscripts string contains too many subscripts for operand {k}
  einsum_too_few_subscripts,   // (NumPy) operand has more dimensions than subscripts given in einstein sum, …
  einsum_output_ellipsis,   // (NumPy) output has more dimensions than subscripts given in einstein sum, …
  einsum_diagonal_mismatch, // (NumPy) dimensions in single operand for collapsing index '{x}' don't match ({a} != {b})
  einsum_broadcast_mismatch,  // (NumPy) operands could not be broadcast together …
  einsum_capacity,          // (capacity) einlm's einsum takes at most 8 inputs and 16 distinct output and summed axes
};

/// An axis on one side: a name, an anonymous length (> 1), or the ellipsis.
struct axis_ref {
  std::string_view name;   // the identifier, or the digits of an anonymous axis
  std::int64_t length = 0;  // > 1 for an anonymous axis, 0 for a named one
  bool ellipsis = false;

  constexpr bool anonymous() const { return length > 1; }
};

/// One side of a pattern: its axes in order of appearance, grouped into dimensions.
struct side {
  axis_ref axes[max_side_axes] = {};
  int n_axes = 0;
  int group_first[max_side_groups] = {};  // first axis of each dimension
  int group_size[max_side_groups] = {};   // 0 for a dimension of length 1 ('1' or '()')
  bool group_bracketed[max_side_groups] = {};
  int n_groups = 0;
  bool has_ellipsis = false;
  bool ellipsis_parenthesized = false;
  int ellipsis_group = -1;                 // the dimension holding the ellipsis
  bool has_anonymous = false;              // anonymous axes of length > 1
  bool has_composition = false;            // a bracket with more than one axis

  error_code error = error_code::none;
  std::string_view error_text;             // the identifier or character concerned
  char error_char = 0;

  constexpr bool ok() const { return error == error_code::none; }
  /// Index in axes[] of the axis with this name, or -1 (anonymous axes never match).
  constexpr int find(std::string_view name) const {
    for (int i = 0; i < n_axes; ++i)
      if (!axes[i].anonymous() && !axes[i].ellipsis && axes[i].name == name) return i;
    return -1;
  }
};

namespace detail {

constexpr bool is_digit(char c) { return c >= '0' && c <= '9'; }
constexpr bool is_identifier_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}

constexpr bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_digit(c)) return false;
  return true;
}

constexpr std::int64_t to_number(std::string_view s) {
  std::int64_t v = 0;
  for (char c : s) {
    v = v * 10 + (c - '0');
    if (v > (std::int64_t{1} << 40)) return std::int64_t{1} << 40;
  }
  return v;
}

constexpr void fail(side& out, error_code code, std::string_view text = {}, char c = 0) {
  if (out.ok()) {
    out.error = code;
    out.error_text = text;
    out.error_char = c;
  }
}

}  // namespace detail

/// Checks an axis name as einops' check_axis_name_return_reason does; returns the error or none.
constexpr error_code check_axis_name(std::string_view name, bool allow_underscore = false) {
  if (name.empty() || detail::is_digit(name[0])) return error_code::invalid_identifier;
  for (char c : name)
    if (!detail::is_identifier_char(c)) return error_code::invalid_identifier;
  if (name.front() == '_' || name.back() == '_') {
    if (name == "_" && allow_underscore) return error_code::none;
    return error_code::underscore_identifier;
  }
  return error_code::none;
}

/// Parses one side of a pattern (see the file comment).
constexpr side parse_side(std::string_view s, bool allow_underscore = false, bool allow_duplicates = false) {
  side out{};
  // Dots: only one '...'.
  int dots = 0;
  bool has_triple = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '.') {
      ++dots;
      if (i + 2 < s.size() && s[i + 1] == '.' && s[i + 2] == '.') has_triple = true;
    }
  }
  if (dots > 0) {
    if (!has_triple) {
      detail::fail(out, error_code::dots_outside_ellipsis);
      return out;
    }
    if (dots != 3) {
      detail::fail(out, error_code::more_than_one_ellipsis);
      return out;
    }
  }

  bool in_bracket = false;
  auto open_group = [&](bool bracketed) {
    if (out.n_groups == max_side_groups) {
      detail::fail(out, error_code::too_many_axes);
      return;
    }
    out.group_first[out.n_groups] = out.n_axes;
    out.group_size[out.n_groups] = 0;
    out.group_bracketed[out.n_groups] = bracketed;
    ++out.n_groups;
  };
  auto add_to_group = [&](const axis_ref& a) {
    if (out.n_axes == max_side_axes) {
      detail::fail(out, error_code::too_many_axes);
      return;
    }
    out.axes[out.n_axes++] = a;
    ++out.group_size[out.n_groups - 1];
  };
  auto add_axis = [&](std::string_view token) {
    if (token == "...") {
      if (out.find("...") >= 0) detail::fail(out, error_code::duplicate_axis, token);
      out.has_ellipsis = true;
      out.ellipsis_parenthesized = in_bracket;
      if (!in_bracket) open_group(false);
      out.ellipsis_group = out.n_groups - 1;
      add_to_group(axis_ref{token, 0, true});
      return;
    }
    const bool number = detail::all_digits(token);
    if (number && detail::to_number(token) == 1) {
      if (!in_bracket) open_group(false);  // a dimension of length 1; inside brackets: nothing
      return;
    }
    if (number) {
      const std::int64_t v = detail::to_number(token);
      if (v == 0) {
        detail::fail(out, error_code::zero_anonymous_axis, token);
        return;
      }
      out.has_anonymous = true;
      if (!in_bracket) open_group(false);
      add_to_group(axis_ref{token, v, false});
      return;
    }
    const error_code name_error = check_axis_name(token, allow_underscore);
    if (name_error != error_code::none) {
      detail::fail(out, name_error, token);
      return;
    }
    const bool underscore = allow_underscore && token == "_";
    if (!underscore && !allow_duplicates && out.find(token) >= 0) {
      detail::fail(out, error_code::duplicate_axis, token);
      return;
    }
    if (!in_bracket) open_group(false);
    add_to_group(axis_ref{token, 0, false});
  };

  std::size_t start = 0;
  bool in_token = false;
  for (std::size_t i = 0; i <= s.size() && out.ok(); ++i) {
    const char c = i < s.size() ? s[i] : ' ';
    const bool token_char = detail::is_identifier_char(c) || c == '.';
    if (token_char) {
      if (!in_token) {
        start = i;
        in_token = true;
      }
      continue;
    }
    if (in_token) {
      add_axis(s.substr(start, i - start));
      in_token = false;
      if (!out.ok()) break;
    }
    if (i == s.size()) break;
    if (c == ' ') continue;
    if (c == '(') {
      if (in_bracket) {
        detail::fail(out, error_code::nested_brackets);
        break;
      }
      in_bracket = true;
      open_group(true);
    } else if (c == ')') {
      if (!in_bracket) {
        detail::fail(out, error_code::unbalanced_brackets);
        break;
      }
      in_bracket = false;
      if (out.group_size[out.n_groups - 1] > 1) out.has_composition = true;
    } else {
      detail::fail(out, error_code::unknown_character, s.substr(i, 1), c);
      break;
    }
  }
  if (out.ok() && in_bracket) detail::fail(out, error_code::unclosed_bracket, s);
  return out;
}

/// A pattern "left -> right" split in two (error missing_arrow when there is no single "->").
struct arrow_split {
  std::string_view left, right;
  bool ok = false;
};

constexpr arrow_split split_arrow(std::string_view p) {
  const std::size_t a = p.find("->");
  if (a == std::string_view::npos || p.find("->", a + 2) != std::string_view::npos) return {};
  return {p.substr(0, a), p.substr(a + 2), true};
}

}  // namespace einlm::pattern
