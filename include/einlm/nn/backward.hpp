// einlm/nn/backward.hpp — the backward passes (vector-Jacobian products) of the transformer's
// functional pieces (einlm/nn/functional.hpp), on the host, written in einlm's own vocabulary:
//
//   softmax_backward(y, dy)                 dx = y ⊙ (dy − Σ_d dy ⊙ y), from the forward's output y
//   rms_norm_backward(x, gain, dy, eps)     {dx (…, D), dgain (D,)} of x·rsqrt(mean(x²) + eps)·gain
//   rope_backward(dy, positions, theta)     the rotation by the negative angles (rope with −positions)
//   layer_norm_backward(x, gain, dy, eps)   {dx, dgain, dbias} of (x − mean)·rstd·gain + bias
//   gelu_backward(x, dy), relu_backward(x, dy)
//                                           dy · gelu'(x) (erf form: Φ(x) + x·φ(x)); dy where x > 0
//   silu(a)                                 a·σ(a), a new tensor (the swiglu hidden's first factor)
//   swiglu_backward(a, b, dh)               {da, db} of h = silu(a) ⊙ b
//   cross_entropy_with_grad(logits, targets, z_loss = 0)   (logits an rvalue tensor: the gradient
//                                           is written over them, no second (…, V) array)
//                                           {loss (double), dlogits (…, V)}: mean over rows of
//                                           lse − row[target] + z_loss · mean(lse²), and its gradient
//                                           ((softmax − onehot) + 2·z_loss·lse·softmax) / rows; contiguous
//                                           logits row by row, each row read from memory once (its
//                                           later passes hit the cache), threaded over rows
//   attention_forward(q, k, v, causal)      {out (B, H, S, Dh), lse (B, H, S)}: softmax(q kᵀ/√Dh, causal
//                                           mask) v and the row log-sum-exp of the scaled, masked scores;
//                                           k, v may hold Sk ≥ S positions (a KV cache): the queries are
//                                           the last S, and causal lets query i see keys ≤ Sk − S + i
//   attention_backward(q, k, v, out, lse, dout, causal)
//                                           {dq (B, H, S, Dh), dk, dv (B, Hkv, S, Dh)}: P recomputed as
//                                           exp(scores·scale − lse); dV = Pᵀ dO, dP = dO Vᵀ,
//                                           dS = P ⊙ (dP − rowsum(dO ⊙ O)), dQ = dS K·scale, dK = dSᵀ Q·scale
//
// Attention is grouped-query: k and v have Hkv heads, H a multiple of Hkv, and query head h reads kv
// head h / (H/Hkv) (Hkv = H is multi-head, Hkv = 1 multi-query); the key and value gradients sum over
// the query heads that share them. The products are einsums over q viewed as (B, Hkv, H/Hkv, S, Dh),
// so each is one batched GEMM. k and v that hold the compute type are read where they are (a view
// of a KV cache included), not copied. A causal attention of more than 48 queries runs in blocks of
// 48 query rows instead: each block's products (batched GEMMs over the B·Hkv heads) cover only
// the keys its last row sees, so about half the square's work is skipped and only one block's
// scores are in memory at a time, not the (B, H, S, Sk) square.
//
// Inputs are host arrays, views or lazy expressions; results are new host tensors with the extents
// types of the corresponding inputs (lse: dims<3>), in the inputs' value types. Float computes in
// float, double in double, 16-bit types in float. Shapes are checked: a mismatch is a shape_error
// naming the function and the shapes; a target outside [0, V) is a value_error naming its row.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "einlm/core/error.hpp"
#include "einlm/core/math.hpp"
#include "einlm/core/simd_dispatch.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/einops.hpp"
#include "einlm/expr.hpp"
#include "einlm/linalg/einsum.hpp"
#include "einlm/nn/functional.hpp"

namespace einlm::nn {

/// The gradients of rms_norm: dx like x, dgain like gain.
template <class TX, class TG>
struct rms_norm_grads {
  TX dx;     // (…, D)
  TG dgain;  // (D,)
};

/// The gradients of layer_norm: dx like x, dgain and dbias like gain.
template <class TX, class TG>
struct layer_norm_grads {
  TX dx;     // (…, D)
  TG dgain;  // (D,)
  TG dbias;  // (D,)
};

/// The gradients of the SwiGLU hidden h = silu(a) ⊙ b.
template <class TA, class TB>
struct swiglu_grads {
  TA da;  // (…, F)
  TB db;  // (…, F)
};

/// The loss and the gradient of cross_entropy_with_grad.
template <class TL>
struct loss_with_grad {
  double loss;
  TL dlogits;  // (…, V)
};

/// The forward results attention_backward needs besides q, k and v.
template <class TO, class TLSE>
struct attention_result {
  TO out;    // (B, H, S, Dh)
  TLSE lse;  // (B, H, S)
};

/// The gradients of attention.
template <class TQ, class TK, class TV>
struct attention_grads {
  TQ dq;  // (B, H, S, Dh)
  TK dk;  // (B, Hkv, S, Dh)
  TV dv;  // (B, Hkv, S, Dh)
};

namespace detail {

/// dst ← dst + src (same shape): a gradient adding into its accumulator.
template <class D, class S>
void accumulate(D& dst, const S& src) {
  dst = dst + src;
}

/// The extents type of an operand.
template <class X>
using extents_of = typename decltype(as_expression(std::declval<const X&>()))::extents_type;

/// Throws shape_error "<op>: <a_name> of shape (…) does not match <b_name> of shape (…)" unless the
/// extents are equal.
template <class EA, class EB>
void require_same_shape(const char* op, const char* a_name, const EA& a, const char* b_name, const EB& b) {
  static_assert(EA::rank() == EB::rank(), "einlm::nn: the operands of a backward pass differ in rank");
  if (to_array(a) != to_array(b))
    throw shape_error(einlm::detail::concat(op, ": ", a_name, " of shape ", shape_string(a), " does not match ", b_name,
                                            " of shape ", shape_string(b)));
}

/// A new host tensor of T with extents type E (the input's) holding x.
template <class T, class E, class X>
auto eval_as(const E& e, const X& x) {
  tensor<T, E, host> out(e);  // like the input
  assign(out, x);
  return out;
}

/// The shape of an attention problem.
struct attention_shape {
  index_t B, H, G, R, S, D;  // batch, query heads, kv heads, query heads per kv head, sequence, head dim
  index_t Sk = 0;            // key sequence (S unless keys may be more than queries)
};

template <class Q, class K, class V>
attention_shape check_attention(const char* op, const Q& q, const K& k, const V& v, bool more_keys = false) {
  static_assert(Q::extents_type::rank() == 4 && K::extents_type::rank() == 4 && V::extents_type::rank() == 4,
                "einlm::nn attention: q, k and v are (B, H, S, Dh)");
  const auto fail = [&] {
    return shape_error(einlm::detail::concat(op, ": q of shape ", shape_string(q.extents()), ", k of shape ",
                                             shape_string(k.extents()), " and v of shape ", shape_string(v.extents()),
                                             more_keys ? " do not fit (B, H, Sq, Dh), (B, Hkv, Sk, Dh) with H a multiple of Hkv and Sq ≤ Sk"
                                                       : " do not fit (B, H, S, Dh), (B, Hkv, S, Dh) with H a multiple of Hkv"));
  };
  if (to_array(k.extents()) != to_array(v.extents())) throw fail();
  const auto qe = q.extents();
  const attention_shape s{qe.extent(0), qe.extent(1), k.extent(1), 0, qe.extent(2), qe.extent(3), k.extent(2)};
  const bool lengths_fit = more_keys ? s.S <= s.Sk : s.S == s.Sk;
  if (k.extent(0) != s.B || !lengths_fit || k.extent(3) != s.D || s.G == 0 || s.H % s.G != 0) throw fail();
  return {s.B, s.H, s.G, s.H / s.G, s.S, s.D, s.Sk};
}

/// x as an array of C to read from: x's own view when it holds C already (no copy: a KV cache's
/// rows are read where they are), else a new tensor of x cast to C.
template <class C, class X>
auto compute_array(const X& x) {
  if constexpr (array_like<X> && std::is_same_v<value_t<X>, C>) return as_view(x);
  else return eval(cast<C>(x));
}

/// Visible keys of query row i of an (Sq, Sk) attention: Sk, or Sk − Sq + i + 1 when causal.
inline index_t visible_keys(index_t i, index_t Sq, index_t Sk, bool causal) { return causal ? Sk - Sq + i + 1 : Sk; }

/// In place, row by row over scores (rows, Sk) with query i = row % Sq: P = softmax(scores ·
/// scale) over the visible keys, 0 elsewhere; lse[row] = the log-sum-exp of the visible scaled
/// scores. One pass per row for the maximum, one for exp and the sum, one to normalise — the
/// masked half of a causal square is never computed; the first two on packets.
template <class C>
void masked_softmax_rows(C* scores, C* lse, index_t rows, index_t Sq, index_t Sk, C scale, bool causal) {
  for_each_row(rows, Sk, [&](index_t r) {
    C* s = scores + r * Sk;
    const index_t n = visible_keys(r % Sq, Sq, Sk, causal);
    const C m = row_max<C>(s, n) * scale;  // the same as the maximum of s · scale: scale > 0
    const C sum = exp_sum_row<true>(s, s, n, scale, m);
    lse[r] = m + static_cast<C>(std::log(sum));
    const C inv = C(1) / sum;
    for (index_t j = 0; j < n; ++j) s[j] *= inv;
    for (index_t j = n; j < Sk; ++j) s[j] = 0;
  });
}

/// In place: P = exp(scores · scale − lse[row]) over the visible keys, 0 elsewhere.
template <class C>
void probabilities_from_lse(C* scores, const C* lse, index_t rows, index_t Sq, index_t Sk, C scale, bool causal) {
  for_each_row(rows, Sk, [&](index_t r) {
    C* s = scores + r * Sk;
    const index_t n = visible_keys(r % Sq, Sq, Sk, causal);
    exp_sum_row<true>(s, s, n, scale, lse[r]);
    for (index_t j = n; j < Sk; ++j) s[j] = 0;
  });
}

}  // namespace detail

// ------------------------------------------------------------------------------------ softmax

/// The gradient of x for y = softmax(x) over the last axis: y ⊙ (dy − Σ_d dy ⊙ y).
template <class Y, class DY>
auto softmax_backward(const Y& y, const DY& dy) {
  using T = detail::value_t<Y>;
  using C = detail::compute_t<T>;
  const auto ye = as_expression(y);
  detail::require_same_shape("softmax_backward", "y", ye.extents(), "dy", as_expression(dy).extents());
  const auto yc = cast<C>(y);                                                       // (…, D)
  const auto dyc = cast<C>(dy);                                                     // (…, D)
  const auto dot = eval(reduce<"... d -> ... 1", "sum">(dyc * yc));                 // (…, 1)
  return detail::eval_as<T>(ye.extents(), cast<T>(yc * (dyc - dot)));               // (…, D)
}

namespace detail {

/// The run-time checks of a norm's backward: dy has x's shape, gain (D,) matches x's last axis.
template <class XE, class GE, class DE>
void check_norm_backward(const char* op, const XE& x, const GE& gain, const DE& dy) {
  require_same_shape(op, "x", x, "dy", dy);
  if (gain.extent(0) != x.extent(XE::rank() - 1))
    throw shape_error(einlm::detail::concat(op, ": gain of shape ", shape_string(gain), " does not match x of shape ",
                                            shape_string(x)));
}

/// Σ over the rows of a contiguous (…, D) array a, as a tensor of TG with the gain's extents (D,).
template <class TG, class GE, class A>
tensor<TG, GE, host> sum_rows(const A& a, const GE& ge) {
  const index_t D = static_cast<index_t>(ge.extent(0));
  const index_t rows = D == 0 ? 0 : a.size() / D;
  tensor<TG, GE, host> out(ge);                                                                // (D,)
  assign(out, cast<TG>(reduce<"n d -> d", "sum">(reshape(a, dims<2>(rows, D)))));              // (D,)
  return out;
}

}  // namespace detail

namespace detail {

/// RMSNorm's backward over rows [0, rows) of width d, in C on packets of B bytes (the order of
/// operations of the expressions): dx = r·(g ⊙ dy − x · r²·Σ(dy ⊙ g ⊙ x)/d); dgain_part += dy ⊙ x·r
/// (the block's own partial sums, in C).
template <class C, class S, class G, class DY>
struct rms_norm_backward_rows_kernel {
  template <int B>
  static void run(const S* x, const G* gain, const DY* dy, S* dx, C* dgain_part, index_t rows, index_t d, C eps) {
    const C inv_d = C(1) / static_cast<C>(d);
    for (index_t r = 0; r < rows; ++r) {
      const S* xr = x + r * d;
      const DY* dyr = dy + r * d;
      S* dxr = dx + r * d;
      const C squares = row_sum<C, B>(d, [&]<class V>(index_t j) {
        const V v = load_as<V>(xr + j);
        return v * v;
      });
      const C inv_rms = math::rsqrt(squares * inv_d + eps);
      const C dot = row_sum<C, B>(d, [&]<class V>(index_t j) {
        return load_as<V>(dyr + j) * load_as<V>(gain + j) * load_as<V>(xr + j);
      });
      const splat<C, B> scale(inv_rms), coefficient(inv_rms * inv_rms * dot * inv_d);
      row_for<C, B>(d, [&]<class V>(index_t j) {
        const V xv = load_as<V>(xr + j), dv = load_as<V>(dyr + j), rv = scale.template as<V>();
        store_as(dxr + j, rv * (load_as<V>(gain + j) * dv - xv * coefficient.template as<V>()));
        store_as(dgain_part + j, load_as<V>(dgain_part + j) + dv * xv * rv);
      });
    }
  }
};

/// LayerNorm's backward over rows [0, rows) of width d, in C: with x̂ = (x − mean)·rstd and
/// g = dy ⊙ gain, dx = rstd·(g − mean(g) − x̂·mean(g ⊙ x̂)); dgain_part += dy ⊙ x̂, dbias_part += dy.
template <class C, class S, class G, class DY>
struct layer_norm_backward_rows_kernel {
  template <int B>
  static void run(const S* x, const G* gain, const DY* dy, S* dx, C* dgain_part, C* dbias_part, index_t rows, index_t d,
                  C eps) {
    const C inv_d = C(1) / static_cast<C>(d);
    for (index_t r = 0; r < rows; ++r) {
      const S* xr = x + r * d;
      const DY* dyr = dy + r * d;
      S* dxr = dx + r * d;
      const auto moments = layer_norm_row_moments<C, B>(xr, d, eps);
      const splat<C, B> mean(moments.first), rstd(moments.second);
      const auto xhat = [&]<class V>(index_t j) {
        return (load_as<V>(xr + j) - mean.template as<V>()) * rstd.template as<V>();
      };
      const C g_mean = row_sum<C, B>(d, [&]<class V>(index_t j) {
        return load_as<V>(dyr + j) * load_as<V>(gain + j);
      }) * inv_d;
      const C gx_mean = row_sum<C, B>(d, [&]<class V>(index_t j) {
        return load_as<V>(dyr + j) * load_as<V>(gain + j) * xhat.template operator()<V>(j);
      }) * inv_d;
      const splat<C, B> g_mean_v(g_mean), gx_mean_v(gx_mean);
      row_for<C, B>(d, [&]<class V>(index_t j) {
        const V dv = load_as<V>(dyr + j), xh = xhat.template operator()<V>(j);
        store_as(dxr + j, rstd.template as<V>() * (dv * load_as<V>(gain + j) - g_mean_v.template as<V>() -
                                                   xh * gx_mean_v.template as<V>()));
        store_as(dgain_part + j, load_as<V>(dgain_part + j) + dv * xh);
        store_as(dbias_part + j, load_as<V>(dbias_part + j) + dv);
      });
    }
  }
};

/// Per-block partial sums of a norm's gain (or bias) gradient, zeroed: (blocks, D) in C, from the
/// host caches like the activations.
template <class C>
tensor<C, dims<2>, host> zero_parts(index_t blocks, index_t d) {
  tensor<C, dims<2>, host> parts(dims<2>(blocks, d));  // (blocks, D)
  std::fill_n(parts.data(), parts.size(), C(0));
  return parts;
}

/// out (D,) = the sum over blocks of parts (blocks, D), block by block in order.
template <class TG, class GE, class C>
tensor<TG, GE, host> sum_parts(const tensor<C, dims<2>, host>& parts, const GE& ge) {
  const index_t D = static_cast<index_t>(ge.extent(0));
  const index_t blocks = static_cast<index_t>(parts.extent(0));
  std::vector<C> total(static_cast<std::size_t>(D), C(0));
  for (index_t b = 0; b < blocks; ++b)
    for (index_t j = 0; j < D; ++j) total[static_cast<std::size_t>(j)] += parts.data()[b * D + j];
  tensor<TG, GE, host> out(ge);  // (D,)
  for (index_t j = 0; j < D; ++j) out.data()[j] = convert<TG>(total[static_cast<std::size_t>(j)]);
  return out;
}

/// Whether a norm's backward can go to the row kernels: host tensors of float, double or bf16.
template <class X, class G, class DY>
constexpr bool norm_backward_rows() {
  return host_float_rows<X>() && host_float_rows<G>() && host_float_rows<DY>();
}

/// rms_norm_backward as einlm expressions: any operands.
template <class X, class G, class DY>
auto rms_norm_backward_expression(const X& x, const G& gain, const DY& dy, double eps) {
  using T = value_t<X>;
  using TG = value_t<G>;
  using C = compute_t<T>;
  const auto xe = as_expression(x);
  const auto ge = as_expression(gain);
  constexpr std::size_t R = decltype(xe)::extents_type::rank();
  const auto xc = cast<C>(x);                                                                  // (…, D)
  const auto gc = cast<C>(gain);                                                               // (D,)
  const auto dyc = cast<C>(dy);                                                                // (…, D)
  const C inv_d = static_cast<C>(1.0 / static_cast<double>(xe.extents().extent(R - 1)));
  const auto r = eval(rsqrt(reduce<"... d -> ... 1", "mean">(xc * xc) + static_cast<C>(eps)));  // (…, 1)
  const auto dot = eval(reduce<"... d -> ... 1", "sum">(dyc * gc * xc));                       // (…, 1)
  auto dx = eval_as<T>(xe.extents(), cast<T>(r * (gc * dyc - xc * (r * r * dot * inv_d))));    // (…, D)
  auto dgain = sum_rows<TG>(eval(dyc * xc * r), ge.extents());                                 // (D,)
  return rms_norm_grads<decltype(dx), decltype(dgain)>{std::move(dx), std::move(dgain)};
}

/// layer_norm_backward as einlm expressions: any operands.
template <class X, class G, class DY>
auto layer_norm_backward_expression(const X& x, const G& gain, const DY& dy, double eps) {
  using T = value_t<X>;
  using TG = value_t<G>;
  using C = compute_t<T>;
  const auto xe = as_expression(x);
  const auto ge = as_expression(gain);
  const auto xc = cast<C>(x);                                                                  // (…, D)
  const auto gc = cast<C>(gain);                                                               // (D,)
  const auto dyc = cast<C>(dy);                                                                // (…, D)
  const auto mean = eval(reduce<"... d -> ... 1", "mean">(xc));                                // (…, 1)
  const auto rstd = eval(rsqrt(reduce<"... d -> ... 1", "mean">((xc - mean) * (xc - mean)) + static_cast<C>(eps)));  // (…, 1)
  const auto xhat = eval((xc - mean) * rstd);                                                  // (…, D)
  const auto g_mean = eval(reduce<"... d -> ... 1", "mean">(dyc * gc));                        // (…, 1)
  const auto gx_mean = eval(reduce<"... d -> ... 1", "mean">(dyc * gc * xhat));                // (…, 1)
  auto dx = eval_as<T>(xe.extents(), cast<T>(rstd * (dyc * gc - g_mean - xhat * gx_mean)));    // (…, D)
  auto dgain = sum_rows<TG>(eval(dyc * xhat), ge.extents());                                   // (D,)
  auto dbias = sum_rows<TG>(eval(dyc), ge.extents());                                          // (D,)
  return layer_norm_grads<decltype(dx), decltype(dgain)>{std::move(dx), std::move(dgain), std::move(dbias)};
}

}  // namespace detail

// ----------------------------------------------------------------------------------- rms_norm

/// The gradients of rms_norm(x, gain, eps) = x·r·gain, r = rsqrt(mean(x²) + eps):
/// dx = r·(gain ⊙ dy − x · r²·Σ(dy ⊙ gain ⊙ x)/D), dgain = Σ_rows dy ⊙ x·r. Host tensors of float,
/// double or bf16 go through one row kernel on the widest packets of this CPU, threaded over
/// blocks of rows (dgain summed block by block in order: the same on any number of threads);
/// anything else through the expressions.
template <class X, class G, class DY>
auto rms_norm_backward(const X& x, const G& gain, const DY& dy, double eps = 1e-5) {
  using T = detail::value_t<X>;
  using TG = detail::value_t<G>;
  using C = detail::compute_t<T>;
  const auto xe = as_expression(x);
  const auto ge = as_expression(gain);
  using XE = typename decltype(xe)::extents_type;
  using GE = typename decltype(ge)::extents_type;
  static_assert(GE::rank() == 1, "rms_norm_backward: gain is (D,)");
  static_assert(XE::rank() >= 1, "rms_norm_backward: x needs a feature axis (…, D)");
  detail::check_norm_backward("rms_norm_backward", xe.extents(), ge.extents(), as_expression(dy).extents());
  if constexpr (detail::norm_backward_rows<X, G, DY>()) {
    const index_t d = static_cast<index_t>(x.extent(XE::rank() - 1));
    const detail::row_blocks blocks(x.size(), d);
    tensor<T, XE, host> dx(x.extents());                                                       // (…, D)
    auto parts = detail::zero_parts<C>(blocks.count, d);                                       // (blocks, D)
    blocks.for_each([&](index_t b, index_t first, index_t count) {
      simd::dispatch<detail::rms_norm_backward_rows_kernel<C, T, TG, typename DY::value_type>>(
          x.data() + first * d, gain.data(), dy.data() + first * d, dx.data() + first * d, parts.data() + b * d, count,
          d, static_cast<C>(eps));
    });
    auto dgain = detail::sum_parts<TG>(parts, ge.extents());                                   // (D,)
    return rms_norm_grads<decltype(dx), decltype(dgain)>{std::move(dx), std::move(dgain)};
  } else {
    return detail::rms_norm_backward_expression(x, gain, dy, eps);
  }
}

/// The gradients of layer_norm(x, gain, bias, eps): with x̂ = (x − mean)·rstd and g = dy ⊙ gain,
/// dx = rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂)); dgain = Σ_rows dy ⊙ x̂; dbias = Σ_rows dy. Host
/// tensors go through a row kernel, as rms_norm_backward's do.
template <class X, class G, class DY>
auto layer_norm_backward(const X& x, const G& gain, const DY& dy, double eps = 1e-5) {
  using T = detail::value_t<X>;
  using TG = detail::value_t<G>;
  using C = detail::compute_t<T>;
  const auto xe = as_expression(x);
  const auto ge = as_expression(gain);
  using XE = typename decltype(xe)::extents_type;
  using GE = typename decltype(ge)::extents_type;
  static_assert(GE::rank() == 1, "layer_norm_backward: gain is (D,)");
  static_assert(XE::rank() >= 1, "layer_norm_backward: x needs a feature axis (…, D)");
  detail::check_norm_backward("layer_norm_backward", xe.extents(), ge.extents(), as_expression(dy).extents());
  if constexpr (detail::norm_backward_rows<X, G, DY>()) {
    const index_t d = static_cast<index_t>(x.extent(XE::rank() - 1));
    const detail::row_blocks blocks(x.size(), d);
    tensor<T, XE, host> dx(x.extents());                                                       // (…, D)
    auto gain_parts = detail::zero_parts<C>(blocks.count, d);                                  // (blocks, D)
    auto bias_parts = detail::zero_parts<C>(blocks.count, d);                                  // (blocks, D)
    blocks.for_each([&](index_t b, index_t first, index_t count) {
      simd::dispatch<detail::layer_norm_backward_rows_kernel<C, T, TG, typename DY::value_type>>(
          x.data() + first * d, gain.data(), dy.data() + first * d, dx.data() + first * d, gain_parts.data() + b * d,
          bias_parts.data() + b * d, count, d, static_cast<C>(eps));
    });
    auto dgain = detail::sum_parts<TG>(gain_parts, ge.extents());                              // (D,)
    auto dbias = detail::sum_parts<TG>(bias_parts, ge.extents());                              // (D,)
    return layer_norm_grads<decltype(dx), decltype(dgain)>{std::move(dx), std::move(dgain), std::move(dbias)};
  } else {
    return detail::layer_norm_backward_expression(x, gain, dy, eps);
  }
}

namespace detail {

/// dy · gelu'(x) in float (math::detail::gelu_erf_derivative_float).
struct gelu_gradient_op {
  template <class V>
  V operator()(V x, V dy) const {
    return dy * math::detail::gelu_erf_derivative_float(x);
  }
};

}  // namespace detail

/// The gradient of gelu (erf form) at x: dy · (Φ(x) + x·φ(x)), computed in fp32 on float packets
/// (math::detail::gelu_erf_derivative_float: within 7.2 ulp of max(Φ(x), |x|·φ(x)) and 2.3e-7,
/// every float checked), or in double with std::erf and std::exp for double.
template <class X, class DY>
auto gelu_backward(const X& x, const DY& dy) {
  using T = detail::value_t<X>;
  using C = detail::compute_t<T>;
  if constexpr (std::is_same_v<C, float> && tensor_like<X> && tensor_like<DY> && std::is_same_v<detail::value_t<DY>, T> &&
                std::is_same_v<typename X::space, host> && std::is_same_v<typename DY::space, host>) {
    // Host tensors of one type (contiguous): read where they are, widened to float in registers.
    detail::require_same_shape("gelu_backward", "x", x.extents(), "dy", dy.extents());
    tensor<T, typename X::extents_type, host> d(x.extents());  // (…)
    detail::map_elements<float, detail::gelu_gradient_op>(x.size(), d.data(), x.data(), dy.data());
    return d;
  } else {
    const auto xe = eval(cast<C>(x));                                                            // (…)
    const auto dye = eval(cast<C>(dy));                                                          // (…)
    detail::require_same_shape("gelu_backward", "x", xe.extents(), "dy", dye.extents());
    tensor<C, typename decltype(xe)::extents_type, host> d(xe.extents());                        // (…)
    const C* px = xe.data();
    const C* pd = dye.data();
    C* out = d.data();
    if constexpr (std::is_same_v<C, float>) {
      detail::map_elements<float, detail::gelu_gradient_op>(xe.size(), out, px, pd);
    } else {
      const C inv_sqrt2 = static_cast<C>(0.70710678118654752440), inv_sqrt_2pi = static_cast<C>(0.39894228040143267794);
      detail::for_each_row(xe.size(), 1, [&](index_t i) {
        const C v = px[i];
        out[i] = pd[i] * (C(0.5) * (C(1) + std::erf(v * inv_sqrt2)) + v * inv_sqrt_2pi * std::exp(C(-0.5) * v * v));
      });
    }
    return detail::eval_as<T>(as_expression(x).extents(), cast<T>(d));
  }
}

/// The gradient of relu at x: dy where x > 0, else 0.
template <class X, class DY>
auto relu_backward(const X& x, const DY& dy) {
  using T = detail::value_t<X>;
  detail::require_same_shape("relu_backward", "x", as_expression(x).extents(), "dy", as_expression(dy).extents());
  return detail::eval_as<T>(as_expression(x).extents(), where(x > T(0), cast<T>(dy), T(0)));
}

// --------------------------------------------------------------------------------------- rope

namespace detail {

/// −positions as int64: the positions rope_backward rotates by.
template <class P>
auto negated_positions(const P& positions) {
  const auto pv = as_view(positions);
  static_assert(std::is_integral_v<typename decltype(pv)::value_type>, "rope_backward: positions must be integers");
  return eval(-cast<std::int64_t>(pv));  // (S,) or (…, S)
}

/// rope_backward(dy, positions, theta) written into `out` (see nn::detail::rope_into).
template <class DY, class P, class OT, class OE>
void rope_backward_into(const DY& dy, const P& positions, double theta,
                        const view<OT, OE, layout_strided, host>& out) {
  rope_into(dy, negated_positions(positions), theta, out);  // (…, S, D)
}

}  // namespace detail

/// The gradient of rope(x, positions, theta): the rotation by the negative angles, which is rope
/// with the positions negated (cos and sin of −a are exact mirrors of those of a).
template <class DY, class P>
auto rope_backward(const DY& dy, const P& positions, double theta) {
  return rope(dy, detail::negated_positions(positions), theta);  // (…, S, D)
}

// ------------------------------------------------------------------------------------- swiglu

/// silu(a) = a·σ(a) as a new tensor.
template <class A>
auto silu(const A& a) {
  return eval(einlm::silu(a));  // (…, F)
}

namespace detail {

/// gelu(x) (erf form) of a contiguous host tensor as a new tensor of the same type and shape.
template <class T, class E>
tensor<T, E, host> gelu_tensor(const tensor<T, E, host>& x) {
  if constexpr (std::is_same_v<compute_t<T>, float>) {
    tensor<T, E, host> y(x.extents());  // (…)
    map_elements<float, gelu_op>(x.size(), y.data(), x.data());
    return y;
  } else {
    return eval(einlm::gelu(x));  // (…)
  }
}

/// silu(a) ⊙ b of two contiguous host tensors of one shape, as a new tensor.
template <class T, class E>
tensor<T, E, host> swiglu_hidden(const tensor<T, E, host>& a, const tensor<T, E, host>& b) {
  require_same_shape("swiglu_hidden", "a", a.extents(), "b", b.extents());
  if constexpr (std::is_floating_point_v<compute_t<T>>) {
    tensor<T, E, host> h(a.extents());  // (…)
    map_elements<compute_t<T>, swiglu_hidden_op>(a.size(), h.data(), a.data(), b.data());
    return h;
  } else {
    return eval(einlm::silu(a) * b);  // (…)
  }
}

/// swiglu_backward over n contiguous elements on packets of B bytes: σ(a) is computed once and
/// both gradients are written in the same pass (the expressions' order of operations).
template <class C, class TA, class TB, class TD>
struct swiglu_backward_kernel {
  template <int B>
  static void run(const TA* a, const TB* b, const TD* dh, TA* da, TB* db, index_t n) {
    index_t i = 0;
#if EINLM_HAS_PACKETS
    using P = simd::packet<C, B>;
    const P one(C(1));
    for (; i + P::size <= n; i += P::size) {
      const P av = simd::load<C, B>(a + i), bv = simd::load<C, B>(b + i), dv = simd::load<C, B>(dh + i);
      const P s = math::sigmoid(av);
      simd::store(da + i, dv * bv * s * (one + av * (one - s)));
      simd::store(db + i, dv * (av * s));
    }
#endif
    for (; i < n; ++i) {
      const C av = convert<C>(a[i]), bv = convert<C>(b[i]), dv = convert<C>(dh[i]);
      const C s = math::sigmoid(av);
      da[i] = convert<TA>(dv * bv * s * (C(1) + av * (C(1) - s)));
      db[i] = convert<TB>(dv * (av * s));
    }
  }
};

/// swiglu_backward over n contiguous elements, threaded, on the widest packets of this CPU.
template <class C, class TA, class TB, class TD>
void swiglu_backward_elements(const TA* a, const TB* b, const TD* dh, TA* da, TB* db, index_t n) {
  for_each_unit(n, [&](index_t first, index_t count) {
    simd::dispatch<swiglu_backward_kernel<C, TA, TB, TD>>(a + first, b + first, dh + first, da + first, db + first, count);
  });
}

}  // namespace detail

/// The gradients of h = silu(a) ⊙ b: da = dh ⊙ b ⊙ σ(a)(1 + a(1 − σ(a))), db = dh ⊙ silu(a).
template <class A, class B, class DH>
auto swiglu_backward(const A& a, const B& b, const DH& dh) {
  using TA = detail::value_t<A>;
  using TB = detail::value_t<B>;
  using C = detail::compute_t<TA>;
  const auto ae = as_expression(a);
  const auto be = as_expression(b);
  detail::require_same_shape("swiglu_backward", "a", ae.extents(), "b", be.extents());
  detail::require_same_shape("swiglu_backward", "a", ae.extents(), "dh", as_expression(dh).extents());
  if constexpr (tensor_like<A> && tensor_like<B> && tensor_like<DH> && std::is_same_v<TB, TA> &&
                std::is_same_v<detail::value_t<DH>, TA> && std::is_same_v<typename A::space, host> &&
                std::is_same_v<typename B::space, host> && std::is_same_v<typename DH::space, host>) {
    // Host tensors of one type (contiguous): one pass that computes σ(a) once per element.
    tensor<TA, typename A::extents_type, host> da(a.extents());  // (…, F)
    tensor<TB, typename B::extents_type, host> db(b.extents());  // (…, F)
    detail::swiglu_backward_elements<C>(a.data(), b.data(), dh.data(), da.data(), db.data(), a.size());
    return swiglu_grads<decltype(da), decltype(db)>{std::move(da), std::move(db)};
  }
  const auto ac = cast<C>(a);                                                                      // (…, F)
  const auto sig = sigmoid(ac);                                                                    // (…, F)
  auto da = detail::eval_as<TA>(ae.extents(),
                                cast<TA>(cast<C>(dh) * cast<C>(b) * sig * (static_cast<C>(1) + ac * (static_cast<C>(1) - sig))));  // (…, F)
  auto db = detail::eval_as<TB>(be.extents(), cast<TB>(cast<C>(dh) * einlm::silu(ac)));            // (…, F)
  return swiglu_grads<decltype(da), decltype(db)>{std::move(da), std::move(db)};
}

// ------------------------------------------------------------------------------ cross-entropy

namespace detail {

/// The rows of cross_entropy_with_grad over contiguous logits (rows, V), threaded; dlogits may be
/// logits (the gradient written over them). Per row: its
/// maximum m; e = exp(x − m) and Σ e (stored in the gradient's row for float and double, in a
/// float row of the thread's for 16-bit types); lse = m + log Σ e; the gradient e ·
/// (1 + two_z·lse)·inv_rows / Σ e (rounded once), minus inv_rows at the target. lse[r] and
/// target_logit[r] receive the row's log-sum-exp and its target's logit. Each row is read from
/// memory once; its later passes hit the cache.
template <class T, class C>
void cross_entropy_rows(const T* logits, T* dlogits, const index_t* target, C* lse, C* target_logit, index_t rows,
                        index_t V, C two_z, C inv_rows) {
  for_each_row(rows, V, [&](index_t r) {
    const T* x = logits + r * V;
    T* g = dlogits + r * V;
    const index_t t = target[r];
    target_logit[r] = static_cast<C>(convert<C>(x[t]));  // before g, which may be x, is written
    const C m = row_max<C>(x, V);
    if constexpr (std::is_same_v<T, C>) {
      const C sum = exp_sum_row<true>(x, g, V, C(1), m);
      const C row_lse = m + static_cast<C>(std::log(sum));
      const C scale = (C(1) + two_z * row_lse) * inv_rows / sum;
      for (index_t k = 0; k < V; ++k) g[k] *= scale;
      lse[r] = row_lse;
    } else {
      thread_local std::vector<C> row;  // exp(x − m) of this thread's row
      row.resize(static_cast<std::size_t>(V));
      const C sum = exp_sum_row<true>(x, row.data(), V, C(1), m);
      const C row_lse = m + static_cast<C>(std::log(sum));
      const C scale = (C(1) + two_z * row_lse) * inv_rows / sum;
      index_t k = 0;
#if EINLM_HAS_PACKETS
      for (; k + simd::width <= V; k += simd::width)
        simd::store(g + k, simd::load<C>(row.data() + k) * simd::packet<C>(scale));
#endif
      for (; k < V; ++k) g[k] = convert<T>(row[static_cast<std::size_t>(k)] * scale);
      lse[r] = row_lse;
    }
    g[t] = convert<T>(static_cast<C>(convert<C>(g[t]) - inv_rows));
  });
}

/// With `reuse` (the logits' own tensor, which `logits` views), the gradient is written over the
/// logits and returned in that tensor's storage.
template <class L, class Y, class Reuse = std::nullptr_t>
auto cross_entropy_with_grad(const L& logits, const Y& targets, double z_loss, Reuse* reuse = nullptr) {
  const auto lv = as_view(logits);
  const auto tv = as_view(targets);
  using LV = decltype(lv);
  using YV = decltype(tv);
  using T = typename LV::value_type;
  using C = detail::compute_t<T>;
  static_assert(std::is_same_v<typename LV::space, host> && std::is_same_v<typename YV::space, host>,
                "cross_entropy_with_grad: logits and targets must be in host memory");
  static_assert(std::is_integral_v<typename YV::value_type>, "cross_entropy_with_grad: targets must be integers");
  static_assert(LV::rank() == YV::rank() + 1,
                "cross_entropy_with_grad: logits need one more axis (the vocabulary) than targets");
  constexpr std::size_t R = LV::rank();
  for (std::size_t r = 0; r + 1 < R; ++r)
    if (lv.extent(r) != tv.extent(r))
      throw shape_error(einlm::detail::concat("cross_entropy_with_grad: logits of shape ", shape_string(lv.extents()),
                                              " do not match targets of shape ", shape_string(tv.extents())));
  const index_t V = lv.extent(R - 1);
  const index_t rows = V == 0 ? 0 : lv.size() / V;
  // Each row's target, checked before any work.
  std::vector<index_t> target_of(static_cast<std::size_t>(rows));
  index_array<R> at{};
  index_array<R - 1> yat{};
  for (index_t row = 0; row < rows; ++row) {
    index_t rem = row;
    for (std::size_t r = R - 1; r-- > 0;) {
      at[r] = rem % lv.extent(r);
      yat[r] = at[r];
      rem /= lv.extent(r);
    }
    const auto target = static_cast<std::int64_t>(tv(yat));
    if (target < 0 || target >= V)
      throw value_error(einlm::detail::concat("cross_entropy_with_grad: target ", target, " of row ", row,
                                              " is outside the vocabulary [0, ", V, ")"));
    target_of[static_cast<std::size_t>(row)] = static_cast<index_t>(target);
  }
  // Gradient: each row's softmax scaled by (1 + 2·z_loss·lse) / rows, minus 1 / rows at the target.
  const C inv_rows = static_cast<C>(rows == 0 ? 0.0 : 1.0 / static_cast<double>(rows));
  const C two_z = static_cast<C>(2.0 * z_loss);
  using gradient_tensor = tensor<T, typename LV::extents_type, host>;
  auto dlogits = [&]() -> gradient_tensor {                                            // (…, V)
    if constexpr (std::is_same_v<Reuse, std::nullptr_t>) return gradient_tensor(lv.extents());
    else return std::move(*reuse);  // the same storage: lv still views it
  }();
  std::vector<C> row_lse(static_cast<std::size_t>(rows)), row_target(static_cast<std::size_t>(rows));
  if (lv.is_contiguous()) {
    cross_entropy_rows(lv.data(), dlogits.data(), target_of.data(), row_lse.data(), row_target.data(), rows, V,
                       two_z, inv_rows);
  } else {
    const auto lc = cast<C>(lv);                                                                        // (…, V)
    const auto row_max = eval(reduce<"... v -> ... 1", "max">(lc));                                     // (…, 1)
    const auto lse = eval(row_max + log(reduce<"... v -> ... 1", "sum">(exp(lc - row_max))));          // (…, 1)
    assign(dlogits, cast<T>(exp(lc - lse) * ((static_cast<C>(1) + two_z * lse) * inv_rows)));          // (…, V)
    for (index_t row = 0; row < rows; ++row) {
      index_t rem = row;
      for (std::size_t r = R - 1; r-- > 0;) {
        at[r] = rem % lv.extent(r);
        rem /= lv.extent(r);
      }
      at[R - 1] = target_of[static_cast<std::size_t>(row)];
      row_lse[static_cast<std::size_t>(row)] = lse.data()[row];
      row_target[static_cast<std::size_t>(row)] = static_cast<C>(convert<C>(lv(at)));
      T& g = dlogits.data()[row * V + at[R - 1]];
      g = convert<T>(static_cast<C>(convert<C>(g) - inv_rows));
    }
  }
  // The loss in double, row by row in order (the same bits whatever the threads).
  double total = 0, total_sq = 0;
  for (index_t row = 0; row < rows; ++row) {
    const double row_loss_lse = static_cast<double>(row_lse[static_cast<std::size_t>(row)]);
    total += row_loss_lse - static_cast<double>(row_target[static_cast<std::size_t>(row)]);
    total_sq += row_loss_lse * row_loss_lse;
  }
  const double loss = rows == 0 ? 0.0 : (total + z_loss * total_sq) / static_cast<double>(rows);
  return loss_with_grad<decltype(dlogits)>{loss, std::move(dlogits)};
}

}  // namespace detail

/// Mean cross-entropy of logits (…, V) against integer targets (…), plus z_loss · mean(lse²), and
/// its gradient with respect to the logits; see the file comment.
template <class L, class Y>
auto cross_entropy_with_grad(const L& logits, const Y& targets, double z_loss = 0.0) {
  if constexpr (!array_like<L>) {
    const auto evaluated = eval(logits);  // (…, V)
    return cross_entropy_with_grad(evaluated, targets, z_loss);
  } else if constexpr (!array_like<Y>) {
    const auto evaluated = eval(targets);  // (…)
    return cross_entropy_with_grad(logits, evaluated, z_loss);
  } else {
    return detail::cross_entropy_with_grad(logits, targets, z_loss);
  }
}

/// The same for logits handed over (an rvalue tensor): the gradient is written over them and
/// returned in their storage, so no second (…, V) array is allocated. The results are the same.
template <class T, class E, class Y>
auto cross_entropy_with_grad(tensor<T, E, host>&& logits, const Y& targets, double z_loss = 0.0) {
  if constexpr (!array_like<Y>) {
    const auto evaluated = eval(targets);  // (…)
    return cross_entropy_with_grad(std::move(logits), evaluated, z_loss);
  } else {
    return detail::cross_entropy_with_grad(logits, targets, z_loss, &logits);
  }
}

// ---------------------------------------------------------------------------------- attention

namespace detail {

/// Query rows per block of the causal attention kernels below: block rows i0 … i0 + 47 read only
/// the keys their last row may see, so the masked half of the scores is skipped in blocks of 48
/// (four 12-row micro-tiles of the own GEMM; 32, 64 and 96 measured within a few per cent).
inline constexpr index_t causal_block_rows = 48;

/// Keys or values (B, Hkv, Sk, Dh) as B·Hkv matrices (Sk, Dh): a pointer and strides.
template <class C>
struct head_matrices {
  const C* data = nullptr;
  index_t head_stride = 0, row_stride = 0, col_stride = 1;
  /// The first `rows` rows of heads h0 … h0 + heads − 1: (heads, rows, Dh).
  matrix_ref<const C> first(index_t h0, index_t heads, index_t rows, index_t dh) const {
    return {data + h0 * head_stride, heads, rows, dh, head_stride, row_stride, col_stride};
  }
};

/// How the causal kernels share out the heads: chunks of `size` heads (as many as keep one
/// block's scores of a chunk, `per_head` elements a head, within 256 KB, which stays in L2 through
/// the block's passes; at most heads / threads, so that every thread gets a chunk), run one per
/// thread, each with its own slot of scratch memory and single-threaded GEMMs. A head's
/// arithmetic does not depend on its chunk, so the results are the same bits on any number of
/// threads.
struct causal_chunks {
  index_t heads = 0, size = 1, count = 1;
  int team = 1;

  template <class C>
  static causal_chunks of(index_t heads, index_t per_head) {
    int threads = 1;
#if EINLM_HAS_OPENMP
    threads = omp_get_max_threads();
#endif
    const index_t fit = (index_t{256} * 1024 / static_cast<index_t>(sizeof(C))) / std::max<index_t>(per_head, 1);
    const index_t share = (heads + threads - 1) / std::max(threads, 1);
    causal_chunks c;
    c.heads = heads;
    c.size = std::clamp<index_t>(std::min(fit, share), 1, std::max<index_t>(heads, 1));
    c.count = (heads + c.size - 1) / c.size;
    c.team = static_cast<int>(std::min<index_t>(threads, c.count));
    return c;
  }

  /// f(h0, hc, slot) for every chunk: heads h0 … h0 + hc − 1, scratch slot in [0, team).
  template <class F>
  void run(F&& f) const {
    einlm::detail::gemm_parallel(team, count, [&](index_t c) {
      int slot = 0;
#if EINLM_HAS_OPENMP
      slot = omp_get_thread_num();
#endif
      const index_t h0 = c * size;
      f(h0, std::min(size, heads - h0), slot);
    }, /*dynamic=*/true);
  }
};

/// x (B, Hkv, Sk, Dh) of C as head matrices: where it lies when its batch and head axes fold into
/// one stride (a KV cache's rows do), else copied into `copy`.
template <class C, class X>
head_matrices<C> head_matrices_of(const X& x, tensor<C, dims<4>>& copy) {
  const auto v = as_view(x);
  const index_t B = v.extent(0), G = v.extent(1);
  const index_t head_stride = G == 1 ? v.stride(0) : v.stride(1);
  if (B == 1 || G == 1 || v.stride(0) == G * v.stride(1)) return {v.data(), head_stride, v.stride(2), v.stride(3)};
  copy = tensor<C, dims<4>>(B, G, v.extent(2), v.extent(3));  // (B, Hkv, Sk, Dh)
  assign(copy, v);
  return {copy.data(), v.extent(2) * v.extent(3), v.extent(3), 1};
}

/// Causal attention forward by blocks of causal_block_rows query rows. q and out are (B, Hkv, R,
/// S, Dh) contiguous, kt (B, Hkv, Dh, Sk) contiguous (k transposed), lse (B, H, S). The heads go
/// in chunks, one per thread (causal_chunks); for each chunk and block:
/// scores = q kᵀ over the keys the block's last row sees (one batched GEMM per query head of a
/// group), each row's exp(s·scale − max) over its visible keys in place (0 past them), out = that
/// times v over the same keys, then each out row divided by its row's sum. About (nb + 1)/(2·nb)
/// of the full square's GEMM work for nb blocks, and one block's scores in memory.
template <class C>
void causal_attention_forward(const C* q, const C* kt, const head_matrices<C>& v, C* out, C* lse,
                              const attention_shape& n, C scale) {
  const index_t heads = n.B * n.G, R = n.R, S = n.S, Sk = n.Sk, D = n.D;
  const index_t rows = std::min(causal_block_rows, S);
  const auto chunks = causal_chunks::of<C>(heads, R * rows * Sk);
  const index_t slot_scores = chunks.size * R * rows * Sk, slot_sums = chunks.size * R * rows;
  tensor<C, dims<1>> work(chunks.team * (slot_scores + slot_sums));  // per slot: one block's scores, its row sums
  const epilogue<C> store{};
  const gemm_options one_thread{.threads = 1};
  chunks.run([&](index_t h0, index_t hc, int slot) {
    C* scores = work.data() + slot * (slot_scores + slot_sums);
    C* inverse_sums = scores + slot_scores;
    const C* qh = q + h0 * R * S * D;
    const C* kh = kt + h0 * D * Sk;
    C* oh = out + h0 * R * S * D;
    for (index_t i0 = 0; i0 < S; i0 += causal_block_rows) {
      const index_t m = std::min(causal_block_rows, S - i0);
      const index_t keys = Sk - S + i0 + m;  // the keys row i0 + m − 1 sees
      const index_t block = m * keys;        // one head's (m, keys) scores
      for (index_t r = 0; r < R; ++r)
        gemm_cpu(matrix_ref<const C>(qh + (r * S + i0) * D, hc, m, D, R * S * D, D, 1),
                 matrix_ref<const C>(kh, hc, D, keys, D * Sk, Sk, 1),
                 matrix_ref<C>(scores + r * block, hc, m, keys, R * block, keys, 1), store, one_thread);
      // Rows t = (h·R + r)·m + (i − i0) of (hc, R, m, keys), h counted from h0: lse row
      // (h0·R + t / m)·S + i. The rows keep exp(s·scale − max); out is divided by their sums.
      for (index_t t = 0; t < hc * R * m; ++t) {
        C* s = scores + t * keys;
        const index_t i = i0 + t % m;
        const index_t visible = Sk - S + i + 1;
        const C mx = row_max<C>(s, visible) * scale;  // the maximum of s · scale: scale > 0
        const C sum = exp_sum_row<true>(s, s, visible, scale, mx);
        lse[(h0 * R + t / m) * S + i] = mx + static_cast<C>(std::log(sum));
        inverse_sums[t] = C(1) / sum;
        for (index_t j = visible; j < keys; ++j) s[j] = 0;
      }
      for (index_t r = 0; r < R; ++r)
        gemm_cpu(matrix_ref<const C>(scores + r * block, hc, m, keys, R * block, keys, 1), v.first(h0, hc, keys, D),
                 matrix_ref<C>(oh + (r * S + i0) * D, hc, m, D, R * S * D, D, 1), store, one_thread);
      for (index_t t = 0; t < hc * R * m; ++t) {
        C* o = oh + ((t / m) * S + i0 + t % m) * D;
        for (index_t d = 0; d < D; ++d) o[d] *= inverse_sums[t];
      }
    }
  });
}

/// Causal attention backward by the same blocks and chunks. q, dout, dq are (B, Hkv, R, S, Dh)
/// contiguous; kt and vt (B, Hkv, Dh, S) contiguous; lse and delta (rowsum(dO ⊙ O)) (B, H, S); dk
/// and dv (B, Hkv, S, Dh) contiguous, zero on entry.
/// Per block: P from the saved lse, dV += Pᵀ dO, dP = dO vᵀ, dS = P ⊙ (dP − delta)·scale,
/// dQ = dS k, dK += dSᵀ q, each over the keys the block sees.
template <class C>
void causal_attention_backward(const C* q, const head_matrices<C>& k, const C* kt, const C* vt, const C* dout,
                               const C* lse, const C* delta, C* dq, C* dk, C* dv, const attention_shape& n,
                               C scale) {
  const index_t heads = n.B * n.G, R = n.R, S = n.S, D = n.D;
  const index_t rows = std::min(causal_block_rows, S);
  const auto chunks = causal_chunks::of<C>(heads, 2 * R * rows * S);  // P and dS
  const index_t slot_scores = chunks.size * R * rows * S;
  tensor<C, dims<1>> work(chunks.team * 2 * slot_scores);  // per slot: one block's P and dS
  const epilogue<C> store{}, add{.beta = 1.0};
  const gemm_options one_thread{.threads = 1};
  chunks.run([&](index_t h0, index_t hc, int slot) {
    C* p = work.data() + slot * 2 * slot_scores;
    C* ds = p + slot_scores;
    const index_t q_at = h0 * R * S * D, kv_at = h0 * S * D;  // the chunk's first head in q, dout, dq; in kᵀ, vᵀ, dk, dv
    for (index_t i0 = 0; i0 < S; i0 += causal_block_rows) {
      const index_t m = std::min(causal_block_rows, S - i0);
      const index_t keys = i0 + m;
      const index_t block = m * keys;
      const auto rows_of = [&](const C* x, index_t r) {  // the block's rows of query head r: (hc, m, Dh)
        return matrix_ref<const C>(x + q_at + (r * S + i0) * D, hc, m, D, R * S * D, D, 1);
      };
      const auto scores_of = [&](C* x, index_t r) { return matrix_ref<C>(x + r * block, hc, m, keys, R * block, keys, 1); };
      const auto transposed_of = [&](const C* x) { return matrix_ref<const C>(x + kv_at, hc, D, keys, D * S, S, 1); };
      const matrix_ref<C> dk_rows(dk + kv_at, hc, keys, D, S * D, D, 1), dv_rows(dv + kv_at, hc, keys, D, S * D, D, 1);
      for (index_t r = 0; r < R; ++r) {
        gemm_cpu(rows_of(q, r), transposed_of(kt), scores_of(p, r), store, one_thread);      // scores
        gemm_cpu(rows_of(dout, r), transposed_of(vt), scores_of(ds, r), store, one_thread);  // dP
      }
      // Rows t = (h·R + r)·m + (i − i0), h counted from h0: lse and delta row (h0·R + t / m)·S + i.
      for (index_t t = 0; t < hc * R * m; ++t) {
        C* s = p + t * keys;
        C* g = ds + t * keys;
        const index_t i = i0 + t % m;
        const index_t visible = i + 1;
        const index_t row = (h0 * R + t / m) * S + i;
        exp_sum_row<true>(s, s, visible, scale, lse[row]);  // P
        for (index_t j = visible; j < keys; ++j) s[j] = 0;
        const C d = delta[row];
        for (index_t j = 0; j < keys; ++j) g[j] = s[j] * (g[j] - d) * scale;  // dS·scale, 0 where masked
      }
      for (index_t r = 0; r < R; ++r) {
        gemm_cpu(matrix_ref<const C>(scores_of(p, r)).transposed(), rows_of(dout, r), dv_rows, add, one_thread);  // dV += Pᵀ dO
        gemm_cpu(matrix_ref<const C>(scores_of(ds, r)), k.first(h0, hc, keys, D),
                 matrix_ref<C>(dq + q_at + (r * S + i0) * D, hc, m, D, R * S * D, D, 1), store, one_thread);  // dQ = dS k
        gemm_cpu(matrix_ref<const C>(scores_of(ds, r)).transposed(), rows_of(q, r), dk_rows, add, one_thread);  // dK += dSᵀ q
      }
    }
  });
}

/// x's elements as contiguous C: x's own storage when it is a contiguous host array of C, else a
/// copy cast to C, kept in `copy`.
template <class X, class Copy>
const typename Copy::value_type* contiguous_compute(const X& x, Copy& copy) {
  using C = typename Copy::value_type;
  if constexpr (array_like<X> && std::is_same_v<value_t<X>, C>) {
    const auto v = as_view(x);
    if (v.is_contiguous()) return v.data();
  }
  copy = Copy(typename Copy::extents_type(as_expression(x).extents()));
  assign(copy, cast<C>(x));
  return copy.data();
}

/// Where a kernel writes results of C for `out`: out's own storage when it holds C, else a
/// buffer (store_output then converts it into out).
template <class C, class T, class E>
C* compute_output(tensor<T, E, host>& out, tensor<C, dims<4>>& buffer) {
  if constexpr (std::is_same_v<T, C>) {
    return out.data();
  } else {
    buffer = tensor<C, dims<4>>(dims<4>(out.extents()));
    return buffer.data();
  }
}
template <class C, class T, class E>
void store_output(tensor<T, E, host>& out, const tensor<C, dims<4>>& buffer) {
  if constexpr (!std::is_same_v<T, C>) assign(out, cast<T>(buffer));
}

/// attention_forward; a causal attention of more than causal_block_rows queries runs in blocks
/// when `blocks`, else over the whole square (the benchmarks' baseline).
template <class Q, class K, class V>
auto attention_forward_impl(const Q& q, const K& k, const V& v, bool causal, bool blocks) {
  using T = detail::value_t<Q>;
  using C = detail::compute_t<T>;
  const auto qx = as_expression(q);                                                     // (B, H, S, Dh)
  const auto k4 = detail::compute_array<C>(k);                                          // (B, Hkv, Sk, Dh)
  const auto v4 = detail::compute_array<C>(v);                                          // (B, Hkv, Sk, Dh)
  const auto n = detail::check_attention("attention_forward", qx, k4, v4, /*more_keys=*/true);
  const C scale = static_cast<C>(1.0 / std::sqrt(static_cast<double>(n.D)));
  if (blocks && causal && n.S > detail::causal_block_rows) {
    tensor<C, dims<4>> q_copy, v_copy, o_buffer;
    const C* qp = contiguous_compute(q, q_copy);                                       // (B, H, S, Dh)
    const auto kt = eval(rearrange<"b g k d -> b g d k">(k4));                         // (B, Hkv, Dh, Sk)
    tensor<T, std::remove_cvref_t<decltype(qx.extents())>, host> out(qx.extents());    // (B, H, S, Dh)
    tensor<C, dims<3>, host> row_lse(dims<3>(n.B, n.H, n.S));                          // (B, H, S)
    detail::causal_attention_forward(qp, kt.data(), detail::head_matrices_of(v4, v_copy), compute_output(out, o_buffer),
                                     row_lse.data(), n, scale);
    store_output(out, o_buffer);
    return attention_result<decltype(out), decltype(row_lse)>{std::move(out), std::move(row_lse)};
  }
  const auto qe = eval(cast<C>(q));                                                     // (B, H, S, Dh)
  const auto q5 = reshape(qe, dims<5>(n.B, n.G, n.R, n.S, n.D));                        // (B, Hkv, R, S, Dh)
  auto scores = einsum<"b g r q d, b g k d -> b g r q k">(q5, k4);                      // (B, Hkv, R, S, Sk)
  // Rows (b, g, r, i) are rows (b, h, i) with h = g·R + r: the lse comes out in (B, H, S) order.
  tensor<C, dims<3>, host> row_lse(dims<3>(n.B, n.H, n.S));                            // (B, H, S)
  detail::masked_softmax_rows(scores.data(), row_lse.data(), n.B * n.H * n.S, n.S, n.Sk, scale, causal);  // P
  const auto o5 = einsum<"b g r q k, b g k d -> b g r q d">(scores, v4);                // (B, Hkv, R, S, Dh)
  auto out = detail::eval_as<T>(as_expression(q).extents(), cast<T>(reshape(o5, qe.extents())));  // (B, H, S, Dh)
  return attention_result<decltype(out), decltype(row_lse)>{std::move(out), std::move(row_lse)};
}

/// attention_backward, in blocks as attention_forward_impl.
template <class Q, class K, class V, class O, class LSE, class DO>
auto attention_backward_impl(const Q& q, const K& k, const V& v, const O& out, const LSE& lse, const DO& dout,
                             bool causal, bool blocks) {
  using T = detail::value_t<Q>;
  using TK = detail::value_t<K>;
  using TV = detail::value_t<V>;
  using C = detail::compute_t<T>;
  const auto qx = as_expression(q);                                                     // (B, H, S, Dh)
  const auto k4 = detail::compute_array<C>(k);                                          // (B, Hkv, S, Dh)
  const auto v4 = detail::compute_array<C>(v);                                          // (B, Hkv, S, Dh)
  const auto n = detail::check_attention("attention_backward", qx, k4, v4);
  detail::require_same_shape("attention_backward", "out", as_expression(out).extents(), "q", qx.extents());
  detail::require_same_shape("attention_backward", "dout", as_expression(dout).extents(), "q", qx.extents());
  detail::require_same_shape("attention_backward", "lse", as_expression(lse).extents(), "(B, H, S)",
                             dims<3>(n.B, n.H, n.S));
  const C scale = static_cast<C>(1.0 / std::sqrt(static_cast<double>(n.D)));
  if (blocks && causal && n.S > detail::causal_block_rows) {
    tensor<C, dims<4>> q_copy, k_copy, o_copy, do_copy, dq_buffer, dk_buffer, dv_buffer;
    tensor<C, dims<3>> lse_copy;
    const C* qp = contiguous_compute(q, q_copy);                                       // (B, H, S, Dh)
    const C* op = contiguous_compute(out, o_copy);                                     // (B, H, S, Dh)
    const C* dop = contiguous_compute(dout, do_copy);                                  // (B, H, S, Dh)
    const C* lp = contiguous_compute(lse, lse_copy);                                   // (B, H, S)
    const auto kt = eval(rearrange<"b g k d -> b g d k">(k4));                         // (B, Hkv, Dh, S)
    const auto vt = eval(rearrange<"b g k d -> b g d k">(v4));                         // (B, Hkv, Dh, S)
    std::vector<C> delta(static_cast<std::size_t>(n.B * n.H * n.S));                  // (B, H, S): rowsum(dO ⊙ O)
    for_each_row(n.B * n.H * n.S, n.D, [&](index_t row) {
      C d = 0;
      for (index_t j = 0; j < n.D; ++j) d += dop[row * n.D + j] * op[row * n.D + j];
      delta[static_cast<std::size_t>(row)] = d;
    });
    tensor<T, std::remove_cvref_t<decltype(qx.extents())>, host> dq(qx.extents());     // (B, H, S, Dh)
    tensor<TK, std::remove_cvref_t<decltype(as_expression(k).extents())>, host> dk(as_expression(k).extents());  // (B, Hkv, S, Dh)
    tensor<TV, std::remove_cvref_t<decltype(as_expression(v).extents())>, host> dv(as_expression(v).extents());  // (B, Hkv, S, Dh)
    C* dkp = compute_output(dk, dk_buffer);
    C* dvp = compute_output(dv, dv_buffer);
    std::fill(dkp, dkp + dk.size(), C(0));
    std::fill(dvp, dvp + dv.size(), C(0));
    detail::causal_attention_backward(qp, detail::head_matrices_of(k4, k_copy), kt.data(), vt.data(), dop, lp,
                                      delta.data(), compute_output(dq, dq_buffer), dkp, dvp, n, scale);
    store_output(dq, dq_buffer);
    store_output(dk, dk_buffer);
    store_output(dv, dv_buffer);
    return attention_grads<decltype(dq), decltype(dk), decltype(dv)>{std::move(dq), std::move(dk), std::move(dv)};
  }
  const auto qe = eval(cast<C>(q));                                                     // (B, H, S, Dh)
  const auto oe = eval(cast<C>(out));                                                   // (B, H, S, Dh)
  const auto doe = eval(cast<C>(dout));                                                 // (B, H, S, Dh)
  const auto le = eval(cast<C>(lse));                                                   // (B, H, S)
  const auto q5 = reshape(qe, dims<5>(n.B, n.G, n.R, n.S, n.D));                        // (B, Hkv, R, S, Dh)
  const auto o5 = reshape(oe, dims<5>(n.B, n.G, n.R, n.S, n.D));                        // (B, Hkv, R, S, Dh)
  const auto do5 = reshape(doe, dims<5>(n.B, n.G, n.R, n.S, n.D));                      // (B, Hkv, R, S, Dh)
  auto p = einsum<"b g r q d, b g k d -> b g r q k">(q5, k4);                           // (B, Hkv, R, S, S): scores
  detail::probabilities_from_lse(p.data(), le.data(), n.B * n.H * n.S, n.S, n.S, scale, causal);  // P
  const auto dv5 = einsum<"b g r q k, b g r q d -> b g k d">(p, do5);                   // (B, Hkv, S, Dh)
  auto ds = einsum<"b g r q d, b g k d -> b g r q k">(do5, v4);                         // (B, Hkv, R, S, S): dP
  const auto delta = eval(reduce<"... d -> ... 1", "sum">(do5 * o5));                   // (B, Hkv, R, S, 1)
  assign(ds, p * (ds - delta) * scale);                                                 // (B, Hkv, R, S, S): dS·scale
  const auto dq5 = einsum<"b g r q k, b g k d -> b g r q d">(ds, k4);                   // (B, Hkv, R, S, Dh)
  const auto dk4 = einsum<"b g r q k, b g r q d -> b g k d">(ds, q5);                   // (B, Hkv, S, Dh)
  auto dq = detail::eval_as<T>(as_expression(q).extents(), cast<T>(reshape(dq5, qe.extents())));   // (B, H, S, Dh)
  auto dk = detail::eval_as<TK>(as_expression(k).extents(), cast<TK>(reshape(dk4, k4.extents())));  // (B, Hkv, S, Dh)
  auto dv = detail::eval_as<TV>(as_expression(v).extents(), cast<TV>(reshape(dv5, v4.extents())));  // (B, Hkv, S, Dh)
  return attention_grads<decltype(dq), decltype(dk), decltype(dv)>{std::move(dq), std::move(dk), std::move(dv)};
}

}  // namespace detail

/// Attention with grouped-query heads that also returns the row log-sum-exp of the scaled, masked
/// scores; out equals scaled_dot_product_attention with a causal mask (or none). k and v may be
/// longer than q (Sk ≥ Sq, decoding against a KV cache): the queries are then the last Sq
/// positions, and causal lets query i see keys 0 … Sk − Sq + i.
template <class Q, class K, class V>
auto attention_forward(const Q& q, const K& k, const V& v, bool causal) {
  return detail::attention_forward_impl(q, k, v, causal, /*blocks=*/true);
}

/// The gradients of attention_forward's out from the saved out and lse; see the file comment.
template <class Q, class K, class V, class O, class LSE, class DO>
auto attention_backward(const Q& q, const K& k, const V& v, const O& out, const LSE& lse, const DO& dout, bool causal) {
  return detail::attention_backward_impl(q, k, v, out, lse, dout, causal, /*blocks=*/true);
}

}  // namespace einlm::nn
