// einlm/einops.hpp — einops in C++: rearrange, reduce and repeat with patterns parsed at compile
// time, shapes checked at compile time when they are static, and lazy results evaluated in one
// fused pass on the CPU or the GPU.
//
//   rearrange<"b s (h d) -> b h s d">(x, axis<"h", 8>{})             static size for h
//   rearrange<"b s (h d) -> b h s d">(x, axis_size<"h">{heads})      size known at run time
//   reduce<"b s d -> b d", "mean">(x)                                 sum mean max min prod any all
//   repeat<"h w -> h w c">(x, axis<"c", 3>{})
//   einsum<"b h i d, b h j d -> b h i j">(q, k)                      einlm/linalg/einsum.hpp
// x is a tensor, a view (any strides), a lazy expression, or a list of equally shaped operands
// (stacked on a new first axis, as einops does). The semantics are einops 0.8's, rule by rule; the
// errors are its sentences: static_asserts when the pattern or the static shapes are wrong,
// einlm::pattern_error (einops' full message) when dynamic extents do not fit.
//
// Results: a pure reshape of a contiguous tensor or view is a contiguous view (no copy); a
// rearrange or repeat of a tensor or view is a `rearranged_array` (its to_view() gives a strided
// view when one exists); anything else is a lazy node. The output's extents are static whenever the
// input's extents and the given sizes are.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <array>
#include <tuple>
#include <utility>
#include <vector>

#include "einlm/core/config.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/extents.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/expr.hpp"
#include "einlm/expr/rearrange.hpp"
#include "einlm/einops/axis.hpp"
#include "einlm/einops/pack.hpp"
#include "einlm/einops/parse_shape.hpp"
#include "einlm/expr/reduce.hpp"
#include "einlm/linalg/einsum.hpp"
#include "einlm/pattern/errors.hpp"
#include "einlm/pattern/fixed_string.hpp"
#include "einlm/pattern/lower.hpp"
#include "einlm/pattern/parse.hpp"
#include "einlm/pattern/recipe.hpp"

namespace einlm {

namespace detail {

// (A member tag rather than a partial specialisation: nvcc does not match partial specialisations
// on class-type template parameters such as fixed_string.)
template <class A>
inline constexpr bool is_axis_arg_v = requires { A::is_einops_axis; };

template <fixed_string Op>
constexpr int reduction_index() {
  constexpr std::string_view names[] = {"min", "max", "sum", "mean", "prod", "any", "all"};
  for (int i = 0; i < 7; ++i)
    if (Op.view() == names[i]) return i;
  return -1;
}

template <int I>
struct reduction_of;
template <> struct reduction_of<0> { using type = reductions::min; };
template <> struct reduction_of<1> { using type = reductions::max; };
template <> struct reduction_of<2> { using type = reductions::sum; };
template <> struct reduction_of<3> { using type = reductions::mean; };
template <> struct reduction_of<4> { using type = reductions::prod; };
template <> struct reduction_of<5> { using type = reductions::any; };
template <> struct reduction_of<6> { using type = reductions::all; };

/// Everything known at compile time about applying pattern P with operation Op to an input of
/// extents InE with the given axis arguments A…
template <fixed_string P, pattern::op_kind Op, extents_like InE, class... A>
struct einops_plan {
  static constexpr int n_given = sizeof...(A);
  static constexpr pattern::given_axis given[n_given + 1] = {{A::name.view(), A::static_length}..., {}};
  static constexpr pattern::recipe recipe = pattern::make_recipe(P.view(), Op, static_cast<int>(InE::rank()), given, n_given);

  static constexpr auto static_in = [] {
    cuda::std::array<std::int64_t, pattern::max_dims + 1> v{};
    for (std::size_t d = 0; d != InE::rank(); ++d)
      v[d] = InE::static_extent(d) == dyn ? pattern::unknown_length : static_cast<std::int64_t>(InE::static_extent(d));
    return v;
  }();
  static constexpr auto static_given = [] {
    cuda::std::array<std::int64_t, n_given + 1> v{};
    for (int g = 0; g < n_given; ++g) v[g] = given[g].length;
    return v;
  }();
  static constexpr pattern::resolved static_lengths =
      recipe.ok() ? pattern::resolve(recipe, static_in.data(), static_given.data()) : pattern::resolved{};

  static constexpr pattern::error_code error = recipe.ok() ? static_lengths.error : recipe.error;

  template <std::size_t... O>
  static auto out_extents_type(std::index_sequence<O...>)
      -> extents<(static_lengths.out_extent[O] >= 0 ? static_cast<std::size_t>(static_lengths.out_extent[O]) : dyn)...>;
  using out_extents = decltype(out_extents_type(std::make_index_sequence<(recipe.ok() ? recipe.n_out : 0)>{}));

  /// True when the output is the input's elements in the same order (a reshape).
  static constexpr bool is_reshape = [] {
    if (!recipe.ok()) return false;
    int next = 0;
    for (int o = 0; o < recipe.n_out; ++o)
      for (int k = 0; k < recipe.out_size[o]; ++k)
        if (recipe.out_axes[recipe.out_first[o] + k] != next++) return false;
    for (int e = 0; e < recipe.n_elem; ++e)
      if (recipe.reduced[e] || recipe.repeated[e]) return false;
    return next == recipe.n_elem;
  }();
};

inline const char* op_name(pattern::op_kind op, const char* reduction) {
  return op == pattern::op_kind::rearrange ? "rearrange" : op == pattern::op_kind::repeat ? "repeat" : reduction;
}

/// Resolves the lengths at run time and lowers the recipe; pattern_error with einops' message.
template <class Plan, extents_like InE, class... A>
pattern::index_map runtime_map(const InE& in, const char* op, std::string_view pattern_text, const A&... axes) {
  const auto& r = Plan::recipe;
  std::int64_t in_extents[pattern::max_dims + 1] = {};
  for (std::size_t d = 0; d != InE::rank(); ++d) in_extents[d] = static_cast<std::int64_t>(in.extent(d));
  const std::int64_t values[sizeof...(A) + 1] = {static_cast<std::int64_t>(axes.value())..., 0};
  std::int64_t given_values[sizeof...(A) + 1] = {};
  for (std::size_t g = 0; g != sizeof...(A); ++g) {
    given_values[g] = values[g];
    if (values[g] <= 0)
      throw pattern_error(pattern::operation_message(
          op, pattern_text, std::vector<std::int64_t>(in_extents, in_extents + InE::rank()), {},
          concat("axis length must be positive, got ", values[g], " for ", Plan::given[g].name)));
  }
  const pattern::resolved res = pattern::resolve(r, in_extents, given_values);
  if (!res.ok()) {
    std::vector<std::pair<std::string, std::int64_t>> info;
    for (std::size_t g = 0; g != sizeof...(A); ++g) info.emplace_back(std::string(Plan::given[g].name), given_values[g]);
    throw pattern_error(pattern::operation_message(
        op, pattern_text, std::vector<std::int64_t>(in_extents, in_extents + InE::rank()), info,
        pattern::error_sentence(res.error, {}, res.error_a, res.error_b, nullptr, nullptr, 0, op)));
  }
  return pattern::lower(r, res);
}

template <class OutE>
OutE out_extents_of(const pattern::index_map& m) {
  index_array<OutE::rank()> v{};
  for (std::size_t o = 0; o != OutE::rank(); ++o) {
    index_t p = 1;
    for (int k = 0; k < m.out_size[o]; ++k) p *= m.length[m.out_axes[m.out_first[o] + k]];
    v[o] = p;
  }
  return from_array<OutE>(v);
}

template <fixed_string P, pattern::op_kind Op, class ReductionOp, class X, class... A>
auto apply_pattern(X&& x, const A&... axes) {
  static_assert((is_axis_arg_v<A> && ...),
                "einops: axis sizes are given as axis<\"name\", N>{}, axis_size<\"name\">{n} or a parse_shape result");
  using D = std::remove_cvref_t<X>;
  constexpr bool is_array = array_like<D>;
  auto source = [&] {
    if constexpr (is_array) return as_view(std::forward<X>(x));
    else return as_expression(std::forward<X>(x));
  }();
  using S = decltype(source);
  using InE = typename S::extents_type;
  using Plan = einops_plan<P, Op, InE, A...>;
  constexpr pattern::error_code error = Plan::error;
  if constexpr (error != pattern::error_code::none) {
    pattern::report_error<error>();
    return 0;
  } else {
    using OutE = typename Plan::out_extents;
    const char* name = op_name(Op, ReductionOp::name);
    const pattern::index_map map = runtime_map<Plan>(source.extents(), name, P.view(), axes...);
    const OutE out = out_extents_of<OutE>(map);
    if constexpr (Op == pattern::op_kind::reduce) {
      if constexpr (std::is_same_v<ReductionOp, reductions::mean>)
        if constexpr (!is_floating_v<typename S::value_type>) pattern::report_error<pattern::error_code::mean_not_floating>();
      auto child = as_expression(source);
      return reduce_node<decltype(child), OutE, ReductionOp>(child, out, map);
    } else if constexpr (is_array) {
      using T = typename S::element_type;
      if constexpr (Plan::is_reshape && std::is_same_v<typename S::layout_type, cuda::std::layout_right>) {
        return view<T, OutE, cuda::std::layout_right, typename S::space>(source.data(), out);
      } else {
        const auto strides = strides_of(source.mapping());
        return rearranged_array<T, OutE, typename S::space>(source.data(), strides.data(), out, map);
      }
    } else {
      return rearrange_node<S, OutE>(source, out, map);
    }
  }
}

}  // namespace detail

namespace detail {

template <class A>
inline constexpr bool is_parsed_shape_v = requires { A::is_parsed_shape; };

/// The axis arguments with every parsed_shape expanded into its axis sizes.
template <class... A>
auto flatten_axes(const A&... args) {
  [[maybe_unused]] auto one = [](const auto& a) {
    if constexpr (is_parsed_shape_v<std::remove_cvref_t<decltype(a)>>) return a.axes();
    else return std::tuple{a};
  };
  return std::tuple_cat(one(args)...);
}

template <class X>
inline constexpr bool is_list_v = false;
template <class X>
inline constexpr bool is_list_v<std::vector<X>> = true;
template <class X, std::size_t N>
inline constexpr bool is_list_v<std::array<X, N>> = true;

template <fixed_string P, pattern::op_kind Op, class R, class X, class... A>
auto dispatch(X&& x, const A&... args) {
  return std::apply(
      [&](const auto&... axes) { return apply_pattern<P, Op, R>(std::forward<X>(x), axes...); },
      flatten_axes(args...));
}

/// A list input is stacked on a new first axis (a copy, as einops does), and the result evaluated.
template <fixed_string P, pattern::op_kind Op, class R, class L, class... A>
auto dispatch_list(const L& list, const A&... args) {
  auto stacked = stack(list);
  return eval(dispatch<P, Op, R>(stacked, args...));
}

}  // namespace detail

/// einops.rearrange; see the file comment.
template <fixed_string P, class X, class... A>
  requires operand<X>
auto rearrange(X&& x, const A&... axes) {
  return detail::dispatch<P, pattern::op_kind::rearrange, reductions::sum>(std::forward<X>(x), axes...);
}

/// einops.repeat; see the file comment.
template <fixed_string P, class X, class... A>
  requires operand<X>
auto repeat(X&& x, const A&... axes) {
  return detail::dispatch<P, pattern::op_kind::repeat, reductions::sum>(std::forward<X>(x), axes...);
}

/// einops.reduce with Op one of "sum", "mean", "max", "min", "prod", "any", "all".
template <fixed_string P, fixed_string Op, class X, class... A>
  requires operand<X>
auto reduce(X&& x, const A&... axes) {
  constexpr int index = detail::reduction_index<Op>();
  static_assert(index >= 0, "einops: Unknown reduction. Expect one of ('min', 'max', 'sum', 'mean', 'prod', 'any', 'all').");
  using R = typename detail::reduction_of<(index >= 0 ? index : 2)>::type;
  return detail::dispatch<P, pattern::op_kind::reduce, R>(std::forward<X>(x), axes...);
}

// List inputs (std::vector or std::array of equally shaped tensors or views): stacked first, the
// result evaluated into a new tensor.
template <fixed_string P, class L, class... A>
  requires detail::is_list_v<L>
auto rearrange(const L& list, const A&... axes) {
  return detail::dispatch_list<P, pattern::op_kind::rearrange, reductions::sum>(list, axes...);
}
template <fixed_string P, class L, class... A>
  requires detail::is_list_v<L>
auto repeat(const L& list, const A&... axes) {
  return detail::dispatch_list<P, pattern::op_kind::repeat, reductions::sum>(list, axes...);
}
template <fixed_string P, fixed_string Op, class L, class... A>
  requires detail::is_list_v<L>
auto reduce(const L& list, const A&... axes) {
  constexpr int index = detail::reduction_index<Op>();
  static_assert(index >= 0, "einops: Unknown reduction. Expect one of ('min', 'max', 'sum', 'mean', 'prod', 'any', 'all').");
  using R = typename detail::reduction_of<(index >= 0 ? index : 2)>::type;
  return detail::dispatch_list<P, pattern::op_kind::reduce, R>(list, axes...);
}

}  // namespace einlm

#include "einlm/einops/adjoint.hpp"  // the adjoints (vector-Jacobian products) of the operations above
