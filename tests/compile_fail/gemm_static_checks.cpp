// Compile-fail cases of gemm on tensors: static shapes that disagree, element types, ranks and
// memory spaces stop compilation with the sentence tests/compile_fail/CMakeLists.txt expects.
// EINLM_CASE=0 compiles.
#include "einlm/linalg.hpp"

using namespace einlm;

int main() {
  tensor<float, extents<4, 5>> a;
  tensor<float, extents<5, 3>> b;
  tensor<float, extents<4, 3>> c;
  (void)a;
  (void)b;
  (void)c;
#if EINLM_CASE == 0
  if (false) gemm(a, b, c);
#elif EINLM_CASE == 1
  tensor<float, extents<6, 3>> b6;
  gemm(a, b6, c);  // K: 5 and 6
#elif EINLM_CASE == 2
  tensor<float, extents<7, 3>> c7;
  gemm(a, b, c7);  // M: 4 and 7
#elif EINLM_CASE == 3
  tensor<float, extents<4, 2>> c2;
  gemm(a, b, c2);  // N: 3 and 2
#elif EINLM_CASE == 4
  tensor<bf16, extents<5, 3>> bh;
  gemm(a, bh, c);  // float and bf16 inputs
#elif EINLM_CASE == 5
  tensor<int, extents<4, 5>> ai;
  tensor<int, extents<5, 3>> bi;
  gemm(ai, bi, c);  // integer inputs
#elif EINLM_CASE == 6
  tensor<float, extents<2, 4, 5>> a3;
  gemm(a3, b, c);  // a batch of A into a rank-2 C
#elif EINLM_CASE == 7
  view<float, extents<5, 3>, layout_strided, device> bd;
  gemm(a, bd, c);  // host and device operands
#elif EINLM_CASE == 8
  const tensor<float, extents<4, 3>> cc;
  gemm(a, b, cc);  // read-only output
#endif
  return 0;
}
