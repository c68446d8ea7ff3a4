// einlm/core/random.hpp — counter-based random numbers (Philox-4x32-10) that are identical on the
// CPU and the GPU.
//
// Philox-4x32-10 (Salmon et al., SC'11, "Parallel random numbers: as easy as 1, 2, 3") maps a
// 128-bit counter and a 64-bit key to 128 random bits. einlm draws element i of a stream from
//     counter = (i / 4 as 64 bits, stream as 64 bits),  key = seed,  lane i % 4,
// so any element can be computed alone, in any order, on any executor. Every function here is
// host+device and uses only integer arithmetic and correctly rounded IEEE operations in a fixed
// order (products are kept from fusing into FMAs), so the CPU and the GPU produce bit-identical
// floats for the same (seed, stream, index), normals included.
//
//   random_stream{seed, stream}          a named stream of numbers
//   random_bits(g, i)                    32 random bits
//   uniform_at<T>(g, i, lo, hi)          uniform in [lo, hi) (hi may be produced by rounding)
//   normal_at<T>(g, i, mean, std)        normal (Box–Muller on lane pairs)
//   truncated_normal_at<T>(g, i, mean, std, a, b)   normal restricted to [a, b] by redrawing
#pragma once

#include <cstdint>

#include <cuda/std/array>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"

namespace einlm {

/// Philox-4x32-10 block function: 128 random bits from a 128-bit counter and a 64-bit key.
EINLM_HD cuda::std::array<std::uint32_t, 4> philox4x32_10(cuda::std::array<std::uint32_t, 4> ctr,
                                                          cuda::std::array<std::uint32_t, 2> key) {
  constexpr std::uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;
  constexpr std::uint32_t w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;
  EINLM_UNROLL
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key[0] += w0;
      key[1] += w1;
    }
    const std::uint64_t p0 = static_cast<std::uint64_t>(m0) * ctr[0];
    const std::uint64_t p1 = static_cast<std::uint64_t>(m1) * ctr[2];
    const std::uint32_t hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const std::uint32_t hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    ctr = {hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0};
  }
  return ctr;
}

/// A stream of random numbers: a seed and a stream number (e.g. one per parameter tensor).
struct random_stream {
  std::uint64_t seed = 0;
  std::uint64_t stream = 0;
};

namespace detail {

EINLM_HD cuda::std::array<std::uint32_t, 4> random_block(const random_stream& g, std::uint64_t block) {
  return philox4x32_10({static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                        static_cast<std::uint32_t>(g.stream), static_cast<std::uint32_t>(g.stream >> 32)},
                       {static_cast<std::uint32_t>(g.seed), static_cast<std::uint32_t>(g.seed >> 32)});
}

// Correctly rounded double operations that the compiler may not fuse or reorder, so that host and
// device give the same bits. Sums, quotients and square roots are never contracted; a product is
// (into an FMA) unless it is made opaque.
EINLM_HD double mul_rn(double a, double b) {
  EINLM_IF_DEVICE((return __dmul_rn(a, b);), (
    double p = a * b;
#if defined(__x86_64__) || defined(__i386__)
    __asm__("" : "+x"(p));
#elif defined(__aarch64__)
    __asm__("" : "+w"(p));
#else
    volatile double v = p; p = v;
#endif
    return p;
  ))
}
EINLM_HD double sqrt_rn(double x) {
  EINLM_IF_DEVICE((return __dsqrt_rn(x);), (return __builtin_sqrt(x);))
}
EINLM_HD double div_rn(double a, double b) {
  EINLM_IF_DEVICE((return __ddiv_rn(a, b);), (return a / b;))
}

/// Natural logarithm of x in (0, 1] (double, ~1 ulp), from +, ×, ÷ only.
EINLM_HD double exact_log(double x) {
  // x = m · 2^e with m in [√½, √2); ln x = e·ln 2 + 2·atanh(s), s = (m − 1)/(m + 1).
  std::uint64_t bits = bit_cast<std::uint64_t>(x);
  int e = static_cast<int>((bits >> 52) & 0x7ff);
  if (e == 0) {  // subnormal: scale by 2^64 first
    bits = bit_cast<std::uint64_t>(mul_rn(x, 18446744073709551616.0));
    e = static_cast<int>((bits >> 52) & 0x7ff) - 64;
  }
  e -= 1022;  // now m in [0.5, 1)
  double m = bit_cast<double>((bits & 0x000fffffffffffffull) | 0x3fe0000000000000ull);
  if (m < 0.70710678118654752440) {
    m = mul_rn(m, 2.0);
    e -= 1;
  }
  const double s = div_rn(m - 1.0, m + 1.0);
  const double z = mul_rn(s, s);
  // 2·atanh(s) = 2s + 2s·z·(1/3 + z/5 + z²/7 + …); |z| ≤ 0.0295, so 10 terms reach 1e-17.
  double p = 1.0 / 21.0;
  p = mul_rn(p, z) + 1.0 / 19.0;
  p = mul_rn(p, z) + 1.0 / 17.0;
  p = mul_rn(p, z) + 1.0 / 15.0;
  p = mul_rn(p, z) + 1.0 / 13.0;
  p = mul_rn(p, z) + 1.0 / 11.0;
  p = mul_rn(p, z) + 1.0 / 9.0;
  p = mul_rn(p, z) + 1.0 / 7.0;
  p = mul_rn(p, z) + 1.0 / 5.0;
  p = mul_rn(p, z) + 1.0 / 3.0;
  const double two_s = mul_rn(2.0, s);
  const double log_m = two_s + mul_rn(two_s, mul_rn(z, p));
  constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  const double de = static_cast<double>(e);
  return mul_rn(de, ln2_hi) + (mul_rn(de, ln2_lo) + log_m);
}

/// cos and sin of 2π·u for u in [0, 1), from +, × only.
EINLM_HD void exact_sincos_2pi(double u, double& c, double& s) {
  // Quarter turns: 4u = q + f exactly; reduce f to [−½, ½] so the angle is within ±π/4.
  const double t = mul_rn(u, 4.0);
  int q = static_cast<int>(t);
  double f = t - static_cast<double>(q);
  if (f > 0.5) {
    f -= 1.0;
    ++q;
  }
  const double a = mul_rn(f, 1.57079632679489661923);
  const double a2 = mul_rn(a, a);
  // Taylor series to a^17 / a^16: |a| ≤ π/4 gives an error below 1e-17.
  double ps = -1.0 / 355687428096000.0;                   // −1/17!, then Horner in a²
  ps = mul_rn(ps, a2) + 1.0 / 1307674368000.0;            // 1/15!
  ps = mul_rn(ps, a2) - 1.0 / 6227020800.0;               // 1/13!
  ps = mul_rn(ps, a2) + 1.0 / 39916800.0;                 // 1/11!
  ps = mul_rn(ps, a2) - 1.0 / 362880.0;                   // 1/9!
  ps = mul_rn(ps, a2) + 1.0 / 5040.0;                     // 1/7!
  ps = mul_rn(ps, a2) - 1.0 / 120.0;                      // 1/5!
  ps = mul_rn(ps, a2) + 1.0 / 6.0;                        // 1/3!
  const double sin_a = a - mul_rn(mul_rn(a, a2), ps);
  double pc = 1.0 / 20922789888000.0;                     // 1/16!
  pc = mul_rn(pc, a2) - 1.0 / 87178291200.0;              // 1/14!
  pc = mul_rn(pc, a2) + 1.0 / 479001600.0;                // 1/12!
  pc = mul_rn(pc, a2) - 1.0 / 3628800.0;                  // 1/10!
  pc = mul_rn(pc, a2) + 1.0 / 40320.0;                    // 1/8!
  pc = mul_rn(pc, a2) - 1.0 / 720.0;                      // 1/6!
  pc = mul_rn(pc, a2) + 1.0 / 24.0;                       // 1/4!
  pc = mul_rn(pc, a2) - 1.0 / 2.0;                        // 1/2!
  const double cos_a = 1.0 + mul_rn(a2, pc);
  switch (q & 3) {
    case 0: c = cos_a; s = sin_a; break;
    case 1: c = -sin_a; s = cos_a; break;
    case 2: c = -cos_a; s = -sin_a; break;
    default: c = sin_a; s = -cos_a; break;
  }
}

EINLM_HD float double_to_float(double x) {
  EINLM_IF_DEVICE((return __double2float_rn(x);), (return static_cast<float>(x);))
}

/// Standard normal of element i: Box–Muller on lanes (0, 1) and (2, 3) of block i / 4.
EINLM_HD double standard_normal(const random_stream& g, std::uint64_t i) {
  const auto b = random_block(g, i >> 2);
  const unsigned pair = static_cast<unsigned>(i >> 1) & 1u;
  constexpr double two_m32 = 2.3283064365386962890625e-10;                       // 2^-32
  const double u1 = mul_rn(static_cast<double>(b[2 * pair]) + 1.0, two_m32);       // (0, 1]
  const double u2 = mul_rn(static_cast<double>(b[2 * pair + 1]), two_m32);         // [0, 1)
  const double r = sqrt_rn(mul_rn(-2.0, exact_log(u1)));
  double c, s;
  exact_sincos_2pi(u2, c, s);
  return mul_rn(r, (i & 1) ? s : c);
}

}  // namespace detail

/// 32 random bits for element i of stream g.
EINLM_HD std::uint32_t random_bits(const random_stream& g, std::uint64_t i) {
  return detail::random_block(g, i >> 2)[i & 3];
}

/// Uniform in [lo, hi) for element i (24 random bits for float and 16-bit types, 53 for double;
/// rounding can produce hi itself). Computed in double, rounded once to T.
template <class T>
EINLM_HD T uniform_at(const random_stream& g, std::uint64_t i, double lo = 0.0, double hi = 1.0) {
  double u;
  if constexpr (std::is_same_v<T, double>) {
    const auto b = detail::random_block(g, i >> 1);
    const unsigned pair = static_cast<unsigned>(i) & 1u;
    const std::uint64_t bits = (static_cast<std::uint64_t>(b[2 * pair]) << 21) ^ (b[2 * pair + 1] >> 11);
    u = detail::mul_rn(static_cast<double>(bits & ((1ull << 53) - 1)), 1.1102230246251565404e-16);  // 2^-53
  } else {
    u = detail::mul_rn(static_cast<double>(random_bits(g, i) >> 8), 5.9604644775390625e-08);  // 2^-24
  }
  const double x = lo + detail::mul_rn(hi - lo, u);
  if constexpr (std::is_same_v<T, double>) return x;
  else return convert<T>(detail::double_to_float(x));
}

/// Normal with the given mean and standard deviation for element i.
template <class T>
EINLM_HD T normal_at(const random_stream& g, std::uint64_t i, double mean = 0.0, double std = 1.0) {
  const double x = mean + detail::mul_rn(std, detail::standard_normal(g, i));
  if constexpr (std::is_same_v<T, double>) return x;
  else return convert<T>(detail::double_to_float(x));
}

/// Normal restricted to [a, b] (absolute bounds): redraws from streams stream + k·2^40 until the
/// value falls inside (at most 64 draws, then clamps). The CS336 initialisation uses
/// a = −3σ, b = 3σ, where a draw is accepted with probability 0.997.
template <class T>
EINLM_HD T truncated_normal_at(const random_stream& g, std::uint64_t i, double mean, double std, double a,
                               double b) {
  double x = mean;
  for (std::uint64_t k = 0; k < 64; ++k) {
    const random_stream gk{g.seed, g.stream + (k << 40)};
    x = mean + detail::mul_rn(std, detail::standard_normal(gk, i));
    if (x >= a && x <= b) break;
  }
  x = x < a ? a : (x > b ? b : x);
  if constexpr (std::is_same_v<T, double>) return x;
  else return convert<T>(detail::double_to_float(x));
}

}  // namespace einlm
