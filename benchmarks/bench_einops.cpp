// CPU benchmark of einops operations on 64 MiB of fp32 (16 Mi elements), with same-run baselines:
//   transposes "a b -> b a" (4096 × 4096) and "b h s d -> b s h d" (16 × 16 × 256 × 256) against a
//   parallel memcpy of the same bytes (goal ≥ 70 %), and against a plain loop nest (the untiled
//   copy an index map gives);
//   reductions "a b -> a" and "a b -> b" (sum) against a straightforward loop.
// Bandwidth counts bytes read plus bytes written. benchmarks/einops_peers.py runs this program and
// NumPy/PyTorch on the same shapes and prints the ratios against them.
#include <benchmark/benchmark.h>

#include <cstring>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "bench_support.hpp"
#include "einlm/einops.hpp"

using namespace einlm;

namespace {

index_t side() { return bench::smoke() ? 256 : 4096; }

struct data {
  tensor<float, dims<2>> a, out, out_t;
  tensor<float, dims<4>> x4, y4;
  tensor<float, dims<1>> rows, cols;
  data()
      : a(side(), side()), out(side(), side()), out_t(side(), side()), x4(16, 16, side() / 16, side() / 16),
        y4(16, side() / 16, 16, side() / 16), rows(side()), cols(side()) {
    a = uniform<float>(a.extents(), {7, 0}, -1.0, 1.0);
    x4 = uniform<float>(x4.extents(), {7, 1}, -1.0, 1.0);
    out = 0.0f;
    out_t = 0.0f;
    y4 = 0.0f;
    rows = 0.0f;
    cols = 0.0f;
  }
  static data& get() {
    static data d;
    return d;
  }
};

void set_bytes(benchmark::State& state, double bytes) {
  state.counters["bytes_per_second"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
}

void memcpy_parallel(benchmark::State& state) {
  auto& d = data::get();
  const std::size_t n = static_cast<std::size_t>(d.a.size());
  for (auto _ : state) {
#pragma omp parallel
    {
#if defined(_OPENMP)
      const std::size_t t = static_cast<std::size_t>(omp_get_thread_num()), T = static_cast<std::size_t>(omp_get_num_threads());
#else
      const std::size_t t = 0, T = 1;
#endif
      std::memcpy(d.out.data() + n * t / T, d.a.data() + n * t / T, (n * (t + 1) / T - n * t / T) * sizeof(float));
    }
    benchmark::ClobberMemory();
  }
  set_bytes(state, 2.0 * static_cast<double>(n) * sizeof(float));
}

void transpose_2d(benchmark::State& state) {
  auto& d = data::get();
  for (auto _ : state) {
    d.out_t = rearrange<"a b -> b a">(d.a);
    benchmark::ClobberMemory();
  }
  set_bytes(state, 2.0 * static_cast<double>(d.a.size()) * sizeof(float));
}

void transpose_2d_loop(benchmark::State& state) {
  auto& d = data::get();
  const index_t n = side();
  const float* a = d.a.data();
  float* o = d.out_t.data();
  for (auto _ : state) {
#pragma omp parallel for schedule(static)
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n; ++j) o[i * n + j] = a[j * n + i];
    benchmark::ClobberMemory();
  }
  set_bytes(state, 2.0 * static_cast<double>(d.a.size()) * sizeof(float));
}

void heads_swap(benchmark::State& state) {
  auto& d = data::get();
  for (auto _ : state) {
    d.y4 = rearrange<"b h s d -> b s h d">(d.x4);
    benchmark::ClobberMemory();
  }
  set_bytes(state, 2.0 * static_cast<double>(d.x4.size()) * sizeof(float));
}

void reduce_last(benchmark::State& state) {
  auto& d = data::get();
  for (auto _ : state) {
    d.rows = reduce<"a b -> a", "sum">(d.a);
    benchmark::ClobberMemory();
  }
  set_bytes(state, static_cast<double>(d.a.size()) * sizeof(float));
}

void reduce_first(benchmark::State& state) {
  auto& d = data::get();
  for (auto _ : state) {
    d.cols = reduce<"a b -> b", "sum">(d.a);
    benchmark::ClobberMemory();
  }
  set_bytes(state, static_cast<double>(d.a.size()) * sizeof(float));
}

void reduce_last_loop(benchmark::State& state) {
  auto& d = data::get();
  const index_t n = side();
  const float* a = d.a.data();
  float* r = d.rows.data();
  for (auto _ : state) {
#pragma omp parallel for schedule(static)
    for (index_t i = 0; i < n; ++i) {
      float s = 0;
      for (index_t j = 0; j < n; ++j) s += a[i * n + j];
      r[i] = s;
    }
    benchmark::ClobberMemory();
  }
  set_bytes(state, static_cast<double>(d.a.size()) * sizeof(float));
}

}  // namespace

BENCHMARK(memcpy_parallel)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(transpose_2d)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(transpose_2d_loop)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(heads_swap)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(reduce_last)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(reduce_first)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(reduce_last_loop)->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
  std::printf("einlm CPU einops benchmark: %lld x %lld fp32, %d threads\n", static_cast<long long>(side()),
              static_cast<long long>(side()), default_cpu_executor().threads());
  return bench::run_and_summarise(
      argc, argv,
      {{"rearrange 'a b -> b a' / memcpy", "transpose_2d/real_time", "memcpy_parallel/real_time", 0.7},
       {"rearrange 'b h s d -> b s h d' / memcpy", "heads_swap/real_time", "memcpy_parallel/real_time", 0.7},
       {"rearrange 'a b -> b a' / untiled loop", "transpose_2d/real_time", "transpose_2d_loop/real_time", 1.0},
       {"reduce 'a b -> a' sum / plain loop", "reduce_last/real_time", "reduce_last_loop/real_time", 1.0},
       {"reduce 'a b -> b' sum / plain loop (rows)", "reduce_first/real_time", "reduce_last_loop/real_time", 0.8}});
}
