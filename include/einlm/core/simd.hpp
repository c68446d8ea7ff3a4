// einlm/core/simd.hpp — CPU packets: one register of lanes of one element type, for the CPU
// executor and the CPU kernels.
//
// A packet<T> holds `width` lanes of T (one register of floats: 4 with SSE2 or NEON, 8 with AVX,
// 16 with AVX-512) so that the same generic operator code that computes one float on the GPU
// computes a register of them on the CPU: +, −, ×, ÷, comparisons (giving packet<bool>, a lane
// mask), select(mask, a, b), conversions between lane types, and loads/stores that widen 16-bit
// storage types to float and round back (to nearest even) on the way out.
//
// packet<T, B> is the same for registers of B bytes (B / 4 lanes), so that a kernel written for
// any B can be compiled again for a wider instruction set than the build's and chosen at run time
// (simd_dispatch.hpp); packet<T> = packet<T, the build's register bytes>.
//
// Storage is a GNU vector of at most B bytes, or an array of them (a double packet is two
// registers): each operation compiles to single native instructions (a vector wider than the
// registers would be split by the compiler, and comparisons of such vectors fall back to one
// scalar compare per lane; a float packet of two parts spills to the stack).
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

// Runs a statement for k = 0 … N − 1 over the parts of a packet. One part is a single
// statement with k a constant, not a loop: g++ optimises the inline functions of this header once
// in the build's instruction set, and a one-trip loop over a vector wider than its registers
// comes out of that as lane-by-lane code, which a wide kernel (simd_dispatch.hpp) that inlines
// the function would keep.
#define EINLM_FOR_PARTS(N, ...)              \
  if constexpr ((N) == 1) {                  \
    constexpr int k = 0;                     \
    __VA_ARGS__;                             \
  } else {                                   \
    for (int k = 0; k < (N); ++k) {          \
      __VA_ARGS__;                           \
    }                                        \
  }

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

// B is the register width in bytes that a packet is built for (native_bytes unless a kernel
// compiled for a wider instruction set asks for more); a packet has B / 4 lanes.
template <class T, int B = native_bytes>
inline constexpr int total_bytes = B / 4 * static_cast<int>(sizeof(storage_t<T>));
template <class T, int B = native_bytes>
inline constexpr int part_bytes = total_bytes<T, B> < B ? total_bytes<T, B> : B;
template <class T, int B = native_bytes>
inline constexpr int parts = total_bytes<T, B> / part_bytes<T, B>;
template <class T, int B = native_bytes>
inline constexpr int part_lanes = part_bytes<T, B> / static_cast<int>(sizeof(storage_t<T>));

template <class T, int B = native_bytes>
using part_t = typename vec<storage_t<T>, part_bytes<T, B>>::type;

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

/// B / 4 lanes of 16 and of 32 bits as single vectors (a float packet is one part), for the
/// conversions between 16-bit storage and float lanes.
template <int B = native_bytes>
using half_lanes = typename vec<std::uint16_t, B / 2>::type;
template <int B = native_bytes>
using word_lanes = typename vec<std::uint32_t, B>::type;
static_assert(parts<float> == 1 && parts<std::uint32_t> == 1);

}  // namespace detail

/// B / 4 lanes of T (B: the register width in bytes the packet is built for; by default the
/// build's, so packet<T> has `width` lanes).
template <class T, int B = detail::native_bytes>
struct packet;

template <class T>
inline constexpr bool is_packet_v = false;
template <class T, int B>
inline constexpr bool is_packet_v<packet<T, B>> = true;

/// The lane type of a packet, or T itself for a scalar.
template <class T>
struct scalar_of {
  using type = T;
};
template <class T, int B>
struct scalar_of<packet<T, B>> {
  using type = T;
};
template <class T>
using scalar_t = typename scalar_of<T>::type;

/// Same-width signed integer lanes of a real type (float → int32, double → int64).
template <class T>
using int_lane_t = std::conditional_t<sizeof(T) == 8, std::int64_t, std::int32_t>;

/// The packet type of the same width with lanes of U (packet<float, B> → packet<int32_t, B>).
template <class P, class U>
struct rebind;
template <class T, int B, class U>
struct rebind<packet<T, B>, U> {
  using type = packet<U, B>;
};
template <class P, class U>
using rebind_t = typename rebind<P, U>::type;

namespace detail {
template <class M, class T, int B>
packet<bool, B> compare_result(const M (&parts)[detail::parts<T, B>]);
}

/// B / 4 lanes of T, as vector parts of at most B bytes.
template <class T, int B>
struct packet {
  using value_type = T;
  using lane_storage = detail::storage_t<T>;
  using part = detail::part_t<T, B>;
  static constexpr int bytes = B;
  static constexpr int size = B / 4;  // lanes
  static constexpr int K = detail::parts<T, B>;
  static constexpr int L = detail::part_lanes<T, B>;
  // One part is held as a plain vector member, not an array of one: g++ splits an array of a
  // vector wider than the build's registers into lanes while optimising a baseline function,
  // and a wide kernel (simd_dispatch.hpp) that inlines it would rebuild it lane by lane.
  using parts_type = std::conditional_t<K == 1, part, part[K]>;
  parts_type p;
  part& part_at(int k) {
    static_cast<void>(k);
    if constexpr (K == 1) return p;
    else return p[k];
  }
  const part& part_at(int k) const {
    static_cast<void>(k);
    if constexpr (K == 1) return p;
    else return p[k];
  }

  packet() = default;
  /// Every lane set to x.
  packet(T x) {
    const lane_storage s = std::is_same_v<T, bool> ? static_cast<lane_storage>(x ? -1 : 0) : static_cast<lane_storage>(x);
    EINLM_FOR_PARTS(K, part_at(k) = s - part{})  // s − 0 keeps −0 (0 + s would not)
  }

  T operator[](int i) const {
    const lane_storage s = part_at(i / L)[i % L];
    if constexpr (std::is_same_v<T, bool>) return s != 0;
    else return s;
  }
  void set(int i, T x) {
    if constexpr (std::is_same_v<T, bool>) part_at(i / L)[i % L] = x ? -1 : 0;
    else part_at(i / L)[i % L] = x;
  }

#define EINLM_PACKET_BINARY(OP)                                  \
  friend packet operator OP(const packet& a, const packet& b) {  \
    packet r;                                                    \
    EINLM_FOR_PARTS(K, r.part_at(k) = a.part_at(k) OP b.part_at(k))  \
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
    EINLM_FOR_PARTS(K, r.part_at(k) = -a.part_at(k))
    return r;
  }
  friend packet operator!(const packet& a)
    requires std::is_same_v<T, bool>
  {
    packet r;
    EINLM_FOR_PARTS(K, r.part_at(k) = ~a.part_at(k))
    return r;
  }
  friend packet operator<<(const packet& a, int s) {
    packet r;
    EINLM_FOR_PARTS(K, r.part_at(k) = a.part_at(k) << s)
    return r;
  }
  friend packet operator>>(const packet& a, int s) {
    packet r;
    EINLM_FOR_PARTS(K, r.part_at(k) = a.part_at(k) >> s)
    return r;
  }
#define EINLM_PACKET_COMPARE(OP)                                               \
  friend packet<bool, B> operator OP(const packet& a, const packet& b) {       \
    using mask_part = decltype(a.part_at(0) OP b.part_at(0));                  \
    if constexpr (K == 1 && sizeof(lane_storage) == 4) {                       \
      packet<bool, B> r;                                                       \
      r.p = detail::bits_as<detail::part_t<bool, B>>(a.p OP b.p);              \
      return r;                                                                \
    } else {                                                                   \
      mask_part m[K];                                                          \
      for (int k = 0; k < K; ++k) m[k] = a.part_at(k) OP b.part_at(k);         \
      return detail::compare_result<mask_part, T, B>(m);                      \
    }                                                                          \
  }
  EINLM_PACKET_COMPARE(<)
  EINLM_PACKET_COMPARE(>)
  EINLM_PACKET_COMPARE(<=)
  EINLM_PACKET_COMPARE(>=)
  EINLM_PACKET_COMPARE(==)
  EINLM_PACKET_COMPARE(!=)
#undef EINLM_PACKET_COMPARE
};

/// A packet from B / 4 lane values in memory (lane values of bool: true/false).
template <int B = detail::native_bytes, class T>
inline packet<T, B> from_lanes(const T* lanes) {
  packet<T, B> r;
  if constexpr (std::is_same_v<T, bool>) {
    std::int32_t m[B / 4];
    for (int i = 0; i < B / 4; ++i) m[i] = lanes[i] ? -1 : 0;
    std::memcpy(static_cast<void*>(&r.p), m, sizeof(m));
  } else {
    std::memcpy(static_cast<void*>(&r.p), lanes, sizeof(r.p));
  }
  return r;
}

namespace detail {

/// A lane mask from the parts of a comparison of packet<T>: 32-bit lanes map part for part;
/// 64-bit (and narrower) lanes are narrowed lane by lane.
template <class M, class T, int B>
packet<bool, B> compare_result(const M (&m)[parts<T, B>]) {
  packet<bool, B> r{};
  if constexpr (sizeof(storage_t<T>) == 4 && parts<T, B> == packet<bool, B>::K) {
    EINLM_FOR_PARTS((packet<bool, B>::K), r.part_at(k) = bits_as<part_t<bool, B>>(m[k]))
  } else {
    bool lanes[B / 4];
    for (int i = 0; i < B / 4; ++i) lanes[i] = m[i / part_lanes<T, B>][i % part_lanes<T, B>] != 0;
    r = from_lanes<B>(lanes);
  }
  return r;
}

}  // namespace detail

/// Lane-wise a where mask is set, b elsewhere (a bitwise blend).
template <class T, int B>
inline packet<T, B> select(const packet<bool, B>& m, const packet<T, B>& a, const packet<T, B>& b) {
  using S = detail::signed_lane_t<T>;
  using ipart = typename detail::vec<S, detail::part_bytes<T, B>>::type;
  using PT = packet<T, B>;
  using PM = packet<bool, B>;
  PT r{};
  if constexpr (sizeof(detail::storage_t<T>) == 4 && PT::K == PM::K) {
    EINLM_FOR_PARTS(PT::K, const ipart mk = detail::bits_as<ipart>(m.part_at(k));
                    r.part_at(k) = detail::bits_as<typename PT::part>((mk & detail::bits_as<ipart>(a.part_at(k))) |
                                                                      (~mk & detail::bits_as<ipart>(b.part_at(k)))))
  } else {
    // Widen (or narrow) the 32-bit mask lanes to T's lane width first.
    for (int k = 0; k < PT::K; ++k) {
      ipart mk{};
      for (int l = 0; l < PT::L; ++l) mk[l] = m.part_at((k * PT::L + l) / PM::L)[(k * PT::L + l) % PM::L] ? S(-1) : S(0);
      r.part_at(k) = detail::bits_as<typename PT::part>((mk & detail::bits_as<ipart>(a.part_at(k))) |
                                                        (~mk & detail::bits_as<ipart>(b.part_at(k))));
    }
  }
  return r;
}

/// Lane-wise conversion (C++ conversion rules; bool lanes become 0/1 and nonzero becomes true).
template <class To, class From, int B>
inline packet<To, B> convert_packet(const packet<From, B>& x) {
  if constexpr (std::is_same_v<To, From>) {
    return x;
  } else if constexpr (std::is_same_v<To, bool>) {
    return x != packet<From, B>(From{});
  } else if constexpr (!std::is_same_v<From, bool> && sizeof(To) == sizeof(From)) {
    // Same lane width (float ↔ int32, double ↔ int64): part for part, one native instruction.
    packet<To, B> r{};
    EINLM_FOR_PARTS((packet<To, B>::K), r.part_at(k) = __builtin_convertvector(x.part_at(k), typename packet<To, B>::part))
    return r;
  } else {
    To lanes[B / 4];
    for (int i = 0; i < B / 4; ++i) lanes[i] = static_cast<To>(x[i]);
    return from_lanes<B>(lanes);
  }
}

/// Reinterprets the lanes' bits (same lane size).
template <class To, class From, int B>
inline packet<To, B> bitcast_packet(const packet<From, B>& x) {
  static_assert(sizeof(To) == sizeof(detail::storage_t<From>));
  packet<To, B> r;
  EINLM_FOR_PARTS((packet<To, B>::K), r.part_at(k) = detail::bits_as<typename packet<To, B>::part>(x.part_at(k)))
  return r;
}

/// A packet whose lane i is f(i).
template <class T, int B = detail::native_bytes, class F>
inline packet<T, B> generate(F f) {
  T lanes[B / 4];
  for (int i = 0; i < B / 4; ++i) lanes[i] = f(i);
  return from_lanes<B>(lanes);
}

/// Lane-wise function application (for functions without a vector form, such as erf).
template <class T, int B, class F>
inline packet<T, B> map_lanes(const packet<T, B>& x, F f) {
  T lanes[B / 4];
  for (int i = 0; i < B / 4; ++i) lanes[i] = f(x[i]);
  return from_lanes<B>(lanes);
}

// ------------------------------------------------------------------------------ loads and stores

/// Loads B / 4 consecutive elements of storage type S and widens them to packet<C, B> (C =
/// compute_t<S>).
template <class C, int B = detail::native_bytes, class S>
inline packet<C, B> load(const S* p) {
  if constexpr (std::is_same_v<S, C> && !std::is_same_v<S, bool>) {
    packet<C, B> r{};
    std::memcpy(static_cast<void*>(&r.p), static_cast<const void*>(p), sizeof(r.p));
    return r;
  } else if constexpr (std::is_same_v<S, bf16>) {
    static_assert(std::is_same_v<C, float>);
    // Widen in registers (one zero-extension and one shift): a lane loop here went through the
    // stack, and reading a register back from two narrower stores stalls store forwarding.
    detail::half_lanes<B> h;
    std::memcpy(&h, static_cast<const void*>(p), sizeof(h));
    packet<float, B> r;
    r.part_at(0) = detail::bits_as<detail::part_t<float, B>>(__builtin_convertvector(h, detail::word_lanes<B>) << 16);
    return r;
  } else if constexpr (std::is_same_v<S, fp16>) {
    static_assert(std::is_same_v<C, float>);
    // IEEE half → float without branches: move exponent and mantissa into place, rebias, then fix
    // infinities/NaNs (exponent 31) and renormalise subnormals (exponent 0) by a float subtraction.
    std::uint16_t h16[B / 4];
    std::memcpy(h16, static_cast<const void*>(p), sizeof(h16));
    std::uint32_t h32[B / 4];
    for (int i = 0; i < B / 4; ++i) h32[i] = h16[i];
    const packet<std::uint32_t, B> h = from_lanes<B>(h32);
    const packet<std::uint32_t, B> shifted = (h & packet<std::uint32_t, B>(0x7fffu)) << 13;
    const packet<std::uint32_t, B> exp = shifted & packet<std::uint32_t, B>(0x7c00u << 13);
    const packet<std::uint32_t, B> normal = shifted + packet<std::uint32_t, B>((127u - 15u) << 23);
    const packet<std::uint32_t, B> special = normal + packet<std::uint32_t, B>((128u - 16u) << 23);
    const packet<float, B> subnormal =
        bitcast_packet<float>(normal + packet<std::uint32_t, B>(1u << 23)) - packet<float, B>(6.103515625e-05f);
    packet<float, B> out = bitcast_packet<float>(select(exp == packet<std::uint32_t, B>(0x7c00u << 13), special, normal));
    out = select(exp == packet<std::uint32_t, B>(0u), subnormal, out);
    return bitcast_packet<float>(bitcast_packet<std::uint32_t>(out) | ((h & packet<std::uint32_t, B>(0x8000u)) << 16));
  } else {
    S raw[B / 4];
    std::memcpy(static_cast<void*>(raw), static_cast<const void*>(p), sizeof(raw));
    C lanes[B / 4];
    for (int i = 0; i < B / 4; ++i) lanes[i] = convert<C>(raw[i]);
    return from_lanes<B>(lanes);
  }
}

/// Stores the lanes of x into consecutive elements of storage type S, converting (16-bit floats
/// round to nearest even, as convert<S> does).
template <class S, class C, int B>
inline void store(S* p, const packet<C, B>& x) {
  if constexpr (std::is_same_v<S, C> && !std::is_same_v<S, bool>) {
    std::memcpy(static_cast<void*>(p), &x.p, sizeof(x.p));
  } else if constexpr (std::is_same_v<S, bf16>) {
    const packet<std::uint32_t, B> u = bitcast_packet<std::uint32_t>(convert_packet<float>(x));
    const packet<std::uint32_t, B> rounded =
        (u + packet<std::uint32_t, B>(0x7fffu) + ((u >> 16) & packet<std::uint32_t, B>(1u))) >> 16;
    const packet<std::uint32_t, B> quiet_nan = (u >> 16) | packet<std::uint32_t, B>(0x40u);
    const packet<std::uint32_t, B> bits =
        select(bitcast_packet<std::int32_t>(u & packet<std::uint32_t, B>(0x7fffffffu)) > packet<std::int32_t, B>(0x7f800000),
               quiet_nan, rounded);
    const detail::half_lanes<B> h = __builtin_convertvector(detail::bits_as<detail::word_lanes<B>>(bits.part_at(0)), detail::half_lanes<B>);
    std::memcpy(static_cast<void*>(p), &h, sizeof(h));
  } else if constexpr (std::is_same_v<S, fp16>) {
    const packet<float, B> f = convert_packet<float>(x);
    for (int i = 0; i < B / 4; ++i) p[i] = fp16_from_bits(einlm::detail::float_to_fp16_bits(f[i]));
  } else {
    for (int i = 0; i < B / 4; ++i) p[i] = convert<S>(x[i]);
  }
}

/// A packet with every lane c, as 0 + c: g++ keeps that a broadcast in a kernel compiled for wider
/// registers (simd_dispatch.hpp), where packet's own constructor (c − 0, which keeps −0) is
/// optimised first in the build's instruction set and then rebuilt lane by lane, sixteen masked
/// broadcasts for an AVX-512 packet. A zero c gives +0 in every lane. Kernels build their
/// constants with it, once, outside their loops.
template <class P>
P broadcast(scalar_t<P> c) {
  using part = typename P::part;
  P r;
  if constexpr (P::K == 1) r.p = part{} + c;
  else
    for (int k = 0; k < P::K; ++k) r.p[k] = part{} + c;
  return r;
}

}  // namespace einlm::simd

#undef EINLM_FOR_PARTS

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
