// einlm/optim/adamw_cuda.cuh — AdamW on the GPU: every parameter of a step in one fused
// multi-tensor launch. nvcc only.
//
//   optim::adamw_cuda opt({.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1});
//   opt.begin_step(schedule(it));                       // t ← t + 1, the learning rate of this step
//   opt.update("layers.0.ffn.w1.weight", w1, g_w1);     // queued: device tensors
//   opt.update("ln_final.weight", g, g_g, 0.0);         // a per-parameter weight decay
//   opt.end_step();                                     // one launch for everything queued
//
// The update is optim::adamw's (torch.optim.AdamW's), in float:
//   θ ← θ·(1 − lr·λ);  m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²;
//   θ ← θ − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
// Parameters are contiguous float device tensors (the master weights of bf16 training);
// gradients are contiguous device tensors of float or bf16 of the same shape. The moments live on
// the device, float, one pair per parameter name, created (zero) at a name's first update; a
// later update of the name with another size is a shape_error naming it. end_step() uploads one
// table of (parameter, gradient, moments, length, decay) and one of chunks of at most 65,536
// elements (a copy from pageable memory: the driver has taken the bytes when the call returns;
// the next step's upload is ordered after this kernel on the same stream), and launches one
// kernel over all chunks on the optimizer's stream without waiting for it; launches() counts the
// kernels. An update before begin_step(), a shape mismatch or a
// non-finite learning rate is an error naming the parameter, raised before anything changes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/exec/cuda.cuh"
#include "einlm/optim/adamw.hpp"

static_assert(EINLM_HAS_CUDA, "einlm/optim/adamw_cuda.cuh must be compiled by nvcc");

namespace einlm::optim {

namespace detail::fused_adamw {

/// One parameter of a step.
struct tensor_entry {
  float* param;
  const void* grad;
  float* m;
  float* v;
  index_t n;
  float decay;    // 1 − lr·λ
  int grad_bf16;  // the gradient's storage: 0 float, 1 bf16
};

/// A run of at most chunk_elements elements of one parameter.
struct chunk_entry {
  int tensor;
  index_t begin;
};

constexpr index_t chunk_elements = index_t{1} << 16;

struct step_scalars {
  float beta1, beta2, step_size, inv_sqrt_bc2, eps;
};

__global__ void adamw_kernel(const tensor_entry* __restrict__ tensors, const chunk_entry* __restrict__ chunks,
                             index_t chunk_count, step_scalars s) {
  for (index_t c = blockIdx.x; c < chunk_count; c += gridDim.x) {
    const chunk_entry ch = chunks[c];
    const tensor_entry t = tensors[ch.tensor];
    const index_t end = t.n < ch.begin + chunk_elements ? t.n : ch.begin + chunk_elements;
    for (index_t i = ch.begin + threadIdx.x; i < end; i += blockDim.x) {
      const float g = t.grad_bf16 ? convert<float>(static_cast<const bf16*>(t.grad)[i]) : static_cast<const float*>(t.grad)[i];
      const float m = s.beta1 * t.m[i] + (1.0f - s.beta1) * g;
      const float v = s.beta2 * t.v[i] + (1.0f - s.beta2) * g * g;
      t.m[i] = m;
      t.v[i] = v;
      t.param[i] = t.param[i] * t.decay - s.step_size * m / (sqrtf(v) * s.inv_sqrt_bc2 + s.eps);
    }
  }
}

}  // namespace detail::fused_adamw

class adamw_cuda {
 public:
  /// The moments of one parameter on the device.
  struct moments {
    tensor<float, dims<1>, device> m, v;  // (N,), (N,)
  };

  explicit adamw_cuda(const adamw_options& options = {}, cudaStream_t stream = default_cuda_executor().stream())
      : options_(options), stream_(stream) {
    adamw check(options);  // the same option checks as on the host
    (void)check;
  }

  const adamw_options& options() const { return options_; }
  std::int64_t step() const { return step_; }
  double learning_rate() const { return lr_; }
  std::uint64_t launches() const { return launches_; }

  /// Starts step t + 1 with learning rate lr; forgets updates queued and not launched.
  void begin_step(double lr) {
    if (!(lr >= 0) || !std::isfinite(lr))
      throw value_error(einlm::detail::concat("adamw_cuda: the learning rate must be finite and ≥ 0, got ", lr));
    lr_ = lr;
    ++step_;
    queue_.clear();
  }

  /// Queues one parameter's update with the options' weight decay.
  template <class E, class G>
  void update(const std::string& name, tensor<float, E, device>& param, const tensor<G, E, device>& grad) {
    update(name, param, grad, options_.weight_decay);
  }

  /// Queues one parameter's update with its own weight decay.
  template <class E, class G>
  void update(const std::string& name, tensor<float, E, device>& param, const tensor<G, E, device>& grad, double weight_decay) {
    static_assert(std::is_same_v<G, float> || std::is_same_v<G, bf16>, "adamw_cuda: gradients are float or bf16");
    if (step_ == 0) throw value_error("adamw_cuda: call begin_step(lr) before update()");
    if (to_array(param.extents()) != to_array(grad.extents()))
      throw shape_error(einlm::detail::concat("adamw_cuda: parameter '", name, "' has shape ", shape_string(param.extents()),
                                              " but its gradient has shape ", shape_string(grad.extents())));
    const index_t n = param.size();
    auto it = state_.find(name);
    if (it == state_.end()) {
      moments fresh{tensor<float, dims<1>, device>(dims<1>(n)), tensor<float, dims<1>, device>(dims<1>(n))};
      EINLM_CUDA_CHECK(cudaMemsetAsync(fresh.m.data(), 0, fresh.m.bytes(), stream_));
      EINLM_CUDA_CHECK(cudaMemsetAsync(fresh.v.data(), 0, fresh.v.bytes(), stream_));
      it = state_.emplace(name, std::move(fresh)).first;
    } else if (it->second.m.size() != n) {
      throw shape_error(einlm::detail::concat("adamw_cuda: parameter '", name, "' changed its size (", n,
                                              " elements now) since its first update"));
    }
    queue_.push_back({param.data(), grad.data(), it->second.m.data(), it->second.v.data(), n,
                      static_cast<float>(1.0 - lr_ * weight_decay), std::is_same_v<G, bf16> ? 1 : 0});
  }

  /// Launches the queued updates as one kernel on the optimizer's stream.
  void end_step() {
    using namespace detail::fused_adamw;
    if (queue_.empty()) return;
    std::vector<chunk_entry> chunks;
    for (std::size_t t = 0; t < queue_.size(); ++t)
      for (index_t b = 0; b < queue_[t].n; b += chunk_elements) chunks.push_back({static_cast<int>(t), b});
    if (chunks.empty()) {
      queue_.clear();
      return;
    }
    // One upload: the tensor table, then the chunk table.
    const std::size_t tensor_bytes = queue_.size() * sizeof(tensor_entry), chunk_bytes = chunks.size() * sizeof(chunk_entry);
    const std::size_t offset = (tensor_bytes + 15) / 16 * 16;
    if (table_.size() < static_cast<index_t>(offset + chunk_bytes))  // grows only: a step in flight may still read it
      table_ = tensor<unsigned char, dims<1>, device>(dims<1>(static_cast<index_t>(offset + chunk_bytes)));  // (bytes,)
    staging_.assign(offset + chunk_bytes, 0);
    std::memcpy(staging_.data(), queue_.data(), tensor_bytes);
    std::memcpy(staging_.data() + offset, chunks.data(), chunk_bytes);
    EINLM_CUDA_CHECK(cudaMemcpyAsync(table_.data(), staging_.data(), staging_.size(), cudaMemcpyHostToDevice, stream_));
    const double t = static_cast<double>(step_);
    const step_scalars s{static_cast<float>(options_.beta1), static_cast<float>(options_.beta2),
                         static_cast<float>(lr_ / (1.0 - std::pow(options_.beta1, t))),
                         static_cast<float>(1.0 / std::sqrt(1.0 - std::pow(options_.beta2, t))),
                         static_cast<float>(options_.eps)};
    const auto count = static_cast<index_t>(chunks.size());
    const auto blocks = static_cast<unsigned>(std::min<index_t>(count, index_t{8} * einlm::detail::multiprocessor_count()));
    adamw_kernel<<<blocks, 256, 0, stream_>>>(reinterpret_cast<const tensor_entry*>(table_.data()),
                                              reinterpret_cast<const chunk_entry*>(table_.data() + offset), count, s);
    EINLM_CUDA_CHECK(cudaGetLastError());
    ++launches_;
    queue_.clear();
  }

  /// The moments by parameter name (device tensors).
  const std::map<std::string, moments>& state() const { return state_; }
  std::map<std::string, moments>& state() { return state_; }
  /// Restores the step count (after loading the moments).
  void set_step(std::int64_t step) { step_ = step; }

 private:
  adamw_options options_;
  cudaStream_t stream_;
  std::int64_t step_ = 0;
  double lr_ = 0;
  std::uint64_t launches_ = 0;
  std::map<std::string, moments> state_;
  std::vector<detail::fused_adamw::tensor_entry> queue_;
  std::vector<unsigned char> staging_;
  tensor<unsigned char, dims<1>, device> table_;  // (bytes,) the uploaded tables
};

}  // namespace einlm::optim
