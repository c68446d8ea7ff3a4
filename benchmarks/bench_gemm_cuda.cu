// CUDA benchmark of bf16 GEMM (fp32 accumulation, bf16 output) against the same run's cuBLASLt:
//   own              einlm's tensor-core kernel (gemm_backend::own)
//   own_bias_gelu    the same with bias and gelu_tanh fused into its epilogue
//   lt               cuBLASLt called directly: descriptors and the heuristic's algorithm prepared
//                    once, only cublasLtMatmul timed (the baseline)
//   lt_bias_gelu     the same with cuBLASLt's GELU_BIAS epilogue
//   einlm_lt         einlm's gemm on the cublaslt backend (descriptors per call, cached algorithm):
//                    its overhead over the bare call
//   grouped          grouped_gemm_cuda: a mixture-of-experts layer's 64 experts over 4096 tokens
//                    routed top-8 (512 rows each, d 2048 → Dff 1408, the issue's fine-grained
//                    shape) in one launch, against the same products as 64 calls of einlm's
//                    cublaslt backend, and against one cuBLASLt GEMM of the same flops
//                    (32768 × 1408 × 2048)
// Shapes: 4096³; 8192 tokens × 4096 → 4096 (a projection of a d_model = 4096 model); its MLP,
// 4096 → 16384 and 16384 → 4096. Inputs random in [−1, 1); times from CUDA events on one stream
// after a warm-up call; 2·M·N·K flops per product. Before timing, the own kernel's output is
// compared with cuBLASLt's on the first shape (relative Frobenius error; bf16 rounding gives ~3e-3).
// Run by scripts/gpu-check; exits quietly without a device.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "bench_support.hpp"
#include "einlm/einlm.hpp"
#include "einlm/linalg.hpp"

using namespace einlm;

namespace {

struct shape {
  const char* name;
  index_t M, N, K;
};

const shape shapes[] = {{"4096x4096x4096", 4096, 4096, 4096},
                        {"8192x4096x4096", 8192, 4096, 4096},
                        {"8192x16384x4096", 8192, 16384, 4096},
                        {"8192x4096x16384", 8192, 4096, 16384}};

struct operands {
  tensor<bf16, dims<2>, device> a, b, c;
  tensor<bf16, dims<1>, device> bias;
  explicit operands(const shape& s) : a(s.M, s.K), b(s.K, s.N), c(s.M, s.N), bias(s.N) {
    a = uniform<bf16>(a.extents(), {7, 0}, -1.0, 1.0);
    b = uniform<bf16>(b.extents(), {7, 1}, -1.0, 1.0);
    c = uniform<bf16>(c.extents(), {7, 2}, -1.0, 1.0);
    bias = uniform<bf16>(bias.extents(), {7, 3}, -1.0, 1.0);
    EINLM_CUDA_CHECK(cudaDeviceSynchronize());
  }
};

/// A cuBLASLt matmul of row-major bf16 C (M × N) = A (M × K) · B (K × N), set up once: as
/// column-major, Cᵀ = Bᵀ·Aᵀ (so a bias per column of C is cuBLASLt's bias per row of D).
class bare_lt {
 public:
  bare_lt(const shape& s, bool bias_gelu, const void* bias) : s_(s) {
    check(cublasLtCreate(&handle_));
    check(cublasLtMatmulDescCreate(&op_, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t n = CUBLAS_OP_N;
    check(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSA, &n, sizeof(n)));
    check(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSB, &n, sizeof(n)));
    if (bias_gelu) {
      const cublasLtEpilogue_t e = CUBLASLT_EPILOGUE_GELU_BIAS;
      check(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof(e)));
      check(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    }
    check(cublasLtMatrixLayoutCreate(&la_, CUDA_R_16BF, s.N, s.K, s.N));  // Bᵀ, column-major
    check(cublasLtMatrixLayoutCreate(&lb_, CUDA_R_16BF, s.K, s.M, s.K));  // Aᵀ
    check(cublasLtMatrixLayoutCreate(&ld_, CUDA_R_16BF, s.N, s.M, s.N));  // Cᵀ
    check(cublasLtMatmulPreferenceCreate(&pref_));
    const std::uint64_t ws = workspace_bytes;
    check(cublasLtMatmulPreferenceSetAttribute(pref_, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    int count = 0;
    check(cublasLtMatmulAlgoGetHeuristic(handle_, op_, la_, lb_, ld_, ld_, pref_, 1, &result_, &count));
    if (count == 0) throw error("bare cuBLASLt: no algorithm");
    EINLM_CUDA_CHECK(cudaMalloc(&workspace_, workspace_bytes));
  }
  ~bare_lt() {
    cudaFree(workspace_);
    cublasLtMatmulPreferenceDestroy(pref_);
    cublasLtMatrixLayoutDestroy(ld_);
    cublasLtMatrixLayoutDestroy(lb_);
    cublasLtMatrixLayoutDestroy(la_);
    cublasLtMatmulDescDestroy(op_);
    cublasLtDestroy(handle_);
  }
  void run(const operands& x, cudaStream_t stream) {
    const float alpha = 1.0f, beta = 0.0f;
    check(cublasLtMatmul(handle_, op_, &alpha, x.b.data(), la_, x.a.data(), lb_, &beta, x.c.data(), ld_,
                         const_cast<bf16*>(x.c.data()), ld_, &result_.algo, workspace_, workspace_bytes, stream));
  }

 private:
  static constexpr std::size_t workspace_bytes = std::size_t{32} << 20;
  static void check(cublasStatus_t s) {
    if (s != CUBLAS_STATUS_SUCCESS) throw error(std::string("bare cuBLASLt: ") + cublasLtGetStatusString(s));
  }
  shape s_;
  cublasLtHandle_t handle_ = nullptr;
  cublasLtMatmulDesc_t op_ = nullptr;
  cublasLtMatrixLayout_t la_ = nullptr, lb_ = nullptr, ld_ = nullptr;
  cublasLtMatmulPreference_t pref_ = nullptr;
  cublasLtMatmulHeuristicResult_t result_{};
  void* workspace_ = nullptr;
};

/// Times body() with CUDA events on `stream`, after one untimed warm-up call.
template <class F>
void timed(benchmark::State& state, const shape& s, cudaStream_t stream, F body) {
  body();
  EINLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  cudaEvent_t start, stop;
  EINLM_CUDA_CHECK(cudaEventCreate(&start));
  EINLM_CUDA_CHECK(cudaEventCreate(&stop));
  for (auto _ : state) {
    EINLM_CUDA_CHECK(cudaEventRecord(start, stream));
    body();
    EINLM_CUDA_CHECK(cudaEventRecord(stop, stream));
    EINLM_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    EINLM_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    state.SetIterationTime(static_cast<double>(ms) / 1e3);
  }
  EINLM_CUDA_CHECK(cudaGetLastError());
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  state.counters["flops_per_second"] = benchmark::Counter(
      2.0 * static_cast<double>(s.M) * static_cast<double>(s.N) * static_cast<double>(s.K),
      benchmark::Counter::kIsIterationInvariantRate);
}

enum class variant { own, own_bias_gelu, lt, lt_bias_gelu, einlm_lt };

void bench(benchmark::State& state, shape s, variant v) {
  operands x(s);
  cuda_executor ex;
  const cudaStream_t stream = ex.stream();
  switch (v) {
    case variant::own:
    case variant::own_bias_gelu:
    case variant::einlm_lt: {
      epilogue<bf16> ep;
      if (v == variant::own_bias_gelu) {
        ep.bias = x.bias;
        ep.act = activation::gelu_tanh;
      }
      const gemm_options options{.backend = v == variant::einlm_lt ? gemm_backend::cublaslt : gemm_backend::own,
                                 .stream = stream};
      timed(state, s, stream, [&] { gemm(x.a, x.b, x.c, ep, options); });
      break;
    }
    case variant::lt:
    case variant::lt_bias_gelu: {
      bare_lt lt(s, v == variant::lt_bias_gelu, x.bias.data());
      timed(state, s, stream, [&] { lt.run(x, stream); });
      break;
    }
  }
}

/// ‖own − cuBLASLt‖ / ‖cuBLASLt‖ on one shape, printed before the timings.
void compare_once(const shape& s) {
  operands x(s);
  cuda_executor ex;
  gemm(x.a, x.b, x.c, {}, {.backend = gemm_backend::own, .stream = ex.stream()});
  bare_lt lt(s, false, nullptr);
  operands y(s);  // same seeds: same inputs
  lt.run(y, ex.stream());
  ex.synchronize();
  const auto own = to_host(x.c), ref = to_host(y.c);
  double diff = 0, norm = 0;
  for (index_t i = 0; i < own.size(); ++i) {
    const double o = convert<double>(own.data()[i]), r = convert<double>(ref.data()[i]);
    diff += (o - r) * (o - r);
    norm += r * r;
  }
  const double rel = std::sqrt(diff / norm);
  std::printf("check %s: ||own - cuBLASLt|| / ||cuBLASLt|| = %.2e %s\n", s.name, rel,
              rel < 1e-2 ? "(ok)" : "(MISMATCH: the timings below are of a wrong kernel)");
}

/// The fine-grained MoE shape: E experts of (N, K) weights, rows_per_expert token rows each.
constexpr index_t moe_experts = 64, moe_rows_per_expert = 512, moe_n = 1408, moe_k = 2048;
constexpr shape moe_shape{"moe_64x512x1408x2048", moe_experts * moe_rows_per_expert, moe_n, moe_k};

struct moe_operands {
  tensor<bf16, dims<2>, device> a, c;  // (M, K), (M, N)
  tensor<bf16, dims<3>, device> w;     // (E, N, K)
  std::vector<std::int64_t> rows;      // (E + 1)
  tensor<std::int64_t, dims<1>, device> rows_device;  // (E + 1,)
  moe_operands()
      : a(moe_shape.M, moe_k), c(moe_shape.M, moe_n), w(moe_experts, moe_n, moe_k), rows(moe_experts + 1),
        rows_device(dims<1>(moe_experts + 1)) {
    a = uniform<bf16>(a.extents(), {8, 0}, -1.0, 1.0);
    w = uniform<bf16>(w.extents(), {8, 1}, -1.0, 1.0);
    tensor<std::int64_t, dims<1>> r(dims<1>(moe_experts + 1));  // (E + 1,)
    for (index_t e = 0; e <= moe_experts; ++e) r(e) = rows[static_cast<std::size_t>(e)] = e * moe_rows_per_expert;
    rows_device = to_device(r);
    EINLM_CUDA_CHECK(cudaDeviceSynchronize());
  }
};

enum class moe_variant { grouped, per_expert_lt, dense_lt };

void bench_moe(benchmark::State& state, moe_variant v) {
  moe_operands x;
  cuda_executor ex;
  const cudaStream_t stream = ex.stream();
  switch (v) {
    case moe_variant::grouped:
      timed(state, moe_shape, stream, [&] { grouped_gemm_cuda(x.a, x.w, x.c, x.rows, x.rows_device, stream); });
      break;
    case moe_variant::per_expert_lt:
      timed(state, moe_shape, stream, [&] {
        for (index_t e = 0; e < moe_experts; ++e) {
          const index_t r0 = e * moe_rows_per_expert;
          const matrix_ref<const bf16> a(x.a.data() + r0 * moe_k, moe_rows_per_expert, moe_k);  // (rows, K)
          const matrix_ref<const bf16> b(x.w.data() + e * moe_n * moe_k, 1, moe_k, moe_n, moe_n * moe_k, 1, moe_k);  // w[e]ᵀ (K, N)
          const matrix_ref<bf16> c(x.c.data() + r0 * moe_n, moe_rows_per_expert, moe_n);  // (rows, N)
          gemm_cuda(stream, a, b, c, {}, {.backend = gemm_backend::cublaslt});
        }
      });
      break;
    case moe_variant::dense_lt: {
      const matrix_ref<const bf16> a(x.a.data(), moe_shape.M, moe_k);                                  // (M, K)
      const matrix_ref<const bf16> b(x.w.data(), 1, moe_k, moe_n, moe_n * moe_k, 1, moe_k);            // w[0]ᵀ (K, N)
      const matrix_ref<bf16> c(x.c.data(), moe_shape.M, moe_n);                                        // (M, N)
      timed(state, moe_shape, stream, [&] { gemm_cuda(stream, a, b, c, {}, {.backend = gemm_backend::cublaslt}); });
      break;
    }
  }
}

std::vector<bench::ratio_row> register_all() {
  std::vector<bench::ratio_row> rows;
  const std::pair<variant, const char*> variants[] = {{variant::own, "own"},
                                                       {variant::own_bias_gelu, "own_bias_gelu"},
                                                       {variant::lt, "lt"},
                                                       {variant::lt_bias_gelu, "lt_bias_gelu"},
                                                       {variant::einlm_lt, "einlm_lt"}};
  for (const shape& s : shapes) {
    const std::string n = s.name;
    for (const auto& [v, name] : variants)
      benchmark::RegisterBenchmark((std::string(name) + "/" + n).c_str(), bench, s, v)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    const auto key = [&](const char* name) { return std::string(name) + "/" + n + "/manual_time"; };
    rows.push_back({"own / cuBLASLt, bf16 " + n, key("own"), key("lt"), 0.70});
    rows.push_back({"own + bias,gelu / cuBLASLt GELU_BIAS, " + n, key("own_bias_gelu"), key("lt_bias_gelu"), 0.70});
    rows.push_back({"einlm cublaslt backend / bare cuBLASLt, " + n, key("einlm_lt"), key("lt"), 0.98});
  }
  const std::pair<moe_variant, const char*> moe_variants[] = {
      {moe_variant::grouped, "grouped"}, {moe_variant::per_expert_lt, "per_expert_lt"}, {moe_variant::dense_lt, "dense_lt"}};
  for (const auto& [v, name] : moe_variants)
    benchmark::RegisterBenchmark((std::string(name) + "/" + moe_shape.name).c_str(), bench_moe, v)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  const auto moe_key = [](const char* name) { return std::string(name) + "/" + moe_shape.name + "/manual_time"; };
  rows.push_back({"grouped GEMM / 64 per-expert cuBLASLt calls, MoE 64 x 512 rows", moe_key("grouped"), moe_key("per_expert_lt"), 1.3});
  rows.push_back({"grouped GEMM / one cuBLASLt GEMM of the same flops", moe_key("grouped"), moe_key("dense_lt"), 0.85});
  return rows;
}

}  // namespace

int main(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("bench_gemm_cuda: no CUDA device, nothing to measure\n");
    return 0;
  }
  cudaDeviceProp prop{};
  EINLM_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("einlm CUDA GEMM benchmark on %s (%d SMs): bf16 inputs and output, fp32 accumulation\n", prop.name,
              prop.multiProcessorCount);
  compare_once(shapes[0]);
  const auto rows = register_all();
  return bench::run_and_summarise(argc, argv, rows, {"flops_per_second", "TFLOP/s", 1e12});
}
