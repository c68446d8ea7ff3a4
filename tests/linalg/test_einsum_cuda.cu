// GPU tests of einsum on device tensors: the GEMM path (float and bf16 contractions through the
// CUDA GEMM, transposed and batched operands), the fused path (outer product, diagonal, three
// inputs, evaluated by the CUDA executor) and the view path, each against the CPU on the same
// inputs (device outputs poisoned first where einlm allocates them itself: NaN-filled results would
// fail). Exits with 77 (skipped) when no device is present.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include <cuda_runtime_api.h>

#include "einlm/einops.hpp"
#include "support/check.hpp"

using namespace einlm;

namespace {

template <class T, class E>
tensor<T, E> random_tensor(std::uint64_t seed) {
  tensor<T, E> t;
  t = uniform<T>(E{}, {seed, 0}, -1.0, 1.0);
  return t;
}

/// |gpu − cpu| ≤ tolerance · max(1, |cpu|), element by element; the GPU result is a device
/// tensor or a lazy device expression.
template <class G, class C>
void check_close(const G& gpu_result, const C& cpu_result, double tolerance) {
  const auto h = to_host(eval(gpu_result));
  const auto c = eval(cpu_result);
  REQUIRE(to_array(h.extents()) == to_array(c.extents()));
  double worst = 0;
  for (index_t i = 0; i < h.size(); ++i) {
    const double want = convert<double>(c.data()[i]), got = convert<double>(h.data()[i]);
    REQUIRE(std::isfinite(got));
    worst = std::max(worst, std::abs(got - want) / std::max(1.0, std::abs(want)));
  }
  CHECK(worst <= tolerance);
}

}  // namespace

TEST_CASE("einsum contractions on the GPU agree with the CPU") {
  // A K-term float dot product of values in [-1, 1) differs between two summation orders by at
  // most about 2·K·2^-24 relative to max(1, |result|); bf16 inputs are exact products in fp32.
  const auto a = random_tensor<float, extents<3, 33, 70>>(1);  // (B, I, K)
  const auto b = random_tensor<float, extents<3, 70, 17>>(2);  // (B, K, J)
  const auto da = to_device(a);
  const auto db = to_device(b);
  auto dc = einsum<"b i k, b k j -> b i j">(da, db);           // (B, I, J), a device tensor
  static_assert(std::is_same_v<typename decltype(dc)::space, device>);
  check_close(dc, einsum<"b i k, b k j -> b i j">(a, b), 2 * 70 * 0x1p-24);

  const auto q = random_tensor<bf16, extents<2, 4, 40, 64>>(3);  // (B, H, S, D)
  const auto k = random_tensor<bf16, extents<2, 4, 24, 64>>(4);  // (B, H, T, D)
  const auto dq = to_device(q);
  const auto dk = to_device(k);
  auto scores = einsum<"b h i d, b h j d -> b h i j">(dq, dk);    // (B, H, S, T)
  check_close(scores, einsum<"b h i d, b h j d -> b h i j">(q, k), 0x1p-7);  // bf16 output rounding

  // A transposed view folds into the GEMM's strides on the device as on the host.
  const auto m = random_tensor<float, extents<48, 20>>(5);       // (K, I)
  const auto dm = to_device(m);
  auto mt = einsum<"k i, k j -> i j">(dm, to_device(random_tensor<float, extents<48, 9>>(6)));  // (I, J)
  check_close(mt, einsum<"k i, k j -> i j">(m, random_tensor<float, extents<48, 9>>(6)), 2 * 48 * 0x1p-24);
}

TEST_CASE("fused einsum patterns and views on the GPU agree with the CPU") {
  const auto u = random_tensor<float, extents<37>>(7);           // (I,)
  const auto v = random_tensor<float, extents<29>>(8);           // (J,)
  const auto du = to_device(u);
  const auto dv = to_device(v);
  check_close(einsum<"i, j -> i j">(du, dv), einsum<"i, j -> i j">(u, v), 0);

  const auto sq = random_tensor<float, extents<31, 31>>(9);      // (N, N)
  const auto dsq = to_device(sq);
  check_close(einsum<"i i, i -> i">(dsq, to_device(random_tensor<float, extents<31>>(10))),
              einsum<"i i, i -> i">(sq, random_tensor<float, extents<31>>(10)), 0);
  check_close(einsum<"i i ->">(dsq), einsum<"i i ->">(sq), 31 * 0x1p-24);

  const auto x = random_tensor<float, extents<5, 6>>(11);        // (A, B)
  const auto y = random_tensor<float, extents<6, 7>>(12);        // (B, C)
  const auto z = random_tensor<float, extents<7, 3>>(13);        // (C, D)
  const auto dx = to_device(x);
  const auto dy = to_device(y);
  const auto dz = to_device(z);
  check_close(einsum<"a b, b c, c d -> a d">(dx, dy, dz), einsum<"a b, b c, c d -> a d">(x, y, z), 42 * 0x1p-22);

  auto t = einsum<"a b -> b a">(dx);                              // (B, A): a device view
  static_assert(view_like<decltype(t)>);
  check_close(t, einsum<"a b -> b a">(x), 0);
}
