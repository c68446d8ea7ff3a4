// GPU tests of the CUDA GEMM (einlm/linalg/gemm_cuda.cuh): the own kernels (tensor cores for
// bf16/fp16, SIMT for float/double) and cuBLASLt, each against the double reference with the
// derived error bound and against the CPU path on the same inputs; outputs poisoned with NaN
// first (beta = 0), so an element left unwritten fails. Odd sizes, all four operand layouts of
// the tensor-core kernel, operands it must copy first (gaps, reversed rows, misaligned pointers),
// batches with shared operands, every epilogue option, output casts, the tensor interface on a
// stream. Exits with 77 (skipped) when no device is present (tests/support/main_gpu.cu).
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "einlm/einlm.hpp"
#include "einlm/linalg.hpp"
#include "linalg/gemm_check.hpp"
#include "support/check.hpp"

using namespace einlm;
using test::gemm_case;
using test::gemm_problem;

namespace {

template <class T>
buffer<T, device> to_device_buffer(const std::vector<T>& v) {
  buffer<T, device> d(v.size());
  EINLM_CUDA_CHECK(cudaMemcpy(d.data(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

template <class T>
std::vector<T> to_host_vector(const buffer<T, device>& d) {
  std::vector<T> v(d.size());
  EINLM_CUDA_CHECK(cudaMemcpy(v.data(), d.data(), v.size() * sizeof(T), cudaMemcpyDeviceToHost));
  return v;
}

struct stream_guard {
  cudaStream_t s = nullptr;
  stream_guard() { EINLM_CUDA_CHECK(cudaStreamCreate(&s)); }
  ~stream_guard() { cudaStreamDestroy(s); }
};

/// Runs one CUDA backend on device copies of the problem (C poisoned when beta = 0) and returns
/// C's storage.
template <class In, class Out>
std::vector<Out> run_gpu(const gemm_problem<In, Out>& p, gemm_backend backend, cudaStream_t stream) {
  auto da = to_device_buffer(p.a.storage), db = to_device_buffer(p.b.storage);
  auto dc = to_device_buffer(p.initial_output());
  auto dres = to_device_buffer(p.residual.storage);
  auto dbias = to_device_buffer(p.bias);
  epilogue<Out> ep = p.ep;
  if (!ep.bias.empty()) ep.bias.data = dbias.data();
  if (!ep.residual.empty()) ep.residual = p.residual.template on<const Out>(dres.data());
  gemm_options options;
  options.backend = backend;
  gemm_cuda(stream, p.a.template on<const In>(da.data()), p.b.template on<const In>(db.data()),
            p.c.template on<Out>(dc.data()), ep, options);
  EINLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  EINLM_CUDA_CHECK(cudaGetLastError());
  return to_host_vector(dc);
}

template <class In, class Out>
std::vector<Out> run_cpu(const gemm_problem<In, Out>& p) {
  std::vector<Out> out = p.initial_output();
  gemm_cpu(matrix_ref<const In>(p.a.ref), matrix_ref<const In>(p.b.ref), p.c.template on<Out>(out.data()), p.ep,
           {.backend = gemm_backend::own});
  return out;
}

std::string label(const char* backend, const char* in, const char* out) {
  return std::string(backend) + " " + in + " -> " + out;
}

template <class In, class Out>
void compare_backends(const std::vector<gemm_case>& cases, std::uint64_t seed) {
  stream_guard stream;
  for (const gemm_case& c : cases) {
    const gemm_problem<In, Out> p(c, seed++);
    const auto cpu = run_cpu(p);
    p.check(cpu, label("cpu", dtype_traits<In>::name, dtype_traits<Out>::name));
    const auto own = run_gpu(p, gemm_backend::own, stream.s);
    p.check(own, label("cuda own", dtype_traits<In>::name, dtype_traits<Out>::name));
    p.check_agree(own, cpu, "cuda own and cpu agree");
    if (gemm_has_cublaslt) {
      // cuBLASLt's GELU epilogue (used for gelu_tanh) is its own approximation of the tanh form;
      // allow it 2^-10 relative. Everything else it computes is held to the bound.
      const double approx = c.act == activation::gelu_tanh ? 0x1p-10 : 0.0;
      const auto lt = run_gpu(p, gemm_backend::cublaslt, stream.s);
      p.check(lt, label("cublaslt", dtype_traits<In>::name, dtype_traits<Out>::name), approx);
      p.check_agree(lt, cpu, "cublaslt and cpu agree", approx);
    }
  }
}

/// The standard cases plus shapes that matter to the tensor-core kernel: full tiles, many tiles
/// (the grouped raster), enough tiles for its 128 × 256 shape, long K.
std::vector<gemm_case> gpu_cases() {
  auto cases = test::standard_cases();
  for (int lay = 0; lay < 4; ++lay) {
    gemm_case c;
    c.M = 1100;  // 9 row tiles: more than one raster group
    c.N = 300;
    c.K = 200;
    c.layout.a_col_major = lay & 1;
    c.layout.b_col_major = lay & 2;
    c.bias = true;
    c.act = activation::gelu_tanh;
    cases.push_back(c);
  }
  for (int lay = 0; lay < 4; ++lay) {
    // 2 × 2 tiles of 128 × 256 in each of 36 matrices: enough CTAs for the 128 × 256 kernel on
    // any GPU with up to 144 multiprocessors (an H100 or H200 has 132).
    gemm_case c;
    c.batch = 36;
    c.M = 200;
    c.N = 300;
    c.K = 72;
    c.layout.a_col_major = lay & 1;
    c.layout.b_col_major = lay & 2;
    c.layout.b_shared = lay == 3;
    c.bias = true;
    c.residual = true;
    c.act = activation::relu;
    cases.push_back(c);
  }
  {
    gemm_case c;
    c.M = c.N = 256;
    c.K = 64;  // exact tiles
    cases.push_back(c);
    c.K = 1000;  // many BK slices, pipeline wrap-around
    c.beta = 0.5;
    cases.push_back(c);
  }
  return cases;
}

}  // namespace

TEST_CASE("CUDA GEMM: bf16 inputs, bf16 output") { compare_backends<bf16, bf16>(gpu_cases(), 1); }
TEST_CASE("CUDA GEMM: bf16 inputs, float output") { compare_backends<bf16, float>(test::standard_cases(), 1000); }
TEST_CASE("CUDA GEMM: fp16 inputs, fp16 output") { compare_backends<fp16, fp16>(gpu_cases(), 2000); }
TEST_CASE("CUDA GEMM: float") { compare_backends<float, float>(test::standard_cases(), 3000); }
TEST_CASE("CUDA GEMM: double") { compare_backends<double, double>(test::standard_cases(), 4000); }
TEST_CASE("CUDA GEMM: float inputs, bf16 output") { compare_backends<float, bf16>(test::standard_cases(), 5000); }

TEST_CASE("CUDA GEMM: tensor interface on the default executor and on a given stream") {
  tensor<bf16, dims<3>> x(2, 70, 96), w(1, 40, 96);  // (B, S, D), (1, F, D)
  tensor<bf16, dims<3>> y(2, 70, 40);
  tensor<bf16, dims<1>> bias(40);
  const auto fill = [](auto& t, std::uint64_t seed) {
    const auto v = test::random_values<double>(static_cast<std::size_t>(t.size()), -1, 1, seed);
    for (index_t i = 0; i < t.size(); ++i) t.data()[i] = convert<bf16>(v[static_cast<std::size_t>(i)]);
  };
  fill(x, 1);
  fill(w, 2);
  fill(bias, 3);
  gemm(x, transpose<0, 2, 1>(w), y, {.bias = bias, .act = activation::silu});  // the CPU's answer
  tensor<bf16, dims<3>, device> dy(2, 70, 40), dy2(2, 70, 40);
  EINLM_CUDA_CHECK(cudaMemset(dy.data(), 0xff, dy.bytes()));
  EINLM_CUDA_CHECK(cudaMemset(dy2.data(), 0xff, dy2.bytes()));
  // [snippet gemm-cuda]
  auto dx = to_device(x), dw = to_device(w);  // (B, S, D), (1, F, D) in device memory
  auto db = to_device(bias);                  // (F,)
  // On the default CUDA executor's stream, bf16 tensor cores with fp32 sums:
  gemm(dx, transpose<0, 2, 1>(dw), dy, {.bias = db, .act = activation::silu});
  // On a stream of your own, with cuBLASLt (when the build links einlm::cublaslt):
  cuda_executor ex;
  gemm(dx, transpose<0, 2, 1>(dw), dy2, {.bias = db, .act = activation::silu},
       {.backend = gemm_has_cublaslt ? gemm_backend::cublaslt : gemm_backend::own, .stream = ex.stream()});
  ex.synchronize();
  // [end snippet]
  EINLM_CUDA_CHECK(cudaDeviceSynchronize());
  const auto gy = to_host(dy), gy2 = to_host(dy2);
  int bad = 0;
  for (index_t i = 0; i < y.size(); ++i) {
    const double want = convert<double>(y.data()[i]);
    bad += !(std::abs(convert<double>(gy.data()[i]) - want) <= 0x1p-7 * std::abs(want) + 1e-3);
    bad += !(std::abs(convert<double>(gy2.data()[i]) - want) <= 0x1p-7 * std::abs(want) + 1e-3);
  }
  CHECK(bad == 0);
}

TEST_CASE("CUDA GEMM: errors") {
  tensor<float, dims<2>, device> a(4, 5), b(6, 3), c(4, 3);
  CHECK_THROWS_WITH_AS(gemm(a, b, c), doctest::Contains("gemm: A has 5 columns but B has 6 rows"), shape_error);
  tensor<float, dims<2>, device> b_ok(5, 3);
  CHECK_THROWS_WITH_AS(gemm(a, b_ok, c, {}, {.backend = gemm_backend::blas}),
                       doctest::Contains("the blas backend runs on host memory only"), value_error);
}

TEST_CASE("CUDA grouped GEMM: every group in one launch equals each group's own product") {
  // Groups of 0, 1, 130, 257 and 64 rows (an empty group, odd sizes, more than one 128-row tile);
  // K = 72 leaves a partial 32-wide k slice; N = 136 a partial column tile.
  const std::vector<std::int64_t> rows = {0, 0, 1, 131, 388, 452};
  constexpr index_t G = 5, K = 72, N = 136;
  const index_t M = rows.back();
  tensor<bf16, dims<2>> a(M, K);     // (M, K) the tokens grouped by expert
  tensor<bf16, dims<3>> w(G, N, K);  // (G, N, K) one (out, in) weight per group
  const auto fill = [](auto& t, std::uint64_t seed) {
    const auto v = test::random_values<double>(static_cast<std::size_t>(t.size()), -1, 1, seed);
    for (index_t i = 0; i < t.size(); ++i) t.data()[i] = convert<bf16>(v[static_cast<std::size_t>(i)]);
  };
  fill(a, 11);
  fill(w, 12);
  tensor<std::int64_t, dims<1>> rows_host(G + 1);  // (G + 1,)
  for (index_t g = 0; g <= G; ++g) rows_host(g) = rows[static_cast<std::size_t>(g)];
  const auto da = to_device(a);
  const auto dw = to_device(w);
  tensor<float, dims<2>, device> dc(M, N);  // (M, N)
  EINLM_CUDA_CHECK(cudaMemset(dc.data(), 0xff, dc.bytes()));
  grouped_gemm_cuda(da, dw, dc, rows, to_device(rows_host));
  EINLM_CUDA_CHECK(cudaDeviceSynchronize());
  const auto c = to_host(dc);  // (M, N)
  int bad = 0;
  for (index_t g = 0; g < G; ++g)
    for (auto m = rows[static_cast<std::size_t>(g)]; m < rows[static_cast<std::size_t>(g + 1)]; ++m)
      for (index_t n = 0; n < N; ++n) {
        double want = 0, size = 0;
        for (index_t k = 0; k < K; ++k) {
          const double p = convert<double>(a(m, k)) * convert<double>(w(g, n, k));
          want += p;
          size += std::abs(p);
        }
        bad += !(std::abs(static_cast<double>(c(m, n)) - want) <= 1e-5 * size + 1e-6);  // float sums of exact products
      }
  CHECK(bad == 0);
  // Errors: boundaries that do not end at M, K not a multiple of 8.
  std::vector<std::int64_t> short_rows = rows;
  short_rows.back() = M - 1;
  CHECK_THROWS_WITH_AS(grouped_gemm_cuda(da, dw, dc, short_rows, to_device(rows_host)),
                       doctest::Contains("the row boundaries end at 451, not at a's 452 rows"), value_error);
  tensor<bf16, dims<2>, device> a70(M, 70);      // (M, 70)
  tensor<bf16, dims<3>, device> w70(G, N, 70);   // (G, N, 70)
  CHECK_THROWS_WITH_AS(grouped_gemm_cuda(a70, w70, dc, rows, to_device(rows_host)), doctest::Contains("K = 70 must be a multiple of 8"),
                       value_error);
}
