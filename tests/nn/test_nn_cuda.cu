// GPU tests of the fused kernels of einlm/nn/cuda_kernels.cuh against the host functions they
// replace (nn::rms_norm, rms_norm_backward, cross_entropy_with_grad, rope, rope_backward,
// swiglu_backward) on the same random
// inputs, float and bf16: row lengths that take the 16-byte path and ones that do not, a row too
// long for the default shared memory (the opt-in path), odd row counts; dgain the same bits on a
// second run; bad targets and shapes. The allocator's cache is poisoned before each call, so an
// element a kernel forgets to write fails. Exits with 77 (skipped) when no device is present.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "einlm/nn/backward.hpp"
#include "einlm/nn/cuda_kernels.cuh"
#include "einlm/nn/functional.hpp"
#include "support/cuda_compare.cuh"

using namespace einlm;

namespace {

using test::bytes_of;
using test::poison_cache;

/// bf16 results may differ from the host's by one rounding of a float that differs in its last bits.
template <class T>
double storage_rel() {
  return std::is_same_v<T, float> ? 2e-5 : 1.0 / 128;
}

template <class T>
void check_rms_norm(index_t rows, index_t D, std::uint64_t seed) {
  INFO("rows ", rows, ", D ", D);
  tensor<T, dims<2>> x(rows, D), dy(rows, D);  // (N, D) twice
  tensor<T, dims<1>> gain(D);                  // (D,)
  x = uniform<T>(x.extents(), {seed, 0}, -2.0, 2.0);
  dy = uniform<T>(dy.extents(), {seed, 1}, -1.0, 1.0);
  gain = uniform<T>(gain.extents(), {seed, 2}, 0.5, 1.5);
  const auto xd = to_device(x), dyd = to_device(dy);
  const auto gd = to_device(gain);
  const double eps = 1e-5;

  // Forward.
  const auto y_cpu = nn::rms_norm(x, gain, eps);  // (N, D)
  poison_cache<T>(x.extents());
  const auto y = nn::fused_rms_norm(xd, gd, eps);  // (N, D)
  test::check_close(bytes_of(y), y_cpu.data(), y_cpu.size(), std::vector<double>(static_cast<std::size_t>(y_cpu.size()), 1e-6),
                    storage_rel<T>());

  // Backward.
  const auto [dx_cpu, dgain_cpu] = nn::rms_norm_backward(x, gain, dy, eps);  // (N, D), (D,)
  poison_cache<T>(x.extents());
  poison_cache<T>(gain.extents());
  const auto g = nn::fused_rms_norm_backward(xd, gd, dyd, eps);
  test::check_close(bytes_of(g.dx), dx_cpu.data(), dx_cpu.size(),
                    std::vector<double>(static_cast<std::size_t>(dx_cpu.size()), 1e-5), storage_rel<T>());
  // dgain sums N terms in another order: bounded by the magnitudes summed, Σ_rows |dy·x·r| ≤ Σ |dy|·2.
  std::vector<double> sum_tol(static_cast<std::size_t>(D), 0.0);
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < D; ++j)
      sum_tol[static_cast<std::size_t>(j)] += 1e-5 * std::abs(convert<double>(dy(i, j)) * convert<double>(x(i, j))) * 2.0;
  test::check_close(bytes_of(g.dgain), dgain_cpu.data(), dgain_cpu.size(), sum_tol, storage_rel<T>());
  // The same bits on a second run.
  const auto again = nn::fused_rms_norm_backward(xd, gd, dyd, eps);
  CHECK(bytes_of(again.dgain) == bytes_of(g.dgain));
  CHECK(bytes_of(again.dx) == bytes_of(g.dx));
}

template <class T>
void check_cross_entropy(index_t rows, index_t V, double z_loss, std::uint64_t seed) {
  INFO("rows ", rows, ", V ", V, ", z_loss ", z_loss);
  tensor<T, dims<2>> logits(rows, V);                // (N, V)
  tensor<std::int64_t, dims<1>> targets(rows);       // (N,)
  logits = uniform<T>(logits.extents(), {seed, 0}, -6.0, 6.0);
  const random_stream g{seed, 1};
  for (index_t i = 0; i < rows; ++i)
    targets(i) = std::min<std::int64_t>(V - 1, static_cast<std::int64_t>(uniform_at<double>(g, static_cast<std::uint64_t>(i)) * V));
  const auto [loss_cpu, dl_cpu] = nn::cross_entropy_with_grad(logits, targets, z_loss);  // (N, V)
  poison_cache<T>(logits.extents());
  const auto r = nn::fused_cross_entropy_with_grad(to_device(logits), to_device(targets), z_loss);
  CHECK(r.loss == doctest::Approx(loss_cpu).epsilon(1e-5));
  test::check_close(bytes_of(r.dlogits), dl_cpu.data(), dl_cpu.size(),
                    std::vector<double>(static_cast<std::size_t>(dl_cpu.size()), 1e-9), storage_rel<T>());
}

template <class T>
void check_rope_and_swiglu(std::uint64_t seed) {
  tensor<T, dims<4>> x(2, 3, 17, 64);  // (B, H, S, Dh)
  x = uniform<T>(x.extents(), {seed, 0}, -2.0, 2.0);
  tensor<std::int64_t, dims<1>> positions(17);  // (S,)
  for (index_t s = 0; s < 17; ++s) positions(s) = 5 + 37 * s;  // up to 597: large angles
  const auto xd = to_device(x);
  const auto pd = to_device(positions);
  const double theta = 10'000.0;
  const auto y_cpu = nn::rope(x, positions, theta);  // (B, H, S, Dh)
  poison_cache<T>(x.extents());
  test::check_close(bytes_of(nn::fused_rope(xd, pd, theta)), y_cpu.data(), y_cpu.size(),
                    std::vector<double>(static_cast<std::size_t>(y_cpu.size()), 1e-6), storage_rel<T>());
  const auto dx_cpu = nn::rope_backward(x, positions, theta);  // (B, H, S, Dh)
  poison_cache<T>(x.extents());
  test::check_close(bytes_of(nn::fused_rope_backward(xd, pd, theta)), dx_cpu.data(), dx_cpu.size(),
                    std::vector<double>(static_cast<std::size_t>(dx_cpu.size()), 1e-6), storage_rel<T>());

  tensor<T, dims<2>> a(97, 130), b(97, 130), dh(97, 130);  // (N, F) each
  a = uniform<T>(a.extents(), {seed, 1}, -4.0, 4.0);
  b = uniform<T>(b.extents(), {seed, 2});
  dh = uniform<T>(dh.extents(), {seed, 3});
  const auto [da_cpu, db_cpu] = nn::swiglu_backward(a, b, dh);  // (N, F) twice
  poison_cache<T>(a.extents());
  poison_cache<T>(a.extents());
  const auto g = nn::fused_swiglu_backward(to_device(a), to_device(b), to_device(dh));
  test::check_close(bytes_of(g.da), da_cpu.data(), da_cpu.size(), std::vector<double>(static_cast<std::size_t>(da_cpu.size()), 1e-6),
                    storage_rel<T>());
  test::check_close(bytes_of(g.db), db_cpu.data(), db_cpu.size(), std::vector<double>(static_cast<std::size_t>(db_cpu.size()), 1e-6),
                    storage_rel<T>());
}

}  // namespace

TEST_CASE("fused_rope, its backward and fused_swiglu_backward equal the host functions") {
  check_rope_and_swiglu<float>(21);
  check_rope_and_swiglu<bf16>(22);
}

TEST_CASE("fused_rms_norm and its backward equal the host functions (float)") {
  check_rms_norm<float>(37, 64, 1);     // 16-byte path
  check_rms_norm<float>(129, 37, 2);    // element path (37 % 4 ≠ 0)
  check_rms_norm<float>(1000, 3000, 3); // four warps' slices per block
  check_rms_norm<float>(7, 16384, 4);   // 64 KiB slices: the opt-in path
  check_rms_norm<float>(1, 1, 5);
}

TEST_CASE("fused_rms_norm and its backward equal the host functions (bf16)") {
  check_rms_norm<bf16>(37, 64, 6);
  check_rms_norm<bf16>(129, 100, 7);    // element path (100 % 8 ≠ 0)
  check_rms_norm<bf16>(513, 4096, 8);
}

TEST_CASE("fused_cross_entropy_with_grad equals the host function") {
  check_cross_entropy<float>(33, 1000, 0.0, 11);
  check_cross_entropy<float>(65, 50257, 1e-4, 12);  // element path (odd vocabulary)
  check_cross_entropy<float>(3, 7, 0.0, 13);
  check_cross_entropy<bf16>(40, 50304, 1e-4, 14);
  check_cross_entropy<bf16>(9, 333, 0.0, 15);
}

TEST_CASE("fused kernels: bad shapes and targets name the problem") {
  const tensor<float, dims<2>, device> x(dims<2>(4, 8));   // (4, 8)
  const tensor<float, dims<1>, device> gain(dims<1>(7));   // (7,)
  CHECK_THROWS_WITH_AS(nn::fused_rms_norm(x, gain), doctest::Contains("fused_rms_norm: gain of shape (7,) does not match x of shape (4, 8)"),
                       shape_error);
  tensor<float, dims<2>> logits(3, 5);  // (3, 5)
  logits = uniform<float>(logits.extents(), {1, 0});
  tensor<std::int64_t, dims<1>> targets(3);  // (3,)
  targets(0) = 1, targets(1) = 5, targets(2) = 0;
  CHECK_THROWS_WITH_AS(nn::fused_cross_entropy_with_grad(to_device(logits), to_device(targets)),
                       "fused_cross_entropy_with_grad: target 5 of row 1 is outside the vocabulary [0, 5)", value_error);
  const tensor<float, dims<3>, device> odd(dims<3>(1, 4, 7));  // (B, S, D)
  const tensor<std::int64_t, dims<1>, device> four(dims<1>(4));  // (S,)
  CHECK_THROWS_WITH_AS(nn::fused_rope(odd, four, 10'000.0), "fused_rope: the feature axis must be even, got 7", shape_error);
}
