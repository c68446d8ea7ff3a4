// GPU tests of einsum on device tensors: the GEMM path (float and bf16 contractions through the
// CUDA GEMM, transposed and batched operands), the fused path (outer product, diagonal, three
// inputs, evaluated by the CUDA executor) and the view path, each against the CPU on the same
// inputs (tests/support/cuda_compare.cuh). Exits with 77 (skipped) when no device is present.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include <cuda_runtime_api.h>

#include "einlm/einops.hpp"
#include "support/check.hpp"
#include "support/cuda_compare.cuh"

using namespace einlm;
using test::check_device_close;

TEST_CASE("einsum contractions on the GPU agree with the CPU") {
  // A K-term float dot product of values in [-1, 1) differs between two summation orders by at
  // most about 2·K·2^-24 relative to max(1, |result|); bf16 inputs are exact products in fp32.
  const auto a = test::random_tensor<float, extents<3, 33, 70>>(1);  // (B, I, K)
  const auto b = test::random_tensor<float, extents<3, 70, 17>>(2);  // (B, K, J)
  const auto da = to_device(a);
  const auto db = to_device(b);
  auto dc = einsum<"b i k, b k j -> b i j">(da, db);           // (B, I, J), a device tensor
  static_assert(std::is_same_v<typename decltype(dc)::space, device>);
  check_device_close(dc, einsum<"b i k, b k j -> b i j">(a, b), 2 * 70 * 0x1p-24);

  const auto q = test::random_tensor<bf16, extents<2, 4, 40, 64>>(3);  // (B, H, S, D)
  const auto k = test::random_tensor<bf16, extents<2, 4, 24, 64>>(4);  // (B, H, T, D)
  const auto dq = to_device(q);
  const auto dk = to_device(k);
  auto scores = einsum<"b h i d, b h j d -> b h i j">(dq, dk);    // (B, H, S, T)
  check_device_close(scores, einsum<"b h i d, b h j d -> b h i j">(q, k), 0x1p-7);  // bf16 output rounding

  // A transposed view folds into the GEMM's strides on the device as on the host.
  const auto m = test::random_tensor<float, extents<48, 20>>(5);       // (K, I)
  const auto dm = to_device(m);
  auto mt = einsum<"k i, k j -> i j">(dm, to_device(test::random_tensor<float, extents<48, 9>>(6)));  // (I, J)
  check_device_close(mt, einsum<"k i, k j -> i j">(m, test::random_tensor<float, extents<48, 9>>(6)), 2 * 48 * 0x1p-24);
}

TEST_CASE("fused einsum patterns and views on the GPU agree with the CPU") {
  const auto u = test::random_tensor<float, extents<37>>(7);           // (I,)
  const auto v = test::random_tensor<float, extents<29>>(8);           // (J,)
  const auto du = to_device(u);
  const auto dv = to_device(v);
  check_device_close(einsum<"i, j -> i j">(du, dv), einsum<"i, j -> i j">(u, v), 0);

  const auto sq = test::random_tensor<float, extents<31, 31>>(9);      // (N, N)
  const auto dsq = to_device(sq);
  check_device_close(einsum<"i i, i -> i">(dsq, to_device(test::random_tensor<float, extents<31>>(10))),
              einsum<"i i, i -> i">(sq, test::random_tensor<float, extents<31>>(10)), 0);
  check_device_close(einsum<"i i ->">(dsq), einsum<"i i ->">(sq), 31 * 0x1p-24);

  const auto x = test::random_tensor<float, extents<5, 6>>(11);        // (A, B)
  const auto y = test::random_tensor<float, extents<6, 7>>(12);        // (B, C)
  const auto z = test::random_tensor<float, extents<7, 3>>(13);        // (C, D)
  const auto dx = to_device(x);
  const auto dy = to_device(y);
  const auto dz = to_device(z);
  check_device_close(einsum<"a b, b c, c d -> a d">(dx, dy, dz), einsum<"a b, b c, c d -> a d">(x, y, z), 42 * 0x1p-22);

  auto t = einsum<"a b -> b a">(dx);                              // (B, A): a device view
  static_assert(view_like<decltype(t)>);
  check_device_close(t, einsum<"a b -> b a">(x), 0);
}
