// einlm/core/config.hpp — the one portability header.
//
// Every test of the compiler (nvcc or a host compiler) and of the compilation target (host pass or
// device pass) lives here; the rest of the library uses the macros below and never tests
// __CUDACC__ or __CUDA_ARCH__ itself.
//
//   EINLM_HAS_CUDA        1 when this translation unit is compiled by nvcc: device memory, the CUDA
//                         executor and kernels are available. 0 for a host compiler (g++/clang).
//   EINLM_HD              host+device inline function (plain inline under a host compiler)
//   EINLM_HOST / EINLM_DEVICE
//   EINLM_KERNEL          __global__ with hidden visibility, so that kernels instantiated from headers
//                         in several shared objects or for several architectures never collide
//   EINLM_UNROLL          unroll hint for the loop that follows
//   EINLM_EXEC_CHECK_DISABLE  placed before a host+device template that host code instantiates with
//                         host-only types (CPU packets); silences nvcc's cross-space call check
//   EINLM_RESTRICT        restrict qualifier
//   EINLM_IF_DEVICE(dev, host)  expands to `dev` in the device pass and `host` otherwise (statements)
//   EINLM_HAS_PACKETS     1 when the CPU executor evaluates 8 lanes at a time (see below)
//   EINLM_HAS_STREAMING_STORES  1 when CPU code may use SSE2 non-temporal stores (x86-64, packets)
//   EINLM_HAS_BLAS        1 when the program links a CBLAS (the CMake target einlm::blas defines it):
//                         the CPU GEMM then calls it for float and double; 0 otherwise
//   EINLM_HAS_CUBLASLT    1 when the program links cuBLASLt (einlm::cublaslt): the CUDA GEMM's
//                         cublaslt backend exists; 0 otherwise
#pragma once

#include <cstddef>
#include <cstdint>

#include <nv/target>

#if defined(__CUDACC__)
#define EINLM_HAS_CUDA 1
#define EINLM_HOST __host__
#define EINLM_DEVICE __device__
#define EINLM_HD __host__ __device__ __forceinline__
#define EINLM_HD_NOINLINE __host__ __device__
#define EINLM_KERNEL __global__ __attribute__((visibility("hidden")))
#define EINLM_EXEC_CHECK_DISABLE _Pragma("nv_exec_check_disable")
#else
#define EINLM_HAS_CUDA 0
#define EINLM_HOST
#define EINLM_DEVICE
#define EINLM_HD inline
#define EINLM_HD_NOINLINE
#define EINLM_KERNEL static_assert(false, "EINLM_KERNEL needs nvcc");
#define EINLM_EXEC_CHECK_DISABLE
#endif

#if defined(__CUDA_ARCH__)
#define EINLM_DEVICE_PASS 1
#else
#define EINLM_DEVICE_PASS 0
#endif

#if defined(__CUDA_ARCH__) || defined(__clang__)
#define EINLM_UNROLL _Pragma("unroll")
#elif defined(__CUDACC__)
#define EINLM_UNROLL  // nvcc's host pass rejects GCC's spelling; host loops in CUDA files go without
#elif defined(__GNUC__)
#define EINLM_UNROLL _Pragma("GCC unroll 16")
#else
#define EINLM_UNROLL
#endif

#define EINLM_RESTRICT __restrict__

#define EINLM_IF_DEVICE(dev, host) NV_IF_ELSE_TARGET(NV_IS_DEVICE, dev, host)

// CPU packets (GNU vector extensions) are used by the CPU executor in files compiled by g++ or
// clang. nvcc's front end rejects vector types inside host+device functions, so in files compiled
// by nvcc the CPU executor runs the same operators one element at a time (equal results; put
// CPU-heavy code in .cpp files).
#if (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define EINLM_HAS_PACKETS 1
#else
#define EINLM_HAS_PACKETS 0
#endif

#if EINLM_HAS_PACKETS && defined(__SSE2__)
#define EINLM_HAS_STREAMING_STORES 1
#else
#define EINLM_HAS_STREAMING_STORES 0
#endif

#if defined(_OPENMP)
#define EINLM_HAS_OPENMP 1
#else
#define EINLM_HAS_OPENMP 0
#endif

// Optional libraries: defined by the build (-D) when linked; every translation unit of a program
// must agree, since inline code depends on them.
#if !defined(EINLM_HAS_BLAS)
#define EINLM_HAS_BLAS 0
#endif
#if !defined(EINLM_HAS_CUBLASLT)
#define EINLM_HAS_CUBLASLT 0
#endif

namespace einlm {

/// Index type of every extent, stride and offset.
using index_t = std::int64_t;

/// Largest rank a tensor, view or expression may have (einops patterns share the cap).
inline constexpr int max_rank = 8;

}  // namespace einlm
