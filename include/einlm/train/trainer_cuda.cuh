// einlm/train/trainer_cuda.cuh — train::fit with forward and backward on the GPU. nvcc only.
//
//   nn::transformer_lm<float> model(config, seed);               // the master weights, on the host
//   train::fit_result r = train::fit_cuda(model, train_tokens, &val_tokens, options, std::cerr);
//
// The same loop, options, logs, metrics, checkpoints and resume as train::fit (train/trainer.hpp),
// with the model's forward and backward passes — the step's arithmetic — run by an
// nn::transformer_lm_cuda working copy (nn/transformer_cuda.cuh): float storage for fp32 training,
// bf16 for nn::precision::bf16_mixed. It is the mixed-precision arrangement of train::fit with
// the working copy on the device: before each step (and each validation) the working copy's
// weights are refreshed from `model`'s (converted to bf16, rounded to nearest even, when mixed),
// after it the gradients come back into `model`'s (exact), and the loss check, gradient clipping,
// the optimizer (AdamW, SGD or AdaGrad, as chosen) and the checkpoints act on `model` on the host.
// So a checkpoint is the host trainer's, loads anywhere, and resumes on either device; validation
// runs on the device (transformer_lm_cuda::loss). Each step moves the weights to the device and
// the gradients back (4 + 4 bytes per parameter in fp32, 2 + 2 + host conversion in bf16): the
// price of keeping the optimizer, its checkpoint state and the clipping on the host.
//
// Models: dense nn::transformer_lm<float> of the CS336 architecture (what transformer_lm_cuda
// takes; a mixture-of-experts configuration is a config_error). Without a CUDA device the first
// device call fails with a cuda_error naming it.
#pragma once

#include <ostream>

#include "einlm/nn/transformer.hpp"
#include "einlm/nn/transformer_cuda.cuh"
#include "einlm/train/trainer.hpp"

static_assert(EINLM_HAS_CUDA, "einlm/train/trainer_cuda.cuh must be compiled by nvcc");

namespace einlm::train {

/// Trains `model` (float master weights on the host) with its forward and backward passes on the
/// GPU; see the file comment. The result is train::fit's.
inline fit_result fit_cuda(nn::transformer_lm<float>& model, const token_dataset& train, const token_dataset* val,
                           const trainer_options& o, std::ostream& log) {
  if (o.precision == nn::precision::bf16_mixed) {
    // The working copy starts from zeros: the loop refreshes it from the masters before the first step.
    nn::transformer_lm_cuda<bf16> work(nn::transformer_lm<bf16>(model.model_config()));
    return detail::fit_loop(model, work, train, val, o, log);
  }
  nn::transformer_lm_cuda<float> work(model);
  return detail::fit_loop(model, work, train, val, o, log);
}

}  // namespace einlm::train
