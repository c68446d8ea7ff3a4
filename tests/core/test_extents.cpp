// Tests of einlm/core/extents.hpp: static inputs give static outputs (checked at compile time),
// dynamic values are carried, and broadcasting follows NumPy.
#include <doctest/doctest.h>

#include <vector>

#include "einlm/core/extents.hpp"

using namespace einlm;

// Static in, static out.
static_assert(is_static_v<extents<2, 3>>);
static_assert(!is_static_v<extents<2, dyn>>);
static_assert(static_size_v<extents<2, 3, 4>> == 24);
static_assert(static_size_v<extents<2, dyn>> == dyn);
static_assert(size(extents<2, 3, 4>{}) == 24);
static_assert(std::is_same_v<concat_t<extents<2, 3>, extents<4>>, extents<2, 3, 4>>);
static_assert(is_static_v<concat_t<extents<2>, extents<5, 6>>>);
static_assert(std::is_same_v<concat_t<extents<2, dyn>, extents<4>>, extents<2, dyn, 4>>);
static_assert(std::is_same_v<permute_t<extents<2, 3, 4>, 2, 0, 1>, extents<4, 2, 3>>);
static_assert(is_static_v<permute_t<extents<2, 3, 4>, 1, 2, 0>>);
static_assert(std::is_same_v<subrange_t<extents<2, 3, 4, 5>, 1, 2>, extents<3, 4>>);
static_assert(std::is_same_v<broadcast_t<extents<2, 1, 4>, extents<3, 1>>, extents<2, 3, 4>>);
static_assert(std::is_same_v<broadcast_t<extents<4>, extents<2, 3, 4>>, extents<2, 3, 4>>);
static_assert(std::is_same_v<broadcast_t<extents<dyn, 4>, extents<3, 1>>, extents<3, 4>>);
static_assert(std::is_same_v<broadcast_t<extents<1>, extents<dyn>>, extents<dyn>>);
static_assert(std::is_same_v<broadcast_t<extents<>, extents<2, 3>>, extents<2, 3>>);
static_assert(is_static_v<broadcast_t<extents<2, 1>, extents<1, 5>>>);
static_assert(broadcastable_v<extents<2, 3>, extents<3>>);
static_assert(!broadcastable_v<extents<2, 3>, extents<4>>);
static_assert(!broadcastable_v<extents<2, 3>, extents<3, 3>>);
static_assert(concat(extents<2>{}, extents<3>{}) == extents<2, 3>{});
static_assert(permute<1, 0>(extents<2, 3>{}) == extents<3, 2>{});

TEST_CASE("dynamic values survive the arithmetic") {
  const dims<2> a(5, 7);
  const extents<3> b;
  const auto c = concat(a, b);
  CHECK(c.extent(0) == 5);
  CHECK(c.extent(1) == 7);
  CHECK(c.extent(2) == 3);
  CHECK(size(c) == 105);
  const auto p = permute<2, 0, 1>(c);
  CHECK(to_array(p) == index_array<3>{3, 5, 7});
  CHECK(to_array(subrange<1, 2>(c)) == index_array<2>{7, 3});
  CHECK(shape_string(c) == "(5, 7, 3)");
  CHECK(shape_string(extents<>{}) == "()");
  CHECK(shape_string(extents<4>{}) == "(4,)");
  CHECK(static_shape_string<extents<4, dyn>>() == "(4, ?)");
}

TEST_CASE("broadcast at run time") {
  const auto r = broadcast(dims<2>(1, 4), dims<3>(2, 3, 1), "add");
  CHECK(to_array(r) == index_array<3>{2, 3, 4});
  CHECK(to_array(broadcast(dims<1>(0), dims<1>(1), "add")) == index_array<1>{0});
  CHECK_THROWS_WITH_AS(broadcast(dims<2>(2, 3), dims<1>(4), "add"),
                       "add: operands could not be broadcast together with shapes (2, 3) (4,)", shape_error);
}

TEST_CASE("check_extents validates data against a static shape") {
  using E = extents<2, dyn>;
  using shape = std::vector<long>;
  CHECK(to_array(check_extents<E>(shape{2, 9}, "load")) == index_array<2>{2, 9});
  CHECK_THROWS_WITH_AS(check_extents<E>(shape{3, 9}, "load"),
                       "load: shape (3, 9) does not match the static shape (2, ?) at axis 0", shape_error);
  CHECK_THROWS_WITH_AS(check_extents<E>(shape{2}, "load"), "load: expected a rank-2 shape, got (2,)", shape_error);
}
