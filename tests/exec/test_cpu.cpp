// Tests of einlm/exec/cpu.hpp: the three schedules are chosen as documented and agree with
// element-by-element evaluation; strided and reversed destinations; in-place updates; threads.
#include <doctest/doctest.h>

#include <cmath>

#include "einlm/expr.hpp"
#include "support/check.hpp"

using namespace einlm;

namespace {

// Reference: the expression's value at every index through at(), with no schedule involved.
template <class T, class E, class X>
void check_matches_at(const tensor<T, E>& got, const X& x_in) {
  auto x = as_expression(x_in);
  constexpr std::size_t R = E::rank();
  for (index_t i = 0; i < got.size(); ++i) {
    const auto idx = detail::unravel<R>(i, got.extents());
    CHECK(got.data()[i] == convert<T>(x.at(idx)));
  }
}

template <class T, class E>
void random_fill(tensor<T, E>& t, std::uint64_t seed) {
  const auto v = test::random_values<double>(static_cast<std::size_t>(t.size()), -2, 2, seed);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = convert<T>(v[static_cast<std::size_t>(i)]);
}

}  // namespace

TEST_CASE("schedules are chosen from the layout of the leaves") {
  tensor<float, extents<6, 10>> a, b, out;
  tensor<float, extents<10>> bias;
  tensor<float, extents<10, 6>> at;
  random_fill(a, 1);
  random_fill(b, 2);
  random_fill(bias, 3);
  random_fill(at, 4);
  using detail::schedule;
  const auto pick = [&](const auto& x) { return detail::choose_schedule(out.view(), as_expression(x)); };
  CHECK(pick(silu(a) * b) == schedule::flat);
  CHECK(pick(a + bias) == schedule::rows);
  CHECK(pick(a * transpose<1, 0>(at)) == schedule::indexed);
  CHECK(pick(a * slice(b, full_extent, range{none, none, -1})) == schedule::indexed);
  CHECK(pick(a * slice(b, range{none, none, -1}, full_extent)) == schedule::rows);
  // Each agrees with element-by-element evaluation.
  out = silu(a) * b;
  check_matches_at(out, silu(a) * b);
  out = a + bias;
  check_matches_at(out, a + bias);
  out = a * transpose<1, 0>(at);
  check_matches_at(out, a * transpose<1, 0>(at));
  out = a * slice(b, range{none, none, -1}, full_extent) - 1.0f;
  check_matches_at(out, a * slice(b, range{none, none, -1}, full_extent) - 1.0f);
  // A column broadcast (per-row scale) splats along the rows.
  tensor<float, extents<6, 1>> scale;
  random_fill(scale, 5);
  CHECK(pick(a * scale) == schedule::rows);
  out = a * scale;
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 10; ++j) CHECK(out(i, j) == a(i, j) * scale(i, 0));
}

TEST_CASE("strided and reversed destinations, and in-place updates") {
  tensor<float, extents<4, 5>> a, t;
  random_fill(a, 9);
  // Write the transpose of 2·a into t through a transposed view of t.
  tensor<float, extents<5, 4>> src;
  random_fill(src, 10);
  assign(transpose<1, 0>(t), src * 2.0f);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 5; ++j) CHECK(t(i, j) == src(j, i) * 2);
  // Reversed rows.
  assign(slice(t, range{none, none, -1}, full_extent), a + 0.0f);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 5; ++j) CHECK(t(i, j) == a(3 - i, j));
  // In place: each element is read where it is written.
  tensor<float, extents<4, 5>> copy = a * 1.0f;
  a = a * 2.0f + 1.0f;
  for (index_t i = 0; i < a.size(); ++i) CHECK(a.data()[i] == copy.data()[i] * 2 + 1);
}

TEST_CASE("threads split the work without changing the result") {
  // [snippet executors]
  cpu_executor one(1), many(4);
  CHECK(one.threads() == 1);
  // [end snippet]
  tensor<float, dims<3>> x(dims<3>(3, 257, 333)), y1(dims<3>(3, 257, 333)), y2(dims<3>(3, 257, 333));
  tensor<float, dims<1>> bias(dims<1>(333));
  random_fill(x, 21);
  random_fill(bias, 22);
  for (auto* ex : {&one, &many}) {
    auto& y = ex == &one ? y1 : y2;
    ex->assign(y, tanh(x) * 3.0f + bias);  // rows
  }
  for (index_t i = 0; i < x.size(); ++i) CHECK(y1.data()[i] == y2.data()[i]);
  one.assign(y1, exp(x));  // flat
  many.assign(y2, exp(x));
  for (index_t i = 0; i < x.size(); ++i) CHECK(y1.data()[i] == y2.data()[i]);
  CHECK(one.passes() == 2);
  CHECK(many.passes() == 2);
}

TEST_CASE("generators evaluate from the element's position") {
  const random_stream g{11, 3};
  tensor<float, dims<2>> u = uniform<float>(dims<2>(37, 41), g, -1.0, 1.0);
  for (int i = 0; i < 37; ++i)
    for (int j = 0; j < 41; ++j) CHECK(u(i, j) == uniform_at<float>(g, static_cast<std::uint64_t>(i * 41 + j), -1.0, 1.0));
  tensor<double, extents<5, 3>> n = normal<double>(extents<5, 3>{}, g, 1.0, 0.5);
  CHECK(n(4, 2) == normal_at<double>(g, 14, 1.0, 0.5));
  tensor<bf16, extents<3, 3>> tn = truncated_normal<bf16>(extents<3, 3>{}, g, 0.0, 0.02, -0.04, 0.04);
  for (index_t i = 0; i < 9; ++i) CHECK(std::abs(convert<float>(tn.data()[i])) <= 0.0401f);
  tensor<std::int32_t, extents<2, 4>> r = arange<std::int32_t>(extents<2, 4>{}, 10, 3);
  CHECK(r(1, 3) == 10 + 7 * 3);
  tensor<float, extents<2, 2>> f = full<float>(extents<2, 2>{}, 2.5f);
  CHECK(f(1, 1) == 2.5f);
  // A generator broadcast along the last axis (extent 1) splats.
  tensor<float, extents<4, 3>> s = arange<float>(extents<4, 1>{}) + full<float>(extents<4, 3>{}, 0.0f);
  CHECK(s(2, 1) == 2.0f);
  CHECK_THROWS_AS(truncated_normal<float>(extents<2>{}, g, 0.0, 1.0, 1.0, -1.0), value_error);
}

TEST_CASE("large transposes (streaming stores) and their edges match the element loop") {
  // Outputs of 8 MiB and more take 1024-row tiles written with streaming stores; extents that are
  // not multiples of the tile, a batched transpose and a misaligned destination (which falls back
  // to normal stores) must all give the same elements.
  tensor<float, dims<2>> a = uniform<float>(dims<2>(1500, 1700), {21, 0}, -1.0, 1.0);  // (1500, 1700)
  tensor<float, dims<2>> t(dims<2>(1700, 1500));                                       // (1700, 1500)
  assign(t, transpose<1, 0>(a));
  bool same = true;
  for (index_t i = 0; i < 1700; ++i)
    for (index_t j = 0; j < 1500; ++j) same = same && t(i, j) == a(j, i);
  CHECK(same);

  tensor<float, dims<3>> b = uniform<float>(dims<3>(3, 700, 1300), {21, 1}, -1.0, 1.0);  // (B, 700, 1300)
  tensor<float, dims<3>> bt(dims<3>(3, 1300, 700));                                     // (B, 1300, 700)
  assign(bt, transpose<0, 2, 1>(b));
  same = true;
  for (index_t k = 0; k < 3; ++k)
    for (index_t i = 0; i < 1300; ++i)
      for (index_t j = 0; j < 700; ++j) same = same && bt(k, i, j) == b(k, j, i);
  CHECK(same);

  tensor<float, dims<1>> storage(dims<1>(1700 * 1500 + 1));  // (N + 1,)
  view<float, dims<2>, cuda::std::layout_right, host> shifted(storage.data() + 1, dims<2>(1700, 1500));  // (1700, 1500)
  assign(shifted, transpose<1, 0>(a));
  same = true;
  for (index_t i = 0; i < 1700; ++i)
    for (index_t j = 0; j < 1500; ++j) same = same && shifted(i, j) == a(j, i);
  CHECK(same);
}
