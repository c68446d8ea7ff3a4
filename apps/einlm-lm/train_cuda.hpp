// apps/einlm-lm/train_cuda.hpp — what `einlm-lm train --device cuda` calls: train::fit_cuda,
// compiled by nvcc in train_cuda.cu. The einlm-lm target defines EINLM_LM_CUDA=1 and builds that
// file when CMake found nvcc; without it, --device cuda is a usage error saying so.
#pragma once

#include <ostream>
#include <string>

#include "einlm/nn/transformer.hpp"
#include "einlm/train/trainer.hpp"

namespace einlm_lm {

/// The name of CUDA device 0 — for the log line; a cuda_error naming the cause when there is no
/// usable device (no driver, no GPU), raised before anything is built or written.
std::string cuda_device_name();

/// train::fit_cuda(model, train, val, o, log): forward and backward on the GPU, the optimizer,
/// clipping and checkpoints on the host (train/trainer_cuda.cuh).
einlm::train::fit_result fit_cuda(einlm::nn::transformer_lm<float>& model, const einlm::train::token_dataset& train,
                                  const einlm::train::token_dataset* val, const einlm::train::trainer_options& o,
                                  std::ostream& log);

}  // namespace einlm_lm
