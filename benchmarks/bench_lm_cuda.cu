// CUDA benchmark of the transformer language model on the GPU (einlm/nn/transformer_cuda.cuh),
// timed with CUDA events on a CS336-architecture model of GPT-2 small's width (d_model 768, 12
// layers, 12 heads, SwiGLU d_ff 2048, vocabulary 50304), bf16, batch 8 × 512 tokens:
//   lm_forward_bf16      nn::transformer_lm_cuda::logits
//   lm_step_bf16         zero_grad + forward_backward (the loss on the host, one synchronisation)
//   lm_fit_step_bf16     a whole step of train::fit_cuda in bf16 mixed precision: forward_backward,
//                        the gradient norm and clipping, AdamW on the device's float masters and
//                        the bf16 weights refreshed from them (FLOPs counted: the model's alone, so
//                        its ratio to lm_step_bf16 is the share left to the model's arithmetic)
//   lm_decode_bf16       batch-1 decoding with the device KV cache: one token's last_logits
//                        (weights read once, the cache's keys and values, the logits back to the
//                        host), after a 128-token prompt, the cache cut back to it every 64 tokens;
//                        bytes counted: the weights plus the keys and values read at the mean length
//   decode_roof_bf16     its baseline: a device-to-device copy moving the same bytes (the memory
//                        bandwidth a decoding step is bounded by)
//   lm_head_gemm_bf16    the baseline beside the training rows: the LM head's product (B·S, 768) × (768, 50304)
//                        alone, einlm's bf16 tensor-core GEMM — the rate the step's matrix products
//                        could reach
// FLOPs counted (flops_per_second): nn::flops_forward and flops_forward + flops_backward of the
// configuration (the accounting's, causal attention's full square as the accounting counts it);
// the baseline's 2·M·N·K. The summary's ratios are the model's rate over the GEMM's: the share of
// the tensor-core rate the whole model reaches (its MFU relative to our GEMM).
// Before timing, a small model's loss and logits on the device are compared with the host
// model's (a wrong result exits with status 1). Run by scripts/gpu-check; exits quietly without
// a device.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>

#include <cuda_runtime_api.h>

#include "bench_cuda_support.cuh"
#include "bench_support.hpp"
#include "einlm/einlm.hpp"
#include "einlm/linalg/gemm_cuda.cuh"
#include "einlm/nn/accounting.hpp"
#include "einlm/nn/transformer.hpp"
#include "einlm/nn/transformer_cuda.cuh"
#include "einlm/train/trainer_cuda.cuh"

using namespace einlm;

namespace {

nn::transformer_config model_config() {
  if (bench::smoke())
    return {.vocab_size = 512, .context_length = 64, .d_model = 128, .num_layers = 2, .num_heads = 4, .d_ff = 256};
  return {.vocab_size = 50304, .context_length = 1024, .d_model = 768, .num_layers = 12, .num_heads = 12, .d_ff = 2048};
}

index_t batch() { return bench::smoke() ? 2 : 8; }
index_t seq() { return bench::smoke() ? 64 : 512; }

tensor<std::int64_t, dims<2>> tokens(index_t V, std::uint64_t stream) {
  const tensor<float, dims<2>> u = uniform<float>(dims<2>(batch(), seq()), {5, stream}, 0.0, 1.0);  // (B, S)
  tensor<std::int64_t, dims<2>> t(batch(), seq());                                                   // (B, S)
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = std::min<std::int64_t>(V - 1, static_cast<std::int64_t>(u.data()[i] * V));
  return t;
}

struct lm_data {
  nn::transformer_config config = model_config();
  nn::transformer_lm_cuda<bf16> model{nn::transformer_lm<bf16>(config, 1)};
  tensor<std::int64_t, dims<2>> inputs = tokens(config.vocab_size, 0), targets = tokens(config.vocab_size, 1);  // (B, S) twice
  static lm_data& get() {
    static lm_data d;
    return d;
  }
};

void lm_forward(benchmark::State& state) {
  auto& d = lm_data::get();
  bench::timed_rate(state, "flops_per_second", nn::flops_forward(d.config, batch(), seq()),
                    [&] { benchmark::DoNotOptimize(d.model.logits(d.inputs)); });
}

void lm_step(benchmark::State& state) {
  auto& d = lm_data::get();
  const double flops = nn::flops_forward(d.config, batch(), seq()) + nn::flops_backward(d.config, batch(), seq());
  bench::timed_rate(state, "flops_per_second", flops, [&] {
    d.model.zero_grad();
    benchmark::DoNotOptimize(d.model.forward_backward(d.inputs, d.targets));
  });
}

/// train::fit_cuda's engine for the same configuration, float masters initialised on the host.
struct fit_data {
  nn::transformer_lm<float> masters{model_config(), 1};
  train::trainer_options options{.weight_decay = 0.1, .grad_clip = 1.0, .precision = nn::precision::bf16_mixed};
  train::detail::device_engine<bf16> engine{masters, options};
  train::any_optimizer host_optimizer = train::make_optimizer(options);
  train::lm_batch batch{tokens(model_config().vocab_size, 0), tokens(model_config().vocab_size, 1), {}};
  static fit_data& get() {
    static fit_data d;
    return d;
  }
};

void lm_fit_step(benchmark::State& state) {
  auto& d = fit_data::get();
  const auto c = model_config();
  const double flops = nn::flops_forward(c, batch(), seq()) + nn::flops_backward(c, batch(), seq());
  bench::timed_rate(state, "flops_per_second", flops, [&] {
    benchmark::DoNotOptimize(d.engine.forward_backward(d.batch, 0.0));
    benchmark::DoNotOptimize(d.engine.clip(d.options.grad_clip));
    d.engine.update(d.host_optimizer, 1e-4, d.options);
  });
}

index_t decode_prompt() { return bench::smoke() ? 8 : 128; }
constexpr index_t decode_span = 64;  // tokens decoded before the cache is cut back to the prompt

/// A bf16 model of the same configuration, a one-sequence device cache holding a prompt, and the
/// bytes one decoding step reads.
struct decode_data {
  nn::transformer_config config = model_config();
  nn::transformer_lm_cuda<bf16> model{nn::transformer_lm<bf16>(config, 2)};
  nn::device_kv_cache<bf16> cache = model.make_cache(1);
  double bytes = 0;
  tensor<unsigned char, dims<1>, device> copy_from, copy_to;  // (bytes / 2,) twice
  decode_data() {
    std::vector<std::vector<std::int64_t>> prompt(1);
    for (index_t i = 0; i < decode_prompt(); ++i) prompt[0].push_back((31 * i + 7) % config.vocab_size);
    model.last_logits(prompt, cache);
    const double mean_length = static_cast<double>(decode_prompt()) + decode_span / 2.0;
    bytes = 2.0 * static_cast<double>(nn::param_count(config)) +
            2.0 * 2.0 * static_cast<double>(config.num_layers * config.kv_heads() * config.head_dim()) * mean_length;
    const auto half = static_cast<index_t>(bytes / 2);
    copy_from = tensor<unsigned char, dims<1>, device>(dims<1>(half));
    copy_to = tensor<unsigned char, dims<1>, device>(dims<1>(half));
  }
  static decode_data& get() {
    static decode_data d;
    return d;
  }
};

void lm_decode(benchmark::State& state) {
  auto& d = decode_data::get();
  std::vector<std::vector<std::int64_t>> next = {{17}};
  bench::timed_rate(state, "bytes_per_second", d.bytes, [&] {
    if (d.cache.length_of(0) >= decode_prompt() + decode_span) d.cache.truncate(0, decode_prompt());
    benchmark::DoNotOptimize(d.model.last_logits(next, d.cache));
  });
  state.SetItemsProcessed(state.iterations());  // tokens: items_per_second is tokens/s
}

void decode_roof(benchmark::State& state) {
  auto& d = decode_data::get();
  const cudaStream_t s = default_cuda_executor().stream();
  bench::timed_rate(state, "bytes_per_second", d.bytes, [&] {
    EINLM_CUDA_CHECK(cudaMemcpyAsync(d.copy_to.data(), d.copy_from.data(), d.copy_from.bytes(), cudaMemcpyDeviceToDevice, s));
  });
  state.SetItemsProcessed(state.iterations());
}

void lm_head_gemm(benchmark::State& state) {
  const auto c = model_config();
  const index_t M = batch() * seq(), K = c.d_model, N = c.vocab_size;
  tensor<bf16, dims<2>, device> x(dims<2>(M, K)), w(dims<2>(N, K)), y(dims<2>(M, N));  // (M, K), (N, K), (M, N)
  x = uniform<bf16>(x.extents(), {6, 0}, -1.0, 1.0);
  w = uniform<bf16>(w.extents(), {6, 1}, -1.0, 1.0);
  const cudaStream_t s = default_cuda_executor().stream();
  const matrix_ref<const bf16> a(x.data(), 1, M, K, M * K, K, 1);   // (M, K)
  const matrix_ref<const bf16> b(w.data(), 1, K, N, N * K, 1, K);   // wᵀ (K, N)
  const matrix_ref<bf16> out(y.data(), 1, M, N, M * N, N, 1);       // (M, N)
  bench::timed_rate(state, "flops_per_second", 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K),
                    [&] { gemm_cuda(s, a, b, out, {}, {}); });
}

/// A small model's loss and logits on the device against the host model's; false when they disagree.
bool model_agrees() {
  const nn::transformer_config c{.vocab_size = 97, .context_length = 32, .d_model = 64, .num_layers = 2, .num_heads = 4,
                                 .num_kv_heads = 2, .d_ff = 128};
  nn::transformer_lm<float> host(c, 3);
  nn::transformer_lm_cuda<float> dev(host);
  tensor<std::int64_t, dims<2>> in(2, 32), tg(2, 32);  // (B, S) twice
  for (index_t i = 0; i < in.size(); ++i) {
    in.data()[i] = (7 * i + 3) % c.vocab_size;
    tg.data()[i] = (5 * i + 1) % c.vocab_size;
  }
  host.zero_grad();
  const double loss_host = host.forward_backward(in, tg), loss_dev = dev.forward_backward(in, tg);
  const auto lh = host.logits(in);          // (B, S, V)
  const auto ld = to_host(dev.logits(in));  // (B, S, V)
  double worst = 0;
  for (index_t i = 0; i < lh.size(); ++i) worst = std::max(worst, static_cast<double>(std::abs(ld.data()[i] - lh.data()[i])));
  std::printf("transformer_lm_cuda against the host model: loss %.6f vs %.6f, max |logit difference| %.2e\n", loss_dev,
              loss_host, worst);
  return std::abs(loss_dev - loss_host) <= 1e-4 * loss_host && worst < 1e-3;
}

}  // namespace

BENCHMARK(lm_forward)->Name("lm_forward_bf16")->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(lm_step)->Name("lm_step_bf16")->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(lm_fit_step)->Name("lm_fit_step_bf16")->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(lm_decode)->Name("lm_decode_bf16")->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(decode_roof)->Name("decode_roof_bf16")->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(lm_head_gemm)->Name("lm_head_gemm_bf16")->UseManualTime()->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("bench_lm_cuda: no CUDA device, nothing to measure\n");
    return 0;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  const auto c = model_config();
  std::printf("einlm transformer_lm_cuda on %s: d_model %lld, %lld layers, %lld heads, d_ff %lld, vocabulary %lld, "
              "%lld parameters; bf16, batch %lld x %lld tokens\n",
              prop.name, static_cast<long long>(c.d_model), static_cast<long long>(c.num_layers),
              static_cast<long long>(c.num_heads), static_cast<long long>(c.ffn_dim()), static_cast<long long>(c.vocab_size),
              static_cast<long long>(nn::param_count(c)), static_cast<long long>(batch()), static_cast<long long>(seq()));
  if (!model_agrees()) return 1;
  return bench::run_and_summarise(argc, argv,
                                  {{"lm forward / LM-head GEMM (tensor-core rate)", "lm_forward_bf16/manual_time",
                                    "lm_head_gemm_bf16/manual_time", 0.0},
                                   {"lm train step / LM-head GEMM", "lm_step_bf16/manual_time", "lm_head_gemm_bf16/manual_time", 0.0},
                                   {"whole trainer step (clip, AdamW, bf16 refresh) / lm train step", "lm_fit_step_bf16/manual_time",
                                    "lm_step_bf16/manual_time", 0.0},
                                   {"batch-1 decode / device copy of the same bytes", "lm_decode_bf16/manual_time",
                                    "decode_roof_bf16/manual_time", 0.0, bench::rate_unit{}}},
                                  {"flops_per_second", "TFLOP/s", 1e12});
}
