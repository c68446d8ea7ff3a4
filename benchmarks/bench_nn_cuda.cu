// CUDA benchmark of the fused transformer kernels (einlm/nn/cuda_kernels.cuh), timed with CUDA
// events, against the same run's device-to-device copy of the same bytes (the bandwidth roof):
//   RMSNorm forward, 16384 rows × 4096 (fp32 and bf16): reads x, writes y
//   RMSNorm backward, same shape: reads x and dy, writes dx (dgain's partial rows not counted)
//   cross-entropy forward + backward, 8192 rows × 50304 (bf16, GPT-2's padded vocabulary): reads
//   the logits, writes dlogits (the second read of each row, from L2, not counted)
//   AdamW (optim::adamw_cuda), one step over GPT-2 small's 148 parameter tensors (124M floats,
//   float gradients): reads θ, g, m, v and writes θ, m, v, 28 bytes per parameter, in one launch
//   SGD with momentum and AdaGrad (optim::sgd_cuda, adagrad_cuda), the same parameters: read θ, g
//   and one buffer, write θ and the buffer, 20 bytes per parameter, in one launch
//   MoE token permutation (nn/moe_cuda.cuh), 4096 tokens of width 2048 in bf16 routed top-8 over
//   64 experts (the issue's fine-grained shape): moe_permute_cuda reads and writes each of the
//   32,768 slot rows, moe_unpermute_cuda reads them and writes the 4096 token rows, against a
//   device copy of the same bytes; moe_dispatch_cuda (the radix sort by expert) is timed alone
//   MoE router of that layer: the router GEMM (einsum, 4096 × 2048 → 64) with moe_route_cuda's
//   softmax top-8, and the routing kernel alone; the whole layer's forward (nn::moe_forward_cuda,
//   Dff 1408); the router's share of the layer is their times' ratio (goal ≤ 3 %)
// Goals (issue): RMSNorm ≥ 85 % of the device copy; cross-entropy and AdamW reported.
// Run by scripts/gpu-check; exits quietly without a device.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "bench_cuda_support.cuh"
#include "bench_support.hpp"
#include "einlm/einlm.hpp"
#include "einlm/nn/cuda_kernels.cuh"
#include "einlm/nn/moe_cuda.cuh"
#include "einlm/nn/moe_layer_cuda.cuh"
#include "einlm/optim/adamw_cuda.cuh"
#include "einlm/optim/sgd_cuda.cuh"

using namespace einlm;

namespace {

index_t norm_rows() { return bench::smoke() ? 64 : 16384; }
constexpr index_t norm_width = 4096;
index_t ce_rows() { return bench::smoke() ? 16 : 8192; }
constexpr index_t vocab = 50304;

template <class T>
struct norm_data {
  tensor<T, dims<2>, device> x, dy, copy;  // (N, D) each
  tensor<T, dims<1>, device> gain;         // (D,)
  norm_data() : x(dims<2>(norm_rows(), norm_width)), dy(x.extents()), copy(x.extents()), gain(dims<1>(norm_width)) {
    x = uniform<T>(x.extents(), {3, 0}, -2.0, 2.0);
    dy = uniform<T>(dy.extents(), {3, 1});
    gain = uniform<T>(gain.extents(), {3, 2}, 0.5, 1.5);
    EINLM_CUDA_CHECK(cudaDeviceSynchronize());
  }
  static norm_data& get() {
    static norm_data d;
    return d;
  }
};

struct ce_data {
  tensor<bf16, dims<2>, device> logits, copy;  // (N, V) twice
  tensor<std::int64_t, dims<1>, device> targets;  // (N,)
  ce_data() : logits(dims<2>(ce_rows(), vocab)), copy(logits.extents()), targets(dims<1>(ce_rows())) {
    logits = uniform<bf16>(logits.extents(), {4, 0}, -6.0, 6.0);
    tensor<std::int64_t, dims<1>> t(ce_rows());  // (N,)
    for (index_t i = 0; i < t.size(); ++i) t(i) = (i * 7919) % vocab;
    targets = to_device(t);
    EINLM_CUDA_CHECK(cudaDeviceSynchronize());
  }
  static ce_data& get() {
    static ce_data d;
    return d;
  }
};

template <class T>
void norm_copy(benchmark::State& state) {
  auto& d = norm_data<T>::get();
  const cudaStream_t s = default_cuda_executor().stream();
  bench::timed_bytes(state, 2.0 * static_cast<double>(d.x.bytes()),
        [&] { cudaMemcpyAsync(d.copy.data(), d.x.data(), d.x.bytes(), cudaMemcpyDeviceToDevice, s); });
}

template <class T>
void norm_forward(benchmark::State& state) {
  auto& d = norm_data<T>::get();
  bench::timed_bytes(state, 2.0 * static_cast<double>(d.x.bytes()), [&] { benchmark::DoNotOptimize(nn::fused_rms_norm(d.x, d.gain)); });
}

template <class T>
void norm_backward(benchmark::State& state) {
  auto& d = norm_data<T>::get();
  bench::timed_bytes(state, 3.0 * static_cast<double>(d.x.bytes()),
        [&] { benchmark::DoNotOptimize(nn::fused_rms_norm_backward(d.x, d.gain, d.dy)); });
}

void ce_copy(benchmark::State& state) {
  auto& d = ce_data::get();
  const cudaStream_t s = default_cuda_executor().stream();
  bench::timed_bytes(state, 2.0 * static_cast<double>(d.logits.bytes()),
        [&] { cudaMemcpyAsync(d.copy.data(), d.logits.data(), d.logits.bytes(), cudaMemcpyDeviceToDevice, s); });
}

void ce_forward_backward(benchmark::State& state) {
  auto& d = ce_data::get();
  bench::timed_bytes(state, 2.0 * static_cast<double>(d.logits.bytes()),
        [&] { benchmark::DoNotOptimize(nn::fused_cross_entropy_with_grad(d.logits, d.targets, 1e-4)); });
}

/// GPT-2 small's parameter tensors (sizes only), their gradients, and a copy of the same bytes.
struct adamw_data {
  std::vector<tensor<float, dims<1>, device>> params, grads;  // (N,) each
  std::vector<std::string> names;
  tensor<float, dims<1>, device> copy_from, copy_to;          // (total,) twice
  index_t total = 0;
  adamw_data() {
    std::vector<index_t> sizes;
    const index_t d = 768, v = 50257, f = 3072;
    sizes.push_back(v * d);
    sizes.push_back(1024 * d);
    for (int l = 0; l < (bench::smoke() ? 1 : 12); ++l)
      for (index_t n : {d, d, 3 * d * d, 3 * d, d * d, d, d, d, f * d, f, d * f, d}) sizes.push_back(n);
    sizes.push_back(d);
    sizes.push_back(d);
    for (const index_t n : sizes) {
      names.push_back(std::to_string(params.size()));
      params.emplace_back(dims<1>(n));
      grads.emplace_back(dims<1>(n));
      params.back() = uniform<float>(params.back().extents(), {9, params.size()}, -0.1, 0.1);
      grads.back() = uniform<float>(grads.back().extents(), {10, grads.size()}, -0.01, 0.01);
      total += n;
    }
    copy_from = tensor<float, dims<1>, device>(dims<1>(total));
    copy_to = tensor<float, dims<1>, device>(dims<1>(total));
    EINLM_CUDA_CHECK(cudaDeviceSynchronize());
  }
  static adamw_data& get() {
    static adamw_data d;
    return d;
  }
};

void adamw_copy(benchmark::State& state) {
  auto& d = adamw_data::get();
  const cudaStream_t s = default_cuda_executor().stream();
  const auto bytes = static_cast<std::size_t>(d.total) * sizeof(float);
  // 28 bytes per parameter moved as 3.5 copies of the parameters' bytes (each copy reads and writes).
  bench::timed_bytes(state, 28.0 * static_cast<double>(d.total), [&] {
    for (int i = 0; i < 3; ++i) cudaMemcpyAsync(d.copy_to.data(), d.copy_from.data(), bytes, cudaMemcpyDeviceToDevice, s);
    cudaMemcpyAsync(d.copy_to.data(), d.copy_from.data(), bytes / 2, cudaMemcpyDeviceToDevice, s);
  });
}

void adamw_step(benchmark::State& state) {
  auto& d = adamw_data::get();
  optim::adamw_cuda opt({.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1});
  bench::timed_bytes(state, 28.0 * static_cast<double>(d.total), [&] {
    opt.begin_step(1e-4);
    for (std::size_t i = 0; i < d.params.size(); ++i) opt.update(d.names[i], d.params[i], d.grads[i]);
    opt.end_step();
  });
  state.counters["launches_per_step"] = static_cast<double>(opt.launches()) / static_cast<double>(opt.step());
}

void sgd_copy(benchmark::State& state) {
  auto& d = adamw_data::get();
  const cudaStream_t s = default_cuda_executor().stream();
  const auto bytes = static_cast<std::size_t>(d.total) * sizeof(float);
  // 20 bytes per parameter moved as 2.5 copies of the parameters' bytes.
  bench::timed_bytes(state, 20.0 * static_cast<double>(d.total), [&] {
    for (int i = 0; i < 2; ++i) cudaMemcpyAsync(d.copy_to.data(), d.copy_from.data(), bytes, cudaMemcpyDeviceToDevice, s);
    cudaMemcpyAsync(d.copy_to.data(), d.copy_from.data(), bytes / 2, cudaMemcpyDeviceToDevice, s);
  });
}

template <class Optimizer>
void buffered_step(benchmark::State& state, Optimizer opt) {
  auto& d = adamw_data::get();
  bench::timed_bytes(state, 20.0 * static_cast<double>(d.total), [&] {
    opt.begin_step(1e-4);
    for (std::size_t i = 0; i < d.params.size(); ++i) opt.update(d.names[i], d.params[i], d.grads[i]);
    opt.end_step();
  });
  state.counters["launches_per_step"] = static_cast<double>(opt.launches()) / static_cast<double>(opt.step());
}

void sgd_step(benchmark::State& state) { buffered_step(state, optim::sgd_cuda({.momentum = 0.9})); }
void adagrad_step(benchmark::State& state) { buffered_step(state, optim::adagrad_cuda({.lr_decay = 0.01})); }

/// Routing of moe_tokens() tokens over 64 experts, top-8 (distinct experts per token, spread
/// evenly), their rows and the experts' outputs.
index_t moe_tokens() { return bench::smoke() ? 64 : 4096; }
constexpr index_t moe_width = 2048, moe_experts = 64, moe_top_k = 8;

struct moe_data {
  tensor<std::int32_t, dims<1>, device> expert;  // (N·K,)
  tensor<bf16, dims<2>, device> x, out;           // (N, D), (N·K, D)
  tensor<float, dims<1>, device> gate;            // (N·K,)
  tensor<bf16, dims<2>, device> copy_from, copy_to;  // (N·K, D) twice
  nn::moe_dispatch_device dispatch;
  moe_data()
      : expert(dims<1>(moe_tokens() * moe_top_k)), x(dims<2>(moe_tokens(), moe_width)), out(dims<2>(moe_tokens() * moe_top_k, moe_width)),
        gate(dims<1>(moe_tokens() * moe_top_k)), copy_from(out.extents()), copy_to(out.extents()) {
    tensor<std::int32_t, dims<1>> e(expert.extents());  // (N·K,)
    const auto u = tensor<double, dims<1>>(uniform<double>(dims<1>(moe_tokens()), {30, 0}, 0.0, 1.0));  // (N,)
    for (index_t n = 0; n < moe_tokens(); ++n) {
      const auto first = static_cast<index_t>(u(n) * moe_experts);
      for (index_t j = 0; j < moe_top_k; ++j)
        e(n * moe_top_k + j) = static_cast<std::int32_t>((first + j * (moe_experts / moe_top_k)) % moe_experts);
    }
    expert = to_device(e);
    x = uniform<bf16>(x.extents(), {31, 0}, -1.0, 1.0);
    out = uniform<bf16>(out.extents(), {32, 0}, -1.0, 1.0);
    gate = uniform<float>(gate.extents(), {33, 0}, 0.0, 1.0);
    dispatch = nn::moe_dispatch_cuda(expert, moe_experts, moe_top_k);
    EINLM_CUDA_CHECK(cudaDeviceSynchronize());
  }
  static moe_data& get() {
    static moe_data d;
    return d;
  }
  double row_bytes() const { return static_cast<double>(moe_width) * sizeof(bf16); }
};

void moe_permute_copy(benchmark::State& state) {
  auto& d = moe_data::get();
  const auto bytes = static_cast<std::size_t>(d.copy_from.bytes());
  bench::timed_bytes(state, 2.0 * static_cast<double>(bytes), [&] {
    cudaMemcpyAsync(d.copy_to.data(), d.copy_from.data(), bytes, cudaMemcpyDeviceToDevice, default_cuda_executor().stream());
  });
}

void moe_permute(benchmark::State& state) {
  auto& d = moe_data::get();
  const double rows = static_cast<double>(moe_tokens() * moe_top_k);
  bench::timed_bytes(state, 2.0 * rows * d.row_bytes(), [&] { benchmark::DoNotOptimize(nn::moe_permute_cuda(d.x, d.dispatch)); });
}

void moe_unpermute_copy(benchmark::State& state) {
  auto& d = moe_data::get();
  // (N·K + N) rows moved as one copy of half as many bytes read and written.
  const auto bytes = static_cast<std::size_t>((moe_tokens() * moe_top_k + moe_tokens()) * moe_width * sizeof(bf16) / 2);
  bench::timed_bytes(state, 2.0 * static_cast<double>(bytes), [&] {
    cudaMemcpyAsync(d.copy_to.data(), d.copy_from.data(), bytes, cudaMemcpyDeviceToDevice, default_cuda_executor().stream());
  });
}

void moe_unpermute(benchmark::State& state) {
  auto& d = moe_data::get();
  const double rows = static_cast<double>(moe_tokens() * moe_top_k + moe_tokens());
  bench::timed_bytes(state, rows * d.row_bytes(),
                     [&] { benchmark::DoNotOptimize(nn::moe_unpermute_cuda(d.out, d.dispatch, d.gate)); });
}

void moe_dispatch(benchmark::State& state) {
  auto& d = moe_data::get();
  // Bytes: the N·K expert ids read and the permutation written (4 + 4 + 4 per slot).
  bench::timed_bytes(state, 12.0 * static_cast<double>(moe_tokens() * moe_top_k),
                     [&] { benchmark::DoNotOptimize(nn::moe_dispatch_cuda(d.expert, moe_experts, moe_top_k)); });
}

/// The router of the same layer: logits = x routerᵀ (N, 64) by einsum, then moe_route_cuda's
/// softmax top-8 and gates; and the routing kernel alone. Bytes: x read once.
struct router_data {
  tensor<bf16, dims<2>, device> weight;  // (E, D)
  tensor<bf16, dims<2>, device> logits;  // (N, E)
  router_data() : weight(uniform<bf16>(dims<2>(moe_experts, moe_width), {34, 0}, -0.02, 0.02)) {
    logits = einsum<"n d, e d -> n e">(moe_data::get().x, weight);
    EINLM_CUDA_CHECK(cudaDeviceSynchronize());
  }
  static router_data& get() {
    static router_data d;
    return d;
  }
};

void moe_router(benchmark::State& state) {
  auto& d = moe_data::get();
  auto& r = router_data::get();
  bench::timed_bytes(state, static_cast<double>(moe_tokens()) * d.row_bytes(), [&] {
    const tensor<bf16, dims<2>, device> logits = einsum<"n d, e d -> n e">(d.x, r.weight);  // (N, E)
    benchmark::DoNotOptimize(nn::moe_route_cuda(logits, moe_top_k, nn::router_kind::softmax));
  });
}

void moe_route(benchmark::State& state) {
  auto& r = router_data::get();
  bench::timed_bytes(state, static_cast<double>(r.logits.bytes()),
                     [&] { benchmark::DoNotOptimize(nn::moe_route_cuda(r.logits, moe_top_k, nn::router_kind::softmax)); });
}

/// The whole layer's forward pass (nn::moe_forward_cuda) at the same shape, Dff 1408, no shared
/// expert: router, dispatch, permute, three grouped GEMMs, SwiGLU, unpermute. Bytes: x read once,
/// as for moe_router, so that the rates' ratio is the router's share of the layer.
void moe_layer_forward(benchmark::State& state) {
  auto& d = moe_data::get();
  static const nn::moe_device_parameters<bf16> p = [] {
    nn::moe_device_parameters<bf16> w;
    constexpr index_t F = 1408;
    w.config = {.d_model = moe_width, .num_experts = moe_experts, .top_k = moe_top_k, .expert_d_ff = F};
    w.router = uniform<bf16>(dims<2>(moe_experts, moe_width), {34, 0}, -0.02, 0.02);  // router_data's weights
    w.w1 = uniform<bf16>(dims<3>(moe_experts, F, moe_width), {35, 0}, -0.02, 0.02);
    w.w3 = uniform<bf16>(dims<3>(moe_experts, F, moe_width), {35, 1}, -0.02, 0.02);
    w.w2 = uniform<bf16>(dims<3>(moe_experts, moe_width, F), {35, 2}, -0.02, 0.02);
    return w;
  }();
  bench::timed_bytes(state, static_cast<double>(moe_tokens()) * d.row_bytes(),
                     [&] { benchmark::DoNotOptimize(nn::moe_forward_cuda(p, d.x)); });
}

}  // namespace

BENCHMARK(norm_copy<float>)->Name("copy_norm_f32")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(norm_forward<float>)->Name("rms_norm_fwd_f32")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(norm_backward<float>)->Name("rms_norm_bwd_f32")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(norm_copy<bf16>)->Name("copy_norm_bf16")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(norm_forward<bf16>)->Name("rms_norm_fwd_bf16")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(norm_backward<bf16>)->Name("rms_norm_bwd_bf16")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(ce_copy)->Name("copy_logits_bf16")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(ce_forward_backward)->Name("cross_entropy_bf16")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(adamw_copy)->Name("copy_adamw_bytes")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(adamw_step)->Name("adamw_gpt2_small")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(sgd_copy)->Name("copy_sgd_bytes")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(sgd_step)->Name("sgd_momentum_gpt2_small")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(adagrad_step)->Name("adagrad_gpt2_small")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(moe_permute_copy)->Name("copy_moe_permute_bytes")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(moe_permute)->Name("moe_permute_bf16")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(moe_unpermute_copy)->Name("copy_moe_unpermute_bytes")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(moe_unpermute)->Name("moe_unpermute_bf16")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(moe_dispatch)->Name("moe_dispatch_sort")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(moe_router)->Name("moe_router_gemm_and_route_bf16")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(moe_route)->Name("moe_route_top8_of_64")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(moe_layer_forward)->Name("moe_layer_forward_bf16")->UseManualTime()->Unit(benchmark::kMicrosecond);

int main(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("bench_nn_cuda: no CUDA device, nothing to measure\n");
    return 0;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("einlm fused transformer kernels on %s: RMSNorm %lld x %lld, cross-entropy %lld x %lld\n", prop.name,
              static_cast<long long>(norm_rows()), static_cast<long long>(norm_width), static_cast<long long>(ce_rows()),
              static_cast<long long>(vocab));
  return bench::run_and_summarise(
      argc, argv,
      {{"RMSNorm forward fp32 / device copy", "rms_norm_fwd_f32/manual_time", "copy_norm_f32/manual_time", 0.85},
       {"RMSNorm backward fp32 / device copy", "rms_norm_bwd_f32/manual_time", "copy_norm_f32/manual_time", 0.85},
       {"RMSNorm forward bf16 / device copy", "rms_norm_fwd_bf16/manual_time", "copy_norm_bf16/manual_time", 0.85},
       {"RMSNorm backward bf16 / device copy", "rms_norm_bwd_bf16/manual_time", "copy_norm_bf16/manual_time", 0.85},
       {"cross-entropy fwd+bwd bf16 / device copy", "cross_entropy_bf16/manual_time", "copy_logits_bf16/manual_time", 0.0},
       {"AdamW step, GPT-2 small, one launch / device copy", "adamw_gpt2_small/manual_time", "copy_adamw_bytes/manual_time", 0.0},
       {"SGD momentum step, GPT-2 small, one launch / device copy", "sgd_momentum_gpt2_small/manual_time", "copy_sgd_bytes/manual_time", 0.0},
       {"AdaGrad step, GPT-2 small, one launch / device copy", "adagrad_gpt2_small/manual_time", "copy_sgd_bytes/manual_time", 0.0},
       {"MoE permute bf16, 64 experts top-8 / device copy", "moe_permute_bf16/manual_time", "copy_moe_permute_bytes/manual_time", 0.8},
       {"MoE unpermute bf16, 64 experts top-8 / device copy", "moe_unpermute_bf16/manual_time", "copy_moe_unpermute_bytes/manual_time",
        0.8},
       // The layer's time over the router's (the same bytes): ≥ 33.3 is a router share ≤ 3 %.
       {"MoE layer forward time / router time (>= 33.3: router <= 3 %)", "moe_router_gemm_and_route_bf16/manual_time",
        "moe_layer_forward_bf16/manual_time", 33.3}});
}
