// einlm/core/simd_dispatch.hpp — run a packet kernel at the widest vectors this CPU has.
//
// A build for plain x86-64 (no -march) evaluates expressions on 4-float SSE2 packets. The hot
// element-wise kernels of the nn layers (exponential sums of softmax and cross-entropy, GELU,
// SiLU/SwiGLU and their gradients) are written once as `K::template run<B>(args…)` over
// simd::packet<T, B>, and simd::dispatch<K>(args…) runs them compiled a second (and third) time
// for AVX-512 (B = 64) or AVX2 + FMA (B = 32) when the CPU has them, chosen once per process.
// With -march=native the build's own packets are already the widest and nothing is added.
//
// Contract: K::run<B> must give the same result for every B up to the last bits of rounding
// (FMA contraction; the lane order of sums). Such kernels are also deterministic on a given
// machine, since the width is chosen once. simd::limit_dispatch_bytes(16) (or the environment
// variable EINLM_SIMD_BYTES=16 read at the first dispatch) keeps the build's packets, for
// comparing the paths in tests and benchmarks.
#pragma once

#include <atomic>
#include <cstdlib>

#include "einlm/core/simd.hpp"

#if EINLM_HAS_PACKETS && defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define EINLM_HAS_SIMD_DISPATCH 1
#else
#define EINLM_HAS_SIMD_DISPATCH 0
#endif

namespace einlm::simd {

namespace detail {

/// The widest packet (bytes) this CPU runs: 64 with AVX-512 (F, BW, DQ, VL), 32 with AVX2 + FMA,
/// else the build's.
inline int cpu_packet_bytes() {
#if EINLM_HAS_SIMD_DISPATCH
  static const int bytes = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
      return 64;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 32;
    return native_bytes;
  }();
  return bytes < native_bytes ? native_bytes : bytes;
#else
  return native_bytes;
#endif
}

/// The cap that limit_dispatch_bytes sets (0: none yet; read EINLM_SIMD_BYTES on first use).
inline std::atomic<int>& dispatch_cap() {
  static std::atomic<int> cap{0};
  return cap;
}

}  // namespace detail

/// The packet width (bytes) dispatch runs kernels at: the CPU's widest, within the cap.
inline int dispatch_bytes() {
  int cap = detail::dispatch_cap().load(std::memory_order_relaxed);
  if (cap == 0) {
    const char* env = std::getenv("EINLM_SIMD_BYTES");
    cap = env && *env ? std::atoi(env) : 64;  // unset or empty: no cap
    if (cap < detail::native_bytes) cap = detail::native_bytes;
    detail::dispatch_cap().store(cap, std::memory_order_relaxed);
  }
  const int cpu = detail::cpu_packet_bytes();
  if (cap >= cpu) return cpu;
  return cap >= 32 && detail::native_bytes < 32 ? 32 : detail::native_bytes;
}

/// Caps the packet width (bytes) that dispatch uses (16, 32 or 64); below the build's own width,
/// the build's. Returns the width dispatch uses from now on.
inline int limit_dispatch_bytes(int bytes) {
  detail::dispatch_cap().store(bytes < detail::native_bytes ? detail::native_bytes : bytes);
  return dispatch_bytes();
}

#if EINLM_HAS_SIMD_DISPATCH
namespace detail {
// The kernel and everything it calls inlined into one function compiled for the wider set
// (flatten); the callers' code stays baseline, so these run only where the CPU has the set.
template <class K, class... A>
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma"), flatten)) void run_avx512(A... args) {
  K::template run<64>(args...);
}
template <class K, class... A>
__attribute__((target("avx2,fma"), flatten)) void run_avx2(A... args) {
  K::template run<32>(args...);
}
}  // namespace detail
#endif

/// K::template run<B>(args…) at the widest packets this CPU runs (see the file comment). Arguments
/// are passed by value (pointers, sizes, scalars).
template <class K, class... A>
void dispatch(A... args) {
#if EINLM_HAS_SIMD_DISPATCH
  if constexpr (detail::native_bytes < 64) {
    const int bytes = dispatch_bytes();
    if (bytes == 64) return detail::run_avx512<K>(args...);
    if constexpr (detail::native_bytes < 32) {
      if (bytes == 32) return detail::run_avx2<K>(args...);
    }
  }
#endif
  K::template run<detail::native_bytes>(args...);
}

}  // namespace einlm::simd
