// Compile-fail cases of einsum that depend on the inputs (the pattern's own errors are in the
// einops tables): with static shapes, the operand count, the names per input, the output's
// ellipsis and every length conflict are compile errors. EINLM_CASE=0 compiles.
#include "einlm/einops.hpp"

using namespace einlm;

int main() {
  tensor<float, extents<2, 3>> x;     // (I, J)
  tensor<float, extents<3, 4>> y;     // (J, K)
  tensor<float, extents<3, 3>> s;     // (N, N)
  tensor<float, extents<2, 3, 4>> t;  // (A, B, C)
  auto ok = einsum<"i j, j k -> i k">(x, y);  // (I, K)
  (void)ok;
  (void)s;
  (void)t;
#if EINLM_CASE == 1
  auto e = einsum<"i j, j k -> i k">(x);
#elif EINLM_CASE == 2
  auto e = einsum<"i j -> i j">(x, y);
#elif EINLM_CASE == 3
  auto e = einsum<"i j k -> i">(x);
#elif EINLM_CASE == 4
  auto e = einsum<"i j -> i">(t);
#elif EINLM_CASE == 5
  auto e = einsum<"... j -> j">(x);
#elif EINLM_CASE == 6
  auto e = einsum<"i i -> i">(x);
#elif EINLM_CASE == 7
  auto e = einsum<"i j, i k -> j k">(x, y);
#endif
  return 0;
}
