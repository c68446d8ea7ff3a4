// What the CUDA benchmarks share (nvcc): timing a body with CUDA events on the default
// executor's stream, as Google Benchmark manual time, with a bandwidth (or other rate) counter.
#pragma once

#include <benchmark/benchmark.h>

#include <cuda_runtime_api.h>

#include "einlm/core/error.hpp"
#include "einlm/exec/cuda.cuh"

namespace einlm::bench {

/// Times `body` with events on the default executor's stream after one warm-up run, as manual
/// time; `amount` of the quantity `counter` (bytes, flops) per run, reported as a rate.
template <class F>
void timed_rate(benchmark::State& state, const char* counter, double amount, F body) {
  cudaEvent_t start, stop;
  EINLM_CUDA_CHECK(cudaEventCreate(&start));
  EINLM_CUDA_CHECK(cudaEventCreate(&stop));
  const cudaStream_t s = default_cuda_executor().stream();
  body();  // warm-up
  for (auto _ : state) {
    EINLM_CUDA_CHECK(cudaEventRecord(start, s));
    body();
    EINLM_CUDA_CHECK(cudaEventRecord(stop, s));
    EINLM_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    EINLM_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    state.SetIterationTime(static_cast<double>(ms) / 1e3);
  }
  EINLM_CUDA_CHECK(cudaEventDestroy(start));
  EINLM_CUDA_CHECK(cudaEventDestroy(stop));
  state.counters[counter] = benchmark::Counter(amount, benchmark::Counter::kIsIterationInvariantRate);
}

/// timed_rate with bytes = read + written per run, reported as bytes_per_second.
template <class F>
void timed_bytes(benchmark::State& state, double bytes, F body) {
  timed_rate(state, "bytes_per_second", bytes, body);
}

}  // namespace einlm::bench
