// einlm/core/dtype.hpp — element types, their traits, and conversions between them.
//
// Floating types: float, double, bf16 (__nv_bfloat16) and fp16 (__half) — the CUDA types, which
// compile in host code with g++ as well. Integer types and bool are supported for storage (token ids,
// masks) and simple arithmetic.
//
// dtype_traits<T>:
//   name            "float32", "bfloat16", … (NumPy/PyTorch spelling)
//   size            bytes per element
//   accumulator     type that sums of T accumulate in (float for 16-bit floats, int64 for integers)
//   compute         type that expressions compute T in (float for 16-bit floats, T otherwise):
//                   16-bit values are widened on load and rounded once, on store
//   is_floating     true for the four floating types
//   npy_descr       the NumPy dtype string of the little-endian layout ("<f4", "<f2", …); bf16 has
//                   none in NumPy and is stored as "<V2"-free raw uint16 ("<u2") only on request
//
// convert<To>(from): the value conversion used everywhere in einlm. Narrowing floating conversions
// round to nearest, ties to even (on the host by bit arithmetic, identical to the device
// intrinsics); double → bf16/fp16 rounds once (no double rounding through float). NaN stays NaN,
// overflow gives ±inf.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include <cuda/std/bit>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "einlm/core/config.hpp"

namespace einlm {

using bf16 = __nv_bfloat16;
using fp16 = __half;

template <class T>
inline constexpr bool is_half_v = std::is_same_v<T, bf16> || std::is_same_v<T, fp16>;

template <class T>
inline constexpr bool is_floating_v = std::is_floating_point_v<T> || is_half_v<T>;

/// Element types einlm stores in tensors.
template <class T>
inline constexpr bool is_dtype_v =
    is_floating_v<T> || std::is_same_v<T, bool> || std::is_same_v<T, std::int8_t> ||
    std::is_same_v<T, std::uint8_t> || std::is_same_v<T, std::int16_t> ||
    std::is_same_v<T, std::uint16_t> || std::is_same_v<T, std::int32_t> ||
    std::is_same_v<T, std::uint32_t> || std::is_same_v<T, std::int64_t> ||
    std::is_same_v<T, std::uint64_t>;

template <class T>
concept dtype = is_dtype_v<std::remove_cv_t<T>>;

namespace detail {
template <class T>
struct dtype_info;
#define EINLM_DTYPE_INFO(T, NAME, ACC, COMPUTE, DESCR)     \
  template <>                                              \
  struct dtype_info<T> {                                   \
    static constexpr const char* name = NAME;              \
    using accumulator = ACC;                               \
    using compute = COMPUTE;                               \
    static constexpr const char* npy_descr = DESCR;        \
  };
EINLM_DTYPE_INFO(float, "float32", float, float, "<f4")
EINLM_DTYPE_INFO(double, "float64", double, double, "<f8")
EINLM_DTYPE_INFO(bf16, "bfloat16", float, float, "")
EINLM_DTYPE_INFO(fp16, "float16", float, float, "<f2")
EINLM_DTYPE_INFO(bool, "bool", std::int64_t, bool, "|b1")
EINLM_DTYPE_INFO(std::int8_t, "int8", std::int64_t, std::int32_t, "|i1")
EINLM_DTYPE_INFO(std::uint8_t, "uint8", std::int64_t, std::int32_t, "|u1")
EINLM_DTYPE_INFO(std::int16_t, "int16", std::int64_t, std::int32_t, "<i2")
EINLM_DTYPE_INFO(std::uint16_t, "uint16", std::int64_t, std::int32_t, "<u2")
EINLM_DTYPE_INFO(std::int32_t, "int32", std::int64_t, std::int32_t, "<i4")
EINLM_DTYPE_INFO(std::uint32_t, "uint32", std::int64_t, std::uint32_t, "<u4")
EINLM_DTYPE_INFO(std::int64_t, "int64", std::int64_t, std::int64_t, "<i8")
EINLM_DTYPE_INFO(std::uint64_t, "uint64", std::uint64_t, std::uint64_t, "<u8")
#undef EINLM_DTYPE_INFO
}  // namespace detail

/// Static facts about an element type (see the file comment).
template <dtype T>
struct dtype_traits {
  using type = T;
  using accumulator = typename detail::dtype_info<T>::accumulator;
  using compute = typename detail::dtype_info<T>::compute;
  static constexpr const char* name = detail::dtype_info<T>::name;
  static constexpr std::size_t size = sizeof(T);
  static constexpr bool is_floating = is_floating_v<T>;
  static constexpr const char* npy_descr = detail::dtype_info<T>::npy_descr;
};

template <class T>
using compute_t = typename dtype_traits<std::remove_cv_t<T>>::compute;
template <class T>
using accumulator_t = typename dtype_traits<std::remove_cv_t<T>>::accumulator;

// ------------------------------------------------------------------------------------ bit access

namespace detail {

template <class To, class From>
EINLM_HD To bit_cast(const From& from) {
  static_assert(sizeof(To) == sizeof(From));
  To to;
  std::memcpy(static_cast<void*>(&to), static_cast<const void*>(&from), sizeof(To));
  return to;
}

EINLM_HD std::uint16_t bits_of(bf16 x) { return bit_cast<std::uint16_t>(x); }
EINLM_HD std::uint16_t bits_of(fp16 x) { return bit_cast<std::uint16_t>(x); }

/// float → bf16 bits, round to nearest even; NaN → quiet NaN with the sign kept.
EINLM_HD std::uint16_t float_to_bf16_bits(float f) {
  const std::uint32_t u = bit_cast<std::uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);
  const std::uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(rounded >> 16);
}

EINLM_HD float bf16_bits_to_float(std::uint16_t b) {
  return bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

/// float → IEEE binary16 bits, round to nearest even, with subnormals, overflow to inf and NaN.
EINLM_HD std::uint16_t float_to_fp16_bits(float f) {
  const std::uint32_t u = bit_cast<std::uint32_t>(f);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  const std::uint32_t mag = u & 0x7fffffffu;
  if (mag > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u | ((mag >> 13) & 0x3ffu));
  if (mag >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds to ≥ 65520
  if (mag < 0x38800000u) {
    // Result is subnormal (or zero) in fp16: scale so that the fp16 subnormal unit (2^-24) becomes
    // an integer, then round to nearest even on the integer.
    const std::uint32_t exp = mag >> 23;
    if (exp < 102) return static_cast<std::uint16_t>(sign);  // below half the smallest subnormal
    const std::uint32_t mant = (mag & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126 - exp;  // 14..24 (value = mant * 2^(exp-150), unit 2^-24)
    const std::uint32_t q = mant >> shift;
    const std::uint32_t rem = mant & ((1u << shift) - 1u);
    const std::uint32_t half = 1u << (shift - 1);
    const std::uint32_t r = q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u);
    return static_cast<std::uint16_t>(sign | r);
  }
  // Normal: rebias the exponent (127 → 15) and round the 13 dropped mantissa bits.
  const std::uint32_t rebased = mag - (112u << 23);
  const std::uint32_t r = rebased + 0xfffu + ((rebased >> 13) & 1u);
  return static_cast<std::uint16_t>(sign | (r >> 13));
}

EINLM_HD float fp16_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  const std::uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  if (exp != 0) return bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
  // Subnormal or zero: mant * 2^-24 is exact in float.
  const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
  return sign ? -v : v;
}

/// double → float rounded to odd: truncation toward zero with the last bit set when inexact. A
/// value rounded to odd at ≥ 2 more bits than the final format then rounds correctly (to nearest
/// even) to bf16/fp16: no double rounding.
EINLM_HD float double_to_float_round_odd(double d) {
  const float f = static_cast<float>(d);
  const double back = static_cast<double>(f);
  if (back == d || d != d) return f;
  std::uint32_t u = bit_cast<std::uint32_t>(f);
  if ((back > d) == (d > 0)) --u;  // f is farther from zero than d: step back toward zero
  return bit_cast<float>(u | 1u);
}

}  // namespace detail

/// bf16/fp16 from raw bits, and raw bits of a bf16/fp16.
EINLM_HD bf16 bf16_from_bits(std::uint16_t b) { return detail::bit_cast<bf16>(b); }
EINLM_HD fp16 fp16_from_bits(std::uint16_t b) { return detail::bit_cast<fp16>(b); }

// -------------------------------------------------------------------------------- convert<To>

namespace detail {

EINLM_HD float to_float(bf16 x) {
  EINLM_IF_DEVICE((return __bfloat162float(x);), (return bf16_bits_to_float(bits_of(x));))
}
EINLM_HD float to_float(fp16 x) {
  EINLM_IF_DEVICE((return __half2float(x);), (return fp16_bits_to_float(bits_of(x));))
}
EINLM_HD bf16 to_bf16(float x) {
  EINLM_IF_DEVICE((return __float2bfloat16_rn(x);), (return bf16_from_bits(float_to_bf16_bits(x));))
}
EINLM_HD fp16 to_fp16(float x) {
  EINLM_IF_DEVICE((return __float2half_rn(x);), (return fp16_from_bits(float_to_fp16_bits(x));))
}

}  // namespace detail

/// Converts a value between element types (see the file comment for the rounding rules).
template <class To, class From>
EINLM_HD To convert(From x) {
  using F = std::remove_cv_t<From>;
  if constexpr (std::is_same_v<To, F>) {
    return x;
  } else if constexpr (is_half_v<F>) {
    return convert<To>(detail::to_float(x));
  } else if constexpr (std::is_same_v<To, bf16>) {
    if constexpr (std::is_same_v<F, double>)
      return detail::to_bf16(detail::double_to_float_round_odd(x));
    else if constexpr (std::is_same_v<F, bool>)
      return detail::to_bf16(x ? 1.0f : 0.0f);
    else if constexpr (sizeof(F) >= 4 && std::is_integral_v<F>)
      return convert<bf16>(static_cast<double>(x));
    else
      return detail::to_bf16(static_cast<float>(x));
  } else if constexpr (std::is_same_v<To, fp16>) {
    if constexpr (std::is_same_v<F, double>)
      return detail::to_fp16(detail::double_to_float_round_odd(x));
    else if constexpr (std::is_same_v<F, bool>)
      return detail::to_fp16(x ? 1.0f : 0.0f);
    else if constexpr (sizeof(F) >= 4 && std::is_integral_v<F>)
      return convert<fp16>(static_cast<double>(x));
    else
      return detail::to_fp16(static_cast<float>(x));
  } else if constexpr (std::is_same_v<To, bool>) {
    return x != F{};
  } else {
    return static_cast<To>(x);
  }
}

}  // namespace einlm
