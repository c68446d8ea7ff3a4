// einlm/exec/cuda.cuh — the CUDA executor: one kernel launch per expression. nvcc only.
//
//   cuda_executor ex;                own stream (a blocking stream: ordered after the legacy
//                                    default stream, so cudaMemcpy and copy() see its results)
//   cuda_executor ex(stream);        an existing stream (not owned)
//   ex.assign(dst, expr)             dst (device tensor or view) ← expr, shapes equal
//   ex.eval(expr)                    a new device tensor holding expr
//   ex.launches()                    kernels launched so far (each assign/eval is exactly one)
//   ex.synchronize()                 waits for the stream
//   assign(dst, expr), eval(expr)    through default_cuda_executor() for device memory
//
// Kernels (the operator code is the CPU executor's; see einlm/expr/expression.hpp):
//   flat_kernel<V>   output and leaves contiguous and of the output's shape: a grid-stride loop in
//                    which each thread loads and stores V consecutive elements with vector accesses
//                    (V·sizeof(T) = 16 bytes when every pointer is aligned to it; V = 1 otherwise)
//   indexed_kernel   anything else: the multi-index of each output element from its position
//   reductions       a reduce node at the root: a warp or a block per output element, block
//                    columns for reductions over outer axes, or several blocks per output when
//                    there are few outputs (einlm/exec/cuda_reduce.cuh; the executor keeps
//                    their device workspace)
//   strided copies   a plain strided array into a destination with a contiguous last axis:
//                    shared-memory tiles when the innermost axis moves (a transpose), rows of
//                    16-byte vectors when only outer axes move (einlm/exec/cuda_transpose.cuh)
// Kernel template arguments are node types built from types and integers only (never a pattern
// string), per ARCHITECTURE decision 3.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <type_traits>

#include <cuda_runtime_api.h>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/exec/common.hpp"
#include "einlm/exec/cuda_reduce.cuh"
#include "einlm/exec/cuda_transpose.cuh"
#include "einlm/expr/expression.hpp"

static_assert(EINLM_HAS_CUDA, "einlm/exec/cuda.cuh must be compiled by nvcc");

namespace einlm {

namespace detail {

/// Stores V lanes to an address aligned to V·sizeof(T) bytes, as one vector store.
template <class T, int V, class C>
EINLM_DEVICE inline void store_lanes(T* p, const lanes<C, V>& x) {
  aligned_block<T, V> block;
  EINLM_UNROLL
  for (int l = 0; l < V; ++l) block.v[l] = convert<T>(x[l]);
  *reinterpret_cast<aligned_block<T, V>*>(p) = block;
}

template <int V, class T, class Cursor>
EINLM_KERNEL void flat_kernel(T* out, Cursor cur, index_t n) {
  const index_t vectors = n / V;
  const index_t first = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = first; i < vectors; i += step) store_lanes<T, V>(out + i * V, cur.template load<lanes_kind<V>>(i * V));
  const index_t tail = vectors * V + first;
  if (tail < n) out[tail] = convert<T>(cur.template load<scalar_kind>(tail));
}

template <class DstV, class X>
EINLM_KERNEL void indexed_kernel(DstV dst, X x, index_t n) {
  constexpr std::size_t R = X::extents_type::rank();
  using T = typename DstV::value_type;
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const auto idx = unravel<R>(i, dst.extents());
    dst(idx) = convert<T>(x.at(idx));
  }
}

inline int multiprocessor_count() {
  static const int count = [] {
    int dev = 0, sms = 0;
    EINLM_CUDA_CHECK(cudaGetDevice(&dev));
    EINLM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    return sms;
  }();
  return count;
}

}  // namespace detail

class cuda_executor {
 public:
  /// An executor with its own stream.
  cuda_executor() : owned_(true) { EINLM_CUDA_CHECK(cudaStreamCreate(&stream_)); }
  /// An executor on an existing stream, which the caller keeps alive.
  explicit cuda_executor(cudaStream_t stream) : stream_(stream), owned_(false) {}
  cuda_executor(const cuda_executor&) = delete;
  cuda_executor& operator=(const cuda_executor&) = delete;
  ~cuda_executor() {
    if (owned_) cudaStreamDestroy(stream_);
  }

  cudaStream_t stream() const { return stream_; }
  void synchronize() const { EINLM_CUDA_CHECK(cudaStreamSynchronize(stream_)); }
  /// Kernels launched so far: each assign() or eval() is exactly one, whatever the expression.
  std::uint64_t launches() const { return launches_.load(); }
  void reset_counters() { launches_ = 0; }

  /// dst ← x in one kernel. dst is a device tensor or view of x's shape.
  template <class Dst, class X>
  void assign(Dst&& dst_in, const X& x_in) {
    auto dst = as_view(std::forward<Dst>(dst_in));
    auto x = as_expression(x_in);
    using DstV = decltype(dst);
    using XE = decltype(x);
    static_assert(std::is_same_v<typename DstV::space, device>, "cuda_executor: the destination must be in device memory");
    static_assert(!std::is_same_v<typename XE::space, host>,
                  "cuda_executor: the expression reads host memory; copy it with to_device() first");
    static_assert(!std::is_const_v<typename DstV::element_type>, "cuda_executor: the destination is read-only");
    launch(dst, detail::fit_to_destination(dst, x, "assign"));
  }

  /// A new device tensor holding x (its memory is associated with this executor's stream).
  template <class X>
  auto eval(const X& x_in) {
    auto x = as_expression(x_in);
    using XE = decltype(x);
    tensor<typename XE::value_type, typename XE::extents_type, device> out(x.extents());
    out.storage().set_stream(stream_);
    assign(out, x);
    return out;
  }

 private:
  static constexpr int block_threads = 256;

  dim3 grid_for(index_t work) const {
    const index_t max_blocks = static_cast<index_t>(detail::multiprocessor_count()) * 32;
    const index_t blocks = std::max<index_t>(1, std::min<index_t>((work + block_threads - 1) / block_threads, max_blocks));
    return dim3(static_cast<unsigned>(blocks));
  }

  template <class DstV, class X>
  void launch(const DstV& dst, const X& x) {
    using T = typename DstV::value_type;
    constexpr std::size_t R = X::extents_type::rank();
    const index_t n = dst.size();
    ++launches_;
    if (n == 0) return;
    if constexpr (detail::is_reduce_root_v<X>) {
      if (x.mask() == 0 && detail::launch_reduction(dst, x.child(), stream_, detail::multiprocessor_count(), workspace_))
        return;
    }
    if (R > 0 && dst.is_contiguous() && x.flat_ok()) {
      constexpr int V = sizeof(T) >= 16 ? 1 : static_cast<int>(16 / sizeof(T));
      bool aligned = reinterpret_cast<std::uintptr_t>(dst.data()) % (V * sizeof(T)) == 0;
      x.for_each_leaf([&](const void* p, std::size_t element_size) {
        aligned = aligned && reinterpret_cast<std::uintptr_t>(p) % (V * element_size) == 0;
      });
      const auto cur = x.row(index_array<R>{}, false);
      if (aligned && V > 1) {
        detail::flat_kernel<V><<<grid_for(n / V + 1), block_threads, 0, stream_>>>(dst.data(), cur, n);
      } else {
        detail::flat_kernel<1><<<grid_for(n), block_threads, 0, stream_>>>(dst.data(), cur, n);
      }
    } else if (!detail::launch_strided_copy(dst, x, stream_, detail::multiprocessor_count())) {
      detail::indexed_kernel<<<grid_for(n), block_threads, 0, stream_>>>(dst, x, n);
    }
    EINLM_CUDA_CHECK(cudaGetLastError());
  }

  cudaStream_t stream_ = nullptr;
  bool owned_;
  detail::reduction_workspace workspace_;  // device memory of reductions split among blocks
  std::atomic<std::uint64_t> launches_{0};
};

/// The executor that assign() and eval() use for device memory.
inline cuda_executor& default_cuda_executor() {
  static cuda_executor executor;
  return executor;
}

/// dst ← x in one kernel on the default CUDA executor (dst in device memory).
template <class Dst, class X>
  requires(array_like<Dst> && operand<X> && std::is_same_v<typename std::remove_cvref_t<Dst>::space, device>)
void assign(Dst&& dst, const X& x) {
  default_cuda_executor().assign(std::forward<Dst>(dst), x);
}

/// A new device tensor holding x, computed by the default CUDA executor.
template <class X>
  requires(operand<X> && std::is_same_v<typename expression_t<const X&>::space, device>)
auto eval(const X& x) {
  return default_cuda_executor().eval(x);
}

}  // namespace einlm
