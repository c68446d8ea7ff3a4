// CUDA benchmark of the fused chain y = silu(a)·b + c over 64 Mi elements (fp32 and bf16), timed
// with CUDA events, against the same run's device-to-device cudaMemcpy of the same bytes (the
// copy roof) and the op-by-op evaluation. Goal: fused ≥ 90% of the copy bandwidth.
// Run by scripts/gpu-check; exits quietly without a device.
#include <benchmark/benchmark.h>

#include <cstdio>

#include <cuda_runtime_api.h>

#include "bench_cuda_support.cuh"
#include "bench_support.hpp"
#include "einlm/einlm.hpp"

using namespace einlm;

namespace {

index_t elements() { return bench::smoke() ? index_t{1} << 16 : index_t{64} << 20; }

template <class T>
struct device_chain {
  tensor<T, dims<1>, device> a, b, c, y, t1, t2;
  device_chain()
      : a(dims<1>(elements())), b(dims<1>(elements())), c(dims<1>(elements())), y(dims<1>(elements())),
        t1(dims<1>(elements())), t2(dims<1>(elements())) {
    a = uniform<T>(a.extents(), {1, 0}, -4.0, 4.0);
    b = uniform<T>(b.extents(), {1, 1});
    c = uniform<T>(c.extents(), {1, 2});
    EINLM_CUDA_CHECK(cudaDeviceSynchronize());
  }
  static device_chain& get() {
    static device_chain d;
    return d;
  }
};

template <class T>
void copy_roof(benchmark::State& state) {
  auto& d = device_chain<T>::get();
  const std::size_t bytes = static_cast<std::size_t>(elements()) * sizeof(T);
  const cudaStream_t s = default_cuda_executor().stream();
  bench::timed_bytes(state, 4.0 * static_cast<double>(bytes), [&] {
    cudaMemcpyAsync(d.t1.data(), d.a.data(), bytes, cudaMemcpyDeviceToDevice, s);
    cudaMemcpyAsync(d.t2.data(), d.b.data(), bytes, cudaMemcpyDeviceToDevice, s);
  });
}

template <class T>
void fused(benchmark::State& state) {
  auto& d = device_chain<T>::get();
  auto& ex = default_cuda_executor();
  bench::timed_bytes(state, 4.0 * static_cast<double>(elements()) * sizeof(T), [&] { ex.assign(d.y, silu(d.a) * d.b + d.c); });
}

template <class T>
void op_by_op(benchmark::State& state) {
  auto& d = device_chain<T>::get();
  auto& ex = default_cuda_executor();
  bench::timed_bytes(state, 4.0 * static_cast<double>(elements()) * sizeof(T), [&] {
    ex.assign(d.t1, silu(d.a));
    ex.assign(d.t2, d.t1 * d.b);
    ex.assign(d.y, d.t2 + d.c);
  });
}

}  // namespace

BENCHMARK(copy_roof<float>)->Name("copy_f32")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(fused<float>)->Name("fused_f32")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(op_by_op<float>)->Name("op_by_op_f32")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(copy_roof<bf16>)->Name("copy_bf16")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(fused<bf16>)->Name("fused_bf16")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(op_by_op<bf16>)->Name("op_by_op_bf16")->UseManualTime()->Unit(benchmark::kMicrosecond);

int main(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("bench_elementwise_cuda: no CUDA device, nothing to measure\n");
    return 0;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("einlm CUDA element-wise benchmark on %s: y = silu(a)*b + c, %lld elements\n", prop.name,
              static_cast<long long>(elements()));
  return bench::run_and_summarise(argc, argv,
                                  {{"fused fp32 / device copy", "fused_f32/manual_time", "copy_f32/manual_time", 0.9},
                                   {"fused fp32 / op by op (speed-up)", "fused_f32/manual_time", "op_by_op_f32/manual_time", 1.0},
                                   {"fused bf16 / device copy", "fused_bf16/manual_time", "copy_bf16/manual_time", 0.9},
                                   {"fused bf16 / op by op (speed-up)", "fused_bf16/manual_time", "op_by_op_bf16/manual_time", 1.0}});
}
