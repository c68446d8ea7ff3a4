// Tests of einlm/core/tensor.hpp and print.hpp: ownership, alignment, views, slicing with Python's
// slice semantics (compared with index arithmetic written out by hand), transpose, reshape, copies
// and the printed form.
#include <doctest/doctest.h>

#include <cstdint>
#include <sstream>
#include <type_traits>

#include "einlm/core/print.hpp"
#include "einlm/core/tensor.hpp"

using namespace einlm;

namespace {
template <class T, class E>
void iota(tensor<T, E>& t) {
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(i);
}
}  // namespace

TEST_CASE("tensors own aligned, row-major storage") {
  tensor<float, extents<2, 3, 4>> t;
  static_assert(std::is_same_v<decltype(t)::extents_type, extents<2, 3, 4>>);
  CHECK(t.size() == 24);
  CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % 64 == 0);
  iota(t);
  CHECK(t(1, 2, 3) == 23.0f);
  CHECK(t(0, 1, 0) == 4.0f);
  tensor<double, extents<dyn, 5>> d(3);
  CHECK(d.extent(0) == 3);
  CHECK(d.size() == 15);
  tensor<float, dims<2>> e(dims<2>(0, 4));
  CHECK(e.size() == 0);
  CHECK_THROWS_AS((tensor<float, dims<1>>(dims<1>(-1))), shape_error);
  auto moved = std::move(t);
  CHECK(moved(1, 2, 3) == 23.0f);
  const auto copy = moved.clone();
  moved(1, 2, 3) = -1;
  CHECK(copy(1, 2, 3) == 23.0f);
}

TEST_CASE("slicing follows Python's slice semantics") {
  tensor<int, extents<4, 6>> t;
  iota(t);
  // [snippet slicing]
  // t[1, :] keeps axis 1 static.
  auto row = slice(t, 1, full_extent);
  static_assert(std::is_same_v<decltype(row)::extents_type, extents<6>>);
  CHECK(row(5) == 11);
  // t[:, 1:5:2]
  auto cols = slice(t, full_extent, range{1, 5, 2});
  CHECK(to_array(cols.extents()) == index_array<2>{4, 2});
  CHECK(cols(2, 1) == 2 * 6 + 3);
  // t[::-1, -2] and negative indices
  auto back = slice(t, range{none, none, -1}, -2);
  CHECK(back.extent(0) == 4);
  CHECK(back(0) == 3 * 6 + 4);
  CHECK(back(3) == 4);
  // [end snippet]
  // t[3:0:-2, ::-3]
  auto odd = slice(t, range{3, 0, -2}, range{none, none, -3});
  CHECK(to_array(odd.extents()) == index_array<2>{2, 2});
  CHECK(odd(1, 1) == 1 * 6 + 2);
  // Out-of-range bounds clamp; empty ranges are empty.
  CHECK(slice(t, range{2, 100}, full_extent).extent(0) == 2);
  CHECK(slice(t, range{5, 1}, full_extent).extent(0) == 0);
  CHECK(slice(t, range{-100, 2}, full_extent).extent(0) == 2);
  // Slices of slices.
  auto sub = slice(slice(t, range{1, none}, range{none, none, 2}), range{none, none, -1}, 0);
  CHECK(sub.extent(0) == 3);
  CHECK(sub(0) == 3 * 6);
  CHECK_THROWS_WITH_AS(slice(t, 4, full_extent), "slice: index 4 is out of range for axis 0 of length 4 in a tensor of shape (4, 6)",
                       shape_error);
  CHECK_THROWS_AS(slice(t, range{0, 2, 0}, full_extent), value_error);
  // Writes through a view reach the tensor.
  slice(t, 0, full_extent)(0) = 100;
  CHECK(t(0, 0) == 100);
}

TEST_CASE("transpose and reshape are views") {
  tensor<int, extents<2, 3, 4>> t;
  iota(t);
  // [snippet views]
  auto p = transpose<2, 0, 1>(t);
  static_assert(std::is_same_v<decltype(p)::extents_type, extents<4, 2, 3>>);
  CHECK(p(3, 1, 2) == t(1, 2, 3));
  CHECK(!p.is_contiguous());
  auto r = reshape<extents<6, 4>>(t);
  CHECK(r(5, 3) == 23);
  CHECK(r.data() == t.data());
  // [end snippet]
  CHECK_THROWS_AS((reshape<dims<2>>(t, dims<2>(5, 5))), shape_error);
  CHECK_THROWS_WITH_AS((reshape<extents<24>>(p)), doctest::Contains("is not contiguous"), shape_error);
}

TEST_CASE("layout_strided") {
  using M = layout_strided::mapping<extents<3, 4>>;
  const M row_major(extents<3, 4>{});
  CHECK(row_major.strides() == index_array<2>{4, 1});
  CHECK(row_major.is_row_major());
  CHECK(row_major.required_span_size() == 12);
  const M reversed(extents<3, 4>{}, {-4, 1});
  CHECK(reversed(2, 1) == -7);
  CHECK(reversed.required_span_size() == 12);
  const M broadcast(extents<3, 4>{}, {0, 1});
  CHECK(!broadcast.is_unique());
  CHECK(broadcast.required_span_size() == 4);
}

TEST_CASE("copy converts types and walks any strides on the host") {
  tensor<int, extents<3, 4>> a;
  iota(a);
  tensor<double, extents<4, 3>> b;
  copy(transpose<1, 0>(a), b);
  CHECK(b(3, 2) == 11.0);
  tensor<float, extents<3, 3>> c;
  CHECK_THROWS_WITH_AS(copy(a.view(), reshape<extents<4, 3>>(b)), doctest::Contains("copy: source shape (3, 4) differs"),
                       shape_error);
  (void)c;
}

TEST_CASE("printing") {
  tensor<float, extents<2, 3>> t;
  iota(t);
  t(0, 1) = 0.5f;
  CHECK(to_string(t) == "tensor([[0, 0.5, 2],\n        [3, 4, 5]], dtype=float32, shape=(2, 3))");
  tensor<bool, extents<2>> b;
  b(0) = true;
  b(1) = false;
  CHECK(to_string(b) == "tensor([True, False], dtype=bool, shape=(2,))");
  tensor<int, extents<>> s;
  s() = 7;
  CHECK(to_string(s) == "tensor(7, dtype=int32, shape=())");
  tensor<int, extents<2000>> big;
  iota(big);
  CHECK(to_string(big) == "tensor([0, 1, 2, ..., 1997, 1998, 1999], dtype=int32, shape=(2000,))");
  tensor<int, extents<2, 2, 2>> cube;
  iota(cube);
  std::ostringstream out;
  out << cube;
  CHECK(out.str() == "tensor([[[0, 1],\n         [2, 3]],\n\n        [[4, 5],\n         [6, 7]]], dtype=int32, shape=(2, 2, 2))");
}
