// einlm/core/simd.hpp — CPU packets: eight lanes of one element type, for the CPU executor.
//
// A packet<T> wraps a GNU vector (8 × T) so that the same generic operator code that computes one
// float on the GPU computes eight on the CPU: +, −, ×, ÷, comparisons (giving packet<bool>, a lane
// mask), select(mask, a, b), conversions between lane types, and loads/stores that widen 16-bit
// storage types to float and round back (to nearest even) on the way out. The compiler maps the
// vectors onto SSE/AVX/AVX-512 registers, whichever the target has, without intrinsics.
//
// Host code only: packets never reach device code. Generic host+device functions that are
// instantiated with packets carry EINLM_EXEC_CHECK_DISABLE.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"

// Packets wider than the target's registers are passed in memory; GCC notes that this ABI differs
// from a build with AVX enabled. einlm's packet functions are inline and never cross an ABI boundary.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace einlm::simd {

/// Lanes per packet, for every element type (so packets of different types combine lane by lane).
inline constexpr int width = 8;

namespace detail {
// One explicit specialisation per lane type: nvcc's host-code rewriting drops vector_size
// attributes whose size depends on a template parameter.
template <class T>
struct vec_of;
template <> struct vec_of<float> { typedef float type __attribute__((vector_size(32))); };
template <> struct vec_of<double> { typedef double type __attribute__((vector_size(64))); };
template <> struct vec_of<std::int32_t> { typedef std::int32_t type __attribute__((vector_size(32))); };
template <> struct vec_of<std::uint32_t> { typedef std::uint32_t type __attribute__((vector_size(32))); };
template <> struct vec_of<std::int64_t> { typedef std::int64_t type __attribute__((vector_size(64))); };
template <> struct vec_of<std::uint64_t> { typedef std::uint64_t type __attribute__((vector_size(64))); };
template <> struct vec_of<std::uint16_t> { typedef std::uint16_t type __attribute__((vector_size(16))); };
template <> struct vec_of<std::int16_t> { typedef std::int16_t type __attribute__((vector_size(16))); };
template <> struct vec_of<std::uint8_t> { typedef std::uint8_t type __attribute__((vector_size(8))); };
template <> struct vec_of<std::int8_t> { typedef std::int8_t type __attribute__((vector_size(8))); };
// A lane mask is stored as 32-bit lanes holding 0 or −1.
template <> struct vec_of<bool> { typedef std::int32_t type __attribute__((vector_size(32))); };
}  // namespace detail

template <class T>
struct packet;

template <class To, class From>
inline To vector_bitcast(From from);

/// Lanes of a where the integer mask m is all ones, of b where it is zero (same lane size).
template <class M, class V>
inline V blend(M m, V a, V b) {
  return vector_bitcast<V>((m & vector_bitcast<M>(a)) | (~m & vector_bitcast<M>(b)));
}

/// Reinterprets the bits of one vector as another of the same size (a no-op when the types agree).
template <class To, class From>
inline To vector_bitcast(From from) {
  static_assert(sizeof(To) == sizeof(From));
  if constexpr (std::is_same_v<To, From>) {
    return from;
  } else {
    To to;
    std::memcpy(&to, &from, sizeof(To));
    return to;
  }
}

template <class T>
inline constexpr bool is_packet_v = false;
template <class T>
inline constexpr bool is_packet_v<packet<T>> = true;

/// The lane type of a packet, or T itself for a scalar.
template <class T>
struct scalar_of {
  using type = T;
};
template <class T>
struct scalar_of<packet<T>> {
  using type = T;
};
template <class T>
using scalar_t = typename scalar_of<T>::type;

/// Same-width signed integer lanes of a real type (float → int32, double → int64).
template <class T>
using int_lane_t = std::conditional_t<sizeof(T) == 8, std::int64_t, std::int32_t>;

/// Eight lanes of T.
template <class T>
struct packet {
  using value_type = T;
  using vec = typename detail::vec_of<T>::type;
  vec v;

  packet() = default;
  /// Every lane set to x.
  packet(T x) : v(broadcast(x)) {}
  explicit packet(vec x) : v(x) {}

  T operator[](int i) const {
    if constexpr (std::is_same_v<T, bool>) return v[i] != 0;
    else return v[i];
  }

  friend packet operator+(packet a, packet b) { return packet(a.v + b.v); }
  friend packet operator-(packet a, packet b) { return packet(a.v - b.v); }
  friend packet operator*(packet a, packet b) { return packet(a.v * b.v); }
  friend packet operator/(packet a, packet b) { return packet(a.v / b.v); }
  friend packet operator-(packet a) { return packet(-a.v); }
  friend packet operator&(packet a, packet b) { return packet(a.v & b.v); }
  friend packet operator|(packet a, packet b) { return packet(a.v | b.v); }
  friend packet operator^(packet a, packet b) { return packet(a.v ^ b.v); }
  friend packet operator!(packet a) requires std::is_same_v<T, bool> { return packet(~a.v); }
  friend packet operator<<(packet a, int s) { return packet(a.v << s); }
  friend packet operator>>(packet a, int s) { return packet(a.v >> s); }
  friend packet<bool> operator<(packet a, packet b) { return mask(a.v < b.v); }
  friend packet<bool> operator>(packet a, packet b) { return mask(a.v > b.v); }
  friend packet<bool> operator<=(packet a, packet b) { return mask(a.v <= b.v); }
  friend packet<bool> operator>=(packet a, packet b) { return mask(a.v >= b.v); }
  friend packet<bool> operator==(packet a, packet b) { return mask(a.v == b.v); }
  friend packet<bool> operator!=(packet a, packet b) { return mask(a.v != b.v); }

 private:
  static vec broadcast(T x) {
    if constexpr (std::is_same_v<T, bool>) return vec{} + (x ? -1 : 0);
    else return vec{} + x;
  }
  template <class M>
  static packet<bool> mask(M m) {
    using mask_vec = typename packet<bool>::vec;
    if constexpr (std::is_same_v<M, mask_vec>) return packet<bool>(m);
    else return packet<bool>(__builtin_convertvector(m, mask_vec));
  }
};

/// Lane-wise a where mask is set, b elsewhere (bitwise blend, which every compiler front end
/// accepts for vectors of any lane type).
template <class T>
inline packet<T> select(packet<bool> m, packet<T> a, packet<T> b) {
  using int_vec = typename detail::vec_of<int_lane_t<T>>::type;
  int_vec mask;
  if constexpr (sizeof(T) == 4) mask = vector_bitcast<int_vec>(m.v);
  else mask = __builtin_convertvector(m.v, int_vec);
  return packet<T>(blend(mask, a.v, b.v));
}

/// Lane-wise conversion (C++ conversion rules; bool lanes become 0/1 and nonzero becomes true).
template <class To, class From>
inline packet<To> convert_packet(packet<From> x) {
  using to_vec = typename packet<To>::vec;
  if constexpr (std::is_same_v<To, From>) {
    return x;
  } else if constexpr (std::is_same_v<From, bool>) {
    return packet<To>(__builtin_convertvector(-x.v, to_vec));
  } else if constexpr (std::is_same_v<To, bool>) {
    return x != packet<From>(From{});
  } else {
    return packet<To>(__builtin_convertvector(x.v, to_vec));
  }
}

/// Reinterprets the lanes' bits (same lane size).
template <class To, class From>
inline packet<To> bitcast_packet(packet<From> x) {
  static_assert(sizeof(To) == sizeof(From));
  return packet<To>(vector_bitcast<typename packet<To>::vec>(x.v));
}

/// A packet whose lane i is f(i).
template <class T, class F>
inline packet<T> generate(F f) {
  packet<T> r;
  for (int i = 0; i < width; ++i) r.v[i] = f(i);
  return r;
}

/// Lane-wise function application (for functions without a vector form, such as erf).
template <class T, class F>
inline packet<T> map_lanes(packet<T> x, F f) {
  packet<T> r;
  for (int i = 0; i < width; ++i) r.v[i] = f(x.v[i]);
  return r;
}

// ------------------------------------------------------------------------------ loads and stores

/// Loads 8 consecutive elements of storage type S and widens them to packet<C> (C = compute_t<S>).
template <class C, class S>
inline packet<C> load(const S* p) {
  if constexpr (std::is_same_v<S, bf16>) {
    static_assert(std::is_same_v<C, float>);
    typename detail::vec_of<std::uint16_t>::type h;
    std::memcpy(&h, static_cast<const void*>(p), sizeof(h));
    const auto u = __builtin_convertvector(h, typename detail::vec_of<std::uint32_t>::type) << 16;
    return packet<float>(vector_bitcast<typename packet<float>::vec>(u));
  } else if constexpr (std::is_same_v<S, fp16>) {
    static_assert(std::is_same_v<C, float>);
    // IEEE half → float without branches: move exponent and mantissa into place, rebias, then fix
    // infinities/NaNs (exponent 31) and renormalise subnormals (exponent 0) by a float subtraction.
    typename detail::vec_of<std::uint16_t>::type h16;
    std::memcpy(&h16, static_cast<const void*>(p), sizeof(h16));
    using u32v = typename detail::vec_of<std::uint32_t>::type;
    using i32v = typename detail::vec_of<std::int32_t>::type;
    using f32v = typename packet<float>::vec;
    const u32v h = __builtin_convertvector(h16, u32v);
    const u32v shifted = (h & 0x7fffu) << 13;
    const u32v exp = shifted & (0x7c00u << 13);
    u32v o = shifted + ((127u - 15u) << 23);
    const i32v is_special = vector_bitcast<i32v>(exp == (0x7c00u << 13));
    const i32v is_zero_exp = vector_bitcast<i32v>(exp == 0u);
    o = o + (vector_bitcast<u32v>(is_special) & ((128u - 16u) << 23));
    const u32v o_sub = o + (1u << 23);
    const f32v magic = f32v{} + 6.103515625e-05f;  // 2^-14
    const f32v renorm = vector_bitcast<f32v>(o_sub) - magic;
    f32v out = blend(is_zero_exp, renorm, vector_bitcast<f32v>(o));
    out = vector_bitcast<f32v>(vector_bitcast<u32v>(out) | ((h & 0x8000u) << 16));
    return packet<float>(out);
  } else if constexpr (std::is_same_v<S, bool>) {
    typename detail::vec_of<std::uint8_t>::type b;
    std::memcpy(&b, p, sizeof(b));
    const auto wide = __builtin_convertvector(b, typename detail::vec_of<std::int32_t>::type);
    return convert_packet<C>(packet<bool>(wide != 0));
  } else {
    typename detail::vec_of<S>::type raw;
    std::memcpy(&raw, p, sizeof(raw));
    if constexpr (std::is_same_v<C, S>) return packet<C>(raw);
    else return packet<C>(__builtin_convertvector(raw, typename packet<C>::vec));
  }
}

/// Stores the 8 lanes of x into consecutive elements of storage type S, converting (16-bit floats
/// round to nearest even, as convert<S> does).
template <class S, class C>
inline void store(S* p, packet<C> x) {
  if constexpr (std::is_same_v<S, bf16>) {
    const packet<float> f = convert_packet<float>(x);
    using u32v = typename detail::vec_of<std::uint32_t>::type;
    using i32v = typename detail::vec_of<std::int32_t>::type;
    const u32v u = vector_bitcast<u32v>(f.v);
    const u32v rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const u32v quiet_nan = (u >> 16) | 0x40u;
    const i32v is_nan = vector_bitcast<i32v>((u & 0x7fffffffu) > 0x7f800000u);
    const u32v bits = blend(vector_bitcast<u32v>(is_nan), quiet_nan, rounded);
    const auto h = __builtin_convertvector(bits, typename detail::vec_of<std::uint16_t>::type);
    std::memcpy(static_cast<void*>(p), &h, sizeof(h));
  } else if constexpr (std::is_same_v<S, fp16>) {
    const packet<float> f = convert_packet<float>(x);
    for (int i = 0; i < width; ++i) p[i] = fp16_from_bits(einlm::detail::float_to_fp16_bits(f.v[i]));
  } else if constexpr (std::is_same_v<S, bool>) {
    const packet<bool> m = convert_packet<bool>(x);
    const auto b = __builtin_convertvector(-m.v, typename detail::vec_of<std::uint8_t>::type);
    std::memcpy(p, &b, sizeof(b));
  } else {
    const packet<S> y = convert_packet<S>(x);
    std::memcpy(p, &y.v, sizeof(y.v));
  }
}

}  // namespace einlm::simd

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
