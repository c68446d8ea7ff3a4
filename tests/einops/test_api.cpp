// Tests of einlm/einops.hpp beyond einops' tables: result kinds (views for reshapes, strided views
// for permutations), static result extents, fusion into one pass, run-time errors with einops'
// messages, list inputs, pack/unpack, parse_shape.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "einops_check.hpp"

using namespace einlm;
using test::iota;

TEST_CASE("a pure reshape of a contiguous tensor is a contiguous view") {
  auto x = iota<float, extents<2, 3, 4>>();
  auto v = rearrange<"b s d -> b (s d)">(x);
  static_assert(std::is_same_v<decltype(v), view<float, extents<2, 12>, cuda::std::layout_right, host>>);
  CHECK(v.data() == x.data());
  v(1, 5) = -1;  // writes through
  CHECK(x(1, 1, 1) == -1);
  auto split = rearrange<"b s (h d) -> b s h d">(x, axis<"h", 2>{});
  static_assert(std::is_same_v<decltype(split)::extents_type, extents<2, 3, 2, 2>>);
  CHECK(split.data() == x.data());
}

TEST_CASE("permutations and splits of arrays are strided views") {
  // [snippet strided_views]
  auto x = iota<float, extents<2, 3, 8>>();                            // (B, S, H*D)
  auto heads = rearrange<"b s (h d) -> b h s d">(x, axis<"h", 2>{});  // (B, H, S, D)
  static_assert(std::is_same_v<decltype(heads)::extents_type, extents<2, 2, 3, 4>>);
  REQUIRE(heads.is_strided());
  const auto v = heads.to_view();  // (B, H, S, D): strides (24, 4, 8, 1) into x, no copy
  CHECK(v(1, 1, 2, 3) == x(1, 2, 7));
  // [end snippet]
  CHECK(v.stride(3) == 1);
  CHECK(v.stride(1) == 4);
  // Merging axes that are not adjacent in memory has no single stride.
  auto merged = rearrange<"b s d -> (d s) b">(x);
  CHECK(!merged.is_strided());
  CHECK_THROWS_WITH_AS(merged.to_view(), doctest::Contains("is not a strided view"), shape_error);
  const auto m = eval(merged);
  CHECK(m(7 * 3 + 2, 1) == x(1, 2, 7));
  // Repeat is a zero stride.
  auto rep = repeat<"b s d -> b s d r">(x, axis<"r", 5>{});
  REQUIRE(rep.is_strided());
  CHECK(rep.to_view().stride(3) == 0);
}

TEST_CASE("static result extents, dynamic where the input is dynamic") {
  tensor<float, extents<dyn, 6>> x(4);
  x = 1.0f;
  auto r = rearrange<"a (b c) -> c a b">(x, axis<"b", 2>{});
  static_assert(std::is_same_v<decltype(r)::extents_type, extents<3, dyn, 2>>);
  CHECK(r.extents().extent(1) == 4);
  auto s = reduce<"a b -> b", "sum">(x);
  static_assert(std::is_same_v<decltype(s)::extents_type, extents<6>>);
  CHECK(eval(s)(5) == 4.0f);
}

TEST_CASE("einops operations fuse with expressions into one pass") {
  const auto a = iota<float, extents<4, 6>>();
  const auto b = iota<float, extents<6, 4>>();
  // [snippet one_pass]
  cpu_executor ex;
  tensor<float, extents<4>> out;                                                                     // (R,)
  ex.assign(out, reduce<"r (g c) -> r", "max">(rearrange<"c r -> r c">(b) * a + 1.0f, axis<"g", 2>{}));
  CHECK(ex.passes() == 1);  // transpose, product, add and max: one pass over the inputs
  // [end snippet]
  for (int r = 0; r < 4; ++r) {
    float m = -1e30f;
    for (int c = 0; c < 6; ++c) m = std::max(m, b(c, r) * a(r, c) + 1.0f);
    CHECK(out(r) == m);
  }
}

TEST_CASE("run-time shape errors carry einops' full message") {
  auto x = test::iota_dynamic<float, 3>({2, 3, 4});
  CHECK_THROWS_WITH_AS(rearrange<"a (b1 b2) c -> a b1 b2 c">(x, axis_size<"b1">{2}),
                       " Error while processing rearrange-reduction pattern \"a (b1 b2) c -> a b1 b2 c\".\n"
                       " Input tensor shape: (2, 3, 4). Additional info: {'b1': 2}.\n"
                       " Shape mismatch, can't divide axis of length 3 in chunks of 2",
                       pattern_error);
  CHECK_THROWS_WITH_AS((reduce<"a b () -> a b", "mean">(x)),
                       doctest::Contains("mean-reduction pattern \"a b () -> a b\".\n Input tensor shape: (2, 3, 4). "
                                         "Additional info: {}.\n Shape mismatch, 4 != 1"),
                       pattern_error);
  CHECK_THROWS_AS(rearrange<"a b c -> a b c">(x, axis_size<"a">{3}), pattern_error);
  CHECK_NOTHROW(rearrange<"a b c -> a b c">(x, axis_size<"a">{2}));
}

TEST_CASE("list inputs are stacked on a new first axis") {
  std::vector<tensor<float, extents<2, 3>>> list;
  for (int i = 0; i < 4; ++i) {
    list.emplace_back();
    list.back() = arange<float>(extents<2, 3>{}, 10.0 * i);
  }
  std::vector<view<const float, extents<2, 3>, cuda::std::layout_right, host>> views(list.begin(), list.end());
  const auto r = rearrange<"n a b -> a (n b)">(views);
  static_assert(std::is_same_v<std::remove_const_t<decltype(r)>::extents_type, extents<2, dyn>>);
  CHECK(r(1, 3 * 3 + 2) == 30.0f + 5.0f);
  const auto m = reduce<"n a b -> a b", "max">(views);
  CHECK(m(1, 2) == 35.0f);
  std::array<view<const float, extents<2, 3>, cuda::std::layout_right, host>, 2> two{views[0], views[1]};
  const auto s = rearrange<"n a b -> (n a) b">(two);
  static_assert(std::is_same_v<std::remove_const_t<decltype(s)>::extents_type, extents<4, 3>>);
  CHECK_THROWS_WITH_AS(rearrange<"n a b -> a n b">(std::vector<tensor<float, extents<2, 3>>>{}),
                       "Rearrange/Reduce/Repeat can't be applied to an empty list", value_error);
}

TEST_CASE("pack and unpack") {
  const auto r = iota<float, extents<3, 4>>();
  const auto g = iota<float, extents<3, 4>>();
  const auto emb = iota<float, extents<3, 4, 5>>();
  auto [packed, shapes] = pack<"h w *">(r, g, emb);
  static_assert(std::is_same_v<decltype(packed)::extents_type, extents<3, 4, 7>>);
  CHECK(shapes == std::vector<std::vector<index_t>>{{}, {}, {5}});
  CHECK(packed(2, 3, 0) == r(2, 3));
  CHECK(packed(2, 3, 6) == emb(2, 3, 4));
  auto [pr, pg, pe] = unpack<"h w *">(packed, extents<>{}, extents<>{}, packed_shape<1>{-1});
  static_assert(std::is_same_v<decltype(pr)::extents_type, extents<3, 4>>);
  CHECK(pe.extent(2) == 5);
  CHECK(pe(1, 2, 3) == emb(1, 2, 3));
  CHECK(pr(2, 1) == r(2, 1));
  // * in the middle, several axes packed.
  const auto a = iota<float, extents<2, 5>>();
  const auto b = iota<float, extents<2, 3, 4, 5>>();
  auto [p2, s2] = pack<"i * k">(a, b);
  static_assert(std::is_same_v<decltype(p2)::extents_type, extents<2, 13, 5>>);
  auto [ua, ub] = unpack<"i * k">(p2, extents<>{}, packed_shape<2>{3, 4});
  CHECK(ub(1, 2, 3, 4) == b(1, 2, 3, 4));
  CHECK(ua(1, 4) == a(1, 4));
  CHECK_THROWS_WITH_AS(unpack<"i * k">(p2, packed_shape<1>{-1}, packed_shape<1>{-1}),
                       "unpack(..., i * k) received more than one -1 in [[-1], [-1]] and can't infer dimensions",
                       pattern_error);
  CHECK_THROWS_WITH_AS(unpack<"i * k">(p2, packed_shape<1>{2}, packed_shape<1>{3}),
                       "Error during unpack(..., \"i * k\"): could not split axis of size 13 into requested [[2], [3]]",
                       pattern_error);
}

TEST_CASE("parse_shape") {
  // [snippet parse_shape]
  const auto x = iota<float, extents<2, 3, 5, 7>>();     // (B, C, H, W)
  const auto s = parse_shape<"batch _ h w">(x);           // {batch: 2, h: 5, w: 7}
  CHECK(s.get<"batch">() == 2);                          // by a compile-time name
  CHECK(s["h"] == 5);                                    // or a run-time one
  // [end snippet]
  CHECK(s.size() == 3);
  CHECK_THROWS_AS(s["c"], value_error);
  const auto e = parse_shape<"b ... w">(x);
  CHECK(e.get<"w">() == 7);
  tensor<float, dims<1>> y(dims<1>(2 * 10 * 5 * 7));
  y = 0.0f;
  const auto r = rearrange<"(b c h w) -> b c h w">(y, parse_shape<"b _ h w">(x));
  CHECK(to_array(r.extents()) == index_array<4>{2, 10, 5, 7});
  const auto d = test::iota_dynamic<float, 2>({2, 3});
  CHECK_THROWS_WITH_AS(parse_shape<"a 4">(d), "Length of anonymous axis does not match: a 4 (2, 3)", pattern_error);
  CHECK_THROWS_WITH_AS(parse_shape<"a ()">(d), "Length of axis is not 1: a () (2, 3)", pattern_error);
}
