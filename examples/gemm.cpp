// examples/gemm.cpp — matrix multiplication with fused epilogues on the CPU.
//
// A linear layer y = gelu(x·wᵀ + b) in one call; batched attention scores with the 1/√d scale; a
// residual projection in bf16 with fp32 accumulation; a GEMM on raw pointers with explicit
// strides; the backends (the own kernel, and BLAS when the build has it) timed on one product.
// The [snippet …] markers delimit code that docs/gemm.md quotes (checked by tests/docs).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <vector>

#include "einlm/einlm.hpp"
#include "einlm/linalg.hpp"

using namespace einlm;

int main() {
  const random_stream init{/*seed*/ 1, /*stream*/ 0};

  // [snippet linear]
  tensor<float, extents<128, 64>> x = uniform<float>(extents<128, 64>{}, init, -1.0, 1.0);    // (S, D)
  tensor<float, extents<256, 64>> w = normal<float>(extents<256, 64>{}, init, 0.0, 0.125);    // (F, D)
  tensor<float, extents<256>> b = full<float>(extents<256>{}, 0.01f);                        // (F,)
  tensor<float, extents<128, 256>> h;                                                        // (S, F)
  gemm(x, transpose<1, 0>(w), h, {.bias = b, .act = activation::gelu});  // h = gelu(x·wᵀ + b)
  // [end snippet]
  std::printf("linear: h (%lld, %lld), h[0, 0] = %.6f\n", static_cast<long long>(h.extent(0)),
              static_cast<long long>(h.extent(1)), static_cast<double>(h(0, 0)));

  // [snippet scores]
  const index_t heads = 4, seq = 32, d = 16;
  tensor<float, dims<3>> q(heads, seq, d), k(heads, seq, d), scores(heads, seq, seq);  // (H, S, d), (H, S, S)
  q = uniform<float>(q.extents(), {2, 0}, -1.0, 1.0);
  k = uniform<float>(k.extents(), {2, 1}, -1.0, 1.0);
  gemm(q, transpose<0, 2, 1>(k), scores, {.alpha = 1.0 / std::sqrt(static_cast<double>(d))});  // q·kᵀ/√d
  // [end snippet]
  std::printf("scores: (%lld, %lld, %lld), scores[1, 2, 3] = %.6f\n", static_cast<long long>(heads),
              static_cast<long long>(seq), static_cast<long long>(seq), static_cast<double>(scores(1, 2, 3)));

  // [snippet residual]
  tensor<bf16, extents<128, 256>> act = uniform<bf16>(extents<128, 256>{}, {3, 0}, -1.0, 1.0);  // (S, F)
  tensor<bf16, extents<64, 256>> w_out = normal<bf16>(extents<64, 256>{}, {3, 1}, 0.0, 0.02);   // (D, F)
  tensor<bf16, extents<128, 64>> stream = uniform<bf16>(extents<128, 64>{}, {3, 2});            // (S, D)
  tensor<bf16, extents<128, 64>> out;                                                          // (S, D)
  gemm(act, transpose<1, 0>(w_out), out, {.residual = stream});  // out = stream + act·w_outᵀ, fp32 sums
  // [end snippet]
  std::printf("residual: out[5, 7] = %.4f (stream %.4f)\n", convert<double>(out(5, 7)), convert<double>(stream(5, 7)));

  // [snippet raw]
  // C (3 × 2) = Aᵀ·B where A is stored 4 × 3 row-major: Aᵀ has row stride 1, column stride 3.
  std::vector<double> a_data = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, b_data = {1, 0, 0, 1, 1, 1, 2, -1};
  std::vector<double> c_data(6);
  const matrix_ref<const double> at(a_data.data(), /*batch*/ 1, /*rows*/ 3, /*cols*/ 4, /*batch stride*/ 0,
                                    /*row stride*/ 1, /*col stride*/ 3);                     // (3, 4)
  const matrix_ref<const double> bm(b_data.data(), 4, 2);                                    // (4, 2)
  gemm_cpu(at, bm, matrix_ref<double>(c_data.data(), 3, 2));                                 // (3, 2)
  // [end snippet]
  std::printf("raw: C = [[%g, %g], [%g, %g], [%g, %g]]\n", c_data[0], c_data[1], c_data[2], c_data[3], c_data[4],
              c_data[5]);

  // [snippet backends]
  const index_t n = 384;
  tensor<float, dims<2>> p(n, n), r(n, n), s(n, n);
  p = uniform<float>(p.extents(), {4, 0}, -1.0, 1.0);
  r = uniform<float>(r.extents(), {4, 1}, -1.0, 1.0);
  for (const gemm_backend backend : {gemm_backend::own, gemm_backend::blas}) {
    if (backend == gemm_backend::blas && !gemm_has_blas) continue;  // built without einlm::blas
    gemm(p, r, s, {}, {.backend = backend});                        // warm-up
    const auto t0 = std::chrono::steady_clock::now();
    gemm(p, r, s, {}, {.backend = backend});
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%-4s %lld³ fp32: %.1f GFLOP/s\n", backend_name(backend), static_cast<long long>(n),
                2.0 * static_cast<double>(n * n * n) / sec / 1e9);
  }
  // [end snippet]
  return 0;
}
