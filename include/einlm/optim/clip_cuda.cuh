// einlm/optim/clip_cuda.cuh — gradient clipping by global L2 norm on the GPU, with
// optim::clip_grad_norm_each's semantics (CS336, torch.nn.utils.clip_grad_norm_). nvcc only.
//
//   optim::grad_norm_clipper clip;                          // keeps its device buffers between calls
//   double norm = clip(1.0, [&](auto&& f) { for (auto* g : gradients) f(*g); });
//
// Gradients: contiguous device tensors of float or bf16 (each(f) calls f(g) for every one). The
// sum of squares is one multi-tensor launch — each chunk of at most 65,536 elements squared and
// summed in double by one block, in a fixed order — and a one-block launch that adds the chunks'
// sums in order, so a norm has the same bits on every run. The norm comes back to the host (the
// call waits for it: the trainer checks it before the optimizer touches anything). When it
// exceeds max_norm one more multi-tensor launch scales every gradient by max_norm / (norm + 1e-6),
// multiplied in float and rounded to the gradient's type, as the host's clipping does. A NaN or
// infinite norm scales nothing. max_norm = INFINITY only measures. A max_norm that is not > 0, a
// non-contiguous gradient or another element type is an error raised before any launch.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include <cuda_runtime_api.h>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/exec/cuda.cuh"
#include "einlm/optim/clip.hpp"
#include "einlm/optim/multi_tensor_cuda.cuh"

static_assert(EINLM_HAS_CUDA, "einlm/optim/clip_cuda.cuh must be compiled by nvcc");

namespace einlm::optim {

namespace detail::fused_clip {

/// One gradient of the step.
struct tensor_entry {
  void* grad;
  index_t n;
  int grad_bf16;  // the gradient's storage: 0 float, 1 bf16
};

constexpr int block_threads = 256;

/// partial[c] = Σ g² over chunk c, in double: each thread adds its strided elements in order, then
/// the block adds the threads' sums pairwise in a fixed tree.
static __global__ void chunk_squares_kernel(const tensor_entry* __restrict__ tensors,
                                            const multi_tensor::chunk_entry* __restrict__ chunks, index_t chunk_count,
                                            double* __restrict__ partial) {
  __shared__ double sums[block_threads];
  for (index_t c = blockIdx.x; c < chunk_count; c += gridDim.x) {
    const multi_tensor::chunk_entry ch = chunks[c];
    const tensor_entry t = tensors[ch.tensor];
    const index_t end = t.n < ch.begin + multi_tensor::chunk_elements ? t.n : ch.begin + multi_tensor::chunk_elements;
    double s = 0;
    for (index_t i = ch.begin + threadIdx.x; i < end; i += blockDim.x) {
      const double g = multi_tensor::gradient_at(t.grad, t.grad_bf16, i);
      s += g * g;
    }
    sums[threadIdx.x] = s;
    __syncthreads();
    for (unsigned w = blockDim.x / 2; w > 0; w >>= 1) {
      if (threadIdx.x < w) sums[threadIdx.x] += sums[threadIdx.x + w];
      __syncthreads();
    }
    if (threadIdx.x == 0) partial[c] = sums[0];
    __syncthreads();
  }
}

/// *total = Σ partial[c] (one block: each thread adds its strided chunks in order, then a fixed tree).
static __global__ void total_kernel(const double* __restrict__ partial, index_t count, double* __restrict__ total) {
  __shared__ double sums[block_threads];
  double s = 0;
  for (index_t c = threadIdx.x; c < count; c += blockDim.x) s += partial[c];
  sums[threadIdx.x] = s;
  __syncthreads();
  for (unsigned w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) sums[threadIdx.x] += sums[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) *total = sums[0];
}

/// g ← g · scale, in float, rounded to the gradient's type.
static __global__ void scale_kernel(const tensor_entry* __restrict__ tensors, const multi_tensor::chunk_entry* __restrict__ chunks,
                                    index_t chunk_count, float scale) {
  multi_tensor::for_each_chunk_element(tensors, chunks, chunk_count, [&](const tensor_entry& t, index_t i) {
    if (t.grad_bf16) {
      bf16* g = static_cast<bf16*>(t.grad);
      g[i] = convert<bf16>(convert<float>(g[i]) * scale);
    } else {
      static_cast<float*>(t.grad)[i] *= scale;
    }
  });
}

}  // namespace detail::fused_clip

/// Clips device gradients to a global L2 norm (see the file comment); keeps its device buffers
/// between calls, so a training loop makes no allocation per step.
class grad_norm_clipper {
 public:
  explicit grad_norm_clipper(cudaStream_t stream = default_cuda_executor().stream()) : stream_(stream) {}

  /// The global L2 norm of the gradients each(f) visits, before clipping; scales them to
  /// max_norm when it is larger (max_norm = INFINITY: only the norm).
  template <class Each>
  double operator()(double max_norm, Each&& each) {
    using namespace detail::fused_clip;
    if (!(max_norm > 0)) throw value_error(einlm::detail::concat("clip_grad_norm_cuda: max_norm must be > 0, got ", max_norm));
    queue(each);
    double norm = 0;
    const bool launched = queue_.launch(stream_, [&](const tensor_entry* tensors, const detail::multi_tensor::chunk_entry* chunks,
                                                     index_t count, unsigned blocks) {
      if (partial_.size() < count + 1) partial_ = tensor<double, dims<1>, device>(dims<1>(count + 1));  // (chunks + 1,)
      chunk_squares_kernel<<<blocks, block_threads, 0, stream_>>>(tensors, chunks, count, partial_.data());
      total_kernel<<<1, block_threads, 0, stream_>>>(partial_.data(), count, partial_.data() + count);
      EINLM_CUDA_CHECK(cudaGetLastError());
      EINLM_CUDA_CHECK(cudaMemcpyAsync(&norm, partial_.data() + count, sizeof(double), cudaMemcpyDeviceToHost, stream_));
      EINLM_CUDA_CHECK(cudaStreamSynchronize(stream_));
      launches_ += 2;
    });
    if (!launched) return 0.0;
    norm = std::sqrt(norm);
    if (norm > max_norm) {
      const auto scale = static_cast<float>(max_norm / (norm + clip_eps));
      queue(each);
      queue_.launch(stream_, [&](const tensor_entry* tensors, const detail::multi_tensor::chunk_entry* chunks, index_t count,
                                 unsigned blocks) { scale_kernel<<<blocks, block_threads, 0, stream_>>>(tensors, chunks, count, scale); });
      ++launches_;
    }
    return norm;
  }

  /// Kernels launched so far (two to measure, one more to scale).
  std::uint64_t launches() const { return launches_; }

 private:
  template <class Each>
  void queue(Each& each) {
    queue_.clear();
    std::size_t k = 0;
    each([&](auto& g_in) {
      auto g = as_view(g_in);
      using V = decltype(g);
      using T = std::remove_const_t<typename V::value_type>;
      static_assert(std::is_same_v<typename V::space, device>, "clip_grad_norm_cuda: gradients must be in device memory");
      static_assert(std::is_same_v<T, float> || std::is_same_v<T, bf16>, "clip_grad_norm_cuda: gradients are float or bf16");
      if (!g.is_contiguous()) throw shape_error("clip_grad_norm_cuda: gradients must be contiguous");
      // Names only keep the queue's one-update-per-step rule; a gradient is named by its position.
      queue_.push("clip_grad_norm_cuda", std::to_string(k++),
                  {const_cast<T*>(g.data()), g.size(), std::is_same_v<T, bf16> ? 1 : 0});
    });
  }

  cudaStream_t stream_;
  std::uint64_t launches_ = 0;
  tensor<double, dims<1>, device> partial_;  // (chunks + 1,) the chunks' sums, then the total
  detail::multi_tensor::multi_tensor_queue<detail::fused_clip::tensor_entry> queue_;
};

/// The same once, with a clipper of its own: the norm before clipping (see the file comment).
template <class Each>
double clip_grad_norm_cuda_each(double max_norm, Each&& each) {
  grad_norm_clipper clip;
  return clip(max_norm, std::forward<Each>(each));
}

}  // namespace einlm::optim
