// einlm/pattern/einsum.hpp — einsum patterns, parsed and laid out by constexpr functions.
//
// parse_einsum("b i d, b j d -> b i j") follows einops' _compactify_pattern_for_einsum (einops
// 0.8): '->' is required; inputs are separated by commas; each side is an einops expression (names
// of several letters, '_' allowed as a name, '...' once per term); a name may repeat inside one
// input (a diagonal or a trace) but not on the output; compositions, '()'/'1' and anonymous axes
// are errors; at most 52 distinct names; every output name must appear in some input.
//
// layout_einsum(pattern, ranks) then applies NumPy's einsum rules for the given input ranks: each
// input without '...' has exactly as many dimensions as names; the ellipsis takes the rest, and the
// ellipsis parts of all inputs are broadcast right-aligned; when some input's ellipsis covers
// dimensions, the output must have '...'. It numbers the *joint* axes the computation runs over:
// the output's axes first, in output order, then the summed axes in order of first appearance.
// Every input dimension maps to one joint axis (two dimensions of one input may map to the same
// one: a diagonal).
//
// Errors are error_codes (see parse.hpp); their sentences are in errors.hpp.
#pragma once

#include <cstdint>
#include <string_view>

#include "einlm/pattern/parse.hpp"
#include "einlm/pattern/recipe.hpp"

namespace einlm::pattern {

/// Capacities: inputs of one einsum, distinct names (einops' limit: it maps names to a-zA-Z), and
/// joint axes (output plus summed axes, ellipsis dimensions included).
inline constexpr int max_einsum_inputs = 8;
inline constexpr int max_einsum_names = 52;
inline constexpr int max_einsum_joint = max_dims;

/// One input or the output: its written items, each a name's number or -1 for '...'.
struct einsum_term {
  int item[max_side_groups] = {};
  int n_items = 0;
  int n_named = 0;
  int ellipsis_at = -1;  // index of '...' among the items, or -1
};

struct einsum_pattern {
  einsum_term in[max_einsum_inputs] = {};
  int n_inputs = 0;
  einsum_term out{};
  std::string_view name[max_einsum_names] = {};
  int n_names = 0;

  error_code error = error_code::none;
  std::string_view error_text;  // the identifier or character concerned

  constexpr bool ok() const { return error == error_code::none; }
  constexpr int find(std::string_view n) const {
    for (int i = 0; i < n_names; ++i)
      if (name[i] == n) return i;
    return -1;
  }
};

namespace detail {

/// Distinct identifiers in a text (for the "too many axes" check when a side exceeds capacity).
constexpr int count_distinct_identifiers(std::string_view s) {
  std::string_view seen[max_einsum_names + 1] = {};
  int n = 0;
  std::size_t i = 0;
  while (i < s.size() && n <= max_einsum_names) {
    if (!is_identifier_char(s[i]) || is_digit(s[i])) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < s.size() && is_identifier_char(s[j])) ++j;
    const std::string_view id = s.substr(i, j - i);
    bool found = false;
    for (int k = 0; k < n; ++k) found = found || seen[k] == id;
    if (!found) seen[n++] = id;
    i = j;
  }
  return n;
}

constexpr void fail(einsum_pattern& p, error_code code, std::string_view text = {}) {
  if (p.ok()) {
    p.error = code;
    p.error_text = text;
  }
}

/// The items of one parsed side as einsum sees them (einops' _validate_einsum_axis_name).
constexpr void take_items(const side& s, einsum_term& t, einsum_pattern& p, bool output) {
  for (int g = 0; g < s.n_groups && p.ok(); ++g) {
    const int first = s.group_first[g], size = s.group_size[g];
    if (size == 1 && s.axes[first].ellipsis && !s.group_bracketed[g]) {
      t.ellipsis_at = t.n_items;
      t.item[t.n_items++] = -1;
      continue;
    }
    if (size == 0) return fail(p, error_code::einsum_singleton);
    if (size > 1 || s.axes[first].ellipsis) return fail(p, error_code::einsum_composition);
    if (s.axes[first].anonymous()) return fail(p, error_code::einsum_anonymous);
    const std::string_view n = s.axes[first].name;
    int id = p.find(n);
    if (id < 0) {
      if (output) return fail(p, error_code::einsum_unknown_axis, n);
      if (p.n_names == max_einsum_names) return fail(p, error_code::einsum_too_many_axes);
      id = p.n_names;
      p.name[p.n_names++] = n;
    }
    t.item[t.n_items++] = id;
    ++t.n_named;
  }
}

}  // namespace detail

/// Parses an einsum pattern (see the file comment).
constexpr einsum_pattern parse_einsum(std::string_view text) {
  einsum_pattern p{};
  const std::size_t arrow = text.find("->");
  if (arrow == std::string_view::npos) {
    detail::fail(p, error_code::einsum_missing_arrow);
    return p;
  }
  if (text.find("->", arrow + 2) != std::string_view::npos) {
    detail::fail(p, error_code::missing_arrow, text);
    return p;
  }
  const std::string_view left = text.substr(0, arrow), right = text.substr(arrow + 2);

  // Parse every input, then the output (einops' order), keeping each side's description.
  side sides[max_einsum_inputs] = {};
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = left.find(',', start);
    const std::string_view piece = left.substr(start, comma == std::string_view::npos ? left.size() - start : comma - start);
    if (p.n_inputs == max_einsum_inputs) {
      detail::fail(p, error_code::einsum_capacity);
      return p;
    }
    sides[p.n_inputs] = parse_side(piece, /*allow_underscore=*/true, /*allow_duplicates=*/true);
    if (!sides[p.n_inputs].ok()) {
      const bool too_many = sides[p.n_inputs].error == error_code::too_many_axes &&
                            detail::count_distinct_identifiers(left) > max_einsum_names;
      if (too_many) detail::fail(p, error_code::einsum_too_many_axes);
      else detail::fail(p, sides[p.n_inputs].error, sides[p.n_inputs].error_text);
      return p;
    }
    ++p.n_inputs;
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  const side out = parse_side(right, /*allow_underscore=*/true, /*allow_duplicates=*/false);
  if (!out.ok()) {
    detail::fail(p, out.error, out.error_text);
    return p;
  }
  for (int k = 0; k < p.n_inputs && p.ok(); ++k) detail::take_items(sides[k], p.in[k], p, false);
  if (p.ok()) detail::take_items(out, p.out, p, true);
  return p;
}

/// The joint axes of an einsum for given input ranks (see the file comment).
struct einsum_layout {
  error_code error = error_code::none;
  int error_input = 0;  // the input an error concerns

  int n_inputs = 0;
  int rank[max_einsum_inputs] = {};
  int n_ellipsis = 0;  // dimensions the broadcast ellipsis parts cover
  int n_joint = 0;     // output axes, then summed axes
  int n_out = 0;       // the output's rank: its joint axes are 0 … n_out-1
  /// joint_of[k][d]: the joint axis of input k's dimension d.
  int joint_of[max_einsum_inputs][max_dims] = {};
  /// The name of each joint axis (-1 for an ellipsis dimension; then ellipsis_dim says which).
  int name_of[max_einsum_joint] = {};
  int ellipsis_dim[max_einsum_joint] = {};
  /// The number of the joint axis carrying each name (-1 while unused).
  int joint_of_name[max_einsum_names] = {};

  constexpr bool ok() const { return error == error_code::none; }
  /// Whether input k has joint axis j among its dimensions.
  constexpr bool has(int k, int j) const {
    for (int d = 0; d < rank[k]; ++d)
      if (joint_of[k][d] == j) return true;
    return false;
  }
  /// Whether input k has joint axis j more than once (a diagonal).
  constexpr bool diagonal(int k, int j) const {
    int n = 0;
    for (int d = 0; d < rank[k]; ++d) n += joint_of[k][d] == j;
    return n > 1;
  }
};

constexpr einsum_layout layout_einsum(const einsum_pattern& p, const int* ranks, int n_ranks) {
  einsum_layout l{};
  if (n_ranks != p.n_inputs) {
    l.error = error_code::einsum_operand_count;
    return l;
  }
  l.n_inputs = p.n_inputs;
  // Ellipsis lengths.
  int ellipsis_len[max_einsum_inputs] = {};
  for (int k = 0; k < p.n_inputs; ++k) {
    l.rank[k] = ranks[k];
    const einsum_term& t = p.in[k];
    if (ranks[k] < t.n_named) {
      l.error = error_code::einsum_too_many_subscripts;
      l.error_input = k;
      return l;
    }
    if (t.ellipsis_at < 0 && ranks[k] != t.n_named) {
      l.error = error_code::einsum_too_few_subscripts;
      l.error_input = k;
      return l;
    }
    ellipsis_len[k] = ranks[k] - t.n_named;
    if (ellipsis_len[k] > l.n_ellipsis) l.n_ellipsis = ellipsis_len[k];
  }
  if (l.n_ellipsis > 0 && p.out.ellipsis_at < 0) {
    l.error = error_code::einsum_output_ellipsis;
    return l;
  }
  for (int n = 0; n < max_einsum_names; ++n) l.joint_of_name[n] = -1;
  // Output axes, in output order.
  auto add_joint = [&](int name, int ellipsis_dim) {
    if (l.n_joint == max_einsum_joint) {
      l.error = error_code::einsum_capacity;
      return -1;
    }
    l.name_of[l.n_joint] = name;
    l.ellipsis_dim[l.n_joint] = ellipsis_dim;
    if (name >= 0) l.joint_of_name[name] = l.n_joint;
    return l.n_joint++;
  };
  for (int i = 0; i < p.out.n_items && l.ok(); ++i) {
    if (p.out.item[i] < 0) {
      for (int e = 0; e < l.n_ellipsis && l.ok(); ++e) add_joint(-1, e);
    } else {
      add_joint(p.out.item[i], -1);
    }
  }
  l.n_out = l.n_joint;
  // Summed axes, in order of first appearance.
  for (int n = 0; n < p.n_names && l.ok(); ++n)
    if (l.joint_of_name[n] < 0) add_joint(n, -1);
  if (!l.ok()) return l;
  // Each input dimension's joint axis; ellipsis parts right-aligned.
  int ellipsis_joint[max_dims] = {};
  for (int j = 0; j < l.n_joint; ++j)
    if (l.name_of[j] < 0) ellipsis_joint[l.ellipsis_dim[j]] = j;
  for (int k = 0; k < p.n_inputs; ++k) {
    const einsum_term& t = p.in[k];
    int d = 0;
    for (int i = 0; i < t.n_items; ++i) {
      if (t.item[i] < 0) {
        for (int e = 0; e < ellipsis_len[k]; ++e) l.joint_of[k][d++] = ellipsis_joint[l.n_ellipsis - ellipsis_len[k] + e];
      } else {
        l.joint_of[k][d++] = l.joint_of_name[t.item[i]];
      }
    }
  }
  return l;
}

}  // namespace einlm::pattern
