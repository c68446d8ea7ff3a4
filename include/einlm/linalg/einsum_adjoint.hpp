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
// sum over the missing ones. Three cases need more than that einsum, and are materialised:
//   - input K repeats a name (a diagonal, "i i -> i"): the gradient is zero off the diagonal; the
//     einsum gives the diagonal, which is written into a zero tensor of K's shape;
//   - a name is summed and appears in input K only ("i j -> i" for K = 0, "i i ->"): its gradient
//     is the same for every index (a broadcast): the einsum runs without it and its result is
//     repeated along it (a zero stride) while being written;
//   - input K has an axis of length 1 that broadcasts against a longer axis of the same name (NumPy
//     broadcasting, "i j, j -> i j" with K of shape (1, J)): the einsum gives the gradient at the
//     full length, which is summed over that axis and written with length 1 (PyTorch's
//     sum_to_size): one more einsum, over a strided view of the first one's result that holds
//     each axis that may broadcast twice (K's length, 1 where it broadcasts; the summed length,
//     1 where it does not). Which axes may broadcast is decided at compile time (a static
//     extent of 1 against a longer or run-time length, or a run-time extent, of a name also in
//     another input); whether they do, at run time. The view has K's distinct names plus those
//     that may broadcast as axes: at most 16 (a static_assert), e.g. 8 names of run-time extents.
// When the forward's output is a scalar (rank 0), dy multiplies the einsum of the other inputs.
//
// Results: as einsum's (einlm/linalg/einsum.hpp): a new tensor when the adjoint einsum is a GEMM
// contraction (two inputs of one floating type sharing a summed axis, e.g. both gradients of a
// matmul), otherwise a lazy expression — or a strided view of dy — that reads dy and the inputs:
// keep them alive (and named) until it is evaluated. The diagonal and broadcast cases, and every
// input K with an axis that may broadcast (with static extents: one of length 1; with run-time
// extents: most), return a tensor of input K's extents — the einsum's tensor itself when it has
// K's extents type and nothing broadcasts at run time.
//
// Checks: dy must have the forward output's shape (a static_assert naming both extents types when
// static, einlm::shape_error when not); errors of P against the inputs are einsum's.
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
  /// True when input K has no diagonal and no name summed in it only.
  static constexpr bool simple = unique.n == rank_k && produced.n == rank_k;
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
  /// What Write writes (nothing when the forward has an error), as a fixed_string.
  template <std::size_t (*Write)(char*)>
  static constexpr auto written() {
    constexpr std::size_t size = forward_ok ? Write(nullptr) : 0;
    fixed_string<size> s;
    if constexpr (forward_ok) Write(s.chars);
    return s;
  }
  /// E.g. "b i k, b j k -> b i j" for the first input of "b i j, b j k -> b i k".
  static constexpr auto text = written<write_pattern>();

  /// Whether input K's axis U (of unique) may be a length-1 axis broadcast against a longer axis
  /// of the same name: its static extent is not a length other than 1, the joint length is not a
  /// static 1, and the name is in another input (else its length is K's own).
  static constexpr bool may_broadcast(int u) {
    const int j = unique.joint[u];
    bool in_other_input = false;
    for (int k = 0; k < n_inputs; ++k) in_other_input = in_other_input || (k != K && forward::layout.has(k, j));
    if (!in_other_input) return false;
    int d = 0;
    while (forward::layout.joint_of[K][d] != j) ++d;
    const std::int64_t own = forward::static_extents[K][d];
    if (own >= 0 && own != 1) return false;
    return forward::statics.length[j] != 1;
  }
  /// The indices into unique of the axes that may broadcast (the sum's summed axes).
  static constexpr axis_list broadcastable = [] {
    axis_list a{};
    if (!forward_ok) return a;
    for (int u = 0; u < unique.n; ++u)
      if (may_broadcast(u)) a.joint[a.n++] = u;
    return a;
  }();
  /// True when the einsum's result is the gradient as it is (no diagonal, no broadcast).
  static constexpr bool direct = unique.n == rank_k && produced.n == rank_k && broadcastable.n == 0;
  static_assert(unique.n + broadcastable.n <= pattern::max_dims,
                "einsum_adjoint: input K has too many axes that may broadcast for the sum over them");

  /// The sum over the broadcast axes, on a view of the gradient with every unique axis u of
  /// input K as "a<u>" (K's length) and each axis that may broadcast once more as "r<i>" (the
  /// joint length where it broadcasts, else 1): "a0 a1 a2 r0 -> a0 a1 a2".
  static constexpr std::size_t write_sum_pattern(char* out) {
    std::size_t n = 0;
    auto put = [&](char c) {
      if (out != nullptr) out[n] = c;
      ++n;
    };
    auto put_name = [&](char letter, int i) {
      put(letter);
      if (i >= 10) put(static_cast<char>('0' + i / 10));
      put(static_cast<char>('0' + i % 10));
    };
    for (int u = 0; u < unique.n; ++u) {
      if (u != 0) put(' ');
      put_name('a', u);
    }
    for (int i = 0; i < broadcastable.n; ++i) {
      put(' ');
      put_name('r', i);
    }
    put(' ');
    put('-');
    put('>');
    for (int u = 0; u < unique.n; ++u) {
      put(' ');
      put_name('a', u);
    }
    return n;
  }
  static constexpr auto sum_text = written<write_sum_pattern>();

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

/// The gradient when the einsum's result g is not it as it is: a tensor of input K's extents XE.
/// g is written to K's diagonal (the rest zero), repeated along the names summed in K only, and
/// summed over the axes of length 1 in K that broadcast against a longer joint length (kept with
/// length 1). `length` holds the forward's joint lengths.
template <class Plan, extents_like XE, class G, std::size_t NJ>
auto materialise_input_gradient(G&& g_source, const XE& xe, const index_array<NJ>& length) {
  using Gd = std::remove_cvref_t<G>;
  constexpr int n_unique = Plan::unique.n;
  constexpr int n_summed = Plan::broadcastable.n;
  // Whether each axis that may broadcast does; its joint length.
  index_array<static_cast<std::size_t>(n_summed > 0 ? n_summed : 1)> summed_length{};
  bool any_broadcast = false;
  for (int i = 0; i < n_summed; ++i) {
    const int j = Plan::unique.joint[Plan::broadcastable.joint[i]];
    int d = 0;
    while (Plan::forward::layout.joint_of[Plan::input][d] != j) ++d;
    const index_t joint_length = length[static_cast<std::size_t>(j)];
    const bool broadcast = xe.extent(static_cast<std::size_t>(d)) == 1 && joint_length != 1;
    summed_length[static_cast<std::size_t>(i)] = broadcast ? joint_length : 1;
    any_broadcast = any_broadcast || broadcast;
  }
  if constexpr (Plan::simple && array_like<Gd>) {
    // Nothing broadcasts at run time and g is already a tensor of K's extents: g is the gradient.
    using GT = std::remove_const_t<typename Gd::element_type>;
    if constexpr (std::is_same_v<Gd, tensor<GT, XE, typename Gd::space>>)
      if (!any_broadcast) return Gd(std::forward<G>(g_source));
  }
  const auto g_held = [&] {
    if constexpr (array_like<Gd>) return as_view(g_source);
    else return eval(g_source);
  }();
  const auto g = as_view(g_held);
  using GV = std::remove_cvref_t<decltype(g)>;
  using T = std::remove_const_t<typename GV::element_type>;
  using Space = typename GV::space;
  using UE = dims<static_cast<std::size_t>(n_unique)>;

  tensor<T, XE, Space> dx(xe);  // (X…)
  if constexpr (!Plan::simple) dx = T{};
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
  if constexpr (n_summed > 0) {
    if (any_broadcast) {
      // g seen with K's lengths (1 where broadcast) and each axis that may broadcast once more
      // with its summed length (1 where it does not), summed over the latter.
      constexpr auto n_all = static_cast<std::size_t>(n_unique + n_summed);
      using SE = dims<n_all>;
      index_array<n_all> all_lengths{}, all_strides{};
      for (std::size_t u = 0; u != static_cast<std::size_t>(n_unique); ++u) {
        all_lengths[u] = lengths[u];
        all_strides[u] = g_strides[u];
      }
      for (int i = 0; i < n_summed; ++i) {
        const auto at = static_cast<std::size_t>(n_unique + i);
        all_lengths[at] = summed_length[static_cast<std::size_t>(i)];
        all_strides[at] = g_strides[static_cast<std::size_t>(Plan::broadcastable.joint[i])];
      }
      const SE se = from_array<SE>(all_lengths);
      const view<const T, SE, layout_strided, Space> spread(g.data(), typename layout_strided::template mapping<SE>(se, all_strides));
      assign(diagonal, einsum<Plan::sum_text>(spread));
      return dx;
    }
  }
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
    const auto sources = std::make_tuple(einsum_source(xs)...);
    const auto length = std::apply([&](const auto&... s) { return einsum_lengths<Forward>(P.view(), s...); }, sources);
    const auto label = concat("einsum_adjoint<\"", P.view(), "\", ", K, ">");
    using OutE = typename Forward::out_extents;
    index_array<OutE::rank()> out_length{};
    for (std::size_t o = 0; o != OutE::rank(); ++o) out_length[o] = length[o];
    check_adjoint_shape(label, "dy", dy_source.extents(), from_array<OutE>(out_length));
    const auto& x = std::get<k_checked>(sources);
    using XE = typename std::remove_cvref_t<decltype(x)>::extents_type;
    auto g = einsum_adjoint_product<Plan>(options, dy_source, sources, std::make_index_sequence<sizeof...(X) - 1>{});
    if constexpr (Plan::direct) return g;
    else return materialise_input_gradient<Plan, XE>(std::move(g), x.extents(), length);
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
