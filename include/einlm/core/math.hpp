// einlm/core/math.hpp — element-wise math for scalars (host and device) and CPU packets.
//
// Each function takes a float or double, or a simd::packet of them, and returns the same type.
// On the device the scalar forms call CUDA's libm (expf, logf, tanhf, …). On the host, scalars and
// packets share one branch-free polynomial implementation (so the CPU executor vectorises without
// -ffast-math, and a tail element computed alone equals the same element computed in a packet).
//
// Accuracy against the correctly rounded result, worst case measured by tests/core/test_math.cpp on
// random inputs (float and double alike):
//   sqrt 0 · exp, log, tanh, rsqrt 1 ulp · sigmoid, silu 2 ulp (silu: for normal results; a
//   subnormal result, x < −87 in float, is within |x|·2^-149) ·
//   gelu (erf form) on float 6 ulp (every float checked; a subnormal result, x < −13.1, is within
//   |x|·2^-149), in float polynomials whose arguments are kept exact where the conditioning would
//   amplify their rounding (e^{−x²/2}: up to x² ulp); its derivative (detail::
//   gelu_erf_derivative_float, for nn::gelu_backward) 7.2 ulp of the larger of Φ(x) and |x|·φ(x)
//   (every float checked) ·
//   pow, gelu_tanh on float: computed in double, then rounded (≤ 1 ulp), since their conditioning
//   amplifies float rounding by up to |x|² for large |x| (gelu_tanh on a packet of floats widens
//   its halves to vectors of doubles, lane for lane the scalar form's operations); on double they
//   (and gelu) are computed in double, and that conditioning shows (gelu within 64 ulp for |x| ≤ 6).
//   On the device, gelu on float is computed in double with CUDA's erfc.
// exp overflows to inf and underflows through the subnormals to 0; NaN propagates everywhere.
// On x86 a packet's sqrt (and rsqrt's division by it) is one sqrtps/sqrtpd per register.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/simd.hpp"

#if EINLM_HAS_PACKETS && defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define EINLM_HAS_X86_SQRT 1
#else
#define EINLM_HAS_X86_SQRT 0
#endif

namespace einlm::math {

namespace detail {

using simd::scalar_t;

template <class V>
inline constexpr bool is_packet_v = simd::is_packet_v<V>;

template <class T>
EINLM_HD T select(bool m, T a, T b) {
  return m ? a : b;
}
using simd::select;

/// Integer lanes of the same width as V's lanes (int32 for float, int64 for double).
template <class V, bool = is_packet_v<V>>
struct int_of_impl {
  using type = simd::int_lane_t<scalar_t<V>>;
};
template <class V>
struct int_of_impl<V, true> {
  using type = simd::rebind_t<V, simd::int_lane_t<scalar_t<V>>>;
};
template <class V>
using int_of = typename int_of_impl<V>::type;

EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD int_of<V> to_int(V x) {
  if constexpr (is_packet_v<V>) return simd::convert_packet<simd::int_lane_t<scalar_t<V>>>(x);
  else return static_cast<int_of<V>>(x);
}

EINLM_EXEC_CHECK_DISABLE
template <class V, class I>
EINLM_HD V to_real(I i) {
  if constexpr (is_packet_v<V>) return simd::convert_packet<scalar_t<V>>(i);
  else return static_cast<V>(i);
}

/// 2^n for integer n within the normal exponent range of V's lanes.
EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD V pow2(int_of<V> n) {
  using T = scalar_t<V>;
  constexpr int mantissa = std::is_same_v<T, float> ? 23 : 52;
  constexpr int bias = std::is_same_v<T, float> ? 127 : 1023;
  const int_of<V> bits = (n + int_of<V>(bias)) << mantissa;
  if constexpr (is_packet_v<V>) return simd::bitcast_packet<T>(bits);
  else return einlm::detail::bit_cast<T>(bits);
}

/// Bits of a real as same-width integers, and back.
EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD int_of<V> bits_of(V x) {
  if constexpr (is_packet_v<V>) return simd::bitcast_packet<simd::int_lane_t<scalar_t<V>>>(x);
  else return einlm::detail::bit_cast<int_of<V>>(x);
}
EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD V from_bits(int_of<V> b) {
  if constexpr (is_packet_v<V>) return simd::bitcast_packet<scalar_t<V>>(b);
  else return einlm::detail::bit_cast<V>(b);
}

/// Round half away from zero to an integer-valued real (robust under -ffast-math).
EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD int_of<V> round_to_int(V x) {
  using T = scalar_t<V>;
  return to_int(x + select(x < V(T(0)), V(T(-0.5)), V(T(0.5))));
}

/// e^r for |r| ≤ ln2/2 (a little beyond is fine) in float lanes: exp_poly's polynomial.
EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD V exp_reduced_float(V r) {
  V p = V(1.9875691500e-4f);
  p = p * r + V(1.3981999507e-3f);
  p = p * r + V(8.3334519073e-3f);
  p = p * r + V(4.1665795894e-2f);
  p = p * r + V(1.6666665459e-1f);
  p = p * r + V(5.0000001201e-1f);
  return p * (r * r) + r + V(1.0f);
}

/// e^x: x = n·ln2 + r with |r| ≤ ln2/2, e^r by a polynomial, then scaled by 2^n in two steps so
/// that results in the subnormal range and overflow to inf come out right.
EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD V exp_poly(V x) {
  using T = scalar_t<V>;
  const V lo = V(T(std::is_same_v<T, float> ? -104.0 : -746.0));
  const V hi = V(T(std::is_same_v<T, float> ? 89.0 : 710.0));
  V xc = select(x < lo, lo, x);
  xc = select(xc > hi, hi, xc);
  xc = select(x != x, V(T(0)), xc);  // NaN: keep the integer path defined; the result is fixed below
  const int_of<V> n = round_to_int(xc * V(T(1.44269504088896340736)));
  const V nf = to_real<V>(n);
  V p;
  if constexpr (std::is_same_v<T, float>) {
    // Cody–Waite: ln2 = c1 + c2 with c1 exact in 9 bits, so n·c1 is exact.
    const V r = (xc - nf * V(0.693359375f)) - nf * V(-2.12194440e-4f);
    p = exp_reduced_float(r);
  } else {
    const V r = (xc - nf * V(6.93145751953125e-1)) - nf * V(1.42860682030941723212e-6);
    // Taylor series of e^r to r^13: |r| ≤ 0.347 leaves an error below 4e-18.
    p = V(1.0 / 6227020800.0);
    p = p * r + V(1.0 / 479001600.0);
    p = p * r + V(1.0 / 39916800.0);
    p = p * r + V(1.0 / 3628800.0);
    p = p * r + V(1.0 / 362880.0);
    p = p * r + V(1.0 / 40320.0);
    p = p * r + V(1.0 / 5040.0);
    p = p * r + V(1.0 / 720.0);
    p = p * r + V(1.0 / 120.0);
    p = p * r + V(1.0 / 24.0);
    p = p * r + V(1.0 / 6.0);
    p = p * r + V(0.5);
    p = p * (r * r) + r + V(1.0);
  }
  const int_of<V> n1 = n >> 1;
  const int_of<V> n2 = n - n1;
  return select(x != x, x, p * pow2<V>(n1) * pow2<V>(n2));
}

/// ln x: x = m·2^e with m in [√½, √2); ln m = 2·atanh(s), s = (m − 1)/(m + 1). Handles zero
/// (−inf), negatives (NaN), inf, NaN and subnormals.
EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD V log_poly(V x) {
  using T = scalar_t<V>;
  using I = int_of<V>;
  constexpr bool is_float = std::is_same_v<T, float>;
  constexpr int mantissa = is_float ? 23 : 52;
  // Scale subnormals into the normal range first.
  const V tiny = V(T(is_float ? 1.17549435e-38 : 2.2250738585072014e-308));
  const V scale = V(T(is_float ? 8388608.0 : 4503599627370496.0));  // 2^23 / 2^52
  const auto sub = x < tiny;
  const V xs = select(sub, x * scale, x);
  const I bits = bits_of(xs);
  const I exp_mask = is_float ? I(0xff) : I(0x7ff);
  I e = ((bits >> mantissa) & exp_mask) - I(is_float ? 126 : 1022);
  e = e - select(sub, I(mantissa), I(0));
  const I mant_mask = is_float ? I(0x7fffff) : I(static_cast<simd::int_lane_t<T>>(0x000fffffffffffffll));
  const I half_bits = is_float ? I(0x3f000000) : I(static_cast<simd::int_lane_t<T>>(0x3fe0000000000000ll));
  V m = from_bits<V>((bits & mant_mask) | half_bits);  // [0.5, 1)
  const auto small = m < V(T(0.70710678118654752440));
  m = select(small, m + m, m);
  e = e - select(small, I(1), I(0));
  const V s = (m - V(T(1))) / (m + V(T(1)));
  const V z = s * s;
  V p;
  if constexpr (is_float) {
    p = V(1.0f / 9.0f);
    p = p * z + V(1.0f / 7.0f);
    p = p * z + V(1.0f / 5.0f);
    p = p * z + V(1.0f / 3.0f);
  } else {
    p = V(1.0 / 21.0);
    p = p * z + V(1.0 / 19.0);
    p = p * z + V(1.0 / 17.0);
    p = p * z + V(1.0 / 15.0);
    p = p * z + V(1.0 / 13.0);
    p = p * z + V(1.0 / 11.0);
    p = p * z + V(1.0 / 9.0);
    p = p * z + V(1.0 / 7.0);
    p = p * z + V(1.0 / 5.0);
    p = p * z + V(1.0 / 3.0);
  }
  const V two_s = s + s;
  const V log_m = two_s + two_s * (z * p);
  const V ef = to_real<V>(e);
  const V ln2_hi = V(T(is_float ? 0.693359375 : 6.93147180369123816490e-01));
  const V ln2_lo = V(T(is_float ? -2.12194440e-4 : 1.90821492927058770002e-10));
  V r = ef * ln2_hi + (ef * ln2_lo + log_m);
  const V inf = from_bits<V>(is_float ? I(0x7f800000) : I(static_cast<simd::int_lane_t<T>>(0x7ff0000000000000ll)));
  r = select(x == V(T(0)), -inf, r);
  r = select(x == inf, inf, r);
  r = select(x < V(T(0)), inf - inf, r);  // NaN
  return select(x != x, x, r);
}

/// tanh x: an odd polynomial near zero, 1 − 2/(e^{2|x|} + 1) elsewhere.
EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD V tanh_poly(V x) {
  using T = scalar_t<V>;
  const V ax = select(x < V(T(0)), -x, x);
  const V z = x * x;
  V small;
  if constexpr (std::is_same_v<T, float>) {
    V p = V(-5.70498872745e-3f);
    p = p * z + V(2.06390887954e-2f);
    p = p * z + V(-5.37397155531e-2f);
    p = p * z + V(1.33314422036e-1f);
    p = p * z + V(-3.33332819422e-1f);
    small = p * z * x + x;
  } else {
    // Rational approximation (Cephes tanh) for |x| < 0.625.
    V p = V(-9.64399179425052238628e-1);
    p = p * z + V(-9.92877231001918586564e1);
    p = p * z + V(-1.61468768441708447952e3);
    V q = z + V(1.12811678491632931402e2);
    q = q * z + V(2.23548839060100448583e3);
    q = q * z + V(4.84406305325125486048e3);
    small = x + x * z * (p / q);
  }
  const V e = exp_poly(ax + ax);
  V large = V(T(1)) - V(T(2)) / (e + V(T(1)));
  large = select(x < V(T(0)), -large, large);
  return select(ax < V(T(0.625)), small, large);
}

/// 1 / (1 + e^{−x}) without overflow or cancellation: e^{−|x|} / (1 + e^{−|x|}) for x < 0.
EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD V sigmoid_poly(V x) {
  using T = scalar_t<V>;
  const auto negative = x < V(T(0));
  const V e = exp_poly(select(negative, x, -x));  // e^{−|x|}
  const V r = V(T(1)) / (V(T(1)) + e);
  return select(negative, e * r, r);
}

#if EINLM_HAS_X86_SQRT
// Correctly rounded square roots of whole registers (sqrtps/sqrtpd), in place, for packets: the
// scalar __builtin_sqrt keeps errno for negative inputs, so a packet's lanes would go one by one
// through sqrtss and a branch. The 32- and 64-byte forms carry the instruction set they need; only
// kernels compiled for it (simd_dispatch.hpp, which inline them) or a build for it make packets
// that wide. The register goes by reference (a pointer in the ABI), so that a call left out of
// line (-O0) passes no wide vector by value between code built for two instruction sets.
template <class T, int Bytes>
using register_of = typename simd::detail::vec<T, Bytes>::type;
__attribute__((target("avx512f"))) inline void sqrt_in_place(register_of<float, 64>& x) {
  x = _mm512_maskz_sqrt_ps(static_cast<__mmask16>(0xFFFF), x);
}
__attribute__((target("avx512f"))) inline void sqrt_in_place(register_of<double, 64>& x) {
  x = _mm512_maskz_sqrt_pd(static_cast<__mmask8>(0xFF), x);
}
__attribute__((target("avx"))) inline void sqrt_in_place(register_of<float, 32>& x) { x = _mm256_sqrt_ps(x); }
__attribute__((target("avx"))) inline void sqrt_in_place(register_of<double, 32>& x) { x = _mm256_sqrt_pd(x); }
inline void sqrt_in_place(register_of<float, 16>& x) { x = _mm_sqrt_ps(x); }
inline void sqrt_in_place(register_of<double, 16>& x) { x = _mm_sqrt_pd(x); }
#endif

EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD V sqrt_lanes(V x) {
  if constexpr (is_packet_v<V>) {
#if EINLM_HAS_X86_SQRT
    constexpr std::size_t part_bytes = sizeof(typename V::part);
    if constexpr ((std::is_same_v<scalar_t<V>, float> || std::is_same_v<scalar_t<V>, double>) &&
                  (part_bytes == 16 || part_bytes == 32 || part_bytes == 64)) {
      if constexpr (V::K == 1) sqrt_in_place(x.p);
      else
        for (int k = 0; k < V::K; ++k) sqrt_in_place(x.p[k]);
      return x;
    } else {
      return simd::map_lanes(x, [](scalar_t<V> v) { return sqrt_lanes(v); });
    }
#else
    return simd::map_lanes(x, [](scalar_t<V> v) { return sqrt_lanes(v); });
#endif
  } else if constexpr (std::is_same_v<V, float>) {
    return __builtin_sqrtf(x);
  } else {
    return __builtin_sqrt(x);
  }
}

/// e^{−a²/2} in float for a ≥ 0 (a float or a packet of floats), with the argument kept exact:
/// a = ah + al, ah holding 12 significant bits, so that h = ah²/2 is exact and a²/2 = h + l with
/// l = al·(ah + a)/2 ≤ a²·2^-12 small. Then e^{−h−l} = 2^{−k}·e^{r}, r = (k·c1 − h) − l + k·c2
/// with ln 2 = c1 + c2 (Cody–Waite), where k·c1 − h is exact. The result goes through the
/// subnormals to 0. a must lie in [0, 20] (callers clamp it there: the result is 0 in float from
/// a ≈ 14.4 on); h stops at 104, from where the result rounds to 0.
EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD V exp_neg_half_square_float(V a) {
  using I = int_of<V>;
  const V ah = from_bits<V>(bits_of(a) & I(-4096));
  const V al = a - ah;
  V h = V(0.5f) * ah * ah;
  h = select(h < V(104.0f), h, V(104.0f));
  const V l = V(0.5f) * al * (ah + a);
  const I k = to_int((h + l) * V(1.44269504088896341f) + V(0.5f));  // round(log2 e·(h + l)), ≥ 0
  const V kf = to_real<V>(k);
  const V r = ((kf * V(0.693359375f) - h) - l) + kf * V(-2.12194440e-4f);
  const I k1 = k >> 1;
  return exp_reduced_float(r) * pow2<V>(I(0) - k1) * pow2<V>(k1 - k);
}

/// GELU (erf form) in float, for a float or a packet of floats: x·Φ(x) with Φ(x) = ½ + x·S(x²)
/// for |x| < 1 and Φ(−|x|) = e^{−x²/2}·t·P(t), t = 1/(1 + |x|), beyond. Both branches keep their
/// relative accuracy where the result is small: e^{−x²/2} takes an exact argument, and the far
/// tail is multiplied by x before e^{−x²/2} so that it stays normal while the result is. Within
/// 6 ulp of the exact value for every float whose result is normal (all 2^32 inputs checked); a
/// subnormal result is within |x|·2^-149.
EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD V gelu_erf_float(V x) {
  using I = int_of<V>;
  const auto negative = x < V(0.0f);
  V a = from_bits<V>(bits_of(x) & I(0x7fffffff));  // |x|
  // e^{−a²/2} is 0 in float from a ≈ 14.4 on; inf and NaN end at the cap. For x > 10 the tail
  // x·Φ(−x) is below 2^-74·x, far under half an ulp of x, so the result is x whatever the tail:
  // capping a positive x at 10 keeps e^{−a²/2} and the tail normal (a subnormal operand or result
  // costs a microcode assist on x86, which made large positive inputs several times slower).
  const V cap = select(negative, V(20.0f), V(10.0f));
  a = select(a < cap, a, cap);
  const V e = exp_neg_half_square_float(a);
  // Φ(−a) = e^{−a²/2}·t·P(t) with t = 1/(1 + a), P fitted on a in [1, 14].
  const V t = V(1.0f) / (V(1.0f) + a);
  V q = V(-5.72140837f);
  q = q * t + V(16.762949f);
  q = q * t + V(-20.3522148f);
  q = q * t + V(12.3091593f);
  q = q * t + V(-2.86493802f);
  q = q * t + V(-0.534554183f);
  q = q * t + V(-0.0202487018f);
  q = q * t + V(0.399801135f);
  q = q * t + V(0.398926944f);
  q = q * t;
  // ±x·Φ(−|x|), multiplied in this order so that it stays normal while the result is.
  const V tail = select(negative, x, a) * q * e;
  const V large = select(negative, tail, x - tail);
  const V u = x * x;
  V s = V(5.36846187e-07f);
  s = s * u + V(-9.27314068e-06f);
  s = s * u + V(0.000115319323f);
  s = s * u + V(-0.00118728797f);
  s = s * u + V(0.00997355022f);
  s = s * u + V(-0.066490382f);
  s = s * u + V(0.398942292f);
  const V small = x * (V(0.5f) + x * s);
  return select(a < V(1.0f), small, large);
}

/// GELU's derivative (erf form) in float, for a float or a packet of floats: Φ(x) + x·φ(x) with
/// φ(x) = e^{−x²/2}/√(2π). With a = |x|, Φ(−a) − a·φ(a) = e^{−a²/2}·(t·R(t) − a/√(2π)), where
/// t = 1/(1 + 11/32·a) and R is one polynomial fitted on a in [0, 14] (tools/fit_gelu_float.py);
/// that is the derivative for x < 0, and 1 minus it for x ≥ 0. e^{−a²/2} takes an exact argument
/// (exp_neg_half_square_float). Within 7.2 ulp of max(Φ(x), |x|·φ(x)) wherever that is normal
/// (5.9 with fused multiply-adds; all 2^32 inputs checked), 2.3e-7 in absolute terms; the
/// derivative itself crosses 0 near x = −0.752, so no bound relative to it is possible there.
/// Below the normal range (x < −13.3) within 2^-146; NaN stays NaN, ±inf give 1 and 0.
EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD V gelu_erf_derivative_float(V x) {
  using I = int_of<V>;
  V a = from_bits<V>(bits_of(x) & I(0x7fffffff));  // |x|
  // The derivative is 0 or 1 in float well before 20, and 1 for every x > 10: there, as in
  // gelu_erf_float, a positive x is capped at 10 so that no operand is subnormal.
  const V cap = select(x < V(0.0f), V(20.0f), V(10.0f));
  a = select(a < cap, a, cap);
  const V e = exp_neg_half_square_float(a);
  const V t = V(1.0f) / (V(1.0f) + V(0.34375f) * a);
  V q = V(-0.0278096311f);
  q = q * t + V(0.143850401f);
  q = q * t + V(-0.271716237f);
  q = q * t + V(0.190923154f);
  q = q * t + V(-0.0393084437f);
  q = q * t + V(0.112658449f);
  q = q * t + V(0.116740353f);
  q = q * t + V(0.137542292f);
  q = q * t + V(0.137119666f);
  q = q * t;  // Φ(−a)·e^{a²/2}
  const V lower = e * (q - a * V(0.398942280401432678f));  // Φ(−a) − a·φ(a)
  const V r = select(x < V(0.0f), lower, V(1.0f) - lower);
  return select(x != x, x, r);
}

template <class T>
EINLM_HD T gelu_erf_double(T x) {
  const double xd = static_cast<double>(x);
  return static_cast<T>(0.5 * xd * ::erfc(-xd * 0.70710678118654752440));
}

template <class T>
EINLM_HD T gelu_tanh_double(T x) {
  // 0.5·x·(1 + tanh(u)) = x·σ(2u), which has no cancellation for negative x.
  const double xd = static_cast<double>(x);
  const double u = 0.79788456080286535588 * (xd + 0.044715 * xd * xd * xd);
  double e;
  EINLM_IF_DEVICE((e = ::exp(-2.0 * (u < 0 ? -u : u));), (e = exp_poly(-2.0 * (u < 0 ? -u : u));))
  const double s = u < 0 ? e / (1.0 + e) : 1.0 / (1.0 + e);
  return static_cast<T>(xd * s);
}

#if EINLM_HAS_PACKETS
/// gelu_tanh_double on every lane of a float packet, without leaving the vector registers: each
/// half of the packet widened to a GNU vector of doubles, then exactly the operations of
/// gelu_tanh_double and of exp_poly's double branch, in the same order (so a lane equals the
/// scalar form's result: the tests check it), then rounded back to float once. Packets of double
/// compare and select lane by lane (simd.hpp), so this works on the plain vectors, whose
/// comparisons give 64-bit masks.
template <int B>
inline simd::packet<float, B> gelu_tanh_float_lanes(const simd::packet<float, B>& x) {
  using vd = typename simd::detail::vec<double, B>::type;
  using vh = typename simd::detail::vec<float, B / 2>::type;
  using vi = typename simd::detail::vec<std::int64_t, B>::type;
  constexpr int half = B / 8;  // lanes of one vector of doubles
  float in[B / 4], out[B / 4];
  std::memcpy(in, &x.part_at(0), sizeof(in));
  for (int h = 0; h < 2; ++h) {
    vh xf;
    std::memcpy(&xf, in + h * half, sizeof(xf));
    const vd xd = __builtin_convertvector(xf, vd);
    const vd zero = vd{} + 0.0;
    const vd u = 0.79788456080286535588 * (xd + 0.044715 * xd * xd * xd);
    const vd z = -2.0 * (u < zero ? -u : u);
    // exp_poly(z), double branch.
    vd xc = z < -746.0 ? zero - 746.0 : z;
    xc = xc > 710.0 ? zero + 710.0 : xc;
    xc = z != z ? zero : xc;
    const vd y = xc * 1.44269504088896340736;
    const vi n = __builtin_convertvector(y + (y < zero ? zero - 0.5 : zero + 0.5), vi);
    const vd nf = __builtin_convertvector(n, vd);
    const vd r = (xc - nf * 6.93145751953125e-1) - nf * 1.42860682030941723212e-6;
    vd p = zero + 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * (r * r) + r + 1.0;
    const vi n1 = n >> 1;
    const vi n2 = n - n1;
    vd two_n1, two_n2;
    const vi bits1 = (n1 + 1023) << 52, bits2 = (n2 + 1023) << 52;
    std::memcpy(&two_n1, &bits1, sizeof(vd));
    std::memcpy(&two_n2, &bits2, sizeof(vd));
    const vd e = z != z ? z : p * two_n1 * two_n2;
    const vd s = (u < zero ? e : zero + 1.0) / (1.0 + e);  // e / (1 + e) or 1 / (1 + e)
    const vh result = __builtin_convertvector(xd * s, vh);
    std::memcpy(out + h * half, &result, sizeof(result));
  }
  simd::packet<float, B> r;
  std::memcpy(&r.part_at(0), out, sizeof(out));
  return r;
}
#endif

}  // namespace detail

// ------------------------------------------------------------------------------- public forms

EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD V exp(V x) {
  if constexpr (detail::is_packet_v<V>) return detail::exp_poly(x);
  else if constexpr (std::is_same_v<V, float>) { EINLM_IF_DEVICE((return ::expf(x);), (return detail::exp_poly(x);)) }
  else { EINLM_IF_DEVICE((return ::exp(x);), (return detail::exp_poly(x);)) }
}

EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD V log(V x) {
  if constexpr (detail::is_packet_v<V>) return detail::log_poly(x);
  else if constexpr (std::is_same_v<V, float>) { EINLM_IF_DEVICE((return ::logf(x);), (return detail::log_poly(x);)) }
  else { EINLM_IF_DEVICE((return ::log(x);), (return detail::log_poly(x);)) }
}

EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD V tanh(V x) {
  if constexpr (detail::is_packet_v<V>) return detail::tanh_poly(x);
  else if constexpr (std::is_same_v<V, float>) { EINLM_IF_DEVICE((return ::tanhf(x);), (return detail::tanh_poly(x);)) }
  else { EINLM_IF_DEVICE((return ::tanh(x);), (return detail::tanh_poly(x);)) }
}

EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD V sigmoid(V x) {
  if constexpr (detail::is_packet_v<V>) {
    return detail::sigmoid_poly(x);
  } else {
    // Device: the same stable form with CUDA's exp.
    EINLM_IF_DEVICE((
      const V ax = x < V(0) ? -x : x;
      const V e = exp(-ax);
      return x < V(0) ? e / (V(1) + e) : V(1) / (V(1) + e);
    ), (return detail::sigmoid_poly(x);))
  }
}

EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD V silu(V x) {
  return x * sigmoid(x);
}

EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD V sqrt(V x) {
  if constexpr (detail::is_packet_v<V>) return detail::sqrt_lanes(x);
  else if constexpr (std::is_same_v<V, float>) { EINLM_IF_DEVICE((return ::sqrtf(x);), (return detail::sqrt_lanes(x);)) }
  else { EINLM_IF_DEVICE((return ::sqrt(x);), (return detail::sqrt_lanes(x);)) }
}

EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD V rsqrt(V x) {
  using T = simd::scalar_t<V>;
  return V(T(1)) / sqrt(x);
}

/// GELU, erf form: x·Φ(x) = ½·x·erfc(−x/√2).
EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD V gelu(V x) {
  if constexpr (detail::is_packet_v<V> && std::is_same_v<simd::scalar_t<V>, float>) return detail::gelu_erf_float(x);
  else if constexpr (detail::is_packet_v<V>) return simd::map_lanes(x, [](simd::scalar_t<V> v) { return detail::gelu_erf_double(v); });
  else if constexpr (std::is_same_v<V, float>) { EINLM_IF_DEVICE((return detail::gelu_erf_double(x);), (return detail::gelu_erf_float(x);)) }
  else return detail::gelu_erf_double(x);
}

/// GELU, tanh approximation: ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD V gelu_tanh(V x) {
#if EINLM_HAS_PACKETS
  if constexpr (detail::is_packet_v<V> && std::is_same_v<simd::scalar_t<V>, float>) return detail::gelu_tanh_float_lanes(x);
  else if constexpr (detail::is_packet_v<V>) return simd::map_lanes(x, [](simd::scalar_t<V> v) { return detail::gelu_tanh_double(v); });
  else return detail::gelu_tanh_double(x);
#else
  return detail::gelu_tanh_double(x);
#endif
}

/// x^p for a scalar exponent p. Integer exponents of magnitude ≤ 64 use repeated squaring (exact
/// signs for negative x); others compute exp(p·ln x) in double (x < 0 then gives NaN, as pow does).
template <class T>
EINLM_HD T pow_scalar(T x, double p) {
  const double xd = static_cast<double>(x);
  const double ap = p < 0 ? -p : p;
  if (ap <= 64.0 && static_cast<double>(static_cast<int>(ap)) == ap) {
    int n = static_cast<int>(ap);
    double r = 1.0, b = xd;
    while (n) {
      if (n & 1) r *= b;
      b *= b;
      n >>= 1;
    }
    return static_cast<T>(p < 0 ? 1.0 / r : r);
  }
  double r;
  EINLM_IF_DEVICE((r = ::pow(xd, p);), (r = std::pow(xd, p);))
  return static_cast<T>(r);
}

EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD V pow(V x, double p) {
  if constexpr (detail::is_packet_v<V>) return simd::map_lanes(x, [p](simd::scalar_t<V> v) { return pow_scalar(v, p); });
  else return pow_scalar(x, p);
}

/// |x| (clears the sign bit of reals; integers by comparison).
EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD V abs(V x) {
  using T = simd::scalar_t<V>;
  if constexpr (std::is_floating_point_v<T>) {
    using I = detail::int_of<V>;
    const I mask = std::is_same_v<T, float> ? I(0x7fffffff) : I(static_cast<std::int64_t>(0x7fffffffffffffffll));
    return detail::from_bits<V>(detail::bits_of(x) & mask);
  } else {
    return detail::select(x < V(T(0)), -x, x);
  }
}

}  // namespace einlm::math
