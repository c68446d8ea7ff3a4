// GPU tests of einops operations: rearrange, repeat and reduce of device tensors and of fused
// expressions, the max and min reductions and reductions to a scalar, against the CPU executor on
// the same inputs (device outputs poisoned first).
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
void check_equal(const X& gpu_result, const Y& cpu_result, double tolerance) {
  const auto h = to_host(gpu_result);
  REQUIRE(to_array(h.extents()) == to_array(cpu_result.extents()));
  for (index_t i = 0; i < h.size(); ++i)
    CHECK(std::abs(convert<double>(h.data()[i]) - convert<double>(cpu_result.data()[i])) <=
          tolerance * std::max(1.0, std::abs(convert<double>(cpu_result.data()[i]))));
}

}  // namespace

TEST_CASE("rearrange, repeat and reduce on the GPU agree with the CPU") {
  const auto x = random_tensor<float, extents<4, 6, 32>>(1);
  const auto d = to_device(x);
  using E1 = extents<4, 2, 6, 16>;
  tensor<float, E1, device> heads;
  EINLM_CUDA_CHECK(cudaMemset(heads.data(), 0xff, heads.bytes()));
  heads = rearrange<"b s (h d) -> b h s d">(d, axis<"h", 2>{});
  check_equal(heads, tensor<float, E1>(rearrange<"b s (h d) -> b h s d">(x, axis<"h", 2>{})), 0);

  using E2 = extents<32, 24>;
  tensor<float, E2, device> merged;
  merged = rearrange<"b s d -> d (b s)">(d) * 2.0f;
  check_equal(merged, tensor<float, E2>(rearrange<"b s d -> d (b s)">(x) * 2.0f), 0);

  using E3 = extents<4, 32>;
  tensor<float, E3, device> means;
  means = reduce<"b s d -> b d", "mean">(exp(d));
  check_equal(means, tensor<float, E3>(reduce<"b s d -> b d", "mean">(exp(x))), 1e-5);

  using E4 = extents<4, 6, 32, 3>;
  tensor<float, E4, device> rep;
  rep = repeat<"b s d -> b s d c">(d, axis<"c", 3>{});
  check_equal(rep, tensor<float, E4>(repeat<"b s d -> b s d c">(x, axis<"c", 3>{})), 0);
}

TEST_CASE("max and min reductions on the GPU agree with the CPU") {
  // All inputs below zero for max and above zero for min, so a wrong initial value shows.
  const auto x = random_tensor<float, extents<4, 6, 32>>(2);
  const auto d = to_device(x);
  using E = extents<4, 32>;
  tensor<float, E, device> out;
  EINLM_CUDA_CHECK(cudaMemset(out.data(), 0xff, out.bytes()));
  out = reduce<"b s d -> b d", "max">(d - 3.0f);
  check_equal(out, tensor<float, E>(reduce<"b s d -> b d", "max">(x - 3.0f)), 0);
  EINLM_CUDA_CHECK(cudaMemset(out.data(), 0xff, out.bytes()));
  out = reduce<"b s d -> b d", "min">(d + 3.0f);
  check_equal(out, tensor<float, E>(reduce<"b s d -> b d", "min">(x + 3.0f)), 0);
}

TEST_CASE("reductions to a scalar on the GPU agree with the CPU") {
  const auto x = random_tensor<float, extents<4, 6, 32>>(3);
  const auto d = to_device(x);
  tensor<float, extents<>, device> total;
  EINLM_CUDA_CHECK(cudaMemset(total.data(), 0xff, total.bytes()));
  total = reduce<"b s d ->", "sum">(d);
  check_equal(total, tensor<float, extents<>>(reduce<"b s d ->", "sum">(x)), 1e-5);
}
