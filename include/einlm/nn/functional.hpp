// einlm/nn/functional.hpp — the forward functions that transformer blocks are made of, written in
// einlm's own vocabulary (expressions, einops reductions, einsum) and checked against CS336's
// snapshots:
//
//   softmax(x), log_softmax(x)        over the last axis, max-subtracted (no overflow at x + 100)
//   cross_entropy(logits, targets)    mean over rows of logsumexp(row) − row[target]; logits
//                                     (…, V), integer targets (…); probabilities never materialised;
//                                     contiguous logits row by row, threaded over rows
//   rms_norm(x, gain, eps = 1e-5)     x / √(mean(x²) + eps) · gain over the last axis, in fp32
//   layer_norm(x, gain, bias, eps = 1e-5)
//                                     (x − mean) / √(var + eps) · gain + bias over the last axis, in
//                                     fp32 (biased variance, as torch.nn.LayerNorm)
//   rope(x, positions, theta)         rotary embedding of interleaved pairs (x₀,x₁), (x₂,x₃), … by
//                                     pos · θ^(−2k/d); x (…, S, D), positions (S,) or x's (…, S)
//   scaled_dot_product_attention(q, k, v[, mask])
//                                     softmax(q kᵀ / √d + (mask ? 0 : −∞)) v; q (…, Sq, D), k (…, Sk, D),
//                                     v (…, Sk, Dv), mask (…, Sq, Sk) of bool, true = may attend
//
// Inputs are host or device arrays or lazy expressions; results are new tensors in the inputs'
// memory space (cross_entropy returns a double on the host). 16-bit inputs compute in float and
// round once on output. Reductions run through the executors, so each function is a few fused
// passes: softmax three (row max, row sum of exp, the output), rms_norm two. rms_norm and
// layer_norm of host tensors (float, double, bf16) instead run one row kernel each, on the widest
// packets of the CPU (simd::dispatch), threaded over blocks of rows; rows are summed in a fixed
// lane order, so a result depends on the row and the packet width only. rope and
// cross_entropy's target gather run on the host (their CUDA kernels come with attention's).
// Shapes are checked (static_asserts for static extents, shape_error otherwise); a target outside
// [0, V) is a value_error naming its row and value.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "einlm/core/error.hpp"
#include "einlm/core/math.hpp"
#include "einlm/core/simd_dispatch.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/einops.hpp"
#include "einlm/expr.hpp"

namespace einlm::nn {

namespace detail {

/// The type a function computes in: float for 16-bit floats, the type itself otherwise.
template <class T>
using compute_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <class X>
using value_t = typename decltype(as_expression(std::declval<const X&>()))::value_type;

}  // namespace detail

namespace detail {

/// The row maxima of x (…, D) and the row sums of exp(x − max), both (…, 1), in C.
template <class C, class X>
auto softmax_rows(const X& x) {
  const auto xc = cast<C>(x);                                                     // (…, D)
  auto row_max = eval(reduce<"... d -> ... 1", "max">(xc));                       // (…, 1)
  auto row_sum = eval(reduce<"... d -> ... 1", "sum">(exp(xc - row_max)));        // (…, 1)
  return std::pair{std::move(row_max), std::move(row_sum)};
}

using einlm::detail::for_each_row;
using einlm::detail::for_each_unit;

#if EINLM_HAS_PACKETS
/// The sum of a packet's lanes: its parts added, then the halves of the part added to each other
/// as vectors until one lane is left (four dependent additions for 16 lanes, not fifteen).
template <class P>
simd::scalar_t<P> lane_sum(const P& p) {
  auto v = p.part_at(0);
  for (int k = 1; k < P::K; ++k) v = v + p.part_at(k);
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
  constexpr int L = P::L;
  if constexpr (L == 16) v = v + __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
  if constexpr (L == 16) v = v + __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
  if constexpr (L == 8) v = v + __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3);
  if constexpr (L == 16) v = v + __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
  if constexpr (L == 8) v = v + __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5);
  if constexpr (L == 4) v = v + __builtin_shufflevector(v, v, 2, 3, 0, 1);
  if constexpr (L == 16) v = v + __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
  if constexpr (L == 8) v = v + __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6);
  if constexpr (L == 4) v = v + __builtin_shufflevector(v, v, 1, 0, 3, 2);
  if constexpr (L == 2) v = v + __builtin_shufflevector(v, v, 1, 0);
  if constexpr (L == 2 || L == 4 || L == 8 || L == 16) return v[0];
#endif
  simd::scalar_t<P> sum = 0;
  for (int l = 0; l < P::L; ++l) sum += v[l];
  return sum;
}
#endif

/// *result = max over j < n of x[j] widened to C (−∞ for n = 0; NaNs are passed over), on packets
/// of B bytes with four running maxima: one would chain every packet through a compare and a
/// blend's latency.
template <class C, class S>
struct row_max_kernel {
  template <int B>
  static void run(const S* x, index_t n, C* result) {
    C m = -std::numeric_limits<C>::infinity();
    index_t j = 0;
#if EINLM_HAS_PACKETS
    using P = simd::packet<C, B>;
    constexpr int lanes = P::size;
    if (n >= lanes) {
      P m0(m), m1(m), m2(m), m3(m);
      const auto take = [](P& acc, const P& v) { acc = simd::select(v > acc, v, acc); };
      for (; j + 4 * lanes <= n; j += 4 * lanes) {
        take(m0, simd::load<C, B>(x + j));
        take(m1, simd::load<C, B>(x + j + lanes));
        take(m2, simd::load<C, B>(x + j + 2 * lanes));
        take(m3, simd::load<C, B>(x + j + 3 * lanes));
      }
      for (; j + lanes <= n; j += lanes) take(m0, simd::load<C, B>(x + j));
      take(m0, m1);
      take(m2, m3);
      take(m0, m2);
      for (int l = 0; l < lanes; ++l) m = std::max(m, m0[l]);
    }
#endif
    for (; j < n; ++j) m = std::max(m, static_cast<C>(convert<C>(x[j])));
    *result = m;
  }
};

/// max over j < n of x[j] widened to C (−∞ for n = 0; NaNs are passed over), on packets
/// (row_max_kernel): for float the widest of this CPU, for double the build's (g++ 12 fails
/// compiling the 64-byte double kernel). Exact, so the same for every width.
template <class C, class S>
C row_max(const S* x, index_t n) {
  C m;
  if constexpr (std::is_same_v<C, float>) simd::dispatch<row_max_kernel<C, S>>(x, n, &m);
  else row_max_kernel<C, S>::template run<simd::detail::native_bytes>(x, n, &m);
  return m;
}

/// Σ_{j<n} exp(x[j] · scale − shift) in C over packets of B bytes, x widened from S; with
/// Store, out[j] = that exp too. See exp_sum_row.
template <bool Store, class C, class S, class D>
struct exp_sum_kernel {
  template <int B>
  static void run(const S* x, D* out, index_t n, C scale, C shift, C* result) {
    C sum = 0;
    index_t j = 0;
#if EINLM_HAS_PACKETS
    const auto packets = [&]<int W>() {
      using P = simd::packet<C, W>;
      constexpr int lanes = P::size;
      if (n - j < lanes) return;
      const P factor(scale), offset(shift);
      P acc(C(0));
      for (; j + lanes <= n; j += lanes) {
        const P e = math::exp(simd::load<C, W>(x + j) * factor - offset);
        if constexpr (Store) simd::store(out + j, e);
        acc = acc + e;
      }
      sum += lane_sum(acc);
    };
    packets.template operator()<B>();
    // The rest of a row of wide packets: 4-lane packets, then single elements.
    if constexpr (B > 16) packets.template operator()<16>();
#endif
    for (; j < n; ++j) {
      const C e = math::exp(static_cast<C>(convert<C>(x[j])) * scale - shift);
      if constexpr (Store) out[j] = convert<D>(e);
      sum += e;
    }
    *result = sum;
  }
};

/// Σ_{j<n} exp(x[j] · scale − shift) in C, x widened from S; with Store, out[j] = that exp too
/// (D: C or S; out may be x). On the widest packets of this CPU (simd::dispatch). Lane l of a
/// packet sums the elements j ≡ l (mod its lanes), so the sum depends on n (and the CPU) only,
/// not on where the row starts.
template <bool Store, class C, class S, class D>
C exp_sum_row(const S* x, D* out, index_t n, C scale, C shift) {
  C sum = 0;
  simd::dispatch<exp_sum_kernel<Store, C, S, D>>(x, out, n, scale, shift, &sum);
  return sum;
}

/// out[i] = Op(in[i]…) computed in C over n elements (out and each input stored as C or as a
/// 16-bit float widened to it), on packets of B bytes. Op is a functor of packets and of scalars.
template <class C, class Op>
struct map_kernel {
  template <int B, class S, class... In>
  static void run(index_t n, S* out, const In*... in) {
    index_t i = 0;
#if EINLM_HAS_PACKETS
    constexpr int lanes = simd::packet<C, B>::size;
    for (; i + lanes <= n; i += lanes) simd::store(out + i, Op{}(simd::load<C, B>(in + i)...));
#endif
    for (; i < n; ++i) out[i] = convert<S>(Op{}(static_cast<C>(convert<C>(in[i]))...));
  }
};

/// gelu(x), erf form (fp32 on float: math::gelu).
struct gelu_op {
  template <class V>
  V operator()(V x) const {
    return math::gelu(x);
  }
};

/// silu(a) · b, the SwiGLU hidden (the order of operations of einlm::silu(a) * b).
struct swiglu_hidden_op {
  template <class V>
  V operator()(V a, V b) const {
    return math::silu(a) * b;
  }
};

/// out[i] = Op(in[i]…) in C over n contiguous elements, threaded, on the widest packets of this
/// CPU (map_kernel).
template <class C, class Op, class S, class... In>
void map_elements(index_t n, S* out, const In*... in) {
  for_each_unit(n, [&](index_t first, index_t count) {
    simd::dispatch<map_kernel<C, Op>>(count, out + first, (in + first)...);
  });
}

// ------------------------------------------------------------------ rows of a norm, on packets

/// Whether x's rows can go to the norms' row kernels: a host tensor (contiguous) of float, double
/// or bf16, computing in C.
template <class X>
constexpr bool host_float_rows() {
  if constexpr (tensor_like<X>) {
    using T = typename X::value_type;
    return std::is_same_v<typename X::space, host> &&
           (std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, bf16>);
  } else {
    return false;
  }
}

/// A packet V of C loaded from p (widened from S), or, for V = C, one element.
template <class V, class S>
V load_as(const S* p) {
  if constexpr (simd::is_packet_v<V>) return simd::load<simd::scalar_t<V>, V::bytes>(p);
  else return static_cast<V>(convert<V>(*p));
}

/// Stores a packet (or one element) v at p, rounding to S.
template <class S, class V>
void store_as(S* p, const V& v) {
  if constexpr (simd::is_packet_v<V>) simd::store(p, v);
  else *p = convert<S>(v);
}

/// Σ_{j<n} f(j) in C, where f.template operator()<V>(j) gives the terms j… as a V (a packet of C, or
/// C for one element): packets of B bytes, then of 16 bytes, then single elements. Lane l of a
/// packet sums the terms j ≡ l (mod its lanes) and the lanes are added by lane_sum, so the sum
/// depends on n and B only.
template <class C, int B, class F>
C row_sum(index_t n, F&& f) {
  C sum = 0;
  index_t j = 0;
#if EINLM_HAS_PACKETS
  const auto packets = [&]<int W>() {
    using P = simd::packet<C, W>;
    if (n - j < P::size) return;
    P acc(C(0));
    for (; j + P::size <= n; j += P::size) acc = acc + f.template operator()<P>(j);
    sum += lane_sum(acc);
  };
  packets.template operator()<B>();
  if constexpr (B > 16) packets.template operator()<16>();
#endif
  for (; j < n; ++j) sum += f.template operator()<C>(j);
  return sum;
}

/// f.template operator()<V>(j) for j = 0, lanes, 2·lanes, … < n, with V as in row_sum.
template <class C, int B, class F>
void row_for(index_t n, F&& f) {
  index_t j = 0;
#if EINLM_HAS_PACKETS
  const auto packets = [&]<int W>() {
    using P = simd::packet<C, W>;
    for (; j + P::size <= n; j += P::size) f.template operator()<P>(j);
  };
  packets.template operator()<B>();
  if constexpr (B > 16) packets.template operator()<16>();
#endif
  for (; j < n; ++j) f.template operator()<C>(j);
}

/// A scalar c as each operand type of row_sum and row_for (a packet of B or 16 bytes, or C), built
/// once per row, outside the loops, by simd::broadcast.
template <class C, int B>
struct splat {
  C value;
#if EINLM_HAS_PACKETS
  simd::packet<C, B> wide;
  simd::packet<C, 16> narrow;
#endif
  explicit splat(C c) : value(c) {
#if EINLM_HAS_PACKETS
    wide = simd::broadcast<simd::packet<C, B>>(c);
    narrow = simd::broadcast<simd::packet<C, 16>>(c);
#endif
  }
  template <class V>
  V as() const {
    if constexpr (std::is_same_v<V, C>) return value;
#if EINLM_HAS_PACKETS
    else if constexpr (V::bytes == B) return wide;
    else return narrow;
#endif
  }
};

/// RMSNorm of rows [0, rows) of width d: y = x · rsqrt(Σx²/d + eps) · gain, in C, on packets of B
/// bytes (the order of operations of rms_norm's expression).
template <class C, class S, class G>
struct rms_norm_rows_kernel {
  template <int B>
  static void run(const S* x, const G* gain, S* y, index_t rows, index_t d, C eps) {
    const C inv_d = C(1) / static_cast<C>(d);
    for (index_t r = 0; r < rows; ++r) {
      const S* xr = x + r * d;
      S* yr = y + r * d;
      const C squares = row_sum<C, B>(d, [&]<class V>(index_t j) {
        const V v = load_as<V>(xr + j);
        return v * v;
      });
      const splat<C, B> inv_rms(math::rsqrt(squares * inv_d + eps));
      row_for<C, B>(d, [&]<class V>(index_t j) {
        store_as(yr + j, load_as<V>(xr + j) * inv_rms.template as<V>() * load_as<V>(gain + j));
      });
    }
  }
};

/// A row's mean and 1 / √(biased variance + eps), in C (two passes over the row).
template <class C, int B, class S>
std::pair<C, C> layer_norm_row_moments(const S* x, index_t d, C eps) {
  const C inv_d = C(1) / static_cast<C>(d);
  const C mean = row_sum<C, B>(d, [&]<class V>(index_t j) { return load_as<V>(x + j); }) * inv_d;
  const splat<C, B> shift(mean);
  const C variance = row_sum<C, B>(d, [&]<class V>(index_t j) {
    const V centred = load_as<V>(x + j) - shift.template as<V>();
    return centred * centred;
  }) * inv_d;
  return {mean, math::rsqrt(variance + eps)};
}

/// LayerNorm of rows [0, rows) of width d: y = (x − mean) · rstd · gain + bias, in C.
template <class C, class S, class G>
struct layer_norm_rows_kernel {
  template <int B>
  static void run(const S* x, const G* gain, const G* bias, S* y, index_t rows, index_t d, C eps) {
    for (index_t r = 0; r < rows; ++r) {
      const S* xr = x + r * d;
      S* yr = y + r * d;
      const auto moments = layer_norm_row_moments<C, B>(xr, d, eps);
      const splat<C, B> mean(moments.first), rstd(moments.second);
      row_for<C, B>(d, [&]<class V>(index_t j) {
        store_as(yr + j, (load_as<V>(xr + j) - mean.template as<V>()) * rstd.template as<V>() * load_as<V>(gain + j) +
                             load_as<V>(bias + j));
      });
    }
  }
};

/// The cut of `elements` values, rows of width d, into blocks for the norms' kernels: a function
/// of the shape only (never of the thread count), so sums over the rows are the same on any number
/// of threads. At most 64 blocks, each of at least 4096 elements when there are that many.
struct row_blocks {
  index_t width, rows, rows_per_block, count;
  row_blocks(index_t elements, index_t d) : width(d), rows(d == 0 ? 0 : elements / d) {
    const index_t wanted = std::max<index_t>(1, std::min<index_t>(64, elements / 4096));
    count = std::min(rows, wanted);
    rows_per_block = count == 0 ? 0 : (rows + count - 1) / count;
    if (rows_per_block > 0) count = (rows + rows_per_block - 1) / rows_per_block;
  }
  /// f(block, first_row, row_count) for every block, on the executor's threads.
  template <class F>
  void for_each(F&& f) const {
    for_each_row(count, rows_per_block * width, [&](index_t b) {
      const index_t first = b * rows_per_block;
      f(b, first, std::min(rows, first + rows_per_block) - first);
    });
  }
};

/// The norms' shape checks on the forward pass: gain (and bias) (D,) match x's last axis.
template <class XE, class GE>
void check_norm_vector(const char* op, const char* name, const XE& x, const GE& v) {
  static_assert(GE::rank() == 1, "einlm::nn: a norm's gain and bias are vectors (D,)");
  if (v.extent(0) != x.extent(XE::rank() - 1))
    throw shape_error(einlm::detail::concat(op, ": ", name, " of shape ", shape_string(v), " does not match x of shape ",
                                            shape_string(x)));
}

/// rms_norm as einlm expressions (two fused passes): any operands, host or device.
template <class X, class G>
auto rms_norm_expression(const X& x, const G& gain, double eps) {
  using T = value_t<X>;
  using C = compute_t<T>;
  const auto xc = cast<C>(x);                                                                  // (…, D)
  const auto inv_rms = eval(rsqrt(reduce<"... d -> ... 1", "mean">(xc * xc) + static_cast<C>(eps)));  // (…, 1)
  return eval(cast<T>(xc * inv_rms * cast<C>(gain)));                                          // (…, D)
}

/// layer_norm as einlm expressions (three fused passes): any operands, host or device.
template <class X, class G, class Bias>
auto layer_norm_expression(const X& x, const G& gain, const Bias& bias, double eps) {
  using T = value_t<X>;
  using C = compute_t<T>;
  const auto xc = cast<C>(x);                                                                  // (…, D)
  const auto mean = eval(reduce<"... d -> ... 1", "mean">(xc));                                // (…, 1)
  const auto rstd = eval(rsqrt(reduce<"... d -> ... 1", "mean">((xc - mean) * (xc - mean)) + static_cast<C>(eps)));  // (…, 1)
  return eval(cast<T>((xc - mean) * rstd * cast<C>(gain) + cast<C>(bias)));                   // (…, D)
}

}  // namespace detail

/// Softmax over the last axis.
template <class X>
auto softmax(const X& x) {
  using T = detail::value_t<X>;
  using C = detail::compute_t<T>;
  const auto [row_max, row_sum] = detail::softmax_rows<C>(x);                     // (…, 1) twice
  return eval(cast<T>(exp(cast<C>(x) - row_max) / row_sum));                      // (…, D)
}

/// Log-softmax over the last axis.
template <class X>
auto log_softmax(const X& x) {
  using T = detail::value_t<X>;
  using C = detail::compute_t<T>;
  const auto [row_max, row_sum] = detail::softmax_rows<C>(x);                     // (…, 1) twice
  return eval(cast<T>(cast<C>(x) - row_max - log(row_sum)));                      // (…, D)
}

/// Mean cross-entropy of logits (…, V) against integer targets (…), on the host.
template <class L, class Y>
double cross_entropy(const L& logits, const Y& targets) {
  const auto lv = as_view(logits);
  const auto tv = as_view(targets);
  using LV = decltype(lv);
  using YV = decltype(tv);
  using C = detail::compute_t<typename LV::value_type>;
  static_assert(std::is_same_v<typename LV::space, host> && std::is_same_v<typename YV::space, host>,
                "cross_entropy: logits and targets must be in host memory");
  static_assert(std::is_integral_v<typename YV::value_type>, "cross_entropy: targets must be integers");
  static_assert(LV::rank() == YV::rank() + 1, "cross_entropy: logits need one more axis (the vocabulary) than targets");
  constexpr std::size_t R = LV::rank();
  for (std::size_t r = 0; r + 1 < R; ++r)
    if (lv.extent(r) != tv.extent(r))
      throw shape_error(einlm::detail::concat("cross_entropy: logits of shape ", shape_string(lv.extents()),
                                              " do not match targets of shape ", shape_string(tv.extents())));
  const index_t V = static_cast<index_t>(lv.extent(R - 1));
  const index_t rows = V == 0 ? 0 : lv.size() / V;
  // Each row's log-sum-exp: row by row over contiguous logits (each row read from memory once),
  // else two einops reductions over the whole array.
  std::vector<C> lse(static_cast<std::size_t>(rows));
  if (lv.is_contiguous()) {
    const auto* x = lv.data();
    detail::for_each_row(rows, V, [&](index_t row) {
      const C m = detail::row_max<C>(x + row * V, V);
      const C sum = detail::exp_sum_row<false>(x + row * V, static_cast<C*>(nullptr), V, C(1), m);
      lse[static_cast<std::size_t>(row)] = m + static_cast<C>(std::log(sum));
    });
  } else {
    const auto lc = cast<C>(lv);                                                                      // (…, V)
    const auto row_max = eval(reduce<"... v -> ... 1", "max">(lc));                                   // (…, 1)
    const auto row_lse = eval(row_max + log(reduce<"... v -> ... 1", "sum">(exp(lc - row_max))));    // (…, 1)
    for (index_t row = 0; row < rows; ++row) lse[static_cast<std::size_t>(row)] = row_lse.data()[row];
  }
  // Gather the target logits row by row (row-major over the leading axes).
  index_array<R> at{};
  index_array<R - 1> yat{};
  double total = 0;
  for (index_t row = 0; row < rows; ++row) {
    index_t rem = row;
    for (std::size_t r = R - 1; r-- > 0;) {
      at[r] = rem % static_cast<index_t>(lv.extent(r));
      yat[r] = at[r];
      rem /= static_cast<index_t>(lv.extent(r));
    }
    const auto target = static_cast<std::int64_t>(tv(yat));
    if (target < 0 || target >= V)
      throw value_error(einlm::detail::concat("cross_entropy: target ", target, " of row ", row,
                                              " is outside the vocabulary [0, ", V, ")"));
    at[R - 1] = static_cast<index_t>(target);
    total += static_cast<double>(lse[static_cast<std::size_t>(row)]) - static_cast<double>(static_cast<C>(convert<C>(lv(at))));
  }
  return rows == 0 ? 0.0 : total / static_cast<double>(rows);
}

/// RMSNorm over the last axis, computed in fp32 (double for double inputs). Host tensors of float,
/// double or bf16 go row by row through one kernel on the widest packets of this CPU, threaded
/// over rows; anything else is rms_norm's expression.
template <class X, class G>
auto rms_norm(const X& x, const G& gain, double eps = 1e-5) {
  if constexpr (detail::host_float_rows<X>() && detail::host_float_rows<G>()) {
    using T = typename X::value_type;
    using C = detail::compute_t<T>;
    using R = decltype(detail::rms_norm_expression(x, gain, eps));
    static_assert(X::rank() >= 1, "rms_norm: x needs a feature axis (…, D)");
    detail::check_norm_vector("rms_norm", "gain", x.extents(), gain.extents());
    R y(typename R::extents_type(x.extents()));  // (…, D)
    const index_t d = static_cast<index_t>(x.extent(X::rank() - 1));
    const detail::row_blocks blocks(x.size(), d);
    blocks.for_each([&](index_t, index_t first, index_t count) {
      simd::dispatch<detail::rms_norm_rows_kernel<C, T, typename G::value_type>>(
          x.data() + first * d, gain.data(), y.data() + first * d, count, d, static_cast<C>(eps));
    });
    return y;
  } else {
    return detail::rms_norm_expression(x, gain, eps);
  }
}

/// LayerNorm over the last axis, computed in fp32 (double for double inputs):
/// (x − mean) / √(var + eps) · gain + bias, var the biased variance (as torch.nn.LayerNorm). Host
/// tensors go through a row kernel, as rms_norm's do.
template <class X, class G, class Bias>
auto layer_norm(const X& x, const G& gain, const Bias& bias, double eps = 1e-5) {
  if constexpr (detail::host_float_rows<X>() && detail::host_float_rows<G>() && detail::host_float_rows<Bias>() &&
                std::is_same_v<typename G::value_type, typename Bias::value_type>) {
    using T = typename X::value_type;
    using C = detail::compute_t<T>;
    using R = decltype(detail::layer_norm_expression(x, gain, bias, eps));
    static_assert(X::rank() >= 1, "layer_norm: x needs a feature axis (…, D)");
    detail::check_norm_vector("layer_norm", "gain", x.extents(), gain.extents());
    detail::check_norm_vector("layer_norm", "bias", x.extents(), bias.extents());
    R y(typename R::extents_type(x.extents()));  // (…, D)
    const index_t d = static_cast<index_t>(x.extent(X::rank() - 1));
    const detail::row_blocks blocks(x.size(), d);
    blocks.for_each([&](index_t, index_t first, index_t count) {
      simd::dispatch<detail::layer_norm_rows_kernel<C, T, typename G::value_type>>(
          x.data() + first * d, gain.data(), bias.data(), y.data() + first * d, count, d, static_cast<C>(eps));
    });
    return y;
  } else {
    return detail::layer_norm_expression(x, gain, bias, eps);
  }
}

namespace detail {

/// rope's input as a strided host view whose last axis is contiguous: x's own memory when x is
/// such an array, or a rearrangement of one that is a strided view (a head split of a
/// projection's output); otherwise x evaluated into `owned`.
template <class X, class Owned>
view<const typename Owned::value_type, typename Owned::extents_type, layout_strided, host> rope_source(
    const X& x, std::optional<Owned>& owned) {
  using source = view<const typename Owned::value_type, typename Owned::extents_type, layout_strided, host>;
  constexpr std::size_t R = Owned::extents_type::rank();
  const auto rows_contiguous = [](const auto& v) { return v.extent(R - 1) <= 1 || v.stride(R - 1) == 1; };
  if constexpr (array_like<X>) {
    if constexpr (std::is_same_v<typename std::remove_cvref_t<decltype(as_view(x))>::space, host>) {
      const auto v = as_view(x);
      if (rows_contiguous(v)) return source(v);
    }
  } else if constexpr (requires { x.is_strided(); x.to_view(); }) {
    if constexpr (std::is_same_v<typename std::remove_cvref_t<decltype(x.to_view())>::space, host>) {
      if (x.is_strided()) {
        const auto v = x.to_view();
        if (rows_contiguous(v)) return source(v);
      }
    }
  }
  owned.emplace(eval(x));
  return source(owned->view());
}

/// rope(x, positions, theta) written into `out`, a strided host view of x's shape whose last axis
/// is contiguous (a head split of a (B, S, H·Dh) tensor, say); see rope.
template <class X, class P, class OT, class OE>
void rope_into(const X& x_in, const P& positions_in, double theta, const view<OT, OE, layout_strided, host>& out) {
  using XT = decltype(eval(x_in));
  static_assert(std::is_same_v<std::remove_const_t<OT>, typename XT::value_type>,
                "rope: the destination's element type must be x's");
  std::optional<XT> owned;
  const auto x = detail::rope_source(x_in, owned);  // (…, S, D)
  const auto pv = as_view(positions_in);
  using PV = decltype(pv);
  using T = typename XT::value_type;
  using C = detail::compute_t<T>;
  constexpr std::size_t R = XT::extents_type::rank();
  static_assert(std::is_same_v<typename XT::space, host> && std::is_same_v<typename PV::space, host>,
                "rope: x and positions must be in host memory");
  static_assert(std::is_integral_v<typename PV::value_type>, "rope: positions must be integers");
  static_assert(R >= 2, "rope: x needs a sequence and a feature axis (…, S, D)");
  static_assert(PV::rank() == 1 || PV::rank() == R - 1, "rope: positions are (S,) or x's shape without its last axis");
  const index_t D = static_cast<index_t>(x.extent(R - 1)), S = static_cast<index_t>(x.extent(R - 2));
  if (D % 2 != 0) throw shape_error(einlm::detail::concat("rope: the feature axis must be even, got ", D));
  for (std::size_t r = 0; r < PV::rank(); ++r)
    if (pv.extent(r) != x.extent(R - 1 - PV::rank() + r))
      throw shape_error(einlm::detail::concat("rope: positions of shape ", shape_string(pv.extents()),
                                              " do not match x of shape ", shape_string(x.extents())));
  std::vector<double> inv_freq(static_cast<std::size_t>(D / 2));
  for (index_t k = 0; k < D / 2; ++k)
    inv_freq[static_cast<std::size_t>(k)] = std::pow(theta, -2.0 * static_cast<double>(k) / static_cast<double>(D));
  if (out.extents() != x.extents() || (D > 1 && out.stride(R - 1) != 1))
    throw shape_error(einlm::detail::concat("rope: the destination of shape ", shape_string(out.extents()),
                                            " is not x's shape ", shape_string(x.extents()),
                                            " with a contiguous last axis"));
  const index_t rows = D == 0 ? 0 : x.size() / D, half = D / 2;
  // One (cos, sin) table per sequence position when the positions are shared, (S, D/2) each;
  // otherwise the angles of each row are computed where they are used.
  std::vector<C> cos_table, sin_table;
  if constexpr (PV::rank() == 1) {
    cos_table.resize(static_cast<std::size_t>(S * half));
    sin_table.resize(static_cast<std::size_t>(S * half));
    for (index_t s = 0; s < S; ++s)
      for (index_t k = 0; k < half; ++k) {
        const double angle = static_cast<double>(pv(s)) * inv_freq[static_cast<std::size_t>(k)];
        cos_table[static_cast<std::size_t>(s * half + k)] = static_cast<C>(std::cos(angle));
        sin_table[static_cast<std::size_t>(s * half + k)] = static_cast<C>(std::sin(angle));
      }
  }
  // Rows are numbered row-major over x's leading axes; where a row starts in x's memory is
  // row · D when x is contiguous, else followed from row to row like an odometer.
  constexpr std::size_t L = R >= 2 ? R - 1 : 1;  // leading axes
  index_array<L> lead_extent{}, lead_stride{}, out_stride{};
  for (std::size_t r = 0; r + 1 < R; ++r) {
    lead_extent[r] = static_cast<index_t>(x.extent(r));
    lead_stride[r] = x.stride(r);
    out_stride[r] = out.stride(r);
  }
  const bool packed = x.is_contiguous() && out.is_contiguous();
  auto rotate_row = [&](index_t row, index_t start, index_t out_start) {
    const T* in = x.data() + start;
    OT* o = out.data() + out_start;
    auto apply = [&](index_t k, C c, C s) {
      const C a = convert<C>(in[2 * k]), b = convert<C>(in[2 * k + 1]);
      o[2 * k] = convert<T>(a * c - b * s);
      o[2 * k + 1] = convert<T>(a * s + b * c);
    };
    if constexpr (PV::rank() == 1) {
      const C* cs = cos_table.data() + (row % S) * half;
      const C* sn = sin_table.data() + (row % S) * half;
      for (index_t k = 0; k < half; ++k) apply(k, cs[k], sn[k]);
    } else {
      // Row `row` belongs to the position of x's leading axes (row-major), which index positions.
      index_array<PV::rank()> pat{};
      index_t rem = row;
      for (std::size_t r = PV::rank(); r-- > 0;) {
        pat[r] = rem % static_cast<index_t>(pv.extent(r));
        rem /= static_cast<index_t>(pv.extent(r));
      }
      const double pos = static_cast<double>(pv(pat));
      for (index_t k = 0; k < half; ++k) {
        const double angle = pos * inv_freq[static_cast<std::size_t>(k)];
        apply(k, static_cast<C>(std::cos(angle)), static_cast<C>(std::sin(angle)));
      }
    }
  };
  // Rows [first, last).
  const auto rotate_rows = [&](index_t first, index_t last) {
    if (packed) {
      for (index_t row = first; row < last; ++row) rotate_row(row, row * D, row * D);
      return;
    }
    index_array<L> at{};
    index_t start = 0, out_start = 0;
    for (std::size_t r = R - 1, rest = static_cast<std::size_t>(first); r-- > 0;) {
      at[r] = static_cast<index_t>(rest) % lead_extent[r];
      rest /= static_cast<std::size_t>(lead_extent[r]);
      start += at[r] * lead_stride[r];
      out_start += at[r] * out_stride[r];
    }
    for (index_t row = first; row < last; ++row) {
      rotate_row(row, start, out_start);
      for (std::size_t r = R - 1; r-- > 0;) {
        start += lead_stride[r];
        out_start += out_stride[r];
        if (++at[r] < lead_extent[r]) break;
        start -= lead_extent[r] * lead_stride[r];
        out_start -= lead_extent[r] * out_stride[r];
        at[r] = 0;
      }
    }
  };
#if EINLM_HAS_OPENMP
  if (rows * D >= (index_t{1} << 15)) {
#pragma omp parallel
    {
      const index_t team = omp_get_num_threads(), share = (rows + team - 1) / team;
      const index_t first = std::min(rows, share * omp_get_thread_num());
      rotate_rows(first, std::min(rows, first + share));
    }
    return;
  }
#endif
  rotate_rows(0, rows);
}

}  // namespace detail

/// Rotary position embedding of interleaved pairs, on the host; see the file comment. x is read
/// where it lies when it is an array, or a strided rearrangement of one, with a contiguous last
/// axis (rope of a head split "b s (h e) -> b h s e" is one pass), else evaluated first.
template <class X, class P>
auto rope(const X& x_in, const P& positions_in, double theta) {
  using XT = decltype(eval(x_in));
  using E = typename XT::extents_type;
  tensor<typename XT::value_type, E, host> out(as_expression(x_in).extents());  // (…, S, D)
  detail::rope_into(x_in, positions_in, theta,
                    view<typename XT::value_type, E, layout_strided, host>(out.view()));
  return out;
}

namespace detail {

struct no_mask {};

template <class Q, class K, class V, class M>
auto attention(const Q& q, const K& k, const V& v, const M& mask) {
  using T = value_t<Q>;
  using C = compute_t<T>;
  const auto qe = eval(cast<C>(q));                                               // (…, Sq, D)
  const auto ke = eval(cast<C>(k));                                               // (…, Sk, D)
  constexpr std::size_t R = decltype(qe)::extents_type::rank();
  const C scale = static_cast<C>(1.0 / std::sqrt(static_cast<double>(qe.extent(R - 1))));
  const auto scores = einsum<"... q d, ... k d -> ... q k">(qe, ke);              // (…, Sq, Sk)
  const auto probs = [&] {
    if constexpr (std::is_same_v<M, no_mask>) return softmax(scores * scale);     // (…, Sq, Sk)
    else return softmax(where(mask, scores * scale, -std::numeric_limits<C>::infinity()));
  }();
  const auto ve = eval(cast<C>(v));                                               // (…, Sk, Dv)
  auto out = einsum<"... q k, ... k d -> ... q d">(probs, ve);                    // (…, Sq, Dv)
  if constexpr (std::is_same_v<T, C>) return out;
  else return eval(cast<T>(out));
}

}  // namespace detail

/// softmax(q kᵀ / √d) v.
template <class Q, class K, class V>
auto scaled_dot_product_attention(const Q& q, const K& k, const V& v) {
  return detail::attention(q, k, v, detail::no_mask{});
}

/// softmax(q kᵀ / √d, masked) v: positions where mask is false get no weight.
template <class Q, class K, class V, class M>
auto scaled_dot_product_attention(const Q& q, const K& k, const V& v, const M& mask) {
  return detail::attention(q, k, v, mask);
}

}  // namespace einlm::nn
