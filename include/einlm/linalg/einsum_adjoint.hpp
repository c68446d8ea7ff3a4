// einlm/linalg/einsum_adjoint.hpp — the adjoint (vector-Jacobian product) of einsum with respect
// to one input: given dy, the gradient of a loss with respect to einsum<P>(x0, x1, …), it gives the
// gradient with respect to input K.
//
//   auto da = einsum_adjoint<"b i j, b j k -> b i k", 0>(dy, a, b);   // einsum "b i k, b j k -> b i j"
//   auto db = einsum_adjoint<"b i j, b j k -> b i k", 1>(dy, a, b);   // einsum "b i k, b i j -> b j k"
//   einsum_adjoint<P, K>(gemm_options{…}, dy, a, b)                   the GEMM's backend, threads, stream
//
// The adjoint is one einsum whose pattern is written at compile time from P's layout: dy's term
// (the forward's output) and every input but K are its inputs, input K's term its output. Every
// axis is written by name, the ellipsis's axes too ("ell0", "ell1", … with a prefix no name of P
// starts with), so an input whose ellipsis covers fewer dimensions than the broadcast one gets the
// sum over the missing ones. Two cases need more than that einsum, and are materialised:
//   - input K repeats a name (a diagonal, "i i -> i"): the gradient is zero off the diagonal; the
//     einsum gives the diagonal, which is written into a zero tensor of K's shape;
//   - a name is summed and appears in input K only ("i j -> i" for K = 0, "i i ->"): its gradient
//     is the same for every index (a broadcast): the einsum runs without it and its result is
//     repeated along it (a zero stride) while being written.
// When the forward's output is a scalar (rank 0), dy multiplies the einsum of the other inputs.
//
// Results: as einsum's (einlm/linalg/einsum.hpp): a new tensor when the adjoint einsum is a GEMM
// contraction (two inputs of one floating type sharing a summed axis, e.g. both gradients of a
// matmul), otherwise a lazy expression — or a strided view of dy — that reads dy and the inputs:
// keep them alive (and named) until it is evaluated. The diagonal and broadcast cases return a
// tensor of input K's extents.
//
// Checks: dy must have the forward output's shape (a static_assert naming both extents types when
// static, einlm::shape_error when not); errors of P against the inputs are einsum's. An input K
// with an axis of length 1 that broadcasts against a longer axis of the same name is refused (its
// gradient would be a sum over that axis with the length-1 axis kept): a static_assert when the
// lengths are static, a shape_error otherwise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "einlm/core/config.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/extents.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/expr.hpp"
#include "einlm/linalg/einsum.hpp"
#include "einlm/pattern/einsum.hpp"
#include "einlm/pattern/errors.hpp"
#include "einlm/pattern/fixed_string.hpp"
#include "einlm/pattern/invert.hpp"

namespace einlm {

namespace detail {

/// Fails compilation when dy's static extents cannot be the forward output's; the compiler's
/// "required from" line names both extents types (dy's first).
template <extents_like DyExtents, extents_like ForwardOutputExtents>
struct adjoint_dy_shape {
  static_assert(DyExtents::rank() == ForwardOutputExtents::rank(),
                "adjoint: dy's rank differs from the forward output's (adjoint_dy_shape<dy's extents, the output's extents>)");
  static_assert(DyExtents::rank() != ForwardOutputExtents::rank() || compatible_extents_v<DyExtents, ForwardOutputExtents>,
                "adjoint: dy's static shape differs from the forward output's static shape (adjoint_dy_shape<dy's extents, the output's extents>)");
  static constexpr bool ok = DyExtents::rank() == ForwardOutputExtents::rank() && compatible_extents_v<DyExtents, ForwardOutputExtents>;
};

/// shape_error naming both shapes when `got` (dy, or y) differs from the forward output's shape.
template <class Shape, class Expected>
void check_adjoint_shape(const std::string& label, const char* what, const Shape& got, const Expected& expected) {
  if (!same_shape(got, expected))
    throw shape_error(concat(label, ": ", what, " has shape ", shape_string(got), " but the forward output has shape ",
                             shape_string(expected)));
}

/// Everything known at compile time about the adjoint of einsum P with respect to input K, for
/// sources S… (the forward's inputs as einsum sees them).
template <fixed_string P, int K, class... S>
struct einsum_adjoint_plan {
  using forward = einsum_plan<P, S...>;
  static constexpr int input = K;
  static constexpr bool forward_ok = forward::error == pattern::error_code::none;
  static constexpr int n_inputs = forward::n_inputs;
  static constexpr int n_out = forward::n_out;
  static constexpr int rank_k = forward::ranks[K];
  static constexpr int prefix_length = pattern::ellipsis_prefix_length(P.view());

  /// Whether joint axis j is in dy's term or in an input other than K.
  static constexpr bool elsewhere(int j) {
    if (j < n_out) return true;
    for (int k = 0; k < n_inputs; ++k)
      if (k != K && forward::layout.has(k, j)) return true;
    return false;
  }

  /// Input K's joint axes without repeats, in order of first appearance (U), and those of them
  /// that the adjoint einsum can produce (P: present in dy's term or another input).
  struct axis_list {
    int joint[pattern::max_dims + 1] = {};
    int n = 0;
  };
  static constexpr axis_list own_axes(bool only_elsewhere) {
    axis_list a{};
    for (int d = 0; d < rank_k; ++d) {
      const int j = forward::layout.joint_of[K][d];
      bool seen = false;
      for (int i = 0; i < a.n; ++i) seen = seen || a.joint[i] == j;
      if (!seen && (!only_elsewhere || elsewhere(j))) a.joint[a.n++] = j;
    }
    return a;
  }
  static constexpr axis_list unique = forward_ok ? own_axes(false) : axis_list{};
  static constexpr axis_list produced = forward_ok ? own_axes(true) : axis_list{};
  /// True when the einsum's result is the gradient as it is (no diagonal, no broadcast).
  static constexpr bool direct = unique.n == rank_k && produced.n == rank_k;
  /// dy takes part in the einsum unless it is a scalar (then it multiplies the result).
  static constexpr bool dy_in_einsum = n_out > 0;

  /// The adjoint einsum's pattern: "dy's term, the other inputs' terms -> produced axes".
  /// Writes it to out (when not null) and returns its length.
  static constexpr std::size_t write_pattern(char* out) {
    std::size_t n = 0;
    auto put = [&](std::string_view s) {
      for (char c : s) {
        if (out != nullptr) out[n] = c;
        ++n;
      }
    };
    auto put_axis = [&](int j) {
      const int name = forward::layout.name_of[j];
      if (name >= 0) return put(forward::parsed.name[name]);
      char text[pattern::max_ellipsis_prefix + 12] = {};
      const int length = pattern::ellipsis_axis_name(text, prefix_length, forward::layout.ellipsis_dim[j]);
      put(std::string_view(text, static_cast<std::size_t>(length)));
    };
    bool first_term = true;
    auto begin_term = [&] {
      if (!first_term) put(", ");
      first_term = false;
    };
    if (dy_in_einsum) {
      begin_term();
      for (int j = 0; j < n_out; ++j) {
        if (j != 0) put(" ");
        put_axis(j);
      }
    }
    for (int k = 0; k < n_inputs; ++k) {
      if (k == K) continue;
      begin_term();
      for (int d = 0; d < forward::ranks[k]; ++d) {
        if (d != 0) put(" ");
        put_axis(forward::layout.joint_of[k][d]);
      }
    }
    put(" ->");
    for (int i = 0; i < produced.n; ++i) {
      put(" ");
      put_axis(produced.joint[i]);
    }
    return n;
  }
  static constexpr std::size_t pattern_size = forward_ok ? write_pattern(nullptr) : 0;
  /// E.g. "b i k, b j k -> b i j" for the first input of "b i j, b j k -> b i k".
  static constexpr fixed_string<pattern_size> text = [] {
    fixed_string<pattern_size> s;
    if constexpr (forward_ok) write_pattern(s.chars);
    return s;
  }();

  /// Whether input K has a static axis of length 1 that broadcasts against a static longer one.
  static constexpr bool static_broadcast_of_one = [] {
    if (!forward_ok) return false;
    for (int d = 0; d < rank_k; ++d)
      if (forward::static_extents[K][d] == 1 && forward::statics.length[forward::layout.joint_of[K][d]] > 1) return true;
    return false;
  }();

  /// The positions of the other inputs, in order.
  static constexpr auto others = [] {
    cuda::std::array<int, pattern::max_einsum_inputs> o{};
    int n = 0;
    for (int k = 0; k < n_inputs; ++k)
      if (k != K) o[static_cast<std::size_t>(n++)] = k;
    return o;
  }();
};

/// The adjoint einsum over dy and the inputs other than K (or over those only, times a scalar dy).
template <class Plan, class DySource, class Sources, std::size_t... O>
auto einsum_adjoint_product(const gemm_options& options, const DySource& dy, const Sources& sources,
                            std::index_sequence<O...>) {
  if constexpr (Plan::dy_in_einsum) {
    return einsum<Plan::text>(options, dy, std::get<Plan::others[O]>(sources)...);
  } else if constexpr (sizeof...(O) == 0) {
    return dy;  // a scalar forward of one input: the gradient is dy broadcast
  } else {
    auto rest = einsum<Plan::text>(options, std::get<Plan::others[O]>(sources)...);
    if constexpr (tensor_like<decltype(rest)>) return eval(as_expression(rest) * dy);
    else return as_expression(rest) * dy;
  }
}

/// The gradient of the diagonal and broadcast cases: a zero tensor of input K's extents XE with
/// the produced gradient g written to K's diagonal, repeated along the axes it lacks.
template <class Plan, extents_like XE, class G>
auto scatter_to_input(const G& g_source, const XE& xe) {
  const auto g_held = [&] {
    if constexpr (array_like<G>) return as_view(g_source);
    else return eval(g_source);
  }();
  const auto g = as_view(g_held);
  using GV = std::remove_cvref_t<decltype(g)>;
  using T = std::remove_const_t<typename GV::element_type>;
  using Space = typename GV::space;
  constexpr int n_unique = Plan::unique.n;
  using UE = dims<static_cast<std::size_t>(n_unique)>;

  tensor<T, XE, Space> dx(xe);  // (X…)
  dx = T{};
  index_array<XE::rank()> dx_strides{};
  index_t s = 1;
  for (std::size_t d = XE::rank(); d-- > 0;) {
    dx_strides[d] = s;
    s *= static_cast<index_t>(xe.extent(d));
  }
  index_array<static_cast<std::size_t>(n_unique)> lengths{}, diagonal_strides{}, g_strides{};
  for (int u = 0; u < n_unique; ++u) {
    const int j = Plan::unique.joint[u];
    const auto uu = static_cast<std::size_t>(u);
    for (int d = 0; d < Plan::rank_k; ++d) {
      if (Plan::forward::layout.joint_of[Plan::input][d] != j) continue;
      lengths[uu] = static_cast<index_t>(xe.extent(static_cast<std::size_t>(d)));
      diagonal_strides[uu] += dx_strides[static_cast<std::size_t>(d)];
    }
    if constexpr (GV::extents_type::rank() != 0) {
      for (int p = 0; p < Plan::produced.n; ++p)
        if (Plan::produced.joint[p] == j) g_strides[uu] = static_cast<index_t>(g.mapping().stride(static_cast<std::size_t>(p)));
    }
  }
  const UE ue = from_array<UE>(lengths);
  view<T, UE, layout_strided, Space> diagonal(dx.data(), typename layout_strided::template mapping<UE>(ue, diagonal_strides));
  const view<const T, UE, layout_strided, Space> repeated(g.data(), typename layout_strided::template mapping<UE>(ue, g_strides));
  assign(diagonal, repeated);
  return dx;
}

/// The checks and the computation of einsum_adjoint (see the file comment).
template <fixed_string P, int K, class Dy, class... X>
auto einsum_adjoint_apply(const gemm_options& options, const Dy& dy, const X&... xs) {
  static_assert(K >= 0 && K < static_cast<int>(sizeof...(X)),
                "einsum_adjoint: K must number one of the einsum's inputs (0 <= K < the number of inputs)");
  constexpr int k_checked = K >= 0 && K < static_cast<int>(sizeof...(X)) ? K : 0;
  using Plan = einsum_adjoint_plan<P, k_checked, einsum_source_t<const X&>...>;
  using Forward = typename Plan::forward;
  auto dy_source = einsum_source(dy);
  using DyE = typename decltype(dy_source)::extents_type;
  if constexpr (!Plan::forward_ok) {
    pattern::report_error<Forward::error>();
    return 0;
  } else if constexpr (!adjoint_dy_shape<DyE, typename Forward::out_extents>::ok) {
    return 0;
  } else {
    static_assert(!Plan::static_broadcast_of_one,
                  "einsum_adjoint: input K has an axis of length 1 that broadcasts against a longer axis of the same "
                  "name; its gradient (a sum over that axis, keeping it) is not provided");
    const auto sources = std::make_tuple(einsum_source(xs)...);
    const auto length = std::apply([&](const auto&... s) { return einsum_lengths<Forward>(P.view(), s...); }, sources);
    const auto label = concat("einsum_adjoint<\"", P.view(), "\", ", K, ">");
    using OutE = typename Forward::out_extents;
    index_array<OutE::rank()> out_length{};
    for (std::size_t o = 0; o != OutE::rank(); ++o) out_length[o] = length[o];
    check_adjoint_shape(label, "dy", dy_source.extents(), from_array<OutE>(out_length));
    const auto& x = std::get<k_checked>(sources);
    using XE = typename std::remove_cvref_t<decltype(x)>::extents_type;
    for (int d = 0; d < Plan::rank_k; ++d) {
      const auto extent = static_cast<index_t>(x.extents().extent(static_cast<std::size_t>(d)));
      const index_t joint_length = length[static_cast<std::size_t>(Forward::layout.joint_of[k_checked][d])];
      if (extent == 1 && joint_length != 1)
        throw shape_error(concat(label, ": input ", K, " has an axis of length 1 (dimension ", d,
                                 ") that broadcasts against length ", joint_length,
                                 "; its gradient (a sum over that axis, keeping it) is not provided"));
    }
    auto g = einsum_adjoint_product<Plan>(options, dy_source, sources, std::make_index_sequence<sizeof...(X) - 1>{});
    if constexpr (Plan::direct) return g;
    else return scatter_to_input<Plan, XE>(g, x.extents());
  }
}

}  // namespace detail

/// The gradient with respect to input K of einsum<P>(xs…), given dy, the gradient with respect to
/// its output (of the output's shape): one einsum with a pattern written at compile time (see the
/// file comment). Lazy, or a tensor; keep dy and xs alive until the result is evaluated.
template <fixed_string P, int K, class Dy, class... X>
  requires(operand<Dy> && (operand<X> && ...) && !is_arithmetic_scalar_v<std::remove_cvref_t<Dy>> &&
           (!is_arithmetic_scalar_v<std::remove_cvref_t<X>> && ...))
auto einsum_adjoint(const Dy& dy, const X&... xs) {
  return detail::einsum_adjoint_apply<P, K>(gemm_options{}, dy, xs...);
}

/// The same with the GEMM's options (backend, CPU threads, CUDA stream) for contractions.
template <fixed_string P, int K, class Dy, class... X>
  requires(operand<Dy> && (operand<X> && ...) && !is_arithmetic_scalar_v<std::remove_cvref_t<Dy>> &&
           (!is_arithmetic_scalar_v<std::remove_cvref_t<X>> && ...))
auto einsum_adjoint(const gemm_options& options, const Dy& dy, const X&... xs) {
  return detail::einsum_adjoint_apply<P, K>(options, dy, xs...);
}

}  // namespace einlm
