// apps/einlm-lm/train_cuda.cu — einlm-lm's GPU training, evaluation and generation (train_cuda.hpp),
// compiled by nvcc.
#include "train_cuda.hpp"

#include <string>

#include <cuda_runtime_api.h>

#include "einlm/core/error.hpp"
#include "einlm/nn/generate.hpp"
#include "einlm/nn/transformer_cuda.cuh"
#include "einlm/train/trainer_cuda.cuh"

namespace einlm_lm {

std::string cuda_device_name() {
  int devices = 0;
  const cudaError_t status = cudaGetDeviceCount(&devices);
  if (status != cudaSuccess)
    throw einlm::cuda_error(static_cast<int>(status), einlm::detail::concat("--device cuda: no usable CUDA device here (",
                                                                             cudaGetErrorString(status), ")"));
  if (devices == 0) throw einlm::cuda_error(static_cast<int>(cudaErrorNoDevice), "--device cuda: no CUDA device here");
  cudaDeviceProp prop{};
  EINLM_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  return prop.name;
}

einlm::train::fit_result fit_cuda(einlm::nn::transformer_lm<float>& model, const einlm::train::token_dataset& train,
                                  const einlm::train::token_dataset* val, const einlm::train::trainer_options& o,
                                  std::ostream& log) {
  return einlm::train::fit_cuda(model, train, val, o, log);
}

double evaluate_cuda(const einlm::nn::transformer_lm<float>& model, const einlm::train::token_dataset& data,
                     einlm::index_t batch, einlm::index_t context, std::int64_t batches, bool bf16) {
  using namespace einlm;
  if (bf16) {
    nn::transformer_lm_cuda<einlm::bf16> work(nn::transformer_lm<einlm::bf16>(model.model_config()));
    convert_parameters(model, work);  // rounded to nearest even, as the CPU's rounded copy
    return train::evaluate(work, data, batch, context, batches, 0);
  }
  nn::transformer_lm_cuda<float> work(model);
  return train::evaluate(work, data, batch, context, batches, 0);
}

std::vector<std::vector<std::int64_t>> generate_cuda(const einlm::nn::transformer_lm<float>& model,
                                                    const std::vector<std::vector<std::int64_t>>& prompts,
                                                    const einlm::nn::generation_options& o,
                                                    const std::function<void(std::size_t, std::int64_t)>& on_token) {
  einlm::nn::transformer_lm_cuda<float> gpu(model);
  return einlm::nn::generate_batch(gpu, prompts, o, on_token);
}

}  // namespace einlm_lm
