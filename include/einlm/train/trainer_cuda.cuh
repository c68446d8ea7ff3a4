// einlm/train/trainer_cuda.cuh — train::fit with the whole step on the GPU. nvcc only.
//
//   nn::transformer_lm<float> model(config, seed);               // the master weights, on the host
//   train::fit_result r = train::fit_cuda(model, train_tokens, &val_tokens, options, std::cerr);
//
// The same loop, options, logs, metrics, checkpoints and resume as train::fit (train/trainer.hpp),
// with every step's arithmetic on the device: an nn::transformer_lm_cuda working copy runs forward
// and backward (float storage for fp32 training, bf16 for nn::precision::bf16_mixed), the global
// gradient norm and the clipping are optim::grad_norm_clipper's launches, and the optimizer is the
// fused GPU twin of the one chosen (optim::adamw_cuda, sgd_cuda, adagrad_cuda: one launch for all
// parameters). In fp32 the optimizer updates the working copy's float weights; in mixed precision
// it updates float master weights kept on the device from its bf16 gradients, and the working
// copy's bf16 weights are refreshed from them (rounded to nearest even, one launch per tensor)
// before the next forward pass. Validation runs on the device (transformer_lm_cuda::loss). A step
// moves nothing but the batch's token ids to the device and the loss and gradient norm back.
//
// `model` and the host optimizer are made current — weights and optimizer state copied back —
// only when a checkpoint is written, when training stops on a NaN (the state before the failing
// step) and at the end, so a checkpoint is the host trainer's: it loads anywhere and resumes on
// either device, and a resumed run uploads the checkpoint's weights and optimizer state. On the
// device a run's steps give the same bits on every run (no atomics), so a resumed run equals an
// uninterrupted one there too; against train::fit on the host the results agree to rounding (the
// GPU's float arithmetic and fused multiply-adds).
//
// Models: dense nn::transformer_lm<float> of the CS336 architecture (what transformer_lm_cuda
// takes; a mixture-of-experts configuration is a config_error). Without a CUDA device the first
// device call fails with a cuda_error naming it.
#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include "einlm/nn/transformer.hpp"
#include "einlm/nn/transformer_cuda.cuh"
#include "einlm/optim/adamw_cuda.cuh"
#include "einlm/optim/clip_cuda.cuh"
#include "einlm/optim/sgd_cuda.cuh"
#include "einlm/train/trainer.hpp"

static_assert(EINLM_HAS_CUDA, "einlm/train/trainer_cuda.cuh must be compiled by nvcc");

namespace einlm::train {

namespace detail {

/// The GPU twin of each host optimizer.
using device_optimizer = std::variant<optim::adamw_cuda, optim::sgd_cuda, optim::adagrad_cuda>;

/// `host` (options, step count, state) on the device.
inline device_optimizer to_device_optimizer(const any_optimizer& host) {
  return std::visit(
      [](const auto& opt) -> device_optimizer {
        using H = std::remove_cvref_t<decltype(opt)>;
        if constexpr (std::is_same_v<H, optim::adamw>)
          return optim::adamw_cuda(opt);
        else if constexpr (std::is_same_v<H, optim::sgd>)
          return optim::sgd_cuda(opt);
        else
          return optim::adagrad_cuda(opt);
      },
      host);
}

/// fit_loop's steps on the GPU (the engine interface of trainer.hpp's host_engine); T is the
/// working copy's storage, float or bf16 (then with float master weights on the device).
template <class T>
class device_engine {
  static constexpr bool mixed = std::is_same_v<T, bf16>;

 public:
  device_engine(nn::transformer_lm<float>& model, const trainer_options& o)
      : model_(model), work_(working_copy(model)), optimizer_(to_device_optimizer(make_optimizer(o))) {
    if constexpr (mixed) masters_.emplace(model.parameters());
  }

  nn::transformer_lm_cuda<T>& evaluator() {
    refresh();
    return work_;
  }

  double forward_backward(const lm_batch& batch, double z_loss) {
    refresh();
    work_.zero_grad();
    host_current_ = false;
    return work_.forward_backward(batch.inputs, batch.targets, z_loss);
  }

  double aux_loss() const { return 0.0; }

  double clip(double max_norm) {
    return clipper_(max_norm, [&](auto&& f) {
      work_.gradients().for_each_parameter([&](const std::string&, auto& g) { f(g); });
    });
  }

  void update(any_optimizer&, double lr, const trainer_options& o) {
    std::visit(
        [&](auto& opt) {
          opt.begin_step(lr);
          for_each_master_and_gradient([&](const std::string& name, auto& w, auto& g) {
            opt.update(name, w, g, weight_decay_for(name, w.extents().rank(), o));
          });
          opt.end_step();
        },
        optimizer_);
    work_current_ = !mixed;
    host_current_ = false;
  }

  /// `model` and `optimizer` were loaded from a checkpoint: upload both.
  void resumed(any_optimizer& optimizer) {
    if constexpr (mixed)
      nn::detail::visit_side_by_side<on_host>(*masters_, std::as_const(model_.parameters()),
                                              [](const std::string&, auto& m, const auto& h) { copy(h, m); });
    else
      work_.load_parameters(model_);
    optimizer_ = to_device_optimizer(optimizer);
    work_current_ = !mixed;
    host_current_ = true;
  }

  /// Copies the master weights into `model` and the optimizer's state into `optimizer` (waits for the device).
  void sync_to_host(any_optimizer& optimizer) {
    if (host_current_) return;
    if constexpr (mixed)
      nn::detail::visit_side_by_side<on_host>(*masters_, model_.parameters(),
                                              [](const std::string&, const auto& m, auto& h) { copy(m, h); });
    else
      work_.store_parameters(model_);
    optimizer = std::visit([](const auto& opt) -> any_optimizer { return opt.to_host(); }, optimizer_);
    host_current_ = true;
  }

 private:
  using on_host = nn::detail::as_tensor_of<float, host>;      // the host model's tensor of a master's shape
  using bf16_copy = nn::detail::as_tensor_of<bf16, device>;   // the working copy's tensor of a master's shape

  static nn::transformer_lm_cuda<T> working_copy(const nn::transformer_lm<float>& model) {
    if constexpr (mixed)
      return nn::transformer_lm_cuda<bf16>(nn::transformer_lm<bf16>(model.model_config()));  // zeros until refresh()
    else
      return nn::transformer_lm_cuda<float>(model);
  }

  /// f(name, float weight the optimizer updates, gradient) for every parameter.
  template <class F>
  void for_each_master_and_gradient(F&& f) {
    if constexpr (mixed)
      nn::detail::visit_side_by_side<bf16_copy>(*masters_, work_.gradients(), f);
    else
      work_.for_each_parameter_and_gradient(f);
  }

  /// Mixed precision: the working copy's bf16 weights ← the float masters, rounded to nearest even.
  void refresh() {
    if constexpr (mixed) {
      if (work_current_) return;
      nn::detail::visit_side_by_side<bf16_copy>(*masters_, work_.parameters(), [](const std::string&, const auto& m, auto& w) {
        if (m.size() > 0) assign(w, cast<bf16>(m));  // one launch
      });
      work_current_ = true;
    }
  }

  nn::transformer_lm<float>& model_;
  nn::transformer_lm_cuda<T> work_;
  std::optional<nn::device_transformer_parameters<float>> masters_;  // mixed precision's float masters
  device_optimizer optimizer_;
  optim::grad_norm_clipper clipper_;
  bool work_current_ = !mixed;  // whether the working copy's weights equal the masters'
  bool host_current_ = true;    // whether `model` and the host optimizer equal the device's state
};

}  // namespace detail

/// Trains `model` (float master weights on the host) with every step on the GPU; see the file
/// comment. The result is train::fit's; `model` holds the trained weights when it returns.
inline fit_result fit_cuda(nn::transformer_lm<float>& model, const token_dataset& train, const token_dataset* val,
                           const trainer_options& o, std::ostream& log) {
  if (o.precision == nn::precision::bf16_mixed) {
    detail::device_engine<bf16> engine(model, o);
    return detail::fit_loop(model, engine, train, val, o, log);
  }
  detail::device_engine<float> engine(model, o);
  return detail::fit_loop(model, engine, train, val, o, log);
}

}  // namespace einlm::train
