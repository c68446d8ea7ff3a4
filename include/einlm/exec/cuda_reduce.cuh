// einlm/exec/cuda_reduce.cuh — the CUDA executor's reduction kernels: a reduce node at the root
// of an assignment, in one launch, for any reduced length. nvcc only.
//
//   launch_reduction(dst, node, stream, sms, workspace)   one launch of the first that applies:
//   reduce_split_kernel           fewer outputs than 4 blocks per multiprocessor, each of at least
//                                 16384 elements: each output split among blocks; the last block
//                                 of an output to finish combines the parts (kept in `workspace`)
//   reduce_columns_kernel         reductions over outer axes (the output's last axis is the child's
//                                 contiguous one): 32 consecutive outputs per block row, `ways`
//                                 block rows share the reduced positions, a shared-memory tree
//                                 combines them
//   (none: false)                 fewer than 16 elements per output: the executor's
//                                 thread-per-output kernel suits better
//   reduce_rows_kernel<Threads>   Threads threads combine each output element (a warp, 32, for
//                                 up to 2048 elements; a block, 256, beyond): thread t reads
//                                 positions t, t + Threads, … (consecutive threads, consecutive
//                                 elements when the reduced run is the child's contiguous axis),
//                                 then cub::WarpReduce / cub::BlockReduce combine the parts
// Values combine in the node's accumulate_type (float for bf16/fp16) and are rounded once on store.
// Template arguments are node types and integers (no pattern strings).
#pragma once

#include <algorithm>
#include <cstdint>

#include <cub/block/block_reduce.cuh>
#include <cub/warp/warp_reduce.cuh>
#include <cuda_runtime_api.h>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/error.hpp"
#include "einlm/exec/common.hpp"
#include "einlm/expr/broadcast.hpp"
#include "einlm/expr/reduce.hpp"

static_assert(EINLM_HAS_CUDA, "einlm/exec/cuda_reduce.cuh must be compiled by nvcc");

namespace einlm::detail {

/// True for the expression an executor receives when it is a reduce node (wrapped in the
/// executors' broadcast_node of the same rank).
template <class X>
inline constexpr bool is_reduce_root_v = false;
template <class C, class E, class Op, class DE>
inline constexpr bool is_reduce_root_v<broadcast_node<reduce_node<C, E, Op>, DE>> = E::rank() == DE::rank();

/// The node's combination as a function object (for CUB).
template <class Node>
struct combine_fn {
  EINLM_DEVICE typename Node::accumulate_type operator()(const typename Node::accumulate_type& a,
                                                         const typename Node::accumulate_type& b) const {
    return Node::combine(a, b);
  }
};

/// Output element i of dst: its multi-index, and the node's elementary indices for it.
template <class DstV, class Node>
EINLM_DEVICE inline index_array<Node::R> output_index(const DstV& dst, const Node& node, index_t i, index_t* el) {
  const auto idx = unravel<Node::R>(i, dst.extents());
  node.elementary(idx, el);
  return idx;
}

template <int Threads, class DstV, class Node>
EINLM_KERNEL void __launch_bounds__(256) reduce_rows_kernel(DstV dst, Node node, index_t outputs) {
  using A = typename Node::accumulate_type;
  using T = typename DstV::value_type;
  constexpr int per_block = 256 / Threads;
  const int part = static_cast<int>(threadIdx.x) % Threads;
  const int slot = static_cast<int>(threadIdx.x) / Threads;
  using warp_reduce = cub::WarpReduce<A>;
  using block_reduce = cub::BlockReduce<A, 256>;
  __shared__ typename warp_reduce::TempStorage warp_temp[per_block];
  __shared__ typename block_reduce::TempStorage block_temp;
  // Every thread runs the same number of iterations (the barriers of the block reduction).
  for (index_t base = static_cast<index_t>(blockIdx.x) * per_block; base < outputs;
       base += static_cast<index_t>(gridDim.x) * per_block) {
    const index_t i = base + slot;
    index_t el[pattern::max_elementary] = {};
    index_array<Node::R> idx{};
    A part_value = Node::identity();
    if (i < outputs) {
      idx = output_index(dst, node, i, el);
      part_value = node.accumulate_strided(el, part, Threads);
    }
    if constexpr (Threads == 32) {
      const A total = warp_reduce(warp_temp[slot]).Reduce(part_value, combine_fn<Node>{});
      if (part == 0 && i < outputs) dst(idx) = convert<T>(node.finish(total));
    } else {
      const A total = block_reduce(block_temp).Reduce(part_value, combine_fn<Node>{});
      if (part == 0 && i < outputs) dst(idx) = convert<T>(node.finish(total));
      __syncthreads();  // block_temp is reused by the next output
    }
  }
}

template <class DstV, class Node>
EINLM_KERNEL void __launch_bounds__(1024) reduce_columns_kernel(DstV dst, Node node, index_t outputs) {
  using A = typename Node::accumulate_type;
  using T = typename DstV::value_type;
  __shared__ A parts[32][33];
  const int x = static_cast<int>(threadIdx.x), y = static_cast<int>(threadIdx.y);
  const int ways = static_cast<int>(blockDim.y);
  for (index_t base = static_cast<index_t>(blockIdx.x) * 32; base < outputs; base += static_cast<index_t>(gridDim.x) * 32) {
    const index_t i = base + x;
    index_t el[pattern::max_elementary] = {};
    index_array<Node::R> idx{};
    A part_value = Node::identity();
    if (i < outputs) {
      idx = output_index(dst, node, i, el);
      part_value = node.accumulate_strided(el, y, ways);
    }
    parts[y][x] = part_value;
    __syncthreads();
    for (int half = ways / 2; half > 0; half /= 2) {
      if (y < half) parts[y][x] = Node::combine(parts[y][x], parts[y + half][x]);
      __syncthreads();
    }
    if (y == 0 && i < outputs) dst(idx) = convert<T>(node.finish(parts[0][x]));
    __syncthreads();  // parts is reused by the next outputs
  }
}

template <class DstV, class Node>
EINLM_KERNEL void __launch_bounds__(256) reduce_split_kernel(DstV dst, Node node, int splits,
                                                             typename Node::accumulate_type* partials, unsigned* arrivals) {
  using A = typename Node::accumulate_type;
  using T = typename DstV::value_type;
  using block_reduce = cub::BlockReduce<A, 256>;
  __shared__ typename block_reduce::TempStorage temp;
  __shared__ bool last;
  const index_t o = blockIdx.x / splits;
  const int s = static_cast<int>(blockIdx.x % splits);
  index_t el[pattern::max_elementary] = {};
  const auto idx = output_index(dst, node, o, el);
  const A part = node.accumulate_strided(el, static_cast<index_t>(s) * 256 + threadIdx.x, static_cast<index_t>(splits) * 256);
  const A total = block_reduce(temp).Reduce(part, combine_fn<Node>{});
  if (threadIdx.x == 0) {
    partials[o * splits + s] = total;
    __threadfence();  // the part is visible before the arrival is counted
    last = atomicAdd(&arrivals[o], 1u) == static_cast<unsigned>(splits - 1);
  }
  __syncthreads();
  if (!last) return;
  // The last block of this output combines every block's part (volatile: not from a stale L1).
  A v = Node::identity();
  for (int k = static_cast<int>(threadIdx.x); k < splits; k += 256)
    v = Node::combine(v, *static_cast<volatile const A*>(partials + o * splits + k));
  const A all_parts = block_reduce(temp).Reduce(v, combine_fn<Node>{});
  if (threadIdx.x == 0) {
    dst(idx) = convert<T>(node.finish(all_parts));
    arrivals[o] = 0;  // ready for the next launch
  }
}

/// Device memory the split reductions keep between launches: a counter of arrived blocks per
/// output (zero between launches: each launch's last block resets its own) and their parts.
class reduction_workspace {
 public:
  reduction_workspace() = default;
  reduction_workspace(const reduction_workspace&) = delete;
  reduction_workspace& operator=(const reduction_workspace&) = delete;
  ~reduction_workspace() {
    if (data_) cudaFree(data_);
  }
  /// At least `bytes` bytes, the first `counter_bytes` of them zero, ordered before later work
  /// on `stream`. Growing frees the old memory (cudaFree waits for the device).
  void* get(std::size_t bytes, cudaStream_t stream) {
    if (bytes > size_) {
      if (data_) EINLM_CUDA_CHECK(cudaFree(data_));
      data_ = nullptr;
      size_ = 0;
      EINLM_CUDA_CHECK(cudaMalloc(&data_, bytes));
      EINLM_CUDA_CHECK(cudaMemsetAsync(data_, 0, bytes, stream));
      size_ = bytes;
    }
    return data_;
  }

 private:
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

/// dst ← the reduce node `node` (of dst's shape) in one launch on `stream`; false (nothing
/// launched) when each output combines fewer than 16 elements and one thread per output suits.
/// Fewer outputs than 4 blocks per multiprocessor, each of at least 16384 elements, split each
/// output among blocks; the last block of an output to finish combines the parts (`workspace`).
template <class DstV, class Node>
bool launch_reduction(const DstV& dst, const Node& node, cudaStream_t stream, int multiprocessors,
                      reduction_workspace& workspace) {
  using A = typename Node::accumulate_type;
  const index_t outputs = dst.size(), count = node.reduced_count();
  const index_t max_blocks = static_cast<index_t>(multiprocessors) * 32, wanted = static_cast<index_t>(multiprocessors) * 4;
  if (outputs < wanted && count >= 16384) {
    const index_t splits = std::max<index_t>(2, std::min((wanted + outputs - 1) / outputs, count / 4096));
    const std::size_t counter_bytes = (static_cast<std::size_t>(outputs) * sizeof(unsigned) + 15) / 16 * 16;
    auto* base = static_cast<unsigned char*>(
        workspace.get(counter_bytes + static_cast<std::size_t>(outputs * splits) * sizeof(A), stream));
    reduce_split_kernel<<<static_cast<unsigned>(outputs * splits), 256, 0, stream>>>(
        dst, node, static_cast<int>(splits), reinterpret_cast<A*>(base + counter_bytes), reinterpret_cast<unsigned*>(base));
  } else if (node.reduces_outer_axes()) {
    // Enough block rows (a power of two, up to 32) that about 4 blocks of 1024 threads per
    // multiprocessor are busy, and no more than there are reduced positions.
    const index_t groups = (outputs + 31) / 32;
    int ways = 1;
    while (ways < 32 && groups * 32 * ways < static_cast<index_t>(multiprocessors) * 4096 && ways * 2 <= count) ways *= 2;
    const dim3 block(32, static_cast<unsigned>(ways));
    const auto grid = static_cast<unsigned>(std::min(groups, max_blocks));
    reduce_columns_kernel<<<grid, block, 0, stream>>>(dst, node, outputs);
  } else if (count < 16) {
    return false;
  } else if (count <= 2048) {
    const auto grid = static_cast<unsigned>(std::min((outputs + 7) / 8, max_blocks));
    reduce_rows_kernel<32><<<grid, 256, 0, stream>>>(dst, node, outputs);
  } else {
    const auto grid = static_cast<unsigned>(std::min(outputs, max_blocks));
    reduce_rows_kernel<256><<<grid, 256, 0, stream>>>(dst, node, outputs);
  }
  EINLM_CUDA_CHECK(cudaGetLastError());
  return true;
}

}  // namespace einlm::detail
