// einlm/core/simd.hpp — CPU packets: eight lanes of one element type, for the CPU executor.
//
// A packet<T> holds `width` lanes of T (one register of floats) so that the same generic operator code that computes one float on
// the GPU computes eight on the CPU: +, −, ×, ÷, comparisons (giving packet<bool>, a lane mask),
// select(mask, a, b), conversions between lane types, and loads/stores that widen 16-bit storage
// types to float and round back (to nearest even) on the way out.
//
// Storage is an array of GNU vectors of the target's native register width (16 bytes for SSE2 or
// NEON, 32 for AVX, 64 for AVX-512): a float packet is one register, a double packet two.
// Operations loop over those parts, so each compiles to single native instructions (a vector wider
// than the registers would be split by the compiler, and comparisons of such vectors fall back to
// one scalar compare per lane; a float packet of two parts spills to the stack).
//
// Host code only: packets never reach device code (EINLM_HAS_PACKETS is 0 under nvcc). Generic
// host+device functions that host code instantiates with packets carry EINLM_EXEC_CHECK_DISABLE.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"

// Packets are passed by value between inline functions; without AVX, g++ notes once per file that
// 32-byte vectors are passed differently than with AVX. They never cross an ABI boundary.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace einlm::simd {

namespace detail {
#if defined(__AVX512F__)
inline constexpr int native_bytes = 64;
#elif defined(__AVX__)
inline constexpr int native_bytes = 32;
#else
inline constexpr int native_bytes = 16;
#endif
}  // namespace detail

/// Lanes per packet, for every element type (so packets of different types combine lane by lane):
/// one native register of floats (4 with SSE2/NEON, 8 with AVX, 16 with AVX-512).
inline constexpr int width = detail::native_bytes / 4;

namespace detail {

// One explicit specialisation per lane type and size: nvcc's host-code rewriting drops vector_size
// attributes whose size depends on a template parameter.
template <class T, int Bytes>
struct vec;
#define EINLM_SIMD_VEC(T)                                                         \
  template <> struct vec<T, 8> { typedef T type __attribute__((vector_size(8))); };   \
  template <> struct vec<T, 16> { typedef T type __attribute__((vector_size(16))); }; \
  template <> struct vec<T, 32> { typedef T type __attribute__((vector_size(32))); }; \
  template <> struct vec<T, 64> { typedef T type __attribute__((vector_size(64))); };
EINLM_SIMD_VEC(float)
EINLM_SIMD_VEC(double)
EINLM_SIMD_VEC(std::int8_t)
EINLM_SIMD_VEC(std::uint8_t)
EINLM_SIMD_VEC(std::int16_t)
EINLM_SIMD_VEC(std::uint16_t)
EINLM_SIMD_VEC(std::int32_t)
EINLM_SIMD_VEC(std::uint32_t)
EINLM_SIMD_VEC(std::int64_t)
EINLM_SIMD_VEC(std::uint64_t)
#undef EINLM_SIMD_VEC

/// The lane storage of T (a mask lane is a 32-bit integer holding 0 or −1).
template <class T>
using storage_t = std::conditional_t<std::is_same_v<T, bool>, std::int32_t, T>;

template <class T>
inline constexpr int total_bytes = width * static_cast<int>(sizeof(storage_t<T>));
template <class T>
inline constexpr int part_bytes = total_bytes<T> < native_bytes ? total_bytes<T> : native_bytes;
template <class T>
inline constexpr int parts = total_bytes<T> / part_bytes<T>;
template <class T>
inline constexpr int part_lanes = part_bytes<T> / static_cast<int>(sizeof(storage_t<T>));

template <class T>
using part_t = typename vec<storage_t<T>, part_bytes<T>>::type;

/// Same-width signed integer of a lane type.
template <class T>
using signed_lane_t = std::conditional_t<sizeof(storage_t<T>) == 8, std::int64_t,
                                         std::conditional_t<sizeof(storage_t<T>) == 4, std::int32_t,
                                                            std::conditional_t<sizeof(storage_t<T>) == 2, std::int16_t, std::int8_t>>>;

template <class To, class From>
inline To bits_as(From from) {
  static_assert(sizeof(To) == sizeof(From));
  To to;
  std::memcpy(&to, &from, sizeof(To));
  return to;
}

/// `width` lanes of 16 and of 32 bits as single vectors (a float packet is one part), for the
/// conversions between 16-bit storage and float lanes.
using half_lanes = vec<std::uint16_t, width * 2>::type;
using word_lanes = vec<std::uint32_t, width * 4>::type;
static_assert(parts<float> == 1 && parts<std::uint32_t> == 1);

}  // namespace detail

template <class T>
struct packet;

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

namespace detail {
template <class M, class T>
packet<bool> compare_result(const M (&parts)[detail::parts<T>]);
}

/// `width` lanes of T, as native-width vector parts.
template <class T>
struct packet {
  using value_type = T;
  using lane_storage = detail::storage_t<T>;
  using part = detail::part_t<T>;
  static constexpr int K = detail::parts<T>;
  static constexpr int L = detail::part_lanes<T>;
  part p[K];

  packet() = default;
  /// Every lane set to x.
  packet(T x) {
    const lane_storage s = std::is_same_v<T, bool> ? static_cast<lane_storage>(x ? -1 : 0) : static_cast<lane_storage>(x);
    for (int k = 0; k < K; ++k) p[k] = s - part{};  // s − 0 keeps −0 (0 + s would not)
  }

  T operator[](int i) const {
    const lane_storage s = p[i / L][i % L];
    if constexpr (std::is_same_v<T, bool>) return s != 0;
    else return s;
  }
  void set(int i, T x) {
    if constexpr (std::is_same_v<T, bool>) p[i / L][i % L] = x ? -1 : 0;
    else p[i / L][i % L] = x;
  }

#define EINLM_PACKET_BINARY(OP)                                  \
  friend packet operator OP(const packet& a, const packet& b) {  \
    packet r;                                                    \
    for (int k = 0; k < K; ++k) r.p[k] = a.p[k] OP b.p[k];       \
    return r;                                                    \
  }
  EINLM_PACKET_BINARY(+)
  EINLM_PACKET_BINARY(-)
  EINLM_PACKET_BINARY(*)
  EINLM_PACKET_BINARY(/)
  EINLM_PACKET_BINARY(&)
  EINLM_PACKET_BINARY(|)
  EINLM_PACKET_BINARY(^)
#undef EINLM_PACKET_BINARY
  friend packet operator-(const packet& a) {
    packet r;
    for (int k = 0; k < K; ++k) r.p[k] = -a.p[k];
    return r;
  }
  friend packet operator!(const packet& a)
    requires std::is_same_v<T, bool>
  {
    packet r;
    for (int k = 0; k < K; ++k) r.p[k] = ~a.p[k];
    return r;
  }
  friend packet operator<<(const packet& a, int s) {
    packet r;
    for (int k = 0; k < K; ++k) r.p[k] = a.p[k] << s;
    return r;
  }
  friend packet operator>>(const packet& a, int s) {
    packet r;
    for (int k = 0; k < K; ++k) r.p[k] = a.p[k] >> s;
    return r;
  }
#define EINLM_PACKET_COMPARE(OP)                                               \
  friend packet<bool> operator OP(const packet& a, const packet& b) {          \
    using mask_part = decltype(a.p[0] OP b.p[0]);                             \
    mask_part m[K];                                                            \
    for (int k = 0; k < K; ++k) m[k] = a.p[k] OP b.p[k];                       \
    return detail::compare_result<mask_part, T>(m);                           \
  }
  EINLM_PACKET_COMPARE(<)
  EINLM_PACKET_COMPARE(>)
  EINLM_PACKET_COMPARE(<=)
  EINLM_PACKET_COMPARE(>=)
  EINLM_PACKET_COMPARE(==)
  EINLM_PACKET_COMPARE(!=)
#undef EINLM_PACKET_COMPARE
};

/// A packet from `width` lane values in memory (lane values of bool: true/false).
template <class T>
inline packet<T> from_lanes(const T* lanes) {
  packet<T> r;
  if constexpr (std::is_same_v<T, bool>) {
    std::int32_t m[width];
    for (int i = 0; i < width; ++i) m[i] = lanes[i] ? -1 : 0;
    std::memcpy(static_cast<void*>(&r.p), m, sizeof(m));
  } else {
    std::memcpy(static_cast<void*>(&r.p), lanes, sizeof(r.p));
  }
  return r;
}

namespace detail {

/// A lane mask from the parts of a comparison of packet<T>: 32-bit lanes map part for part;
/// 64-bit (and narrower) lanes are narrowed lane by lane.
template <class M, class T>
packet<bool> compare_result(const M (&m)[parts<T>]) {
  packet<bool> r{};
  if constexpr (sizeof(storage_t<T>) == 4 && parts<T> == packet<bool>::K) {
    for (int k = 0; k < packet<bool>::K; ++k) r.p[k] = bits_as<part_t<bool>>(m[k]);
  } else {
    bool lanes[width];
    for (int i = 0; i < width; ++i) lanes[i] = m[i / part_lanes<T>][i % part_lanes<T>] != 0;
    r = from_lanes(lanes);
  }
  return r;
}

}  // namespace detail

/// Lane-wise a where mask is set, b elsewhere (a bitwise blend).
template <class T>
inline packet<T> select(const packet<bool>& m, const packet<T>& a, const packet<T>& b) {
  using S = detail::signed_lane_t<T>;
  using ipart = typename detail::vec<S, detail::part_bytes<T>>::type;
  packet<T> r{};
  if constexpr (sizeof(detail::storage_t<T>) == 4 && packet<T>::K == packet<bool>::K) {
    for (int k = 0; k < packet<T>::K; ++k) {
      const ipart mk = detail::bits_as<ipart>(m.p[k]);
      r.p[k] = detail::bits_as<typename packet<T>::part>((mk & detail::bits_as<ipart>(a.p[k])) |
                                                         (~mk & detail::bits_as<ipart>(b.p[k])));
    }
  } else {
    // Widen (or narrow) the 32-bit mask lanes to T's lane width first.
    for (int k = 0; k < packet<T>::K; ++k) {
      ipart mk;
      for (int l = 0; l < packet<T>::L; ++l) mk[l] = m.p[(k * packet<T>::L + l) / packet<bool>::L][(k * packet<T>::L + l) % packet<bool>::L] ? S(-1) : S(0);
      r.p[k] = detail::bits_as<typename packet<T>::part>((mk & detail::bits_as<ipart>(a.p[k])) |
                                                         (~mk & detail::bits_as<ipart>(b.p[k])));
    }
  }
  return r;
}

/// Lane-wise conversion (C++ conversion rules; bool lanes become 0/1 and nonzero becomes true).
template <class To, class From>
inline packet<To> convert_packet(const packet<From>& x) {
  if constexpr (std::is_same_v<To, From>) {
    return x;
  } else if constexpr (std::is_same_v<To, bool>) {
    return x != packet<From>(From{});
  } else if constexpr (!std::is_same_v<From, bool> && sizeof(To) == sizeof(From)) {
    // Same lane width (float ↔ int32, double ↔ int64): part for part, one native instruction.
    packet<To> r{};
    for (int k = 0; k < packet<To>::K; ++k) r.p[k] = __builtin_convertvector(x.p[k], typename packet<To>::part);
    return r;
  } else {
    To lanes[width];
    for (int i = 0; i < width; ++i) lanes[i] = static_cast<To>(x[i]);
    return from_lanes(lanes);
  }
}

/// Reinterprets the lanes' bits (same lane size).
template <class To, class From>
inline packet<To> bitcast_packet(const packet<From>& x) {
  static_assert(sizeof(To) == sizeof(detail::storage_t<From>));
  packet<To> r;
  for (int k = 0; k < packet<To>::K; ++k) r.p[k] = detail::bits_as<typename packet<To>::part>(x.p[k]);
  return r;
}

/// A packet whose lane i is f(i).
template <class T, class F>
inline packet<T> generate(F f) {
  T lanes[width];
  for (int i = 0; i < width; ++i) lanes[i] = f(i);
  return from_lanes(lanes);
}

/// Lane-wise function application (for functions without a vector form, such as erf).
template <class T, class F>
inline packet<T> map_lanes(const packet<T>& x, F f) {
  T lanes[width];
  for (int i = 0; i < width; ++i) lanes[i] = f(x[i]);
  return from_lanes(lanes);
}

// ------------------------------------------------------------------------------ loads and stores

/// Loads `width` consecutive elements of storage type S and widens them to packet<C> (C = compute_t<S>).
template <class C, class S>
inline packet<C> load(const S* p) {
  if constexpr (std::is_same_v<S, C> && !std::is_same_v<S, bool>) {
    packet<C> r{};
    std::memcpy(static_cast<void*>(&r.p), static_cast<const void*>(p), sizeof(r.p));
    return r;
  } else if constexpr (std::is_same_v<S, bf16>) {
    static_assert(std::is_same_v<C, float>);
    // Widen in registers (one zero-extension and one shift): a lane loop here went through the
    // stack, and reading a register back from two narrower stores stalls store forwarding.
    detail::half_lanes h;
    std::memcpy(&h, static_cast<const void*>(p), sizeof(h));
    packet<float> r;
    r.p[0] = detail::bits_as<detail::part_t<float>>(__builtin_convertvector(h, detail::word_lanes) << 16);
    return r;
  } else if constexpr (std::is_same_v<S, fp16>) {
    static_assert(std::is_same_v<C, float>);
    // IEEE half → float without branches: move exponent and mantissa into place, rebias, then fix
    // infinities/NaNs (exponent 31) and renormalise subnormals (exponent 0) by a float subtraction.
    std::uint16_t h16[width];
    std::memcpy(h16, static_cast<const void*>(p), sizeof(h16));
    std::uint32_t h32[width];
    for (int i = 0; i < width; ++i) h32[i] = h16[i];
    const packet<std::uint32_t> h = from_lanes(h32);
    const packet<std::uint32_t> shifted = (h & packet<std::uint32_t>(0x7fffu)) << 13;
    const packet<std::uint32_t> exp = shifted & packet<std::uint32_t>(0x7c00u << 13);
    const packet<std::uint32_t> normal = shifted + packet<std::uint32_t>((127u - 15u) << 23);
    const packet<std::uint32_t> special = normal + packet<std::uint32_t>((128u - 16u) << 23);
    const packet<float> subnormal =
        bitcast_packet<float>(normal + packet<std::uint32_t>(1u << 23)) - packet<float>(6.103515625e-05f);
    packet<float> out = bitcast_packet<float>(select(exp == packet<std::uint32_t>(0x7c00u << 13), special, normal));
    out = select(exp == packet<std::uint32_t>(0u), subnormal, out);
    return bitcast_packet<float>(bitcast_packet<std::uint32_t>(out) | ((h & packet<std::uint32_t>(0x8000u)) << 16));
  } else {
    S raw[width];
    std::memcpy(static_cast<void*>(raw), static_cast<const void*>(p), sizeof(raw));
    C lanes[width];
    for (int i = 0; i < width; ++i) lanes[i] = convert<C>(raw[i]);
    return from_lanes(lanes);
  }
}

/// Stores the lanes of x into consecutive elements of storage type S, converting (16-bit floats
/// round to nearest even, as convert<S> does).
template <class S, class C>
inline void store(S* p, const packet<C>& x) {
  if constexpr (std::is_same_v<S, C> && !std::is_same_v<S, bool>) {
    std::memcpy(static_cast<void*>(p), &x.p, sizeof(x.p));
  } else if constexpr (std::is_same_v<S, bf16>) {
    const packet<std::uint32_t> u = bitcast_packet<std::uint32_t>(convert_packet<float>(x));
    const packet<std::uint32_t> rounded =
        (u + packet<std::uint32_t>(0x7fffu) + ((u >> 16) & packet<std::uint32_t>(1u))) >> 16;
    const packet<std::uint32_t> quiet_nan = (u >> 16) | packet<std::uint32_t>(0x40u);
    const packet<std::uint32_t> bits =
        select(bitcast_packet<std::int32_t>(u & packet<std::uint32_t>(0x7fffffffu)) > packet<std::int32_t>(0x7f800000),
               quiet_nan, rounded);
    const detail::half_lanes h = __builtin_convertvector(detail::bits_as<detail::word_lanes>(bits.p[0]), detail::half_lanes);
    std::memcpy(static_cast<void*>(p), &h, sizeof(h));
  } else if constexpr (std::is_same_v<S, fp16>) {
    const packet<float> f = convert_packet<float>(x);
    for (int i = 0; i < width; ++i) p[i] = fp16_from_bits(einlm::detail::float_to_fp16_bits(f[i]));
  } else {
    for (int i = 0; i < width; ++i) p[i] = convert<S>(x[i]);
  }
}

}  // namespace einlm::simd

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
