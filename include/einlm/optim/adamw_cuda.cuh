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
// elements, and launches one kernel over all chunks on the optimizer's stream without waiting for
// it (optim/multi_tensor_cuda.cuh); launches() counts the kernels. adamw_cuda(const adamw&) and
// to_host() move the whole state between the host optimizer and this one (a checkpoint's
// optimizer state is the host's). An update before begin_step(),
// a shape mismatch, a second update of a name in one step or a non-finite learning rate is an
// error naming the parameter, raised before anything changes.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <variant>

#include <cuda_runtime_api.h>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/exec/cuda.cuh"
#include "einlm/optim/adamw.hpp"
#include "einlm/optim/multi_tensor_cuda.cuh"

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

struct step_scalars {
  float beta1, beta2, step_size, inv_sqrt_bc2, eps;
};

static __global__ void adamw_kernel(const tensor_entry* __restrict__ tensors, const multi_tensor::chunk_entry* __restrict__ chunks,
                             index_t chunk_count, step_scalars s) {
  multi_tensor::for_each_chunk_element(tensors, chunks, chunk_count, [&](const tensor_entry& t, index_t i) {
    const float g = multi_tensor::gradient_at(t.grad, t.grad_bf16, i);
    const float m = s.beta1 * t.m[i] + (1.0f - s.beta1) * g;
    const float v = s.beta2 * t.v[i] + (1.0f - s.beta2) * g * g;
    t.m[i] = m;
    t.v[i] = v;
    t.param[i] = t.param[i] * t.decay - s.step_size * m / (sqrtf(v) * s.inv_sqrt_bc2 + s.eps);
  });
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

  /// The host optimizer's options, step count and moments, on the device: a checkpointed state
  /// resumed on the GPU. Moments are float there; a parameter with double moments is a
  /// value_error naming it.
  explicit adamw_cuda(const adamw& host, cudaStream_t stream = default_cuda_executor().stream())
      : adamw_cuda(host.options(), stream) {
    std::map<std::string, moments> uploaded;
    for (const auto& [name, mom] : host.state()) {
      const auto* f = std::get_if<adamw_moments<float>>(&mom);
      if (!f)
        throw value_error(einlm::detail::concat("adamw_cuda: parameter '", name,
                                                "' has double moments; the GPU optimizers keep float state"));
      uploaded.emplace(name, moments{to_device(f->m), to_device(f->v)});  // (N,) twice
    }
    state_ = std::move(uploaded);
    step_ = host.step();
  }

  /// The same optimizer on the host (options, step count, moments copied back; waits for the
  /// device): what a checkpoint saves (optim::adamw::write_state).
  adamw to_host() const {
    adamw h(options_);
    h.set_step(step_);
    for (const auto& [name, mom] : state_)
      h.state().emplace(name, adamw_moments<float>{einlm::to_host(mom.m), einlm::to_host(mom.v)});  // (N,) twice
    return h;
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
    queue_.push("adamw_cuda", name,
                {param.data(), grad.data(), it->second.m.data(), it->second.v.data(), n,
                 static_cast<float>(1.0 - lr_ * weight_decay), std::is_same_v<G, bf16> ? 1 : 0});
  }

  /// Launches the queued updates as one kernel on the optimizer's stream.
  void end_step() {
    using namespace detail::fused_adamw;
    const double t = static_cast<double>(step_);
    const step_scalars s{static_cast<float>(options_.beta1), static_cast<float>(options_.beta2),
                         static_cast<float>(lr_ / (1.0 - std::pow(options_.beta1, t))),
                         static_cast<float>(1.0 / std::sqrt(1.0 - std::pow(options_.beta2, t))),
                         static_cast<float>(options_.eps)};
    const bool launched = queue_.launch(stream_, [&](const tensor_entry* tensors, const detail::multi_tensor::chunk_entry* chunks,
                                                     index_t count, unsigned blocks) {
      adamw_kernel<<<blocks, 256, 0, stream_>>>(tensors, chunks, count, s);
    });
    if (launched) ++launches_;
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
  detail::multi_tensor::multi_tensor_queue<detail::fused_adamw::tensor_entry> queue_;
};

}  // namespace einlm::optim
