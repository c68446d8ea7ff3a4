// apps/einlm-lm/train_cuda.hpp — what `einlm-lm train`, `eval` and `generate` call with --device
// cuda: train::fit_cuda, train::evaluate and nn::generate_batch on the GPU, compiled by nvcc in
// train_cuda.cu. The einlm-lm
// target defines EINLM_LM_CUDA=1 and builds that file when CMake found nvcc; without it,
// --device cuda is a usage error saying so.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "einlm/nn/generate.hpp"
#include "einlm/nn/transformer.hpp"
#include "einlm/train/trainer.hpp"

namespace einlm_lm {

/// The name of CUDA device 0 — for the log line; a cuda_error naming the cause when there is no
/// usable device (no driver, no GPU), raised before anything is built or written.
std::string cuda_device_name();

/// train::fit_cuda(model, train, val, o, log): every step on the GPU, checkpoints in the host
/// trainer's format (train/trainer_cuda.cuh).
einlm::train::fit_result fit_cuda(einlm::nn::transformer_lm<float>& model, const einlm::train::token_dataset& train,
                                  const einlm::train::token_dataset* val, const einlm::train::trainer_options& o,
                                  std::ostream& log);

/// train::evaluate on the GPU: the mean loss of `batches` fixed batches of `data` by `model`'s
/// weights on the device (rounded to bf16 when `bf16`), as `einlm-lm eval` computes it on the CPU.
double evaluate_cuda(const einlm::nn::transformer_lm<float>& model, const einlm::train::token_dataset& data,
                     einlm::index_t batch, einlm::index_t context, std::int64_t batches, bool bf16);

/// nn::generate_batch with the model's weights on the GPU (nn::transformer_lm_cuda<float>, its
/// device KV cache): the same tokens as on the CPU up to float rounding of the logits.
std::vector<std::vector<std::int64_t>> generate_cuda(const einlm::nn::transformer_lm<float>& model,
                                                    const std::vector<std::vector<std::int64_t>>& prompts,
                                                    const einlm::nn::generation_options& o,
                                                    const std::function<void(std::size_t, std::int64_t)>& on_token);

}  // namespace einlm_lm
