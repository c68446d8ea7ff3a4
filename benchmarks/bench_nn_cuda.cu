// CUDA benchmark of the fused transformer kernels (einlm/nn/cuda_kernels.cuh), timed with CUDA
// events, against the same run's device-to-device copy of the same bytes (the bandwidth roof):
//   RMSNorm forward, 16384 rows × 4096 (fp32 and bf16): reads x, writes y
//   RMSNorm backward, same shape: reads x and dy, writes dx (dgain's partial rows not counted)
//   cross-entropy forward + backward, 8192 rows × 50304 (bf16, GPT-2's padded vocabulary): reads
//   the logits, writes dlogits (the second read of each row, from L2, not counted)
// Goals (issue): RMSNorm ≥ 85 % of the device copy; cross-entropy reported.
// Run by scripts/gpu-check; exits quietly without a device.
#include <benchmark/benchmark.h>

#include <cstdio>

#include <cuda_runtime_api.h>

#include "bench_support.hpp"
#include "einlm/einlm.hpp"
#include "einlm/nn/cuda_kernels.cuh"

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

// Times `body` with events on the default executor's stream; bytes = read + written.
template <class F>
void timed(benchmark::State& state, double bytes, F body) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  const cudaStream_t s = default_cuda_executor().stream();
  for (auto _ : state) {
    cudaEventRecord(start, s);
    body();
    cudaEventRecord(stop, s);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(static_cast<double>(ms) / 1e3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  state.counters["bytes_per_second"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
}

template <class T>
void norm_copy(benchmark::State& state) {
  auto& d = norm_data<T>::get();
  const cudaStream_t s = default_cuda_executor().stream();
  timed(state, 2.0 * static_cast<double>(d.x.bytes()),
        [&] { cudaMemcpyAsync(d.copy.data(), d.x.data(), d.x.bytes(), cudaMemcpyDeviceToDevice, s); });
}

template <class T>
void norm_forward(benchmark::State& state) {
  auto& d = norm_data<T>::get();
  timed(state, 2.0 * static_cast<double>(d.x.bytes()), [&] { benchmark::DoNotOptimize(nn::fused_rms_norm(d.x, d.gain)); });
}

template <class T>
void norm_backward(benchmark::State& state) {
  auto& d = norm_data<T>::get();
  timed(state, 3.0 * static_cast<double>(d.x.bytes()),
        [&] { benchmark::DoNotOptimize(nn::fused_rms_norm_backward(d.x, d.gain, d.dy)); });
}

void ce_copy(benchmark::State& state) {
  auto& d = ce_data::get();
  const cudaStream_t s = default_cuda_executor().stream();
  timed(state, 2.0 * static_cast<double>(d.logits.bytes()),
        [&] { cudaMemcpyAsync(d.copy.data(), d.logits.data(), d.logits.bytes(), cudaMemcpyDeviceToDevice, s); });
}

void ce_forward_backward(benchmark::State& state) {
  auto& d = ce_data::get();
  timed(state, 2.0 * static_cast<double>(d.logits.bytes()),
        [&] { benchmark::DoNotOptimize(nn::fused_cross_entropy_with_grad(d.logits, d.targets, 1e-4)); });
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
       {"cross-entropy fwd+bwd bf16 / device copy", "cross_entropy_bf16/manual_time", "copy_logits_bf16/manual_time", 0.0}});
}
