// einlm/optim/sgd_cuda.cuh — SGD with momentum and AdaGrad on the GPU: every parameter of a step in
// one fused multi-tensor launch, as adamw_cuda does. nvcc only.
//
//   optim::sgd_cuda opt({.momentum = 0.9, .weight_decay = 1e-4});
//   opt.begin_step(lr);                                   // t ← t + 1, the learning rate of this step
//   opt.update("layers.0.ffn.w1.weight", w1, g_w1);       // queued: device tensors
//   opt.update("ln_final.weight", g, g_g, 0.0);           // a per-parameter weight decay
//   opt.end_step();                                       // one launch for everything queued
//
// The updates are optim::sgd's and optim::adagrad's (torch.optim.SGD's and Adagrad's), in float:
//   SGD:      g ← g + λθ;  b ← g on a name's first update, else μb + (1 − dampening)g;
//             θ ← θ − lr·(g + μb) (nesterov) or θ − lr·b; without momentum θ ← θ − lr·g
//   AdaGrad:  g ← g + λθ;  s ← s + g² (s starts at initial_accumulator_value);
//             θ ← θ − lr / (1 + (t − 1)·lr_decay) · g / (√s + ε)
// Parameters are contiguous float device tensors (the master weights of bf16 training);
// gradients are contiguous device tensors of float or bf16 of the same shape. The state (SGD's
// momentum buffer, none without momentum; AdaGrad's sum) lives on the device, float, one buffer
// per parameter name, allocated at a name's first update and set by that step's kernel (no
// separate fill); a later update of the name with another size is a shape_error naming it.
// end_step() launches one kernel over all queued parameters on the optimizer's stream without
// waiting for it (optim/multi_tensor_cuda.cuh); launches() counts the kernels. Options are
// checked as the host optimizers check them; an update before begin_step(), a shape mismatch, a
// second update of a name in one step or a non-finite learning rate is an error naming the
// parameter, raised before anything changes. A constructor from the host optimizer and to_host()
// move the whole state between the two (a checkpoint's optimizer state is the host's).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include <cuda_runtime_api.h>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/exec/cuda.cuh"
#include "einlm/optim/multi_tensor_cuda.cuh"
#include "einlm/optim/sgd.hpp"

static_assert(EINLM_HAS_CUDA, "einlm/optim/sgd_cuda.cuh must be compiled by nvcc");

namespace einlm::optim {

namespace detail::fused_sgd {

/// One parameter of a step: SGD's momentum buffer or AdaGrad's sum in `state` (null for SGD
/// without momentum), `fresh` on the step that created it.
struct tensor_entry {
  float* param;
  const void* grad;
  float* state;
  index_t n;
  float weight_decay;
  int grad_bf16;  // the gradient's storage: 0 float, 1 bf16
  int fresh;
};

__device__ inline float decayed_gradient(const tensor_entry& t, index_t i) {
  return multi_tensor::gradient_at(t.grad, t.grad_bf16, i) + t.weight_decay * t.param[i];
}

struct sgd_scalars {
  float lr, momentum, keep;  // keep = 1 − dampening
  int nesterov;
};

static __global__ void sgd_kernel(const tensor_entry* __restrict__ tensors, const multi_tensor::chunk_entry* __restrict__ chunks,
                           index_t chunk_count, sgd_scalars s) {
  multi_tensor::for_each_chunk_element(tensors, chunks, chunk_count, [&](const tensor_entry& t, index_t i) {
    const float g = decayed_gradient(t, i);
    if (!t.state) {
      t.param[i] -= s.lr * g;
      return;
    }
    const float b = t.fresh ? g : s.momentum * t.state[i] + s.keep * g;
    t.state[i] = b;
    t.param[i] -= s.lr * (s.nesterov ? g + s.momentum * b : b);
  });
}

struct adagrad_scalars {
  float clr, eps, initial;  // clr = lr / (1 + (t − 1)·lr_decay)
};

static __global__ void adagrad_kernel(const tensor_entry* __restrict__ tensors, const multi_tensor::chunk_entry* __restrict__ chunks,
                               index_t chunk_count, adagrad_scalars s) {
  multi_tensor::for_each_chunk_element(tensors, chunks, chunk_count, [&](const tensor_entry& t, index_t i) {
    const float g = decayed_gradient(t, i);
    const float sum = (t.fresh ? s.initial : t.state[i]) + g * g;
    t.state[i] = sum;
    t.param[i] -= s.clr * g / (sqrtf(sum) + s.eps);
  });
}

/// What sgd_cuda and adagrad_cuda share: the options, the step counter, the per-name device
/// buffers, the queue and the update calls; `who` names the optimizer in errors, and `with_state`
/// tells whether it keeps a buffer per parameter.
template <class Options>
class fused_optimizer_base {
 public:
  fused_optimizer_base(const char* who, const Options& options, bool with_state, cudaStream_t stream)
      : stream_(stream), options_(options), who_(who), with_state_(with_state) {}

  const Options& options() const { return options_; }
  std::int64_t step() const { return counter_.step(); }
  double learning_rate() const { return counter_.learning_rate(); }
  std::uint64_t launches() const { return launches_; }
  /// Restores the step count (after loading the state).
  void set_step(std::int64_t step) { counter_.set_step(step); }
  /// The state buffers by parameter name (device tensors).
  const std::map<std::string, tensor<float, dims<1>, device>>& state() const { return state_; }
  std::map<std::string, tensor<float, dims<1>, device>>& state() { return state_; }

  /// Replaces the step count and the state with a host optimizer's (`host_state`: its state(),
  /// float buffers; a double one is a value_error naming the parameter).
  template <class Buffers>
  void load_host_state(std::int64_t step, const Buffers& host_state) {
    std::map<std::string, tensor<float, dims<1>, device>> uploaded;
    for (const auto& [name, buffer] : host_state) {
      const auto* f = std::get_if<tensor<float, dims<1>, host>>(&buffer);
      if (!f)
        throw value_error(einlm::detail::concat(who_, ": parameter '", name,
                                                "' has a double state buffer; the GPU optimizers keep float state"));
      uploaded.emplace(name, to_device(*f));  // (N,)
    }
    state_ = std::move(uploaded);
    queue_.clear();
    created_.clear();
    counter_.set_step(step);
  }

  /// Copies the step count and the state into a host optimizer of the same kind (waits for the device).
  template <class Host>
  void store_host_state(Host& host) const {
    host.set_step(step());
    host.state().clear();
    for (const auto& [name, buffer] : state_) host.state().emplace(name, einlm::to_host(buffer));  // (N,)
  }

  /// Starts step t + 1 with learning rate lr; forgets updates queued and not launched (and the
  /// buffers they created, which only their kernel would have set).
  void begin_step(double lr) {
    counter_.begin(who_, lr);
    queue_.clear();
    for (const auto& name : created_) state_.erase(name);
    created_.clear();
  }

  /// Queues one parameter's update with the options' weight decay.
  template <class E, class G>
  void update(const std::string& name, tensor<float, E, device>& param, const tensor<G, E, device>& grad) {
    update(name, param, grad, options_.weight_decay);
  }

  /// Queues one parameter's update with its own weight decay.
  template <class E, class G>
  void update(const std::string& name, tensor<float, E, device>& param, const tensor<G, E, device>& grad, double weight_decay) {
    static_assert(std::is_same_v<G, float> || std::is_same_v<G, bf16>, "gradients are float or bf16");
    if (step() == 0) throw value_error(einlm::detail::concat(who_, ": call begin_step(lr) before update()"));
    if (to_array(param.extents()) != to_array(grad.extents()))
      throw shape_error(einlm::detail::concat(who_, ": parameter '", name, "' has shape ", shape_string(param.extents()),
                                              " but its gradient has shape ", shape_string(grad.extents())));
    const index_t n = param.size();
    float* buffer = nullptr;
    bool fresh = false;
    if (with_state_) {
      auto it = state_.find(name);
      if (it != state_.end() && it->second.size() != n)
        throw shape_error(einlm::detail::concat(who_, ": parameter '", name, "' changed its size (", n,
                                                " elements now) since its first update"));
      // A name queued twice in one step has its buffer by the second update, so fresh is false
      // there, and the queue's error leaves everything as it was.
      fresh = it == state_.end();
      if (fresh) {
        it = state_.emplace(name, tensor<float, dims<1>, device>(dims<1>(n))).first;  // (N,) set by the kernel
        created_.push_back(name);
      }
      buffer = it->second.data();
    }
    queue_.push(who_, name, {param.data(), grad.data(), buffer, n, static_cast<float>(weight_decay), std::is_same_v<G, bf16> ? 1 : 0,
                             fresh ? 1 : 0});
  }

 protected:
  /// The options, after the host optimizer Host has checked them (value_error).
  template <class Host>
  static const Options& checked(const Options& o) {
    Host check(o);
    (void)check;
    return o;
  }

  /// Uploads the queue and starts the kernel through start(tensors, chunks, count, blocks).
  template <class Launch>
  void launch(Launch&& start) {
    if (queue_.launch(stream_, start)) ++launches_;
    created_.clear();
  }

  cudaStream_t stream_;
  Options options_;

 private:
  const char* who_;
  bool with_state_;
  detail::step_counter counter_;
  std::uint64_t launches_ = 0;
  std::map<std::string, tensor<float, dims<1>, device>> state_;
  std::vector<std::string> created_;  // buffers created by the queued, not yet launched, updates
  multi_tensor::multi_tensor_queue<tensor_entry> queue_;
};

}  // namespace detail::fused_sgd

/// SGD with momentum (torch.optim.SGD) on the GPU, one launch per step.
class sgd_cuda : public detail::fused_sgd::fused_optimizer_base<sgd_options> {
 public:
  explicit sgd_cuda(const sgd_options& options = {}, cudaStream_t stream = default_cuda_executor().stream())
      : fused_optimizer_base("sgd_cuda", checked<sgd>(options), options.momentum != 0, stream) {}

  /// The host optimizer's options, step count and momentum buffers, on the device.
  explicit sgd_cuda(const sgd& host, cudaStream_t stream = default_cuda_executor().stream()) : sgd_cuda(host.options(), stream) {
    load_host_state(host.step(), host.state());
  }

  /// The same optimizer on the host (waits for the device): what a checkpoint saves.
  sgd to_host() const {
    sgd h(options_);
    store_host_state(h);
    return h;
  }

  /// Launches the queued updates as one kernel on the optimizer's stream.
  void end_step() {
    using namespace detail::fused_sgd;
    const sgd_scalars s{static_cast<float>(learning_rate()), static_cast<float>(options_.momentum),
                        static_cast<float>(1.0 - options_.dampening), options_.nesterov ? 1 : 0};
    launch([&](const tensor_entry* tensors, const detail::multi_tensor::chunk_entry* chunks, index_t count, unsigned blocks) {
      sgd_kernel<<<blocks, 256, 0, stream_>>>(tensors, chunks, count, s);
    });
  }
};

/// AdaGrad (torch.optim.Adagrad) on the GPU, one launch per step.
class adagrad_cuda : public detail::fused_sgd::fused_optimizer_base<adagrad_options> {
 public:
  explicit adagrad_cuda(const adagrad_options& options = {}, cudaStream_t stream = default_cuda_executor().stream())
      : fused_optimizer_base("adagrad_cuda", checked<adagrad>(options), true, stream) {}

  /// The host optimizer's options, step count and sums, on the device.
  explicit adagrad_cuda(const adagrad& host, cudaStream_t stream = default_cuda_executor().stream())
      : adagrad_cuda(host.options(), stream) {
    load_host_state(host.step(), host.state());
  }

  /// The same optimizer on the host (waits for the device): what a checkpoint saves.
  adagrad to_host() const {
    adagrad h(options_);
    store_host_state(h);
    return h;
  }

  /// Launches the queued updates as one kernel on the optimizer's stream.
  void end_step() {
    using namespace detail::fused_sgd;
    const double clr = learning_rate() / (1.0 + static_cast<double>(step() - 1) * options_.lr_decay);
    const adagrad_scalars s{static_cast<float>(clr), static_cast<float>(options_.eps),
                            static_cast<float>(options_.initial_accumulator_value)};
    launch([&](const tensor_entry* tensors, const detail::multi_tensor::chunk_entry* chunks, index_t count, unsigned blocks) {
      adagrad_kernel<<<blocks, 256, 0, stream_>>>(tensors, chunks, count, s);
    });
  }
};

}  // namespace einlm::optim
