// einlm/linalg/einsum.hpp — einops' einsum: named axes, patterns parsed at compile time, run as a
// GEMM or as one fused pass.
//
//   auto scores = einsum<"b h i d, b h j d -> b h i j">(q, k);   // (B, H, S, S), a GEMM
//   auto tr     = einsum<"i i ->">(m);                            // the trace, a lazy reduction
//   auto t      = einsum<"i j k -> j i k">(x);                    // a strided view (no copy)
//   einsum_accumulate<"b s o, b s d -> o d">(dw, dy, x);         // dw += …, a GEMM with beta = 1
//
// Semantics: einops 0.8's einsum (einlm/pattern/einsum.hpp) with NumPy's rules for the tensors:
// names missing from the output are summed; a name repeated within one input takes the diagonal;
// '...' may stand anywhere, the ellipsis parts of the inputs broadcast right-aligned; an axis of
// length 1 broadcasts against the same name's length elsewhere. Errors are static_asserts carrying
// einops' (or NumPy's) sentence whenever the pattern or the static extents decide them, and
// shape_error at run time when dynamic extents disagree.
//
// How it runs, decided at compile time from the pattern and the types:
//   - two inputs of one floating type (float, double, bf16, fp16) that share a summed axis, with no
//     diagonal and no axis summed within one input: a contraction. Axes are classified into batch
//     (in both inputs and the output), M (first input and output), N (second input and output) and
//     K (both inputs, summed); each class is folded into one stride per operand where the memory
//     allows (otherwise its outer part becomes a loop of GEMM calls, K parts accumulating with
//     beta = 1), and einlm's GEMM (einlm/linalg/gemm.hpp: own kernels, BLAS, cuBLASLt) computes
//     the result into a new tensor — no input is copied unless it is a lazy expression, which is
//     evaluated first. bf16/fp16 accumulate in fp32.
//   - einsum_accumulate(out, …) adds the result into an existing tensor or view: a contraction's
//     GEMM calls write into out with beta = 1 (no temporary, one pass over out); anything else is
//     one fused pass out = out + (the expression).
//   - anything else: each input becomes a view (or an index-mapped node) over the joint axes, the
//     inputs are multiplied element-wise and the summed axes reduced — one lazy expression, which
//     eval() computes in one pass on the CPU or the GPU. With nothing to sum, a single tensor or
//     view input gives a strided view (a permutation, a diagonal).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "einlm/core/config.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/extents.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/expr.hpp"
#include "einlm/expr/rearrange.hpp"
#include "einlm/expr/reduce.hpp"
#include "einlm/linalg.hpp"
#include "einlm/pattern/einsum.hpp"
#include "einlm/pattern/errors.hpp"
#include "einlm/pattern/fixed_string.hpp"
#include "einlm/pattern/lower.hpp"

namespace einlm {

namespace detail {

/// A source of einsum: the view of a tensor or view, or the expression of anything else.
template <class X>
auto einsum_source(X&& x) {
  if constexpr (array_like<std::remove_cvref_t<X>>) return as_view(std::forward<X>(x));
  else return as_expression(std::forward<X>(x));
}

template <class X>
using einsum_source_t = decltype(einsum_source(std::declval<X>()));

/// Everything known at compile time about einsum pattern P applied to sources S…
template <fixed_string P, class... S>
struct einsum_plan {
  static constexpr int n_inputs = static_cast<int>(sizeof...(S));
  static constexpr pattern::einsum_pattern parsed = pattern::parse_einsum(P.view());
  static constexpr int ranks[n_inputs + 1] = {static_cast<int>(S::extents_type::rank())..., 0};
  static constexpr pattern::einsum_layout layout =
      parsed.ok() ? pattern::layout_einsum(parsed, ranks, n_inputs) : pattern::einsum_layout{};

  /// Static extents of every input, -1 where dynamic.
  static constexpr auto static_extents = [] {
    cuda::std::array<cuda::std::array<std::int64_t, pattern::max_dims>, pattern::max_einsum_inputs> v{};
    int k = 0;
    auto one = [&](auto tag) {
      using E = typename decltype(tag)::type::extents_type;
      for (std::size_t d = 0; d != E::rank(); ++d)
        v[k][d] = E::static_extent(d) == dyn ? -1 : static_cast<std::int64_t>(E::static_extent(d));
      ++k;
    };
    (one(std::type_identity<S>{}), ...);
    return v;
  }();

  struct static_result {
    std::int64_t length[pattern::max_einsum_joint] = {};  // -1 where only known at run time
    pattern::error_code error = pattern::error_code::none;
  };
  /// The joint axes' static lengths, and the shape errors static extents already show.
  static constexpr static_result statics = [] {
    static_result r{};
    if (!layout.ok()) return r;
    for (int j = 0; j < layout.n_joint; ++j) {
      std::int64_t big = -1;  // a static length > 1
      bool all_static = true;
      for (int k = 0; k < n_inputs; ++k) {
        std::int64_t mine = -1;  // this input's static length for j (a diagonal's must agree)
        for (int d = 0; d < ranks[k]; ++d) {
          if (layout.joint_of[k][d] != j) continue;
          const std::int64_t s = static_extents[k][d];
          if (s < 0) {
            all_static = false;
            continue;
          }
          if (mine >= 0 && s != mine && r.error == pattern::error_code::none) r.error = pattern::error_code::einsum_diagonal_mismatch;
          mine = s;
          if (s != 1) {
            if (big >= 0 && big != s && r.error == pattern::error_code::none) r.error = pattern::error_code::einsum_broadcast_mismatch;
            big = s;
          }
        }
      }
      r.length[j] = big >= 0 ? big : (all_static ? 1 : -1);
    }
    return r;
  }();

  static constexpr pattern::error_code error =
      n_inputs == 0 ? pattern::error_code::einsum_no_tensors
      : !parsed.ok() ? parsed.error
      : !layout.ok() ? layout.error
                     : statics.error;

  static constexpr int n_out = layout.n_out;
  static constexpr int n_joint = layout.n_joint;

  template <std::size_t... J>
  static auto extents_of(std::index_sequence<J...>)
      -> extents<(statics.length[J] >= 0 ? static_cast<std::size_t>(statics.length[J]) : dyn)...>;
  using joint_extents = decltype(extents_of(std::make_index_sequence<error == pattern::error_code::none ? n_joint : 0>{}));
  using out_extents = decltype(extents_of(std::make_index_sequence<error == pattern::error_code::none ? n_out : 0>{}));

  /// Whether a summed axis is shared by inputs 0 and 1 and every other axis is usable by a GEMM.
  static constexpr bool contraction_shape = [] {
    if (n_inputs != 2 || error != pattern::error_code::none) return false;
    bool shared_sum = false;
    for (int j = 0; j < n_joint; ++j) {
      if (layout.diagonal(0, j) || layout.diagonal(1, j)) return false;
      const bool a = layout.has(0, j), b = layout.has(1, j);
      if (j >= n_out) {
        if (a != b) return false;  // summed within one input only
        shared_sum = true;
      }
    }
    return shared_sum;
  }();
};

/// The joint axes' lengths at run time; shape_error (NumPy's sentence) when the inputs disagree.
template <class Plan, class... S>
index_array<Plan::n_joint> einsum_lengths(std::string_view pattern_text, const S&... sources) {
  constexpr auto& l = Plan::layout;
  const std::vector<std::vector<std::int64_t>> shapes = {[&] {
    std::vector<std::int64_t> v;
    for (std::size_t d = 0; d != S::extents_type::rank(); ++d) v.push_back(static_cast<std::int64_t>(sources.extents().extent(d)));
    return v;
  }()...};
  index_array<Plan::n_joint> length{};
  auto fail = [&](pattern::error_code code, int j, std::int64_t a, std::int64_t b) {
    const int name = l.name_of[j];
    const std::string axis = name >= 0 ? std::string(Plan::parsed.name[name]) : concat("...[", l.ellipsis_dim[j], "]");
    std::string inputs;
    for (const auto& s : shapes) inputs += (inputs.empty() ? "" : ", ") + format_shape(s);
    throw shape_error(concat("einsum \"", pattern_text, "\" on inputs of shapes ", inputs, ": ",
                             pattern::error_sentence(code, axis, a, b, nullptr, nullptr, 0, "")));
  };
  for (int j = 0; j < Plan::n_joint; ++j) {
    std::int64_t big = -1;
    for (int k = 0; k < Plan::n_inputs; ++k) {
      std::int64_t mine = -1;
      for (int d = 0; d < Plan::ranks[k]; ++d) {
        if (l.joint_of[k][d] != j) continue;
        const std::int64_t s = shapes[static_cast<std::size_t>(k)][static_cast<std::size_t>(d)];
        if (mine >= 0 && s != mine) fail(pattern::error_code::einsum_diagonal_mismatch, j, mine, s);
        mine = s;
        if (s != 1) {
          if (big >= 0 && big != s) fail(pattern::error_code::einsum_broadcast_mismatch, j, big, s);
          big = s;
        }
      }
    }
    length[static_cast<std::size_t>(j)] = big >= 0 ? big : 1;
  }
  return length;
}

/// Input K's joint axes as strides into its memory: 0 for axes it lacks or broadcasts, the sum of
/// its dimensions' strides for a diagonal.
template <class Plan, int K, class V>
index_array<Plan::n_joint> einsum_joint_strides(const V& v, const index_array<Plan::n_joint>& length) {
  index_array<Plan::n_joint> strides{};
  const auto own = strides_of(v.mapping());
  for (int d = 0; d < Plan::ranks[K]; ++d) {
    const int j = Plan::layout.joint_of[K][d];
    const index_t n = static_cast<index_t>(v.extents().extent(static_cast<std::size_t>(d)));
    if (n == length[static_cast<std::size_t>(j)] && n != 1) strides[static_cast<std::size_t>(j)] += own[static_cast<std::size_t>(d)];
  }
  return strides;
}

/// Input K over the joint axes: a strided view of a tensor or view, an index-mapped node otherwise.
template <class Plan, int K, class X>
auto einsum_joint_input(const X& x, const index_array<Plan::n_joint>& length) {
  using JE = typename Plan::joint_extents;
  const JE joint = from_array<JE>(length);
  if constexpr (array_like<X>) {
    using T = std::add_const_t<typename X::element_type>;
    return view<T, JE, layout_strided, typename X::space>(
        x.data(), typename layout_strided::template mapping<JE>(joint, einsum_joint_strides<Plan, K>(x, length)));
  } else {
    // Output axis j of the map is joint axis j; input dimension d reads joint_of[K][d], or a
    // length-1 axis of its own (left at index 0) where it broadcasts.
    pattern::index_map m{};
    m.n_out = static_cast<std::int8_t>(Plan::n_joint);
    m.n_in = static_cast<std::int8_t>(Plan::ranks[K]);
    int n_elem = Plan::n_joint;
    for (int j = 0; j < Plan::n_joint; ++j) {
      m.out_first[j] = static_cast<std::int8_t>(j);
      m.out_size[j] = 1;
      m.out_axes[j] = static_cast<std::int8_t>(j);
      m.length[j] = length[static_cast<std::size_t>(j)];
    }
    for (int d = 0; d < Plan::ranks[K]; ++d) {
      const int j = Plan::layout.joint_of[K][d];
      int axis = j;
      if (x.extents().extent(static_cast<std::size_t>(d)) == 1 && length[static_cast<std::size_t>(j)] != 1) {
        axis = n_elem++;
        m.length[axis] = 1;
      }
      m.in_first[d] = static_cast<std::int8_t>(Plan::n_joint + d);
      m.in_size[d] = 1;
      m.in_axes[Plan::n_joint + d] = static_cast<std::int8_t>(axis);
    }
    m.n_elem = static_cast<std::int8_t>(n_elem);
    return rearrange_node<X, JE>(x, joint, m);
  }
}

/// The element-wise product of the inputs over the joint axes, reduced over the summed axes.
template <class Plan, class... S, std::size_t... K>
auto einsum_fused(const index_array<Plan::n_joint>& length, std::index_sequence<K...>, const S&... sources) {
  auto product = [](const auto& first, const auto&... rest) {
    if constexpr (sizeof...(rest) == 0) return first;
    else return (as_expression(first) * ... * rest);
  }(einsum_joint_input<Plan, static_cast<int>(K)>(sources, length)...);
  using OutE = typename Plan::out_extents;
  index_array<OutE::rank()> out_length{};
  for (std::size_t o = 0; o != OutE::rank(); ++o) out_length[o] = length[o];
  if constexpr (Plan::n_joint == Plan::n_out) {
    return product;
  } else {
    pattern::index_map m{};
    m.n_in = static_cast<std::int8_t>(Plan::n_joint);
    m.n_out = static_cast<std::int8_t>(Plan::n_out);
    m.n_elem = static_cast<std::int8_t>(Plan::n_joint);
    for (int j = 0; j < Plan::n_joint; ++j) {
      m.in_first[j] = static_cast<std::int8_t>(j);
      m.in_size[j] = 1;
      m.in_axes[j] = static_cast<std::int8_t>(j);
      m.length[j] = length[static_cast<std::size_t>(j)];
      if (j < Plan::n_out) {
        m.out_first[j] = static_cast<std::int8_t>(j);
        m.out_size[j] = 1;
        m.out_axes[j] = static_cast<std::int8_t>(j);
      } else {
        m.reduced |= 1u << j;
      }
    }
    auto child = as_expression(product);
    return reduce_node<decltype(child), OutE, reductions::sum>(child, from_array<OutE>(out_length), m);
  }
}

/// One axis of a contraction after folding: its length and its stride in A, B and C.
struct contraction_axis {
  index_t length = 1;
  index_t a = 0, b = 0, c = 0;
};

/// Folds the axes of one class (given outermost first) into as few as possible: neighbours merge
/// when, in every operand, the outer one's stride is the inner one's times its length.
inline std::vector<contraction_axis> fold_axes(std::vector<contraction_axis> axes) {
  std::vector<contraction_axis> out;
  for (const auto& x : axes) {
    if (x.length == 1) continue;
    if (!out.empty()) {
      contraction_axis& outer = out.back();
      if (outer.a == x.a * x.length && outer.b == x.b * x.length && outer.c == x.c * x.length) {
        outer = {outer.length * x.length, x.a, x.b, x.c};
        continue;
      }
    }
    out.push_back(x);
  }
  return out;
}

/// Orders one class's axes for folding: outermost first by the strides of one operand.
inline void order_axes(std::vector<contraction_axis>& axes, index_t contraction_axis::* by) {
  std::stable_sort(axes.begin(), axes.end(), [by](const contraction_axis& x, const contraction_axis& y) {
    const index_t sx = x.*by < 0 ? -(x.*by) : x.*by, sy = y.*by < 0 ? -(y.*by) : y.*by;
    return sx > sy;
  });
}

/// The longest folded axis stays in the GEMM; the others become loops.
inline contraction_axis take_longest(std::vector<contraction_axis>& axes) {
  if (axes.empty()) return {};
  std::size_t best = 0;
  for (std::size_t i = 1; i < axes.size(); ++i)
    if (axes[i].length > axes[best].length) best = i;
  const contraction_axis kept = axes[best];
  axes.erase(axes.begin() + static_cast<std::ptrdiff_t>(best));
  return kept;
}

/// A two-input contraction through GEMM calls into the view `out` (the output's shape, any
/// strides, overlapping neither input): out = a·b, or out += a·b when add_to_out (beta = 1 from
/// the first call, so no temporary).
template <class Plan, class VA, class VB, class VC>
void einsum_contract_into(const VA& a, const VB& b, const VC& out, const index_array<Plan::n_joint>& length,
                          const gemm_options& options, bool add_to_out) {
  using T = typename VA::value_type;
  using S = typename VA::space;
  if (out.size() == 0) return;
  for (int j = Plan::n_out; j < Plan::n_joint; ++j) {
    if (length[static_cast<std::size_t>(j)] == 0) {  // an empty sum
      if (!add_to_out) assign(out, full<T>(out.extents(), T{}));
      return;
    }
  }

  const auto sa = einsum_joint_strides<Plan, 0>(a, length);
  const auto sb = einsum_joint_strides<Plan, 1>(b, length);
  index_array<Plan::n_joint> sc{};
  if constexpr (Plan::n_out > 0)
    for (int o = 0; o < Plan::n_out; ++o) sc[static_cast<std::size_t>(o)] = out.stride(static_cast<std::size_t>(o));
  std::vector<contraction_axis> batch, m, n, k;
  for (int j = 0; j < Plan::n_joint; ++j) {
    const auto u = static_cast<std::size_t>(j);
    const contraction_axis x{length[u], sa[u], sb[u], sc[u]};
    const bool in_a = Plan::layout.has(0, j), in_b = Plan::layout.has(1, j);
    if (j >= Plan::n_out) k.push_back(x);
    else if (in_a && in_b) batch.push_back(x);
    else if (in_a) m.push_back(x);
    else n.push_back(x);
  }
  order_axes(batch, &contraction_axis::c);
  order_axes(m, &contraction_axis::c);
  order_axes(n, &contraction_axis::c);
  order_axes(k, &contraction_axis::a);
  batch = fold_axes(std::move(batch));
  m = fold_axes(std::move(m));
  n = fold_axes(std::move(n));
  k = fold_axes(std::move(k));
  const contraction_axis bt = take_longest(batch), mt = take_longest(m), nt = take_longest(n), kt = take_longest(k);
  // Loops: every remaining folded axis; those of K accumulate into C.
  std::vector<contraction_axis> loops;
  std::vector<bool> summing;
  for (auto* cls : {&batch, &m, &n, &k})
    for (const auto& x : *cls) {
      loops.push_back(x);
      summing.push_back(cls == &k);
    }
  std::vector<index_t> at(loops.size(), 0);
  const T* pa = a.data();
  const T* pb = b.data();
  T* pc = out.data();
  for (;;) {
    index_t oa = 0, ob = 0, oc = 0;
    bool accumulate = false;
    for (std::size_t i = 0; i != loops.size(); ++i) {
      oa += at[i] * loops[i].a;
      ob += at[i] * loops[i].b;
      oc += at[i] * loops[i].c;
      accumulate = accumulate || (summing[i] && at[i] > 0);
    }
    const matrix_ref<const T> am(pa + oa, bt.length, mt.length, kt.length, bt.a, mt.a, kt.a);
    const matrix_ref<const T> bm(pb + ob, bt.length, kt.length, nt.length, bt.b, kt.b, nt.b);
    const matrix_ref<T> cm(pc + oc, bt.length, mt.length, nt.length, bt.c, mt.c, nt.c);
    const epilogue<T> ep{.beta = accumulate || add_to_out ? 1.0 : 0.0};
    gemm_on(S{}, am, bm, cm, ep, options);
    std::size_t i = loops.size();
    while (i > 0) {
      --i;
      if (++at[i] < loops[i].length) break;
      at[i] = 0;
      if (i == 0) return;
    }
    if (loops.empty()) return;
  }
}

/// A two-input contraction into a new tensor of the output's shape.
template <class Plan, class VA, class VB>
auto einsum_contract(const VA& a, const VB& b, const index_array<Plan::n_joint>& length, const gemm_options& options) {
  using T = typename VA::value_type;
  using S = typename VA::space;
  using OutE = typename Plan::out_extents;
  index_array<OutE::rank()> out_length{};
  for (std::size_t o = 0; o != OutE::rank(); ++o) out_length[o] = length[o];
  tensor<T, OutE, S> out(from_array<OutE>(out_length));
  einsum_contract_into<Plan>(a, b, as_view(out), length, options, false);
  return out;
}

/// Whether a tuple of two einsum sources contracts through the GEMM: one floating element type
/// (float, double, bf16, fp16) and one memory space.
template <class Sources>
inline constexpr bool gemm_pair_v = [] {
  using A = std::remove_cvref_t<std::tuple_element_t<0, Sources>>;
  using B = std::remove_cvref_t<std::tuple_element_t<1, Sources>>;
  return std::is_same_v<typename A::value_type, typename B::value_type> && is_gemm_input_v<typename A::value_type> &&
         std::is_same_v<typename A::space, typename B::space>;
}();

template <class Plan, class S>
auto einsum_array(const S& source) {
  if constexpr (array_like<S>) return source;
  else return eval(source);
}

template <fixed_string P, class... X>
auto einsum_apply(const gemm_options& options, const X&... xs) {
  using Plan = einsum_plan<P, einsum_source_t<const X&>...>;
  constexpr pattern::error_code error = Plan::error;
  if constexpr (error != pattern::error_code::none) {
    pattern::report_error<error>();
    return 0;
  } else {
    [[maybe_unused]] const auto sources = std::make_tuple(einsum_source(xs)...);
    const auto length = std::apply(
        [&](const auto&... s) { return einsum_lengths<Plan>(P.view(), s...); }, sources);
    if constexpr (Plan::contraction_shape) {
      const auto& [sa, sb] = sources;
      if constexpr (gemm_pair_v<decltype(sources)>) {
        const auto a = einsum_array<Plan>(sa);
        const auto b = einsum_array<Plan>(sb);
        return einsum_contract<Plan>(as_view(a), as_view(b), length, options);
      } else {
        return einsum_fused<Plan>(length, std::make_index_sequence<2>{}, sa, sb);
      }
    } else {
      return std::apply(
          [&](const auto&... s) { return einsum_fused<Plan>(length, std::index_sequence_for<X...>{}, s...); },
          sources);
    }
  }
}

/// out += einsum<P>(xs...): one GEMM pass with beta = 1 into out when the pattern is a
/// contraction of two arrays of out's type and memory space, else one fused element-wise pass.
template <fixed_string P, class Out, class... X>
void einsum_accumulate_apply(const gemm_options& options, Out&& out, const X&... xs) {
  using Plan = einsum_plan<P, einsum_source_t<const X&>...>;
  constexpr pattern::error_code error = Plan::error;
  if constexpr (error != pattern::error_code::none) {
    pattern::report_error<error>();
  } else {
    auto target = as_view(out);
    using V = decltype(target);
    static_assert(V::extents_type::rank() == Plan::out_extents::rank(),
                  "einsum_accumulate: the output's rank differs from the pattern's right-hand side");
    [[maybe_unused]] const auto sources = std::make_tuple(einsum_source(xs)...);
    const auto length = std::apply(
        [&](const auto&... s) { return einsum_lengths<Plan>(P.view(), s...); }, sources);
    for (std::size_t o = 0; o != V::extents_type::rank(); ++o)
      if (target.extent(o) != length[o]) {
        index_array<V::extents_type::rank()> want{};
        for (std::size_t r = 0; r != want.size(); ++r) want[r] = length[r];
        throw shape_error(concat("einsum_accumulate \"", P.view(), "\": the output has shape ",
                                 shape_string(target.extents()), ", the pattern gives ", format_shape(want)));
      }
    if constexpr (Plan::contraction_shape) {
      const auto& [sa, sb] = sources;
      using A = std::remove_cvref_t<decltype(sa)>;
      if constexpr (gemm_pair_v<decltype(sources)> && std::is_same_v<typename V::value_type, typename A::value_type> &&
                    std::is_same_v<typename V::space, typename A::space>) {
        const auto a = einsum_array<Plan>(sa);
        const auto b = einsum_array<Plan>(sb);
        einsum_contract_into<Plan>(as_view(a), as_view(b), target, length, options, true);
        return;
      }
    }
    const auto result = einsum_apply<P>(options, xs...);  // a lazy expression, or a tensor
    assign(target, target + result);
  }
}

}  // namespace detail

/// out += einsum<P>(xs...), for a tensor or view `out` of the result's shape that overlaps no
/// input: a contraction of two arrays of out's type runs as GEMM calls that add into out
/// (beta = 1) — no temporary of the result's size, one pass over out instead of three; any other
/// pattern, as one fused pass. What optimizers' gradient accumulation wants:
///   einsum_accumulate<"b s o, b s d -> o d">(dw, dy, x);   // dw += dyᵀ·x over batch and sequence
/// A shape that differs from the pattern's result throws shape_error naming both.
template <fixed_string P, class Out, class... X>
  requires(!std::is_same_v<std::remove_cvref_t<Out>, gemm_options> &&
           ((operand<X> && !is_arithmetic_scalar_v<std::remove_cvref_t<X>>) && ...))
void einsum_accumulate(Out&& out, const X&... xs) {
  detail::einsum_accumulate_apply<P>(gemm_options{}, std::forward<Out>(out), xs...);
}

/// The same with the GEMM's options.
template <fixed_string P, class Out, class... X>
  requires((operand<X> && !is_arithmetic_scalar_v<std::remove_cvref_t<X>>) && ...)
void einsum_accumulate(const gemm_options& options, Out&& out, const X&... xs) {
  detail::einsum_accumulate_apply<P>(options, std::forward<Out>(out), xs...);
}

/// einops.einsum with the pattern first: einsum<"b i d, b j d -> b i j">(a, b); see the file comment.
template <fixed_string P, class... X>
  requires((operand<X> && !is_arithmetic_scalar_v<std::remove_cvref_t<X>>) && ...)
auto einsum(const X&... xs) {
  return detail::einsum_apply<P>(gemm_options{}, xs...);
}

/// The same with the GEMM's options (backend, CPU threads, CUDA stream) for contractions.
template <fixed_string P, class... X>
  requires((operand<X> && !is_arithmetic_scalar_v<std::remove_cvref_t<X>>) && ...)
auto einsum(const gemm_options& options, const X&... xs) {
  return detail::einsum_apply<P>(options, xs...);
}

}  // namespace einlm
