// GPU tests of the adjoints (einlm/einops/adjoint.hpp, einlm/linalg/einsum_adjoint.hpp): device
// inputs and dy, results against the CPU's on the same values (device outputs poisoned first).
// Exits with 77 (skipped) when no device is present.
#include <doctest/doctest.h>

#include <cmath>

#include <cuda_runtime_api.h>

#include "einlm/einops.hpp"
#include "support/check.hpp"
#include "support/cuda_compare.cuh"

using namespace einlm;
using test::check_device_close;
using test::poison;

TEST_CASE("einops adjoints on the GPU agree with the CPU") {
  const auto x = test::random_tensor<float, extents<4, 6, 32>>(1, -2.0, 2.0);  // (B, S, H·D)
  const auto xd = to_device(x);
  const auto dy_heads = test::random_tensor<float, extents<4, 2, 6, 16>>(2, -2.0, 2.0);  // (B, H, S, D)
  const auto dy_heads_d = to_device(dy_heads);
  tensor<float, extents<4, 6, 32>, device> dx;  // (B, S, H·D)
  poison(dx);
  dx = rearrange_adjoint<"b s (h d) -> b h s d">(dy_heads_d, xd, axis<"h", 2>{});
  check_device_close(dx, eval(rearrange_adjoint<"b s (h d) -> b h s d">(dy_heads, x, axis<"h", 2>{})), 0);

  const auto dy_rep = test::random_tensor<float, extents<4, 6, 32, 3>>(3, -2.0, 2.0);  // (B, S, D, C)
  const auto dy_rep_d = to_device(dy_rep);
  poison(dx);
  dx = repeat_adjoint<"b s d -> b s d c">(dy_rep_d, xd, axis<"c", 3>{});
  check_device_close(dx, eval(repeat_adjoint<"b s d -> b s d c">(dy_rep, x, axis<"c", 3>{})), 1e-6);

  const auto dy_red = test::random_tensor<float, extents<4, 32>>(4, -2.0, 2.0);  // (B, D)
  const auto dy_red_d = to_device(dy_red);
  poison(dx);
  dx = reduce_adjoint<"b s d -> b d", "mean">(dy_red_d, xd);
  check_device_close(dx, eval(reduce_adjoint<"b s d -> b d", "mean">(dy_red, x)), 1e-6);
  const auto dprod = reduce_adjoint<"b s d -> b d", "prod">(dy_red_d, xd);  // (B, S, D), a device tensor
  check_device_close(dprod, reduce_adjoint<"b s d -> b d", "prod">(dy_red, x), 1e-5);
}

TEST_CASE("einsum adjoints on the GPU agree with the CPU") {
  const auto u = test::random_tensor<float, extents<8, 4, 3>>(10, -2.0, 2.0);   // (I, J, K)
  const auto v = test::random_tensor<float, extents<4, 4, 3>>(11, -2.0, 2.0);   // (J, J, K)
  const auto dy = test::random_tensor<float, extents<8, 4, 3>>(12, -2.0, 2.0);  // (I, J, K)
  const auto ud = to_device(u);
  const auto vd = to_device(v);
  const auto dyd = to_device(dy);
  // Input 0's gradient is a fused product; input 1's a contraction over i written to a diagonal.
  tensor<float, extents<8, 4, 3>, device> du;  // (I, J, K)
  poison(du);
  du = einsum_adjoint<"i j k, j j k -> i j k", 0>(dyd, ud, vd);
  check_device_close(du, eval(einsum_adjoint<"i j k, j j k -> i j k", 0>(dy, u, v)), 1e-6);
  const auto dv = einsum_adjoint<"i j k, j j k -> i j k", 1>(dyd, ud, vd);  // (J, J, K), a device tensor
  check_device_close(dv, einsum_adjoint<"i j k, j j k -> i j k", 1>(dy, u, v), 1e-5);
  // An input of length 1 along i, broadcast against u's 8: its gradient is summed over i, kept.
  const auto w = test::random_tensor<float, extents<1, 4, 3>>(13, -2.0, 2.0);  // (1, J, K)
  const auto wd = to_device(w);
  const auto dw = einsum_adjoint<"i j k, i j k -> i j k", 0>(dyd, wd, ud);  // (1, J, K), a device tensor
  check_device_close(dw, einsum_adjoint<"i j k, i j k -> i j k", 0>(dy, w, u), 1e-5);
  tensor<float, dims<3>> w_dynamic(dims<3>(1, 4, 3));  // the same with run-time extents
  w_dynamic = w;
  const auto w_dynamic_d = to_device(w_dynamic);
  const auto dw_dynamic = einsum_adjoint<"i j k, i j k -> i j k", 0>(dyd, w_dynamic_d, ud);  // (1, J, K)
  check_device_close(dw_dynamic, einsum_adjoint<"i j k, i j k -> i j k", 0>(dy, w, u), 1e-5);
}
