// CPU benchmark of einsum contractions against the same run's direct BLAS calls:
//   einsum          einsum<"b i k, b k j -> b i j">(a, b) — pattern dispatch, axis classification,
//                   the result's allocation, then einlm's GEMM (BLAS backend when present)
//   einsum (heads)  einsum<"b h i d, b h j d -> b h i j">(q, k) — attention scores, k read transposed
//   cblas_sgemm     OpenBLAS called directly into a preallocated output (the baseline; a loop over
//                   the batch), transposed B for the heads case
//   einsum_accumulate  a weight gradient added into its tensor, einsum_accumulate<"b s o, b s d ->
//                   o d">(dw, dy, x): the GEMM adds into dw (β = 1), beside einsum_add, the same
//                   as dw = dw + einsum<…>(dy, x) (a temporary of dw's size and a pass to add it);
//                   goal ≥ 1.0. Shapes: the LM head of a d256 model (8 × 256 tokens, V 8192, D 256)
//                   and a 256 × 256 projection over the same tokens.
// Goal: einsum's overhead ≤ 10 % (ratio ≥ 0.9). Shapes: a batch of 16 products 256 × 256 × 256,
// a batch of 256 small 32 × 32 × 32 products (where fixed costs show), and attention scores for
// 2 sequences × 8 heads × 512 positions × 64. Rates count 2·M·N·K flops per product. Without a BLAS
// in the build only einsum runs (on the own kernel). benchmarks/einops_peers.py runs this program
// beside numpy.einsum and torch.einsum.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench_support.hpp"
#include "einlm/einops.hpp"

using namespace einlm;

namespace {

struct shape {
  const char* name;
  index_t batch, M, N, K;
};

const shape batched[] = {{"16x256x256x256", 16, 256, 256, 256}, {"256x32x32x32", 256, 32, 32, 32}};
const shape heads{"2x8x512x512x64", 16, 512, 512, 64};  // batch = 2 sequences × 8 heads; K = head dim

shape sized(const shape& s) {
  if (!bench::smoke()) return s;
  return {s.name, 2, 16, 16, 16};
}

void set_flops(benchmark::State& state, const shape& s) {
  state.counters["flops_per_second"] = benchmark::Counter(2.0 * static_cast<double>(s.batch * s.M * s.N * s.K),
                                                          benchmark::Counter::kIsIterationInvariantRate);
}

void bench_einsum_batched(benchmark::State& state, shape s0) {
  const shape s = sized(s0);
  tensor<float, dims<3>> a = uniform<float>(dims<3>(s.batch, s.M, s.K), {3, 0}, -1.0, 1.0);  // (B, M, K)
  tensor<float, dims<3>> b = uniform<float>(dims<3>(s.batch, s.K, s.N), {3, 1}, -1.0, 1.0);  // (B, K, N)
  for (auto _ : state) {
    auto c = einsum<"b i k, b k j -> b i j">(a, b);  // (B, M, N)
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, s);
}

void bench_einsum_heads(benchmark::State& state, shape s0) {
  const shape s = sized(s0);
  const index_t H = bench::smoke() ? 2 : 8, B = s.batch / H;
  tensor<float, dims<4>> q = uniform<float>(dims<4>(B, H, s.M, s.K), {3, 2}, -1.0, 1.0);  // (B, H, S, D)
  tensor<float, dims<4>> k = uniform<float>(dims<4>(B, H, s.N, s.K), {3, 3}, -1.0, 1.0);  // (B, H, S, D)
  for (auto _ : state) {
    auto scores = einsum<"b h i d, b h j d -> b h i j">(q, k);  // (B, H, S, S)
    benchmark::DoNotOptimize(scores.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, s);
}

struct gradient_shape {
  const char* name;
  index_t batch, seq, out, in;
};

const gradient_shape gradients[] = {{"head_8x256_8192x256", 8, 256, 8192, 256}, {"proj_8x256_256x256", 8, 256, 256, 256}};

gradient_shape sized(const gradient_shape& g) {
  if (!bench::smoke()) return g;
  return {g.name, 2, 8, 16, 8};
}

void bench_weight_gradient(benchmark::State& state, gradient_shape g0, bool accumulate) {
  const gradient_shape g = sized(g0);
  tensor<float, dims<3>> dy = uniform<float>(dims<3>(g.batch, g.seq, g.out), {3, 4}, -1.0, 1.0);  // (B, S, O)
  tensor<float, dims<3>> x = uniform<float>(dims<3>(g.batch, g.seq, g.in), {3, 5}, -1.0, 1.0);    // (B, S, D)
  tensor<float, dims<2>> dw = uniform<float>(dims<2>(g.out, g.in), {3, 6}, -1.0, 1.0);            // (O, D)
  for (auto _ : state) {
    if (accumulate) einsum_accumulate<"b s o, b s d -> o d">(dw, dy, x);
    else {
      const auto product = einsum<"b s o, b s d -> o d">(dy, x);  // (O, D): the temporary
      dw = dw + product;                                          // (O, D)
    }
    benchmark::DoNotOptimize(dw.data());
    benchmark::ClobberMemory();
  }
  state.counters["flops_per_second"] = benchmark::Counter(2.0 * static_cast<double>(g.batch * g.seq * g.out * g.in),
                                                          benchmark::Counter::kIsIterationInvariantRate);
}

#if EINLM_HAS_BLAS
void bench_cblas(benchmark::State& state, shape s0, bool b_transposed) {
  const shape s = sized(s0);
  tensor<float, dims<3>> a = uniform<float>(dims<3>(s.batch, s.M, s.K), {3, 0}, -1.0, 1.0);  // (B, M, K)
  tensor<float, dims<3>> b = b_transposed ? tensor<float, dims<3>>(uniform<float>(dims<3>(s.batch, s.N, s.K), {3, 1}, -1.0, 1.0))
                                          : tensor<float, dims<3>>(uniform<float>(dims<3>(s.batch, s.K, s.N), {3, 1}, -1.0, 1.0));
  tensor<float, dims<3>> c(dims<3>(s.batch, s.M, s.N));  // (B, M, N)
  const int M = static_cast<int>(s.M), N = static_cast<int>(s.N), K = static_cast<int>(s.K);
  for (auto _ : state) {
    for (index_t i = 0; i < s.batch; ++i)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, b_transposed ? CblasTrans : CblasNoTrans, M, N, K, 1.0f,
                  a.data() + i * s.M * s.K, K, b.data() + i * s.K * s.N, b_transposed ? K : N, 0.0f,
                  c.data() + i * s.M * s.N, N);
    benchmark::ClobberMemory();
  }
  set_flops(state, s);
}
#endif

std::vector<bench::ratio_row> register_all() {
  std::vector<bench::ratio_row> rows;
  for (const shape& s : batched) {
    const std::string n = s.name;
    benchmark::RegisterBenchmark(("einsum/" + n).c_str(), bench_einsum_batched, s)->Unit(benchmark::kMillisecond)->UseRealTime();
#if EINLM_HAS_BLAS
    benchmark::RegisterBenchmark(("cblas_sgemm/" + n).c_str(), bench_cblas, s, false)->Unit(benchmark::kMillisecond)->UseRealTime();
    rows.push_back({"einsum 'b i k, b k j -> b i j' / cblas_sgemm, " + n, "einsum/" + n + "/real_time",
                    "cblas_sgemm/" + n + "/real_time", 0.9});
#endif
  }
  const std::string n = heads.name;
  benchmark::RegisterBenchmark(("einsum_heads/" + n).c_str(), bench_einsum_heads, heads)->Unit(benchmark::kMillisecond)->UseRealTime();
#if EINLM_HAS_BLAS
  benchmark::RegisterBenchmark(("cblas_sgemm_bt/" + n).c_str(), bench_cblas, heads, true)->Unit(benchmark::kMillisecond)->UseRealTime();
  rows.push_back({"einsum 'b h i d, b h j d -> b h i j' / cblas (B^T), " + n, "einsum_heads/" + n + "/real_time",
                  "cblas_sgemm_bt/" + n + "/real_time", 0.9});
#endif
  for (const gradient_shape& g : gradients) {
    const std::string name = g.name;
    benchmark::RegisterBenchmark(("einsum_accumulate/" + name).c_str(), bench_weight_gradient, g, true)
        ->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark(("einsum_add/" + name).c_str(), bench_weight_gradient, g, false)
        ->Unit(benchmark::kMillisecond)->UseRealTime();
    rows.push_back({"einsum_accumulate / dw + einsum, " + name, "einsum_accumulate/" + name + "/real_time",
                    "einsum_add/" + name + "/real_time", 1.0});
  }
  return rows;
}

}  // namespace

int main(int argc, char** argv) {
  std::printf("einlm CPU einsum benchmark: BLAS %s\n", gemm_has_blas ? "on" : "off");
  const auto rows = register_all();
  return bench::run_and_summarise(argc, argv, rows, {"flops_per_second", "GFLOP/s", 1e9});
}
