// einlm/einops/adjoint.hpp — the adjoints (vector-Jacobian products) of rearrange, repeat and
// reduce: given dy, the gradient of a loss with respect to the operation's output, they give dx,
// the gradient with respect to its input.
//
//   rearrange_adjoint<"b s (h d) -> b h s d">(dy, x, axes…)    rearrange with the sides swapped
//   repeat_adjoint<"h w -> h w c">(dy, x, axes…)               reduce sum with the sides swapped
//   reduce_adjoint<"b s d -> b d", "sum">(dy, x, axes…)        repeat of dy to x's shape
//   reduce_adjoint<"b s d -> b d", "mean">(dy, x, axes…)       the same, divided by the number of
//                                                              reduced elements
//   reduce_adjoint<"b s d -> b d", "max">(dy, x, y, axes…)     dy to the elements equal to y (the
//                                                              forward output), split evenly among
//                                                              ties as torch.amax does; "min" alike
//   reduce_adjoint<"b s d -> b d", "prod">(dy, x, axes…)       dy times the product of the others
//   "any", "all"                                               no gradient (a static_assert)
//   einsum_adjoint<"b i j, b j k -> b i k", K>(dy, a, b)       einlm/linalg/einsum_adjoint.hpp,
//                                                              included here
//
// Arguments: the forward's pattern and axis sizes (the same axis<…>, axis_size<…> or parse_shape
// arguments), dy (a tensor, a view of any strides, or a lazy expression, of the forward output's
// shape), and the forward input x (for rearrange, repeat, sum and mean only its extents are used:
// x itself or an extents object; max, min and prod read its values). y, the forward output, may be
// given to every reduce_adjoint; max and min use it (and compute it when it is not given).
//
// Every adjoint is planned at compile time: the swapped pattern is a constexpr-built string
// (einlm/pattern/invert.hpp, the ellipsis written out as named axes) run through the same recipe
// as the forward operations, with every axis length taken from the forward's. The result's extents
// type is x's extents type. Results:
//   rearrange, reduce sum                lazy (one fused pass when evaluated): a view of dy when
//                                        the adjoint is a reshape of a contiguous dy; when dy is
//                                        a tensor or view, a rearranged_array of it (to_view():
//                                        a strided view, zero strides along the axes a reduce
//                                        removed); otherwise a rearrange node
//   repeat, reduce mean                  lazy: a reduce-sum node; a node dividing the repeated dy
//   reduce max, min                      a tensor: one pass counts the ties, one writes dx
//   reduce prod                          a tensor: one pass counts the zeros, one multiplies the
//                                        non-zero elements, one writes dx
// dy of the wrong shape is a static_assert naming both extents types (as template arguments of
// detail::adjoint_dy_shape) when they are static, an einlm::shape_error naming both shapes when
// not. Errors of the forward pattern are the forward's (einops' sentences).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/extents.hpp"
#include "einlm/core/math.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/einops.hpp"
#include "einlm/expr.hpp"
#include "einlm/expr/elementwise.hpp"
#include "einlm/expr/rearrange.hpp"
#include "einlm/expr/reduce.hpp"
#include "einlm/linalg/einsum_adjoint.hpp"
#include "einlm/pattern/errors.hpp"
#include "einlm/pattern/fixed_string.hpp"
#include "einlm/pattern/invert.hpp"
#include "einlm/pattern/lower.hpp"
#include "einlm/pattern/recipe.hpp"

namespace einlm {

namespace detail {

// ------------------------------------------------------------------------- the adjoint's plan

/// What the adjoint of pattern P (operation Op, input extents XE, axis arguments A…) knows at
/// compile time: the forward's plan, the swapped pattern, its operation, and the axes whose
/// lengths it is given (every named axis, the ellipsis's included, with the forward's lengths).
template <fixed_string P, pattern::op_kind Op, extents_like XE, class... A>
struct adjoint_names {
  using forward = einops_plan<P, Op, XE, A...>;
  static constexpr bool forward_ok = forward::error == pattern::error_code::none;
  static constexpr int rank = static_cast<int>(XE::rank());

  static constexpr auto swapped = pattern::swap_sides<pattern::swapped_capacity(P.size(), rank)>(P.view(), rank);
  static_assert(!forward_ok || swapped.ok,
                "einops adjoint: cannot name the ellipsis's axes (every prefix 'ell', 'elll', … tried starts an axis name of the pattern)");
  /// The swapped pattern, e.g. "b h s d -> b s (h d)".
  static constexpr fixed_string<swapped.size> text = [] {
    fixed_string<swapped.size> s;
    for (std::size_t i = 0; i != swapped.size; ++i) s.chars[i] = swapped.chars[i];
    return s;
  }();

  /// rearrange ↔ rearrange; repeat → reduce sum (a rearrange when nothing is repeated); reduce → repeat.
  static constexpr pattern::op_kind op = [] {
    if constexpr (Op == pattern::op_kind::rearrange) return pattern::op_kind::rearrange;
    else if constexpr (Op == pattern::op_kind::reduce) return pattern::op_kind::repeat;
    else {
      for (int e = 0; e < forward::recipe.n_elem; ++e)
        if (forward::recipe.repeated[e]) return pattern::op_kind::reduce;
      return pattern::op_kind::rearrange;
    }
  }();

  /// The forward's elementary axes that have a name (anonymous axes carry their length).
  static constexpr int n_given = [] {
    int n = 0;
    for (int e = 0; e < forward::recipe.n_elem; ++e)
      if (forward::recipe.anonymous_length[e] <= 1) ++n;
    return n;
  }();
  static constexpr auto forward_axis = [] {
    cuda::std::array<int, pattern::max_elementary + 1> a{};
    int n = 0;
    for (int e = 0; e < forward::recipe.n_elem; ++e)
      if (forward::recipe.anonymous_length[e] <= 1) a[static_cast<std::size_t>(n++)] = e;
    return a;
  }();

  /// The name of given axis k: the pattern's, or the written-out name of an ellipsis axis (a view
  /// of `text`).
  static constexpr std::string_view given_name(int k) {
    const int e = forward_axis[static_cast<std::size_t>(k)];
    const int position = forward::recipe.ellipsis_index[e];
    if (position < 0) return forward::recipe.name[e];
    char name[pattern::max_ellipsis_prefix + 12] = {};
    const auto n = static_cast<std::size_t>(
        pattern::ellipsis_axis_name(name, pattern::ellipsis_prefix_length(P.view()), position));
    const std::string_view wanted(name, n), t = text.view();
    for (std::size_t i = 0; i + n <= t.size(); ++i) {
      const bool starts = i == 0 || !pattern::detail::is_identifier_char(t[i - 1]);
      const bool ends = i + n == t.size() || !pattern::detail::is_identifier_char(t[i + n]);
      if (starts && ends && t.substr(i, n) == wanted) return t.substr(i, n);
    }
    return {};
  }
  /// Its length when the forward knows it at compile time, else unknown_length.
  static constexpr std::int64_t given_static_length(int k) {
    const std::int64_t l = forward::static_lengths.length[forward_axis[static_cast<std::size_t>(k)]];
    return l >= 0 ? l : pattern::unknown_length;
  }
};

/// An axis name as einops_plan reads it (name.view()).
struct adjoint_axis_name {
  std::string_view text;
  constexpr std::string_view view() const { return text; }
};

/// The length of given axis K of an adjoint, handed to the swapped pattern's plan.
template <class Names, int K>
struct adjoint_axis {
  static constexpr bool is_einops_axis = true;
  static constexpr adjoint_axis_name name{Names::given_name(K)};
  static constexpr std::int64_t static_length = Names::given_static_length(K);
};

template <class Names, extents_like DyE, class Given>
struct swapped_plan;
template <class Names, extents_like DyE, int... K>
struct swapped_plan<Names, DyE, std::integer_sequence<int, K...>> {
  using type = einops_plan<Names::text, Names::op, DyE, adjoint_axis<Names, K>...>;
};

/// The plan of the swapped pattern applied to dy (extents DyE).
template <class Names, extents_like DyE>
using swapped_plan_t = typename swapped_plan<Names, DyE, std::make_integer_sequence<int, Names::n_given>>::type;

/// The run-time half of an adjoint: x's and y's extents, the forward's index map (x → y) and the
/// swapped pattern's (a y-shaped operand → x's shape).
template <extents_like XE, extents_like YE>
struct adjoint_maps {
  XE input_extents;
  YE output_extents;
  pattern::index_map forward;
  pattern::index_map adjoint;

  /// Number of input elements that make one output element (reduce), 1 otherwise.
  index_t reduced_count() const {
    index_t n = 1;
    for (int e = 0; e < forward.n_elem; ++e)
      if (forward.is_reduced(e)) n *= forward.length[e];
    return n;
  }
};

/// "rearrange_adjoint<"pattern">" (with the reduction for reduce_adjoint), for messages.
inline std::string adjoint_label(const char* function, std::string_view pattern_text, const char* reduction) {
  std::string s = concat(function, "<\"", pattern_text, "\"");
  if (reduction != nullptr) s += concat(", \"", reduction, "\"");
  return s + ">";
}

/// Resolves the forward (its run-time errors are the forward's: einops' messages), checks dy's
/// shape against the forward output's, and lowers the swapped pattern with the forward's lengths.
template <fixed_string P, pattern::op_kind Op, class Names, class Swapped, extents_like XE, extents_like DyE, class... A>
auto make_adjoint_maps(const std::string& label, const char* reduction, const XE& xe, const DyE& dye, const A&... axes) {
  using Forward = typename Names::forward;
  using OutE = typename Forward::out_extents;
  adjoint_maps<XE, OutE> m{xe, OutE{}, {}, {}};
  m.forward = runtime_map<Forward>(xe, op_name(Op, reduction), P.view(), axes...);
  m.output_extents = out_extents_of<OutE>(m.forward);
  check_adjoint_shape(label, "dy", dye, m.output_extents);
  std::int64_t given[Names::n_given + 1] = {};
  for (int k = 0; k < Names::n_given; ++k) given[k] = m.forward.length[Names::forward_axis[static_cast<std::size_t>(k)]];
  std::int64_t dy_extents[pattern::max_dims + 1] = {};
  for (std::size_t d = 0; d != DyE::rank(); ++d) dy_extents[d] = static_cast<std::int64_t>(dye.extent(d));
  const pattern::resolved lengths = pattern::resolve(Swapped::recipe, dy_extents, given);
  if (!lengths.ok())
    throw shape_error(concat(label, ": the swapped pattern \"", Names::text.view(), "\" does not fit dy's shape ",
                             shape_string(dye), " (einlm internal error)"));
  m.adjoint = pattern::lower(Swapped::recipe, lengths);
  return m;
}

/// A y-shaped operand (dy, y, a per-output count) taken to x's shape through the swapped
/// pattern: a view when that is a reshape of a contiguous array, a strided view of an array,
/// a rearrange node of an expression, or a reduce-sum node (the adjoint of repeat).
template <pattern::op_kind SwappedOp, class Swapped, extents_like XE, class S>
auto through_swapped(const S& source, const XE& xe, const pattern::index_map& map) {
  if constexpr (SwappedOp == pattern::op_kind::reduce) {
    auto child = as_expression(source);
    return reduce_node<decltype(child), XE, reductions::sum>(child, xe, map);
  } else if constexpr (array_like<S> && S::extents_type::rank() != 0) {  // (strides_of needs a rank)
    using T = typename S::element_type;
    if constexpr (Swapped::is_reshape && std::is_same_v<typename S::layout_type, cuda::std::layout_right>) {
      return view<T, XE, cuda::std::layout_right, typename S::space>(source.data(), xe);
    } else {
      const auto strides = strides_of(source.mapping());
      return rearranged_array<T, XE, typename S::space>(source.data(), strides.data(), xe, map);
    }
  } else {
    auto child = as_expression(source);
    return rearrange_node<decltype(child), XE>(child, xe, map);
  }
}

/// A tensor or view as a view, anything else as an expression.
template <class X>
auto adjoint_source(X&& x) {
  if constexpr (array_like<std::remove_cvref_t<X>>) return as_view(std::forward<X>(x));
  else return as_expression(std::forward<X>(x));
}

/// The extents of the forward input: an extents object, or those of a tensor, view or expression.
template <class X>
auto input_extents(const X& x) {
  if constexpr (extents_like<X>) return x;
  else return adjoint_source(x).extents();
}

template <class X>
inline constexpr bool is_adjoint_input_v = extents_like<X> || (operand<X> && !is_arithmetic_scalar_v<X>);

/// The common part of every adjoint: the compile-time checks (forward pattern, dy's shape), the
/// run-time maps, then body(swapped_tag, dy_source, maps).
template <fixed_string P, pattern::op_kind Op, class Body, class Dy, class Input, class... A>
auto run_adjoint(const char* function, const char* reduction, Body&& body, Dy&& dy, const Input& input, const A&... axes) {
  static_assert((is_axis_arg_v<A> && ...),
                "einops adjoint: axis sizes are given as axis<\"name\", N>{}, axis_size<\"name\">{n} or a parse_shape result");
  static_assert(is_adjoint_input_v<Input>,
                "einops adjoint: the second argument is the forward input x (a tensor, view or expression) or its extents");
  auto dy_source = adjoint_source(std::forward<Dy>(dy));
  using DyE = typename decltype(dy_source)::extents_type;
  const auto xe = input_extents(input);
  using XE = std::remove_cvref_t<decltype(xe)>;
  using Names = adjoint_names<P, Op, XE, A...>;
  using Forward = typename Names::forward;
  if constexpr (!Names::forward_ok) {
    pattern::report_error<Forward::error>();
    return 0;
  } else if constexpr (!adjoint_dy_shape<DyE, typename Forward::out_extents>::ok) {
    return 0;
  } else {
    using Swapped = swapped_plan_t<Names, DyE>;
    static_assert(Swapped::error == pattern::error_code::none,
                  "einops adjoint: the swapped pattern does not fit (einlm internal error)");
    const auto maps = make_adjoint_maps<P, Op, Names, Swapped>(adjoint_label(function, P.view(), reduction), reduction,
                                                               xe, dy_source.extents(), axes...);
    return body(std::type_identity<Swapped>{}, std::integral_constant<pattern::op_kind, Names::op>{}, dy_source, maps);
  }
}

/// run_adjoint with the axis arguments' parse_shape results expanded.
template <fixed_string P, pattern::op_kind Op, class Body, class Dy, class Input, class... A>
auto dispatch_adjoint(const char* function, const char* reduction, Body&& body, Dy&& dy, const Input& input, const A&... args) {
  return std::apply(
      [&](const auto&... axes) {
        return run_adjoint<P, Op>(function, reduction, std::forward<Body>(body), std::forward<Dy>(dy), input, axes...);
      },
      flatten_axes(args...));
}

/// The plain adjoints: dy taken through the swapped pattern.
struct through_swapped_body {
  template <class SwappedTag, class OpTag, class S, class Maps>
  auto operator()(SwappedTag, OpTag, const S& dy_source, const Maps& maps) const {
    return through_swapped<OpTag::value, typename SwappedTag::type>(dy_source, maps.input_extents, maps.adjoint);
  }
};

// ------------------------------------------------------------------- element-wise operations

/// g / n: the adjoint of a mean over n elements.
struct divide_by_count {
  index_t count;
  EINLM_EXEC_CHECK_DISABLE
  template <class A>
  EINLM_HD A operator()(A g) const { return g / A(simd::scalar_t<A>(count)); }
};

/// 1 where x equals the reduction's result y (NaN counts as equal to NaN), else 0.
struct tie_indicator {
  EINLM_EXEC_CHECK_DISABLE
  template <class A>
  EINLM_HD A operator()(A x, A y) const {
    const A one(simd::scalar_t<A>(1)), zero(simd::scalar_t<A>(0));
    return math::detail::select((x == y) | ((x != x) & (y != y)), one, zero);
  }
};

/// g / ties where the element is one of the ties, else 0.
struct share_among_ties {
  EINLM_EXEC_CHECK_DISABLE
  template <class A>
  EINLM_HD A operator()(A tie, A g, A ties) const {
    const A zero(simd::scalar_t<A>(0));
    return math::detail::select(tie != zero, g / ties, zero);
  }
};

/// 1 where x is zero, else 0.
struct zero_indicator {
  EINLM_EXEC_CHECK_DISABLE
  template <class A>
  EINLM_HD A operator()(A x) const {
    const A one(simd::scalar_t<A>(1)), zero(simd::scalar_t<A>(0));
    return math::detail::select(x == zero, one, zero);
  }
};

/// x, or 1 where x is zero (the factors of the product of the non-zero elements).
struct zero_to_one {
  EINLM_EXEC_CHECK_DISABLE
  template <class A>
  EINLM_HD A operator()(A x) const {
    const A one(simd::scalar_t<A>(1)), zero(simd::scalar_t<A>(0));
    return math::detail::select(x == zero, one, x);
  }
};

/// The adjoint of a product for one element x of a group with `product` the product of the
/// group's non-zero elements and `zeros` its number of zeros: g·product/x without zeros; with one
/// zero, g·product for the zero and 0 for the others; with more, 0.
struct product_gradient {
  EINLM_EXEC_CHECK_DISABLE
  template <class A>
  EINLM_HD A operator()(A g, A x, A product, A zeros) const {
    const A one(simd::scalar_t<A>(1)), zero(simd::scalar_t<A>(0));
    const A single_zero = math::detail::select((zeros == one) & (x == zero), g * product, zero);
    return math::detail::select(zeros == zero, g * (product / x), single_zero);
  }
};

/// A tensor or view as a view of itself, anything else evaluated (so that reading it once per
/// input element does not recompute it).
template <class Y>
auto materialized(const Y& y) {
  if constexpr (array_like<Y>) return as_view(y);
  else return eval(y);
}

/// The body of reduce_adjoint: sum, mean, max, min, prod (R: the reduction; Y: void or the
/// forward output's type).
template <class R, class Input, class Y>
struct reduce_adjoint_body {
  const std::string& label;
  const Input& input;
  const Y* y;

  template <class SwappedTag, class OpTag, class S, class Maps>
  auto operator()(SwappedTag, OpTag, const S& dy_source, const Maps& maps) const {
    using Swapped = typename SwappedTag::type;
    constexpr pattern::op_kind swapped_op = OpTag::value;
    using DyT = typename S::value_type;
    using OutE = std::remove_cvref_t<decltype(maps.output_extents)>;
    const auto& xe = maps.input_extents;
    if constexpr (!std::is_void_v<Y>) {
      using YE = typename decltype(adjoint_source(*y))::extents_type;
      static_assert(adjoint_dy_shape<YE, OutE>::ok);
      check_adjoint_shape(label, "y", adjoint_source(*y).extents(), maps.output_extents);
    }
    auto dy_b = through_swapped<swapped_op, Swapped>(dy_source, xe, maps.adjoint);  // (X…) dy at each x
    if constexpr (std::is_same_v<R, reductions::sum>) {
      return dy_b;
    } else if constexpr (std::is_same_v<R, reductions::mean>) {
      static_assert(is_floating_v<DyT>, "reduce_adjoint<…, \"mean\">: dy must be floating");
      return map_node<divide_by_count, DyT, decltype(dy_b)>("mean adjoint", divide_by_count{maps.reduced_count()}, dy_b);
    } else {
      static_assert(!extents_like<Input>,
                    "reduce_adjoint: max, min and prod read the forward input's values; pass x, not its extents");
      static_assert(is_floating_v<DyT>, "reduce_adjoint: dy must be floating");
      auto x = as_expression(input);  // (X…)
      using XT = typename decltype(x)::value_type;
      static_assert(is_floating_v<XT>, "reduce_adjoint: x must be floating (integer inputs have no gradient)");
      using C = compute_t<XT>;  // counts and products: float, or double for double inputs
      if constexpr (std::is_same_v<R, reductions::max> || std::is_same_v<R, reductions::min>) {
        auto y_held = [&] {
          if constexpr (std::is_void_v<Y>) return eval(reduce_node<decltype(x), OutE, R>(x, maps.output_extents, maps.forward));
          else return materialized(*y);
        }();
        const auto y_view = as_view(y_held);                                                       // (Y…)
        auto y_b = as_typed<XT>(through_swapped<swapped_op, Swapped>(y_view, xe, maps.adjoint));  // (X…)
        auto tie = map_node<tie_indicator, C, decltype(x), decltype(y_b)>("reduce_adjoint", {}, x, y_b);  // (X…)
        const auto ties = eval(reduce_node<decltype(tie), OutE, reductions::sum>(tie, maps.output_extents, maps.forward));
        auto ties_b = through_swapped<swapped_op, Swapped>(as_view(ties), xe, maps.adjoint);  // (X…)
        return eval(make_map<DyT>("reduce_adjoint", share_among_ties{}, as_typed<DyT>(tie), dy_b, as_typed<DyT>(ties_b)));
      } else {
        static_assert(std::is_same_v<R, reductions::prod>);
        auto zero = map_node<zero_indicator, C, decltype(x)>("reduce_adjoint", {}, x);     // (X…)
        auto factor = map_node<zero_to_one, C, decltype(x)>("reduce_adjoint", {}, x);      // (X…)
        const auto zeros = eval(reduce_node<decltype(zero), OutE, reductions::sum>(zero, maps.output_extents, maps.forward));
        const auto product =
            eval(reduce_node<decltype(factor), OutE, reductions::prod>(factor, maps.output_extents, maps.forward));
        auto zeros_b = through_swapped<swapped_op, Swapped>(as_view(zeros), xe, maps.adjoint);      // (X…)
        auto product_b = through_swapped<swapped_op, Swapped>(as_view(product), xe, maps.adjoint);  // (X…)
        return eval(make_map<DyT>("reduce_adjoint", product_gradient{}, dy_b, as_typed<DyT>(x),
                                  as_typed<DyT>(product_b), as_typed<DyT>(zeros_b)));
      }
    }
  }
};

template <fixed_string Op>
constexpr int checked_reduction_index() {
  constexpr int index = reduction_index<Op>();
  static_assert(index >= 0, "einops: Unknown reduction. Expect one of ('min', 'max', 'sum', 'mean', 'prod', 'any', 'all').");
  static_assert(index != 5 && index != 6, "reduce_adjoint: reduce \"any\" and \"all\" have no gradient (their output is boolean)");
  return index;
}

template <fixed_string P, fixed_string Op, class Y, class Dy, class Input, class... A>
auto reduce_adjoint_impl(Dy&& dy, const Input& input, const Y* y, const A&... axes) {
  constexpr int index = checked_reduction_index<Op>();
  using R = typename reduction_of<(index >= 0 && index < 5 ? index : 2)>::type;
  const std::string label = adjoint_label("reduce_adjoint", P.view(), R::name);
  return dispatch_adjoint<P, pattern::op_kind::reduce>("reduce_adjoint", R::name,
                                                       reduce_adjoint_body<R, Input, Y>{label, input, y},
                                                       std::forward<Dy>(dy), input, axes...);
}

}  // namespace detail

/// The adjoint of rearrange<P>(x, axes…): dy (the forward output's shape) rearranged back to x's
/// shape with P's sides swapped. `input` is x or its extents. Lazy; see the file comment.
template <fixed_string P, class Dy, class Input, class... A>
  requires operand<Dy>
auto rearrange_adjoint(Dy&& dy, const Input& input, const A&... axes) {
  return detail::dispatch_adjoint<P, pattern::op_kind::rearrange>("rearrange_adjoint", nullptr, detail::through_swapped_body{},
                                                                   std::forward<Dy>(dy), input, axes...);
}

/// The adjoint of repeat<P>(x, axes…): dy summed over the repeated axes back to x's shape (reduce
/// sum with P's sides swapped). `input` is x or its extents. Lazy; see the file comment.
template <fixed_string P, class Dy, class Input, class... A>
  requires operand<Dy>
auto repeat_adjoint(Dy&& dy, const Input& input, const A&... axes) {
  return detail::dispatch_adjoint<P, pattern::op_kind::repeat>("repeat_adjoint", nullptr, detail::through_swapped_body{},
                                                                std::forward<Dy>(dy), input, axes...);
}

/// The adjoint of reduce<P, Op>(x, axes…) (Op: "sum", "mean", "max", "min", "prod"); see the file
/// comment. `input` is x (or, for sum and mean, its extents).
template <fixed_string P, fixed_string Op, class Dy, class Input, class... A>
  requires(operand<Dy> && !(operand<A> || ...))
auto reduce_adjoint(Dy&& dy, const Input& input, const A&... axes) {
  return detail::reduce_adjoint_impl<P, Op, void>(std::forward<Dy>(dy), input, nullptr, axes...);
}

/// The same with y, the forward output (used by max and min; its shape is checked for all).
template <fixed_string P, fixed_string Op, class Dy, class Input, class Y, class... A>
  requires(operand<Dy> && operand<Y> && !is_arithmetic_scalar_v<Y> && !(operand<A> || ...))
auto reduce_adjoint(Dy&& dy, const Input& input, const Y& y, const A&... axes) {
  return detail::reduce_adjoint_impl<P, Op, Y>(std::forward<Dy>(dy), input, &y, axes...);
}

}  // namespace einlm
