// examples/train_cuda.cu — a CS336 transformer trained on the GPU (einlm/nn/transformer_cuda.cuh):
// the model is built on the host, copied to the device, checked once against the host model (loss
// and logits of the same batch), trained with AdamW in one launch per step
// (einlm/optim/adamw_cuda.cuh) on arithmetic sequences — each sequence counts from a random start
// by a random stride modulo the vocabulary, so the next token follows from the two before it —
// and then continues a prompt greedily with nn::generate on the device (its KV cache) and, from the
// weights copied back, on the host. Prints the loss as it falls, the tokens per second and both
// continuations; exits 1 when the device and the host disagree (the check, the continuations) or
// the loss does not fall below a tenth of ln V. Without a CUDA device it says so and exits 0.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "einlm/einlm.hpp"
#include "einlm/nn/generate.hpp"
#include "einlm/nn/transformer.hpp"
#include "einlm/nn/transformer_cuda.cuh"
#include "einlm/optim/adamw_cuda.cuh"
#include "einlm/optim/schedule.hpp"

using namespace einlm;

namespace {

constexpr index_t vocab = 64, batch = 32, seq = 32;

/// A batch of counting sequences: row b is start_b, start_b + k_b, start_b + 2·k_b, … (mod vocab),
/// k_b in 1 … 4; the targets are the inputs shifted by one position.
struct counting_batch {
  tensor<std::int64_t, dims<2>> inputs{batch, seq}, targets{batch, seq};  // (B, S) twice
};

counting_batch make_batch(std::uint64_t draw) {
  counting_batch out;
  const tensor<float, dims<2>> u = uniform<float>(dims<2>(batch, 2), {7, draw}, 0.0, 1.0);  // (B, 2)
  for (index_t b = 0; b < batch; ++b) {
    const auto start = static_cast<std::int64_t>(u(b, 0) * vocab) % vocab;
    const auto stride = 1 + static_cast<std::int64_t>(u(b, 1) * 4) % 4;
    for (index_t s = 0; s < seq; ++s) {
      out.inputs(b, s) = (start + s * stride) % vocab;
      out.targets(b, s) = (start + (s + 1) * stride) % vocab;
    }
  }
  return out;
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("train_cuda: no CUDA device here; nothing to run\n");
    return 0;
  }
  const nn::transformer_config config{.vocab_size = vocab, .context_length = seq, .d_model = 128, .num_layers = 2,
                                      .num_heads = 4, .num_kv_heads = 2, .d_ff = 256};
  // [snippet train_cuda]
  nn::transformer_lm<float> host(config, /*seed=*/1);  // CS336 initialisation, on the host
  nn::transformer_lm_cuda<float> model(host);          // its weights copied to the device
  // [end snippet]

  // The device and the host compute the same step (float rounding apart).
  const auto first = make_batch(0);
  host.zero_grad();
  const double loss_host = host.forward_backward(first.inputs, first.targets);
  const double loss_device = model.forward_backward(first.inputs, first.targets);
  const auto logits_device = to_host(model.logits(first.inputs));  // (B, S, V)
  const auto logits_host = host.logits(first.inputs);              // (B, S, V)
  double worst = 0;
  for (index_t i = 0; i < logits_host.size(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(logits_device.data()[i]) - logits_host.data()[i]));
  std::printf("first step: loss %.6f on the device, %.6f on the host (ln V = %.4f); logits differ by %.2e at most\n",
              loss_device, loss_host, std::log(static_cast<double>(vocab)), worst);
  if (std::abs(loss_device - loss_host) > 1e-4 * loss_host || worst > 1e-3) {
    std::printf("train_cuda: the device and the host disagree\n");
    return 1;
  }

  const std::int64_t steps = 400;
  const optim::cosine_schedule schedule{.max_lr = 3e-3, .min_lr = 3e-4, .warmup_iters = 20, .cosine_cycle_iters = steps};
  double loss = 0;
  const auto start = std::chrono::steady_clock::now();
  // [snippet train_cuda_step]
  optim::adamw_cuda opt({.weight_decay = 0.01});
  for (std::int64_t step = 0; step < steps; ++step) {
    const auto b = make_batch(static_cast<std::uint64_t>(step) + 1);  // host token ids (B, S) twice
    model.zero_grad();
    loss = model.forward_backward(b.inputs, b.targets);  // synchronises: the loss is on the host
    opt.begin_step(schedule(step));
    model.for_each_parameter_and_gradient([&](const std::string& name, auto& w, auto& g) {
      opt.update(name, w, g, w.rank() == 1 ? 0.0 : 0.01);  // no decay on the norms' gains
    });
    opt.end_step();  // one launch for every parameter
    if (step % 50 == 0 || step == steps - 1) std::printf("step %4lld  loss %.4f\n", static_cast<long long>(step), loss);
  }
  // [end snippet]
  EINLM_CUDA_CHECK(cudaDeviceSynchronize());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%lld steps of %lld tokens in %.2f s: %.0f tokens/s\n", static_cast<long long>(steps),
              static_cast<long long>(batch * seq), seconds, static_cast<double>(steps * batch * seq) / seconds);

  // Continue 3, 6, 9, 12 greedily: on the device (nn::generate decodes with the model's device KV
  // cache), and on the host from the weights copied back — the same tokens.
  // [snippet generate_cuda]
  const nn::generation_options greedy{.max_new_tokens = 12, .sampling = {.temperature = 0.0}};
  const auto on_device = nn::generate(model, {3, 6, 9, 12}, greedy);  // decodes with a device KV cache
  // [end snippet]
  model.store_parameters(host);
  const auto on_host = nn::generate(host, {3, 6, 9, 12}, greedy);
  for (const auto* run : {&on_device, &on_host}) {
    std::printf("greedy continuation on the %s:", run == &on_device ? "device" : "host");
    for (const auto t : *run) std::printf(" %lld", static_cast<long long>(t));
    std::printf("\n");
  }
  if (on_device != on_host) {
    std::printf("train_cuda: the device and the host continued the prompt differently\n");
    return 1;
  }
  if (!(loss < 0.1 * std::log(static_cast<double>(vocab)))) {
    std::printf("train_cuda: the loss did not fall below a tenth of ln V\n");
    return 1;
  }
  return 0;
}
