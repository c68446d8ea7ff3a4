// CPU benchmark of a fused element-wise chain, y = silu(a)·b + c over 64 Mi fp32 elements
// (1 GiB of traffic: three reads and one write), against the same run's baselines:
//   memcpy            copying two 64 Mi-float arrays (the same bytes read plus written as the
//                     chain), on one thread, and split across the OpenMP threads (the copy roof)
//   op by op          silu(a) → t1, t1·b → t2, t2 + c → y, each materialised (what an unfused
//                     library does)
//   plain loop        an OpenMP loop calling std::exp: what one writes by hand without SIMD math
// Bandwidth counts bytes read plus bytes written. Goal: fused ≥ 80% of parallel memcpy.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstring>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "bench_support.hpp"
#include "einlm/expr.hpp"

using namespace einlm;

namespace {

index_t elements() { return bench::smoke() ? index_t{1} << 16 : index_t{64} << 20; }

struct chain_data {
  tensor<float, dims<1>> a, b, c, y, t1, t2;
  chain_data()
      : a(dims<1>(elements())), b(dims<1>(elements())), c(dims<1>(elements())), y(dims<1>(elements())),
        t1(dims<1>(elements())), t2(dims<1>(elements())) {
    a = uniform<float>(a.extents(), {1, 0}, -4.0, 4.0);  // also touches every page
    b = uniform<float>(b.extents(), {1, 1});
    c = uniform<float>(c.extents(), {1, 2});
    y = full<float>(y.extents(), 0.0f);
    t1 = full<float>(t1.extents(), 0.0f);
    t2 = full<float>(t2.extents(), 0.0f);
  }
  static chain_data& get() {
    static chain_data d;
    return d;
  }
};

void set_bytes(benchmark::State& state, double bytes_per_iteration) {
  state.counters["bytes_per_second"] =
      benchmark::Counter(bytes_per_iteration, benchmark::Counter::kIsIterationInvariantRate);
}

void memcpy_single(benchmark::State& state) {
  auto& d = chain_data::get();
  const std::size_t bytes = static_cast<std::size_t>(elements()) * sizeof(float);
  for (auto _ : state) {
    std::memcpy(d.t1.data(), d.a.data(), bytes);
    std::memcpy(d.t2.data(), d.b.data(), bytes);
    benchmark::ClobberMemory();
  }
  set_bytes(state, 4.0 * static_cast<double>(bytes));
}

void memcpy_parallel(benchmark::State& state) {
  auto& d = chain_data::get();
  const std::size_t n = static_cast<std::size_t>(elements());
  for (auto _ : state) {
#pragma omp parallel
    {
#if defined(_OPENMP)
      const std::size_t t = static_cast<std::size_t>(omp_get_thread_num()), T = static_cast<std::size_t>(omp_get_num_threads());
#else
      const std::size_t t = 0, T = 1;
#endif
      const std::size_t lo = n * t / T, hi = n * (t + 1) / T;
      std::memcpy(d.t1.data() + lo, d.a.data() + lo, (hi - lo) * sizeof(float));
      std::memcpy(d.t2.data() + lo, d.b.data() + lo, (hi - lo) * sizeof(float));
    }
    benchmark::ClobberMemory();
  }
  set_bytes(state, 4.0 * static_cast<double>(n) * sizeof(float));
}

void fused(benchmark::State& state) {
  auto& d = chain_data::get();
  for (auto _ : state) {
    d.y = silu(d.a) * d.b + d.c;
    benchmark::ClobberMemory();
  }
  set_bytes(state, 4.0 * static_cast<double>(elements()) * sizeof(float));
}

void op_by_op(benchmark::State& state) {
  auto& d = chain_data::get();
  for (auto _ : state) {
    d.t1 = silu(d.a);
    d.t2 = d.t1 * d.b;
    d.y = d.t2 + d.c;
    benchmark::ClobberMemory();
  }
  set_bytes(state, 4.0 * static_cast<double>(elements()) * sizeof(float));  // useful bytes only
}

void plain_loop(benchmark::State& state) {
  auto& d = chain_data::get();
  const index_t n = elements();
  const float *a = d.a.data(), *b = d.b.data(), *c = d.c.data();
  float* y = d.y.data();
  for (auto _ : state) {
#pragma omp parallel for schedule(static)
    for (index_t i = 0; i < n; ++i) y[i] = a[i] / (1.0f + std::exp(-a[i])) * b[i] + c[i];
    benchmark::ClobberMemory();
  }
  set_bytes(state, 4.0 * static_cast<double>(n) * sizeof(float));
}

}  // namespace

BENCHMARK(memcpy_single)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(memcpy_parallel)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(fused)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(op_by_op)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(plain_loop)->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
  std::printf("einlm CPU element-wise benchmark: y = silu(a)*b + c, %lld fp32 elements, %d threads\n",
              static_cast<long long>(elements()), default_cpu_executor().threads());
  return bench::run_and_summarise(argc, argv,
                                  {{"fused chain / memcpy (parallel)", "fused/real_time", "memcpy_parallel/real_time", 0.8},
                                   {"fused chain / memcpy (one thread)", "fused/real_time", "memcpy_single/real_time", 0.8},
                                   {"fused chain / op by op (speed-up)", "fused/real_time", "op_by_op/real_time", 1.0},
                                   {"fused chain / plain OpenMP loop with std::exp", "fused/real_time", "plain_loop/real_time", 1.0}});
}
