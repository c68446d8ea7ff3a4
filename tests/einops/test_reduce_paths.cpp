// Tests of the reduction paths of einlm/expr/reduce.hpp: along the child's contiguous axis (a
// packet at a time), across rows (the output's rows are the input's rows), and the general
// odometer — each compared with loops written out here, for every reduction and several dtypes,
// with lengths that are not multiples of the packet width; the split of long outer reductions,
// also through a cast to the stored type.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "einlm/einops.hpp"
#include "support/check.hpp"

using namespace einlm;

namespace {

constexpr int A = 5, B = 7, C = 37;

template <class T>
tensor<T, extents<A, B, C>> input(std::uint64_t seed) {
  tensor<T, extents<A, B, C>> t;
  const auto v = test::random_values<double>(static_cast<std::size_t>(t.size()), 0.5, 1.5, seed);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = convert<T>(v[static_cast<std::size_t>(i)]);
  return t;
}

template <class F>
double fold(int n, double init, F f) {
  double acc = init;
  for (int i = 0; i < n; ++i) acc = f(acc, i);
  return acc;
}

template <class Got>
void check_close(const Got& got, double expected, double tolerance) {
  CHECK(std::abs(convert<double>(got) - expected) <= tolerance * std::max(1.0, std::abs(expected)));
}

template <class T>
void check_all(double tol) {
  const auto x = input<T>(3);
  auto v = [&](int a, int b, int c) { return convert<double>(x(a, b, c)); };
  // Along the contiguous axis: a b c -> a b.
  {
    const auto s = eval(reduce<"a b c -> a b", "sum">(x));
    const auto m = eval(reduce<"a b c -> a b", "max">(x));
    const auto p = eval(reduce<"a b c -> a b", "prod">(x));
    for (int a = 0; a < A; ++a)
      for (int b = 0; b < B; ++b) {
        check_close(s(a, b), fold(C, 0, [&](double acc, int c) { return acc + v(a, b, c); }), tol);
        check_close(m(a, b), fold(C, -1e300, [&](double acc, int c) { return std::max(acc, v(a, b, c)); }), 0);
        check_close(p(a, b), fold(C, 1, [&](double acc, int c) { return acc * v(a, b, c); }), tol * 4);
      }
  }
  // Across rows: a b c -> b c (and the mean).
  {
    const auto s = eval(reduce<"a b c -> b c", "mean">(x));
    const auto mn = eval(reduce<"a b c -> b c", "min">(x));
    for (int b = 0; b < B; ++b)
      for (int c = 0; c < C; ++c) {
        check_close(s(b, c), fold(A, 0, [&](double acc, int a) { return acc + v(a, b, c); }) / A, tol);
        check_close(mn(b, c), fold(A, 1e300, [&](double acc, int a) { return std::min(acc, v(a, b, c)); }), 0);
      }
  }
  // Neither: a b c -> a c, and a composite reduction (a b) c -> a.
  {
    const auto s = eval(reduce<"a b c -> a c", "sum">(x));
    const auto t = eval(reduce<"a b c -> a", "sum">(x));
    for (int a = 0; a < A; ++a) {
      for (int c = 0; c < C; ++c) check_close(s(a, c), fold(B, 0, [&](double acc, int b) { return acc + v(a, b, c); }), tol);
      double total = 0;
      for (int b = 0; b < B; ++b)
        for (int c = 0; c < C; ++c) total += v(a, b, c);
      check_close(t(a), total, tol * 4);
    }
  }
  // A reduction broadcast against its input (row statistics): evaluated once per row.
  {
    const auto centred = eval(x - reduce<"a b c -> a b 1", "mean">(x));
    for (int a = 0; a < A; ++a)
      for (int b = 0; b < B; ++b) {
        const double mean = fold(C, 0, [&](double acc, int c) { return acc + v(a, b, c); }) / C;
        for (int c = 0; c < C; ++c) check_close(centred(a, b, c), v(a, b, c) - mean, tol * 4);
      }
  }
}

}  // namespace

TEST_CASE("reductions along, across and through rows: float") { check_all<float>(1e-5); }
TEST_CASE("reductions along, across and through rows: double") { check_all<double>(1e-12); }
TEST_CASE("reductions along, across and through rows: bf16 input accumulates in float") { check_all<bf16>(1e-2); }

TEST_CASE("integer and boolean reductions") {
  tensor<std::int32_t, extents<3, 20>> i;
  for (index_t k = 0; k < i.size(); ++k) i.data()[k] = static_cast<std::int32_t>(k % 7) - 3;
  const auto s = eval(reduce<"a b -> a", "sum">(i));
  static_assert(std::is_same_v<std::remove_const_t<decltype(s)>::value_type, std::int64_t>);
  for (int a = 0; a < 3; ++a) {
    std::int64_t want = 0;
    for (int b = 0; b < 20; ++b) want += i(a, b);
    CHECK(s(a) == want);
  }
  tensor<bool, extents<3, 20>> m = i > 2;
  const auto any = eval(reduce<"a b -> b", "any">(m));
  const auto all = eval(reduce<"a b -> a", "all">(i > -4));
  for (int b = 0; b < 20; ++b) CHECK(any(b) == (m(0, b) || m(1, b) || m(2, b)));
  for (int a = 0; a < 3; ++a) CHECK(all(a));
  // NaN propagates through max, as numpy.max.
  tensor<float, extents<2, 9>> f = full<float>(extents<2, 9>{}, 1.0f);
  f(1, 4) = std::numeric_limits<float>::quiet_NaN();
  const auto mx = eval(reduce<"a b -> a", "max">(f));
  CHECK(mx(0) == 1.0f);
  CHECK(std::isnan(mx(1)));
}

namespace {

// Each output element as the CUDA kernels compute it: `step` threads each accumulate the
// positions first, first + step, … (reduce_node::accumulate_strided), and their parts combine.
template <fixed_string P>
void check_strided_parts(index_t step) {
  tensor<std::int64_t, dims<3>> x(dims<3>(5, 7, 37));
  const auto v = test::random_values<double>(static_cast<std::size_t>(x.size()), -1e6, 1e6, 4242);
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<std::int64_t>(v[static_cast<std::size_t>(i)]);
  const auto node = reduce<P, "sum">(x);
  const auto expected = eval(node);  // (the executor's own paths)
  using N = std::remove_cvref_t<decltype(node)>;
  for (index_t i = 0; i < expected.size(); ++i) {
    const auto idx = detail::unravel<N::R>(i, expected.extents());
    std::int64_t total = N::identity();
    for (index_t first = 0; first < step; ++first) {
      index_t el[pattern::max_elementary] = {};
      node.elementary(idx, el);
      total = N::combine(total, node.accumulate_strided(el, first, step));
    }
    CHECK(node.finish(total) == expected.data()[i]);
  }
}

}  // namespace

TEST_CASE("strided parts of a reduction (the CUDA kernels' split) cover each element once") {
  for (index_t step : {1, 3, 32, 256}) {
    check_strided_parts<"a b c -> a b">(step);  // the contiguous run
    check_strided_parts<"a b c -> b c">(step);  // outer axes
    check_strided_parts<"a b c -> a c">(step);  // a middle axis
    check_strided_parts<"a b c -> b">(step);    // outer and contiguous axes
    check_strided_parts<"a b c -> c b">(step);  // no contiguous run
  }
}

TEST_CASE("long reductions over outer axes into few rows are split by chunks of rows, whatever the threads") {
  // "a b c -> c" (one output row, 3·101 = 303 reduced rows: 4 chunks of 76) and "a b c -> b c"
  // (two output rows, 257 reduced rows each): the executor splits the reduction itself
  // (reduce_node::store_row_split), reading whole input rows. Every reduction, compared with loops
  // in double; one thread and four agree bit for bit (the chunks depend on the shape only).
  tensor<float, dims<3>> x(dims<3>(3, 101, 45));
  tensor<float, dims<3>> y(dims<3>(257, 2, 45));
  const auto vx = test::random_values<double>(static_cast<std::size_t>(x.size()), 0.5, 1.5, 77);
  const auto vy = test::random_values<double>(static_cast<std::size_t>(y.size()), -1.0, 1.0, 78);
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(vx[static_cast<std::size_t>(i)]);
  for (index_t i = 0; i < y.size(); ++i) y.data()[i] = static_cast<float>(vy[static_cast<std::size_t>(i)]);
  cpu_executor one(1), many(4);
  tensor<float, dims<1>> s1(dims<1>(45)), s4(dims<1>(45)), mx(dims<1>(45)), mn(dims<1>(45)), mean(dims<1>(45));
  one.assign(s1, reduce<"a b c -> c", "sum">(x));
  many.assign(s4, reduce<"a b c -> c", "sum">(x));
  many.assign(mx, reduce<"a b c -> c", "max">(x));
  many.assign(mn, reduce<"a b c -> c", "min">(x));
  many.assign(mean, reduce<"a b c -> c", "mean">(x));
  for (int c = 0; c < 45; ++c) {
    double sum = 0, hi = -1e300, lo = 1e300;
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < 101; ++b) {
        const double v = x(a, b, c);
        sum += v;
        hi = std::max(hi, v);
        lo = std::min(lo, v);
      }
    check_close(s1(c), sum, 1e-5);
    CHECK(s1(c) == s4(c));
    CHECK(mx(c) == static_cast<float>(hi));
    CHECK(mn(c) == static_cast<float>(lo));
    check_close(mean(c), sum / 303, 1e-5);
  }
  tensor<float, dims<2>> t1(dims<2>(2, 45)), t4(dims<2>(2, 45));
  one.assign(t1, reduce<"a b c -> b c", "sum">(y));
  many.assign(t4, reduce<"a b c -> b c", "sum">(y));
  for (int b = 0; b < 2; ++b)
    for (int c = 0; c < 45; ++c) {
      double sum = 0;
      for (int a = 0; a < 257; ++a) sum += y(a, b, c);
      check_close(t1(b, c), sum, 1e-5);
      CHECK(t1(b, c) == t4(b, c));
    }
  // bf16 input: sums in float, as the other paths.
  const tensor<bf16, dims<3>> xb = tensor<bf16, dims<3>>(cast<bf16>(x));
  tensor<bf16, dims<1>> sb(dims<1>(45));
  many.assign(sb, reduce<"a b c -> c", "sum">(xb));
  for (int c = 0; c < 45; ++c) {
    double sum = 0;
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < 101; ++b) sum += convert<double>(xb(a, b, c));
    check_close(sb(c), sum, 1e-2);
  }
  // A cast to the stored type is the store's own conversion: it forwards the split (the bias
  // gradients of nn take this path), with the same bits; a cast to another compute type does not.
  const auto serial = [](index_t units, auto&& f) {
    for (index_t u = 0; u < units; ++u) f(u);
  };
  tensor<float, dims<1>> sc(dims<1>(45));
  CHECK(cast<float>(reduce<"a b c -> c", "sum">(x)).store_row_split(index_array<1>{}, 45, sc.data(), serial));
  many.assign(sc, cast<float>(reduce<"a b c -> c", "sum">(x)));
  tensor<double, dims<1>> sd(dims<1>(45));
  CHECK_FALSE(cast<double>(reduce<"a b c -> c", "sum">(x)).store_row_split(index_array<1>{}, 45, sd.data(), serial));
  tensor<bf16, dims<1>> sbc(dims<1>(45));
  many.assign(sbc, cast<bf16>(reduce<"a b c -> c", "sum">(xb)));
  for (int c = 0; c < 45; ++c) {
    CHECK(sc(c) == s4(c));
    CHECK(convert<float>(sbc(c)) == convert<float>(sb(c)));
  }
}
