// Compile-fail cases of tensors and expressions: each EINLM_CASE must stop compilation with the
// static_assert sentence that tests/compile_fail/CMakeLists.txt expects. EINLM_CASE=0 compiles.
#include "einlm/expr.hpp"

using namespace einlm;

int main() {
  tensor<float, extents<2, 3>> a;
  tensor<float, extents<4>> b;
  view<float, extents<2, 3>, layout_strided, device> on_device;
  (void)a;
  (void)b;
  (void)on_device;
#if EINLM_CASE == 1
  auto e = a + b;  // (2, 3) and (4,) cannot broadcast
#elif EINLM_CASE == 2
  tensor<float, extents<3, 2>> c = a * 2.0f;  // static shapes differ
#elif EINLM_CASE == 3
  tensor<float, extents<6>> d;
  d = a * 1.0f;  // a rank-2 expression into a rank-1 tensor
#elif EINLM_CASE == 4
  auto e = a + on_device;  // host and device operands
#elif EINLM_CASE == 5
  auto e = tensor<float, extents<2>>{} * 2.0f;  // a view of a temporary
#elif EINLM_CASE == 6
  auto r = reshape<extents<5>>(a);
#elif EINLM_CASE == 7
  auto s = slice(a, 0);
#elif EINLM_CASE == 8
  tensor<float, extents<2>, device> t;  // device memory in a g++ translation unit
#elif EINLM_CASE == 9
  cpu_executor ex;
  ex.assign(on_device, a * 1.0f);
#elif EINLM_CASE == 10
  auto u = uniform<int>(extents<2>{}, random_stream{});
#elif EINLM_CASE == 11
  auto p = permute<0, 0>(extents<2, 3>{});
#elif EINLM_CASE == 12
  const tensor<float, extents<2, 3>> k;
  assign(k.view(), a * 1.0f);
#elif EINLM_CASE == 13
  tensor<float, extents<2, 3>> m;
  m = b * 1.0f;  // (4,) cannot broadcast into (2, 3)
#endif
  return 0;
}
