// GPU tests of einops operations: rearrange, repeat and reduce of device tensors and of fused
// expressions, the max and min reductions and reductions to a scalar, against the CPU executor on
// the same inputs (device outputs poisoned first).
// Exits with 77 (skipped) when no device is present.
#include <doctest/doctest.h>

#include <cmath>

#include <cuda_runtime_api.h>

#include "einlm/einops.hpp"
#include "support/check.hpp"
#include "support/cuda_compare.cuh"

using namespace einlm;
using test::check_device_close;

TEST_CASE("rearrange, repeat and reduce on the GPU agree with the CPU") {
  const auto x = test::random_tensor<float, extents<4, 6, 32>>(1, -2.0, 2.0);
  const auto d = to_device(x);
  using E1 = extents<4, 2, 6, 16>;
  tensor<float, E1, device> heads;
  EINLM_CUDA_CHECK(cudaMemset(heads.data(), 0xff, heads.bytes()));
  heads = rearrange<"b s (h d) -> b h s d">(d, axis<"h", 2>{});
  check_device_close(heads, tensor<float, E1>(rearrange<"b s (h d) -> b h s d">(x, axis<"h", 2>{})), 0);

  using E2 = extents<32, 24>;
  tensor<float, E2, device> merged;
  merged = rearrange<"b s d -> d (b s)">(d) * 2.0f;
  check_device_close(merged, tensor<float, E2>(rearrange<"b s d -> d (b s)">(x) * 2.0f), 0);

  using E3 = extents<4, 32>;
  tensor<float, E3, device> means;
  means = reduce<"b s d -> b d", "mean">(exp(d));
  check_device_close(means, tensor<float, E3>(reduce<"b s d -> b d", "mean">(exp(x))), 1e-5);

  using E4 = extents<4, 6, 32, 3>;
  tensor<float, E4, device> rep;
  rep = repeat<"b s d -> b s d c">(d, axis<"c", 3>{});
  check_device_close(rep, tensor<float, E4>(repeat<"b s d -> b s d c">(x, axis<"c", 3>{})), 0);
}

TEST_CASE("max and min reductions on the GPU agree with the CPU") {
  // All inputs below zero for max and above zero for min, so a wrong initial value shows.
  const auto x = test::random_tensor<float, extents<4, 6, 32>>(2, -2.0, 2.0);
  const auto d = to_device(x);
  using E = extents<4, 32>;
  tensor<float, E, device> out;
  EINLM_CUDA_CHECK(cudaMemset(out.data(), 0xff, out.bytes()));
  out = reduce<"b s d -> b d", "max">(d - 3.0f);
  check_device_close(out, tensor<float, E>(reduce<"b s d -> b d", "max">(x - 3.0f)), 0);
  EINLM_CUDA_CHECK(cudaMemset(out.data(), 0xff, out.bytes()));
  out = reduce<"b s d -> b d", "min">(d + 3.0f);
  check_device_close(out, tensor<float, E>(reduce<"b s d -> b d", "min">(x + 3.0f)), 0);
}

TEST_CASE("reductions to a scalar on the GPU agree with the CPU") {
  const auto x = test::random_tensor<float, extents<4, 6, 32>>(3, -2.0, 2.0);
  const auto d = to_device(x);
  tensor<float, extents<>, device> total;
  EINLM_CUDA_CHECK(cudaMemset(total.data(), 0xff, total.bytes()));
  total = reduce<"b s d ->", "sum">(d);
  check_device_close(total, tensor<float, extents<>>(reduce<"b s d ->", "sum">(x)), 1e-5);
}
