// A kernel derived from a pattern string (ARCHITECTURE decision 3). The string "a b c -> c a b" is
// parsed on the host by a constexpr function into a permutation, which is lowered to an integer
// pack; only integers and types reach the __global__ template. nvcc compiles this file in CI, so a
// change that lets a fixed_string into a kernel's template arguments fails the build. On a machine
// with a GPU it also runs and checks the result.
#include <doctest/doctest.h>

#include <cuda/std/array>
#include <utility>

#include "einlm/einlm.hpp"
#include "einlm/pattern/fixed_string.hpp"

using namespace einlm;

namespace {

// Axis permutation of a pattern "x y z -> z x y" with single-letter names (enough to exercise the
// lowering; einops patterns in full are parsed by einlm/pattern).
template <fixed_string P>
constexpr auto parse_permutation() {
  constexpr std::string_view s = P.view();
  constexpr std::size_t arrow = s.find("->");
  static_assert(arrow != std::string_view::npos, "pattern needs '->'");
  cuda::std::array<std::size_t, 8> perm{};
  std::size_t n = 0;
  for (std::size_t i = arrow + 2; i < s.size(); ++i) {
    if (s[i] == ' ') continue;
    perm[n++] = s.substr(0, arrow).find(s[i]) / 2;
  }
  return std::pair{perm, n};
}

template <fixed_string P, class X>
auto permute_by(X&& x) {
  constexpr auto parsed = parse_permutation<P>();
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    return transpose<parsed.first[I]...>(std::forward<X>(x));
  }(std::make_index_sequence<parsed.second>{});
}

}  // namespace

TEST_CASE("a kernel derived from a pattern string launches and permutes") {
  tensor<float, extents<2, 3, 4>> h = arange<float>(extents<2, 3, 4>{});
  auto d = to_device(h);
  auto p = permute_by<"a b c -> c a b">(d);
  static_assert(std::is_same_v<decltype(p)::extents_type, extents<4, 2, 3>>);
  tensor<float, extents<4, 2, 3>, device> out = p * 2.0f;
  const auto back = to_host(out);
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 3; ++b)
      for (int c = 0; c < 4; ++c) CHECK(back(c, a, b) == h(a, b, c) * 2);
}
