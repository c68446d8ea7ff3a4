// GPU tests of the adjoints (einlm/einops/adjoint.hpp, einlm/linalg/einsum_adjoint.hpp): device
// inputs and dy, results against the CPU's on the same values (device outputs poisoned first).
// Exits with 77 (skipped) when no device is present.
#include <doctest/doctest.h>

#include <cmath>

#include <cuda_runtime_api.h>

#include "einlm/einops.hpp"
#include "support/check.hpp"

using namespace einlm;

namespace {

template <class T, class E>
tensor<T, E> random_tensor(std::uint64_t seed) {
  tensor<T, E> t;
  t = uniform<T>(E{}, {seed, 0}, -2.0, 2.0);
  return t;
}

template <class X, class Y>
void check_close(const X& gpu_result, const Y& cpu_result, double tolerance) {
  const auto h = to_host(gpu_result);
  REQUIRE(to_array(h.extents()) == to_array(cpu_result.extents()));
  for (index_t i = 0; i < h.size(); ++i)
    CHECK(std::abs(convert<double>(h.data()[i]) - convert<double>(cpu_result.data()[i])) <=
          tolerance * std::max(1.0, std::abs(convert<double>(cpu_result.data()[i]))));
}

template <class T, class E>
void poison(tensor<T, E, device>& t) {
  EINLM_CUDA_CHECK(cudaMemset(t.data(), 0xff, t.bytes()));
}

}  // namespace

TEST_CASE("einops adjoints on the GPU agree with the CPU") {
  const auto x = random_tensor<float, extents<4, 6, 32>>(1);  // (B, S, H·D)
  const auto xd = to_device(x);
  const auto dy_heads = random_tensor<float, extents<4, 2, 6, 16>>(2);  // (B, H, S, D)
  const auto dy_heads_d = to_device(dy_heads);
  tensor<float, extents<4, 6, 32>, device> dx;  // (B, S, H·D)
  poison(dx);
  dx = rearrange_adjoint<"b s (h d) -> b h s d">(dy_heads_d, xd, axis<"h", 2>{});
  check_close(dx, eval(rearrange_adjoint<"b s (h d) -> b h s d">(dy_heads, x, axis<"h", 2>{})), 0);

  const auto dy_rep = random_tensor<float, extents<4, 6, 32, 3>>(3);  // (B, S, D, C)
  const auto dy_rep_d = to_device(dy_rep);
  poison(dx);
  dx = repeat_adjoint<"b s d -> b s d c">(dy_rep_d, xd, axis<"c", 3>{});
  check_close(dx, eval(repeat_adjoint<"b s d -> b s d c">(dy_rep, x, axis<"c", 3>{})), 1e-6);

  const auto dy_red = random_tensor<float, extents<4, 32>>(4);  // (B, D)
  const auto dy_red_d = to_device(dy_red);
  poison(dx);
  dx = reduce_adjoint<"b s d -> b d", "mean">(dy_red_d, xd);
  check_close(dx, eval(reduce_adjoint<"b s d -> b d", "mean">(dy_red, x)), 1e-6);
  const auto dprod = reduce_adjoint<"b s d -> b d", "prod">(dy_red_d, xd);  // (B, S, D), a device tensor
  check_close(dprod, reduce_adjoint<"b s d -> b d", "prod">(dy_red, x), 1e-5);
}

TEST_CASE("einsum adjoints on the GPU agree with the CPU") {
  const auto u = random_tensor<float, extents<8, 4, 3>>(10);   // (I, J, K)
  const auto v = random_tensor<float, extents<4, 4, 3>>(11);   // (J, J, K)
  const auto dy = random_tensor<float, extents<8, 4, 3>>(12);  // (I, J, K)
  const auto ud = to_device(u);
  const auto vd = to_device(v);
  const auto dyd = to_device(dy);
  // Input 0's gradient is a fused product; input 1's a contraction over i written to a diagonal.
  tensor<float, extents<8, 4, 3>, device> du;  // (I, J, K)
  poison(du);
  du = einsum_adjoint<"i j k, j j k -> i j k", 0>(dyd, ud, vd);
  check_close(du, eval(einsum_adjoint<"i j k, j j k -> i j k", 0>(dy, u, v)), 1e-6);
  const auto dv = einsum_adjoint<"i j k, j j k -> i j k", 1>(dyd, ud, vd);  // (J, J, K), a device tensor
  check_close(dv, einsum_adjoint<"i j k, j j k -> i j k", 1>(dy, u, v), 1e-5);
}
