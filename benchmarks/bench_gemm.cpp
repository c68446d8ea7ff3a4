// CPU benchmark of fp32 GEMM at transformer-like shapes, against the same run's cblas_sgemm:
//   own            einlm's own blocked kernel (gemm_backend::own)
//   einlm blas     einlm's gemm on the BLAS backend (what `automatic` picks, unless OpenBLAS's
//                  kernels are older than the CPU: the header line says): the BLAS call plus
//                  einlm's checks and dispatch — its overhead over the direct call
//   own + epilogue the own kernel with bias and GELU fused into its stores
//   blas + pass    einlm's BLAS backend with the same epilogue as a second, threaded pass
//   cblas_sgemm    OpenBLAS called directly (the baseline; a loop over the batch when batched)
//   own bf16       the own kernel on bf16 inputs and output (no BLAS has them): the bf16 pair
//                  kernel (vdpbf16ps) on a CPU with AVX-512 BF16, else the widening float kernel;
//                  set beside the own fp32 kernel and beside cblas_sgemm (what a float model pays)
// Shapes: 512³; 2048 tokens × 768 × 768 (a GPT-2-small projection); 2048 tokens × 128 × 512 (the
// demo model's FFN down-projection: K of one AVX-512 panel); a batch of 8 attention-like products
// (256 × 256)·(256 × 64). Rates count 2·M·N·K flops per matrix. Without a BLAS in the
// build, only the own kernel runs. On a machine shared with other work, run it with
// OMP_WAIT_POLICY=passive (docs/gemm.md, "Threads").
#include <benchmark/benchmark.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "bench_support.hpp"
#include "einlm/linalg.hpp"

using namespace einlm;

namespace {

struct shape {
  const char* name;
  index_t batch, M, N, K;
};

const shape shapes[] = {{"512x512x512", 1, 512, 512, 512},
                        {"2048x768x768", 1, 2048, 768, 768},
                        {"2048x128x512", 1, 2048, 128, 512},
                        {"8x256x64x256", 8, 256, 64, 256}};

shape sized(const shape& s) {
  if (!bench::smoke()) return s;
  return {s.name, s.batch, 16, 16, 16};
}

template <class T>
struct operands {
  std::vector<T> a, b, c, bias;
  explicit operands(const shape& s)
      : a(static_cast<std::size_t>(s.batch * s.M * s.K)), b(static_cast<std::size_t>(s.batch * s.K * s.N)),
        c(static_cast<std::size_t>(s.batch * s.M * s.N)), bias(static_cast<std::size_t>(s.N)) {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> d(-1.0f, 1.0f);
    for (auto* v : {&a, &b, &c, &bias})
      for (auto& x : *v) x = convert<T>(d(rng));
  }
  matrix_ref<const T> am(const shape& s) const { return {a.data(), s.batch, s.M, s.K, s.M * s.K, s.K, 1}; }
  matrix_ref<const T> bm(const shape& s) const { return {b.data(), s.batch, s.K, s.N, s.K * s.N, s.N, 1}; }
  matrix_ref<T> cm(const shape& s) { return {c.data(), s.batch, s.M, s.N, s.M * s.N, s.N, 1}; }
};

void set_flops(benchmark::State& state, const shape& s) {
  state.counters["flops_per_second"] = benchmark::Counter(2.0 * static_cast<double>(s.batch * s.M * s.N * s.K),
                                                          benchmark::Counter::kIsIterationInvariantRate);
}

template <class T>
void bench_einlm(benchmark::State& state, shape s0, gemm_backend backend, bool fused_epilogue) {
  const shape s = sized(s0);
  operands<T> x(s);
  epilogue<T> ep;
  if (fused_epilogue) {
    ep.bias = vector_ref<T>(x.bias.data(), s.N);
    ep.act = activation::gelu_tanh;
  }
  const gemm_options options{.backend = backend};
  for (auto _ : state) {
    gemm_cpu(x.am(s), x.bm(s), x.cm(s), ep, options);
    benchmark::ClobberMemory();
  }
  set_flops(state, s);
}

#if EINLM_HAS_BLAS
void bench_cblas(benchmark::State& state, shape s0) {
  const shape s = sized(s0);
  operands<float> x(s);
  for (auto _ : state) {
    for (index_t b = 0; b < s.batch; ++b)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(s.M), static_cast<int>(s.N),
                  static_cast<int>(s.K), 1.0f, x.a.data() + b * s.M * s.K, static_cast<int>(s.K),
                  x.b.data() + b * s.K * s.N, static_cast<int>(s.N), 0.0f, x.c.data() + b * s.M * s.N,
                  static_cast<int>(s.N));
    benchmark::ClobberMemory();
  }
  set_flops(state, s);
}
#endif

std::vector<bench::ratio_row> register_all() {
  // The own kernel's benchmarks first, BLAS's after: OpenBLAS's idle threads keep spinning for a
  // while after each call and would slow whatever runs next.
  std::vector<bench::ratio_row> rows;
  for (const shape& s : shapes) {
    const std::string n = s.name;
    benchmark::RegisterBenchmark(("own/" + n).c_str(), bench_einlm<float>, s, gemm_backend::own, false)
        ->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark(("own_bias_gelu/" + n).c_str(), bench_einlm<float>, s, gemm_backend::own, true)
        ->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark(("own_bf16/" + n).c_str(), bench_einlm<bf16>, s, gemm_backend::own, false)
        ->Unit(benchmark::kMillisecond)->UseRealTime();
  }
#if EINLM_HAS_BLAS
  for (const shape& s : shapes) {
    const std::string n = s.name;
    benchmark::RegisterBenchmark(("einlm_blas/" + n).c_str(), bench_einlm<float>, s, gemm_backend::blas, false)
        ->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark(("einlm_blas_bias_gelu/" + n).c_str(), bench_einlm<float>, s, gemm_backend::blas, true)
        ->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark(("cblas_sgemm/" + n).c_str(), bench_cblas, s)
        ->Unit(benchmark::kMillisecond)->UseRealTime();
  }
#endif
  for (const shape& s : shapes) {
    const std::string n = s.name;
    const auto key = [&](const char* name) { return std::string(name) + "/" + n + "/real_time"; };
    if (gemm_has_blas) {
      rows.push_back({"own / cblas_sgemm, " + n, key("own"), key("cblas_sgemm"), 0.7});
      rows.push_back({"einlm blas backend / cblas_sgemm, " + n, key("einlm_blas"), key("cblas_sgemm"), 0.9});
      rows.push_back({"own + bias,gelu / blas + pass, " + n, key("own_bias_gelu"), key("einlm_blas_bias_gelu"), 0.7});
      rows.push_back({"own bf16 / cblas_sgemm, " + n, key("own_bf16"), key("cblas_sgemm"), 1.0});
    }
    rows.push_back({"own bf16 / own fp32, " + n, key("own_bf16"), key("own"), 0.8});
  }
  return rows;
}

}  // namespace

int main(int argc, char** argv) {
#if EINLM_GEMM_HAS_BF16_DOT
  const bool bf16_pairs = detail::cpu_has_bf16_dot();
#else
  const bool bf16_pairs = false;
#endif
  std::printf("einlm CPU GEMM benchmark: BLAS %s, %d-lane packets, bf16 %s\nautomatic float GEMM: %s\n",
              gemm_has_blas ? "on" : "off", simd::width, bf16_pairs ? "pair kernel (AVX-512 BF16)" : "widened to float",
              cpu_gemm_description().c_str());
  const auto rows = register_all();
  return bench::run_and_summarise(argc, argv, rows, {"flops_per_second", "GFLOP/s", 1e9});
}
