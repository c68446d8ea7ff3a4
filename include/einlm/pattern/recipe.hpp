// einlm/pattern/recipe.hpp — from a rearrange/reduce/repeat pattern to a transformation recipe.
//
// make_recipe(pattern, op, rank, given axes) follows einops' _prepare_transformation_recipe: it
// checks the pattern against the operation (same identifiers on both sides for rearrange, right ⊆
// left for reduce, left ⊆ right for repeat, sizes for new repeat axes), expands the ellipsis for
// the input's rank, and lists the elementary axes — the left side's axes in order, then the axes
// that only the right side has (repeat) — with:
//   in groups   which elementary axes compose each input dimension (row-major: the last varies
//               fastest) and which one of them, if any, is inferred from the input's extent;
//   out groups  which compose each output dimension;
//   reduced     the left axes absent on the right (reduce);
//   repeated    the right axes absent on the left (repeat).
// When the input extents and the given sizes are static, resolve_static() computes every length at
// compile time (and reports shape errors then); resolve() does the same at run time.
// Every function is constexpr; the recipe is a fixed-capacity aggregate.
#pragma once

#include <cstdint>
#include <string_view>

#include "einlm/pattern/parse.hpp"

namespace einlm::pattern {

inline constexpr int max_elementary = 32;
inline constexpr int max_dims = 16;
inline constexpr std::int64_t unknown_length = -1;

enum class op_kind : std::uint8_t { rearrange, reduce, repeat };

/// An axis size given by the caller: a name, and a length (unknown_length when it is only known at
/// run time).
struct given_axis {
  std::string_view name;
  std::int64_t length = unknown_length;
};

struct recipe {
  error_code error = error_code::none;
  std::string_view error_text;      // the identifier, character or pattern concerned
  std::int64_t error_a = 0, error_b = 0;
  // The set of axes an error names (einops prints a Python set), in order of appearance; an
  // anonymous axis has its length in error_lengths.
  std::string_view error_names[max_side_axes] = {};
  std::int64_t error_lengths[max_side_axes] = {};
  int n_error_names = 0;

  int n_in = 0, n_out = 0, n_elem = 0;
  // elementary axes
  std::string_view name[max_elementary] = {};   // ellipsis axes: "..." (with ellipsis_index)
  int ellipsis_index[max_elementary] = {};      // position within the ellipsis, or -1
  std::int64_t anonymous_length[max_elementary] = {};  // > 1 for anonymous axes
  int given[max_elementary] = {};               // index of the given axis supplying the length, or -1
  bool reduced[max_elementary] = {};
  bool repeated[max_elementary] = {};
  // input dimensions: axes in in_axes[in_first[d] … in_first[d] + in_size[d])
  int in_first[max_dims] = {}, in_size[max_dims] = {};
  int in_axes[max_elementary] = {};
  int in_unknown[max_dims] = {};                // axis inferred from the input extent, or -1
  // output dimensions
  int out_first[max_dims] = {}, out_size[max_dims] = {};
  int out_axes[max_elementary] = {};

  constexpr bool ok() const { return error == error_code::none; }
};

namespace detail {

constexpr void fail(recipe& r, error_code code, std::string_view text = {}, std::int64_t a = 0, std::int64_t b = 0) {
  if (r.ok()) {
    r.error = code;
    r.error_text = text;
    r.error_a = a;
    r.error_b = b;
  }
}

constexpr bool same_axis(const axis_ref& a, const axis_ref& b) {
  if (a.ellipsis || b.ellipsis) return a.ellipsis && b.ellipsis;
  if (a.anonymous() || b.anonymous()) return false;  // anonymous axes are all distinct
  return a.name == b.name;
}

constexpr int find_axis(const side& s, const axis_ref& a) {
  for (int i = 0; i < s.n_axes; ++i)
    if (same_axis(s.axes[i], a)) return i;
  return -1;
}

}  // namespace detail

/// The recipe of `pattern` for operation `op` applied to a tensor of rank `ndim`, with sizes given
/// for the axes in given[0 … n_given).
constexpr recipe make_recipe(std::string_view pattern, op_kind op, int ndim, const given_axis* given, int n_given) {
  recipe r{};
  const arrow_split parts = split_arrow(pattern);
  if (!parts.ok) {
    detail::fail(r, error_code::missing_arrow, pattern);
    return r;
  }
  const side left = parse_side(parts.left);
  const side right = parse_side(parts.right);
  if (!left.ok()) {
    detail::fail(r, left.error, left.error_text);
    return r;
  }
  if (!right.ok()) {
    detail::fail(r, right.error, right.error_text);
    return r;
  }
  if (!left.has_ellipsis && right.has_ellipsis) {
    detail::fail(r, error_code::ellipsis_only_right, pattern);
    return r;
  }
  if (left.has_ellipsis && left.ellipsis_parenthesized) {
    detail::fail(r, error_code::ellipsis_parenthesized_left, pattern);
    return r;
  }

  // The axes of a that b lacks, as the error's set of names.
  auto collect = [&](const side& a, const side& b) {
    r.n_error_names = 0;
    for (int i = 0; i < a.n_axes; ++i) {
      if (detail::find_axis(b, a.axes[i]) >= 0) continue;
      r.error_names[r.n_error_names] = a.axes[i].ellipsis ? std::string_view("\xE2\x80\xA6") : a.axes[i].name;
      r.error_lengths[r.n_error_names++] = a.axes[i].length;
    }
    return r.n_error_names;
  };

  if (op == op_kind::rearrange) {
    if (left.has_anonymous || right.has_anonymous) {
      detail::fail(r, error_code::anonymous_in_rearrange);
      return r;
    }
    if (collect(left, right) > 0 || collect(right, left) > 0) {
      detail::fail(r, error_code::identifiers_one_side, pattern);
      return r;
    }
  } else if (op == op_kind::repeat) {
    if (collect(left, right) > 0) {
      detail::fail(r, error_code::unexpected_left_repeat, pattern);
      return r;
    }
    // New named axes on the right need a given size.
    r.n_error_names = 0;
    for (int i = 0; i < right.n_axes; ++i) {
      const axis_ref& a = right.axes[i];
      if (a.ellipsis || a.anonymous() || detail::find_axis(left, a) >= 0) continue;
      bool has_size = false;
      for (int g = 0; g < n_given; ++g)
        if (given[g].name == a.name) has_size = true;
      if (!has_size) r.error_names[r.n_error_names++] = a.name;
    }
    if (r.n_error_names > 0) {
      detail::fail(r, error_code::repeat_sizes_missing, pattern);
      return r;
    }
  } else {
    if (collect(right, left) > 0) {
      detail::fail(r, error_code::unexpected_right_reduce, pattern);
      return r;
    }
  }

  // Ellipsis expansion: the left ellipsis covers ndim - (groups - 1) dimensions.
  int ellipsis_dims = 0;
  if (left.has_ellipsis) {
    const int others = left.n_groups - 1;
    if (ndim < others) {
      detail::fail(r, error_code::wrong_rank_ellipsis, pattern, others, ndim);
      return r;
    }
    ellipsis_dims = ndim - others;
  } else if (ndim != left.n_groups) {
    detail::fail(r, error_code::wrong_rank, pattern, left.n_groups, ndim);
    return r;
  }
  if (ndim > max_dims) {
    detail::fail(r, error_code::too_many_axes, pattern);
    return r;
  }

  // Elementary axes: the left side's, in order (the ellipsis expanded), then right-only axes.
  auto add_elementary = [&](const axis_ref& a, int ellipsis_position) -> int {
    if (r.n_elem == max_elementary) {
      detail::fail(r, error_code::too_many_axes, pattern);
      return 0;
    }
    const int e = r.n_elem++;
    r.name[e] = a.name;
    r.ellipsis_index[e] = ellipsis_position;
    r.anonymous_length[e] = a.length;
    r.given[e] = -1;
    return e;
  };
  int left_elementary[max_side_axes] = {};  // first elementary axis of each left axis
  r.n_in = 0;
  int in_cursor = 0;
  for (int g = 0; g < left.n_groups && r.ok(); ++g) {
    const int first = left.group_first[g], size = left.group_size[g];
    if (g == left.ellipsis_group) {
      left_elementary[first] = r.n_elem;
      for (int k = 0; k < ellipsis_dims; ++k) {
        const int e = add_elementary(left.axes[first], k);
        r.in_first[r.n_in] = in_cursor;
        r.in_size[r.n_in] = 1;
        r.in_axes[in_cursor++] = e;
        ++r.n_in;
      }
      continue;
    }
    r.in_first[r.n_in] = in_cursor;
    r.in_size[r.n_in] = size;
    for (int k = 0; k < size; ++k) {
      left_elementary[first + k] = r.n_elem;
      r.in_axes[in_cursor++] = add_elementary(left.axes[first + k], -1);
    }
    ++r.n_in;
  }
  int right_elementary[max_side_axes] = {};
  for (int i = 0; i < right.n_axes && r.ok(); ++i) {
    const int j = detail::find_axis(left, right.axes[i]);
    if (j >= 0) {
      right_elementary[i] = left_elementary[j];
    } else {
      right_elementary[i] = add_elementary(right.axes[i], -1);
      r.repeated[right_elementary[i]] = true;
    }
  }
  if (!r.ok()) return r;
  for (int i = 0; i < left.n_axes; ++i) {
    if (detail::find_axis(right, left.axes[i]) >= 0) continue;
    const int e = left_elementary[i];
    const int count = left.axes[i].ellipsis ? ellipsis_dims : 1;
    for (int k = 0; k < count; ++k) r.reduced[e + k] = true;
  }

  // Given sizes: valid names that the pattern uses.
  for (int g = 0; g < n_given; ++g) {
    if (check_axis_name(given[g].name) != error_code::none) {
      detail::fail(r, error_code::invalid_axis_name, given[g].name);
      return r;
    }
    bool used = false;
    for (int e = 0; e < r.n_elem; ++e) {
      if (r.ellipsis_index[e] < 0 && r.anonymous_length[e] == 0 && r.name[e] == given[g].name) {
        r.given[e] = g;
        used = true;
      }
    }
    if (!used) {
      detail::fail(r, error_code::axis_not_used, given[g].name);
      return r;
    }
  }

  // At most one axis per input dimension without a known length.
  for (int d = 0; d < r.n_in; ++d) {
    r.in_unknown[d] = -1;
    int unknown = 0;
    r.n_error_names = 0;
    for (int k = 0; k < r.in_size[d]; ++k) {
      const int e = r.in_axes[r.in_first[d] + k];
      if (r.anonymous_length[e] == 0 && r.given[e] < 0) {
        ++unknown;
        r.in_unknown[d] = e;
        r.error_names[r.n_error_names++] = r.name[e];
      }
    }
    if (unknown > 1) {
      detail::fail(r, error_code::cannot_infer, pattern);
      return r;
    }
  }

  // Output dimensions: the right side's groups, the ellipsis expanded (a bracketed ellipsis merges
  // its axes into one dimension).
  int out_cursor = 0;
  r.n_out = 0;
  for (int g = 0; g < right.n_groups; ++g) {
    const int first = right.group_first[g], size = right.group_size[g];
    if (g == right.ellipsis_group && !right.group_bracketed[g]) {
      const int e0 = right_elementary[first];
      for (int k = 0; k < ellipsis_dims; ++k) {
        r.out_first[r.n_out] = out_cursor;
        r.out_size[r.n_out] = 1;
        r.out_axes[out_cursor++] = e0 + k;
        ++r.n_out;
      }
      continue;
    }
    if (r.n_out == max_dims) {
      detail::fail(r, error_code::too_many_axes, pattern);
      return r;
    }
    r.out_first[r.n_out] = out_cursor;
    int count = 0;
    for (int k = 0; k < size; ++k) {
      const int e = right_elementary[first + k];
      const int span = right.axes[first + k].ellipsis ? ellipsis_dims : 1;
      for (int t = 0; t < span; ++t) {
        if (out_cursor == max_elementary) {
          detail::fail(r, error_code::too_many_axes, pattern);
          return r;
        }
        r.out_axes[out_cursor++] = e + t;
        ++count;
      }
    }
    r.out_size[r.n_out] = count;
    ++r.n_out;
  }
  r.n_error_names = 0;
  return r;
}

/// Lengths of the elementary axes, from the input extents and the given lengths; an entry stays
/// unknown_length when it depends on an unknown extent or given length. Shape errors
/// (cannot_divide, length_mismatch) are reported when the numbers involved are known.
struct resolved {
  std::int64_t length[max_elementary] = {};
  std::int64_t out_extent[max_dims] = {};
  error_code error = error_code::none;
  std::int64_t error_a = 0, error_b = 0;
  constexpr bool ok() const { return error == error_code::none; }
};

constexpr resolved resolve(const recipe& r, const std::int64_t* in_extents, const std::int64_t* given_lengths) {
  resolved out{};
  for (int e = 0; e < r.n_elem; ++e) {
    if (r.anonymous_length[e] > 1) out.length[e] = r.anonymous_length[e];
    else if (r.given[e] >= 0) out.length[e] = given_lengths[r.given[e]];
    else out.length[e] = unknown_length;
  }
  for (int d = 0; d < r.n_in && out.ok(); ++d) {
    const std::int64_t extent = in_extents[d];
    std::int64_t known = 1;
    bool known_all = true;
    for (int k = 0; k < r.in_size[d]; ++k) {
      const int e = r.in_axes[r.in_first[d] + k];
      if (e == r.in_unknown[d]) continue;
      if (out.length[e] == unknown_length) known_all = false;
      else known *= out.length[e];
    }
    if (r.in_unknown[d] < 0) {
      if (known_all && extent != unknown_length && extent != known) {
        out.error = error_code::length_mismatch;
        out.error_a = extent;
        out.error_b = known;
      }
    } else if (known_all && extent != unknown_length) {
      if (known == 0 || extent % known != 0) {
        out.error = error_code::cannot_divide;
        out.error_a = extent;
        out.error_b = known;
      } else {
        out.length[r.in_unknown[d]] = extent / known;
      }
    }
  }
  for (int o = 0; o < r.n_out; ++o) {
    std::int64_t p = 1;
    for (int k = 0; k < r.out_size[o]; ++k) {
      const std::int64_t l = out.length[r.out_axes[r.out_first[o] + k]];
      if (l == unknown_length) {
        p = unknown_length;
        break;
      }
      p *= l;
    }
    out.out_extent[o] = p;
  }
  return out;
}

}  // namespace einlm::pattern
