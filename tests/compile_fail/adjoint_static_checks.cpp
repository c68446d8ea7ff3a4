// Compile-fail cases of the adjoints (einlm/einops/adjoint.hpp, einlm/linalg/einsum_adjoint.hpp)
// with static shapes: dy of the wrong rank or shape, reductions without a gradient, values needed
// but only extents given, an einsum input number out of range. EINLM_CASE=0 compiles (and with it
// the gradient of an input whose length-1 axis broadcasts: a tensor of that input's extents).
#include <type_traits>

#include "einlm/einops.hpp"

using namespace einlm;

int main() {
  tensor<double, extents<2, 3, 4>> x;  // (A, B, C)
  tensor<double, extents<2, 4>> dy;    // (A, C)
  tensor<double, extents<2, 3>> a;     // (I, J)
  tensor<double, extents<3, 4>> m;     // (J, K)
  tensor<double, extents<1, 4>> row;   // (1, K)
  tensor<double, extents<2, 4>> g;     // (I, K)
  tensor<double, extents<2, 4, 3>> dt;  // (A, C, B)
  auto ok_rearrange = rearrange_adjoint<"a b c -> a c b">(dt, x);  // (A, B, C)
  auto ok_reduce = reduce_adjoint<"a b c -> a c", "max">(dy, x);  // (A, B, C)
  auto ok_einsum = einsum_adjoint<"i j, j k -> i k", 1>(g, a, m);  // (J, K)
  auto ok_broadcast = einsum_adjoint<"i k, i k -> i k", 0>(m, row, m);  // row's i (1) broadcasts against m's 3
  static_assert(std::is_same_v<decltype(ok_broadcast), tensor<double, extents<1, 4>>>);
  (void)ok_rearrange;
  (void)ok_reduce;
  (void)ok_einsum;
  (void)ok_broadcast;
#if EINLM_CASE == 1
  auto e = rearrange_adjoint<"a b c -> a (b c)">(dy, x);  // dy (2, 4), output (2, 12)
#elif EINLM_CASE == 2
  auto e = reduce_adjoint<"a b c -> a b c", "sum">(dy, x);  // rank 2 against rank 3
#elif EINLM_CASE == 3
  auto e = repeat_adjoint<"a b c -> a b c r">(x, x, axis<"r", 2>{});  // rank 3 against rank 4
#elif EINLM_CASE == 4
  auto e = einsum_adjoint<"i j, j k -> i k", 0>(x, a, m);  // rank 3 against rank 2
#elif EINLM_CASE == 5
  auto e = einsum_adjoint<"i j, j k -> i k", 0>(m, a, m);  // dy (3, 4), output (2, 4)
#elif EINLM_CASE == 6
  auto e = reduce_adjoint<"a b c -> a c", "any">(dy, x);
#elif EINLM_CASE == 7
  auto e = reduce_adjoint<"a b c -> a c", "max">(dy, x.extents());
#elif EINLM_CASE == 8
  auto e = einsum_adjoint<"i j, j k -> i k", 2>(g, a, m);
#elif EINLM_CASE == 9
  auto e = reduce_adjoint<"a b c -> a c", "median">(dy, x);
#endif
#if EINLM_CASE != 0
  (void)e;
#endif
  return 0;
}
