// Compile-fail cases of einops patterns: with a static pattern and static shapes every einops error
// is a compile error whose message is einops' sentence, in the instantiation of the operation
// whose template argument shows the pattern. EINLM_CASE=0 compiles.
#include "einlm/einops.hpp"

using namespace einlm;

int main() {
  tensor<float, extents<2, 3>> x;
  tensor<float, extents<6, 2>> y;
  tensor<std::int32_t, extents<2, 3>> ints;
  tensor<float, extents<2, 3, 4>> z;
  auto ok = rearrange<"a b -> b a">(x);
  (void)ok;
  (void)y;
  (void)ints;
  (void)z;
#if EINLM_CASE == 1
  auto e = rearrange<"a b -> a, b">(x);
#elif EINLM_CASE == 2
  auto e = rearrange<"a . b -> a b">(x);
#elif EINLM_CASE == 3
  auto e = rearrange<"... a ... -> a">(x);
#elif EINLM_CASE == 4
  auto e = rearrange<"(a (b)) -> a b">(x);
#elif EINLM_CASE == 5
  auto e = rearrange<"a b) -> a b">(x);
#elif EINLM_CASE == 6
  auto e = rearrange<"(a b -> a b">(x);
#elif EINLM_CASE == 7
  auto e = rearrange<"1a b -> b 1a">(x);
#elif EINLM_CASE == 8
  auto e = rearrange<"_a b -> b _a">(x);
#elif EINLM_CASE == 9
  auto e = rearrange<"a a -> a">(x);
#elif EINLM_CASE == 10
  auto e = reduce<"a 0 -> a", "sum">(x);
#elif EINLM_CASE == 11
  auto e = rearrange<"a b">(x);
#elif EINLM_CASE == 12
  auto e = rearrange<"a b -> a b ...">(x);
#elif EINLM_CASE == 13
  auto e = rearrange<"(a ...) -> a ...">(x);
#elif EINLM_CASE == 14
  auto e = rearrange<"a 3 -> a">(x);
#elif EINLM_CASE == 15
  auto e = rearrange<"a b -> a">(x);
#elif EINLM_CASE == 16
  auto e = repeat<"a b -> a">(x);
#elif EINLM_CASE == 17
  auto e = repeat<"a b -> a b c">(x);
#elif EINLM_CASE == 18
  auto e = reduce<"a b -> a c", "sum">(x);
#elif EINLM_CASE == 19
  auto e = rearrange<"a b c ... -> a b c ...">(x);
#elif EINLM_CASE == 20
  auto e = rearrange<"a b c -> c b a">(x);
#elif EINLM_CASE == 21
  auto e = rearrange<"a b -> b a">(x, axis<"_a", 2>{});
#elif EINLM_CASE == 22
  auto e = rearrange<"a b -> b a">(x, axis<"z", 2>{});
#elif EINLM_CASE == 23
  auto e = rearrange<"(a b) c -> a b c">(y);
#elif EINLM_CASE == 24
  auto e = rearrange<"(a b) c -> a b c">(y, axis<"a", 4>{});
#elif EINLM_CASE == 25
  auto e = rearrange<"a b () -> a b">(z);
#elif EINLM_CASE == 26
  auto e = reduce<"a b -> a", "mean">(ints);
#elif EINLM_CASE == 27
  auto e = reduce<"a b -> a", "median">(x);
#elif EINLM_CASE == 28
  auto e = rearrange<"a b -> (a b)">(x, axis<"a", 3>{});
#endif
  return 0;
}
