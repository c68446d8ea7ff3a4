// CUDA benchmark of the fused attention kernels (einlm/nn/cuda_attention.cuh), causal, bf16, at
// sequence 4096, head dimensions 64 (B 4 × H 16) and 128 (B 4 × H 8), timed with CUDA events:
//   fused_fwd_d*      nn::fused_attention_forward
//   fused_bwd_d*      nn::fused_attention_backward (its two launches)
//   square_gemms_d*   the baseline beside them: the two batched products of an unfused attention,
//                     q kᵀ into the (S, S) square and P v, with einlm's bf16 tensor-core GEMM — the
//                     matrix products alone, no softmax, the masked half included
// FLOPs counted (flops_per_second): the causal attention's, 4·B·H·S²·Dh/2 forward and 2.5 times
// that backward (dq, dk, dv and the recomputed scores, as FlashAttention counts them); the
// baseline's 2·2·B·H·S²·Dh, what it computes. The summary's ratios are the fused kernels' rate over
// the tensor-core GEMM rate; the issue's goal is 300 TFLOP/s forward at head dimension 128.
// Before timing, the fused forward's output is compared with the host's nn::attention_forward on
// a small case (a wrong kernel exits with status 1). Run by scripts/gpu-check; exits quietly
// without a device.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "bench_cuda_support.cuh"
#include "bench_support.hpp"
#include "einlm/einlm.hpp"
#include "einlm/linalg/gemm_cuda.cuh"
#include "einlm/nn/backward.hpp"
#include "einlm/nn/cuda_attention.cuh"

using namespace einlm;

namespace {

struct attention_case {
  index_t B, H, S, D;
};

attention_case case_of(int dh) {
  const index_t S = bench::smoke() ? 256 : 4096;
  return dh == 64 ? attention_case{4, 16, S, 64} : attention_case{4, 8, S, 128};
}

double causal_forward_flops(const attention_case& c) {
  return 4.0 * static_cast<double>(c.B * c.H) * static_cast<double>(c.S) * static_cast<double>(c.S) *
         static_cast<double>(c.D) / 2.0;
}

struct attention_data {
  attention_case c;
  tensor<bf16, dims<4>, device> q, k, v, dout;  // (B, H, S, Dh) each
  tensor<bf16, dims<3>, device> scores;          // (B·H, S, S), the baseline's square
  tensor<bf16, dims<4>, device> out;             // (B, H, S, Dh), the baseline's P v
  explicit attention_data(int dh)
      : c(case_of(dh)), q(dims<4>(c.B, c.H, c.S, c.D)), k(q.extents()), v(q.extents()), dout(q.extents()),
        scores(dims<3>(c.B * c.H, c.S, c.S)), out(q.extents()) {
    q = uniform<bf16>(q.extents(), {7, 0}, -1.0, 1.0);
    k = uniform<bf16>(k.extents(), {7, 1}, -1.0, 1.0);
    v = uniform<bf16>(v.extents(), {7, 2}, -1.0, 1.0);
    dout = uniform<bf16>(dout.extents(), {7, 3}, -1.0, 1.0);
    scores = uniform<bf16>(scores.extents(), {7, 4}, 0.0, 1.0 / static_cast<double>(c.S));
    EINLM_CUDA_CHECK(cudaDeviceSynchronize());
  }
  static attention_data& get(int dh) {
    static attention_data d64(64), d128(128);
    return dh == 64 ? d64 : d128;
  }
};

void fused_forward(benchmark::State& state, int dh) {
  auto& d = attention_data::get(dh);
  bench::timed_rate(state, "flops_per_second", causal_forward_flops(d.c),
                    [&] { benchmark::DoNotOptimize(nn::fused_attention_forward(d.q, d.k, d.v)); });
}

void fused_backward(benchmark::State& state, int dh) {
  auto& d = attention_data::get(dh);
  const auto f = nn::fused_attention_forward(d.q, d.k, d.v);  // .out (B, H, S, Dh), .lse (B, H, S)
  bench::timed_rate(state, "flops_per_second", 2.5 * causal_forward_flops(d.c), [&] {
    benchmark::DoNotOptimize(nn::fused_attention_backward(d.q, d.k, d.v, f.out, f.lse, d.dout));
  });
}

void square_gemms(benchmark::State& state, int dh) {
  auto& d = attention_data::get(dh);
  const index_t BH = d.c.B * d.c.H, S = d.c.S, D = d.c.D;
  const cudaStream_t s = default_cuda_executor().stream();
  const matrix_ref<const bf16> q(d.q.data(), BH, S, D, S * D, D, 1);     // (B·H, S, Dh)
  const matrix_ref<const bf16> kt(d.k.data(), BH, D, S, S * D, 1, D);    // kᵀ (B·H, Dh, S)
  const matrix_ref<bf16> sc(d.scores.data(), BH, S, S, S * S, S, 1);     // (B·H, S, S)
  const matrix_ref<const bf16> p(d.scores.data(), BH, S, S, S * S, S, 1);  // the square read as P
  const matrix_ref<const bf16> v(d.v.data(), BH, S, D, S * D, D, 1);     // (B·H, S, Dh)
  const matrix_ref<bf16> o(d.out.data(), BH, S, D, S * D, D, 1);         // (B·H, S, Dh)
  const double flops = 2.0 * 2.0 * static_cast<double>(BH) * static_cast<double>(S) * static_cast<double>(S) *
                       static_cast<double>(D);  // both products over the whole square
  bench::timed_rate(state, "flops_per_second", flops, [&] {
    gemm_cuda(s, q, kt, sc, {}, {});
    gemm_cuda(s, p, v, o, {}, {});
  });
}

/// The fused forward against the host's on a small causal GQA case; false when they disagree.
bool forward_agrees() {
  tensor<float, dims<4>> q(1, 4, 70, 64), k(1, 2, 70, 64), v(1, 2, 70, 64);  // (B, H, S, Dh), (B, Hkv, S, Dh) twice
  q = uniform<float>(q.extents(), {9, 0}, -1.0, 1.0);
  k = uniform<float>(k.extents(), {9, 1}, -1.0, 1.0);
  v = uniform<float>(v.extents(), {9, 2}, -1.0, 1.0);
  const auto host = nn::attention_forward(q, k, v, true);                                   // .out (B, H, S, Dh)
  const auto dev = nn::fused_attention_forward(to_device(q), to_device(k), to_device(v));  // .out (B, H, S, Dh)
  const auto out = to_host(dev.out);                                                        // (B, H, S, Dh)
  double worst = 0;
  for (index_t i = 0; i < out.size(); ++i) worst = std::max(worst, static_cast<double>(std::abs(out.data()[i] - host.out.data()[i])));
  std::printf("fused attention forward against the host's: max |difference| %.2e\n", worst);
  return worst < 1e-4;
}

}  // namespace

BENCHMARK_CAPTURE(fused_forward, d64, 64)->Name("attention_fused_fwd_d64")->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(fused_backward, d64, 64)->Name("attention_fused_bwd_d64")->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(square_gemms, d64, 64)->Name("attention_square_gemms_d64")->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(fused_forward, d128, 128)->Name("attention_fused_fwd_d128")->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(fused_backward, d128, 128)->Name("attention_fused_bwd_d128")->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(square_gemms, d128, 128)->Name("attention_square_gemms_d128")->UseManualTime()->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("bench_attention_cuda: no CUDA device, nothing to measure\n");
    return 0;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("einlm fused attention on %s: causal, bf16, S %lld\n", prop.name, static_cast<long long>(case_of(64).S));
  if (!forward_agrees()) return 1;
  return bench::run_and_summarise(
      argc, argv,
      {{"attention fwd d64 / square GEMMs (tensor-core rate)", "attention_fused_fwd_d64/manual_time",
        "attention_square_gemms_d64/manual_time", 0.0},
       {"attention bwd d64 / square GEMMs", "attention_fused_bwd_d64/manual_time", "attention_square_gemms_d64/manual_time", 0.0},
       {"attention fwd d128 / square GEMMs", "attention_fused_fwd_d128/manual_time", "attention_square_gemms_d128/manual_time",
        0.0},
       {"attention bwd d128 / square GEMMs", "attention_fused_bwd_d128/manual_time", "attention_square_gemms_d128/manual_time",
        0.0}},
      {"flops_per_second", "TFLOP/s", 1e12});
}
