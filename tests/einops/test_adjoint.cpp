// Tests of einlm/einops/adjoint.hpp and einlm/linalg/einsum_adjoint.hpp: every adjoint's
// vector-Jacobian product against central finite differences in double, on random inputs, of
// L(x) = sum(dy * f(x)); max/min ties (split evenly, as torch.amax) checked exactly; dy of the wrong
// shape refused at run time (static shapes: tests/compile_fail/adjoint_static_checks.cpp).
//
// Tolerances: every function here is linear in each single input element (rearrange, repeat, sum,
// mean, einsum in one input, prod), or piecewise linear with no kink within the step (max, min on
// distinct random values), so the central difference is exact but for rounding: |L|·ε/h.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "einlm/einops.hpp"
#include "support/check.hpp"

using namespace einlm;

namespace {

/// Fills a tensor with uniform values in [lo, hi) from a seeded independent generator.
template <class T, class E>
void fill_random(tensor<T, E>& t, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  const auto v = test::random_values<double>(static_cast<std::size_t>(t.size()), lo, hi, seed);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(v[static_cast<std::size_t>(i)]);
}

template <class T, class E>
tensor<T, E> random_tensor(const E& e, std::uint64_t seed) {
  tensor<T, E> t(e);
  fill_random(t, seed);
  return t;
}

/// L = sum(dy * f(x)), f's result evaluated.
template <class F, class X, class Dy>
double loss(const F& f, const X& x, const Dy& dy) {
  const auto y = eval(f(x));
  REQUIRE(y.size() == dy.size());
  double sum = 0;
  for (index_t i = 0; i < y.size(); ++i) sum += static_cast<double>(y.data()[i]) * static_cast<double>(dy.data()[i]);
  return sum;
}

/// The largest difference, relative to 1 + |L|, between the adjoint's dx and the central finite
/// differences of L at the elements of x (step h).
template <class F, class X, class Dy, class Dx>
double worst_vjp_error(const F& f, X& x, const Dy& dy, const Dx& dx_lazy, double h) {
  const auto dx = eval(dx_lazy);  // before x changes: dx may read it
  REQUIRE(dx.size() == x.size());
  for (std::size_t d = 0; d != X::extents_type::rank(); ++d) REQUIRE(dx.extents().extent(d) == x.extents().extent(d));
  const double scale = 1.0 + std::abs(loss(f, x, dy));
  double worst = 0;
  for (index_t i = 0; i < x.size(); ++i) {
    const double saved = x.data()[i];
    x.data()[i] = saved + h;
    const double up = loss(f, x, dy);
    x.data()[i] = saved - h;
    const double down = loss(f, x, dy);
    x.data()[i] = saved;
    const double numeric = (up - down) / (2 * h);
    worst = std::max(worst, std::abs(numeric - static_cast<double>(dx.data()[i])) / scale);
  }
  return worst;
}

/// The largest relative error seen by check_vjp (reported by the last test case).
double largest_error_seen = 0;

/// Checks the adjoint's dx against central finite differences with tolerance tol·(1 + |L|).
template <class F, class X, class Dy, class Dx>
void check_vjp(const F& f, X& x, const Dy& dy, const Dx& dx_lazy, double h, double tol) {
  const double worst = worst_vjp_error(f, x, dy, dx_lazy, h);
  largest_error_seen = std::max(largest_error_seen, worst);
  CHECK(worst <= tol);
}

// Steps and tolerances: h = 1e-3 for functions linear in every element (rounding |L|·1e-16/1e-3),
// h = 1e-6 for max and min (no kink within the step on random inputs).
constexpr double linear_step = 1e-3, linear_tol = 1e-10;
constexpr double kink_step = 1e-6, kink_tol = 1e-8;

/// The finite-difference check of one einops operation: forward f over x (random), dy random.
template <class F, class Adjoint, class X>
void check_einops(const F& f, const Adjoint& adjoint, X& x, std::uint64_t seed, double h = linear_step, double tol = linear_tol) {
  const auto y = eval(f(x));
  auto dy = random_tensor<double>(y.extents(), seed);
  check_vjp(f, x, dy, adjoint(dy, x), h, tol);
}

}  // namespace

TEST_CASE("rearrange_adjoint: permutations, splits, merges, unit axes, ellipsis") {
  SUBCASE("split and permute") {
    auto x = random_tensor<double>(extents<2, 3, 8>{}, 1);  // (B, S, H·D)
    // [snippet rearrange]
    auto f = [](const auto& x) { return rearrange<"b s (h d) -> b h s d">(x, axis<"h", 2>{}); };  // (B, H, S, D)
    auto adjoint = [](const auto& dy, const auto& x) {
      return rearrange_adjoint<"b s (h d) -> b h s d">(dy, x, axis<"h", 2>{});  // (B, S, H·D)
    };
    // [end snippet]
    check_einops(f, adjoint, x, 2);
  }
  SUBCASE("merge of non-adjacent axes") {
    auto x = random_tensor<double>(extents<2, 3, 4>{}, 3);
    check_einops([](const auto& x) { return rearrange<"a b c -> (c a) b">(x); },
                 [](const auto& dy, const auto& x) { return rearrange_adjoint<"a b c -> (c a) b">(dy, x); }, x, 4);
  }
  SUBCASE("a reshape (a view of dy)") {
    auto x = random_tensor<double>(extents<2, 3, 4>{}, 5);
    auto dy = random_tensor<double>(extents<6, 4>{}, 6);
    auto dx = rearrange_adjoint<"a b c -> (a b) c">(dy, x);
    static_assert(view_like<decltype(dx)>);
    CHECK(dx.data() == dy.data());
    check_vjp([](const auto& x) { return rearrange<"a b c -> (a b) c">(x); }, x, dy, dx, linear_step, linear_tol);
  }
  SUBCASE("split with two given sizes, dynamic extents") {
    auto x = random_tensor<double>(dims<2>(6, 5), 7);
    check_einops([](const auto& x) { return rearrange<"(a b) c -> c (b a)">(x, axis_size<"a">{2}); },
                 [](const auto& dy, const auto& x) { return rearrange_adjoint<"(a b) c -> c (b a)">(dy, x, axis_size<"a">{2}); },
                 x, 8);
  }
  SUBCASE("unit axes") {
    auto x = random_tensor<double>(extents<3, 1, 4>{}, 9);
    check_einops([](const auto& x) { return rearrange<"a 1 c -> c () a">(x); },
                 [](const auto& dy, const auto& x) { return rearrange_adjoint<"a 1 c -> c () a">(dy, x); }, x, 10);
  }
  SUBCASE("ellipsis moved and merged") {
    auto x = random_tensor<double>(extents<2, 3, 2, 5>{}, 11);
    check_einops([](const auto& x) { return rearrange<"b ... c -> c (b ...)">(x); },
                 [](const auto& dy, const auto& x) { return rearrange_adjoint<"b ... c -> c (b ...)">(dy, x); }, x, 12);
    check_einops([](const auto& x) { return rearrange<"... c -> c ...">(x); },
                 [](const auto& dy, const auto& x) { return rearrange_adjoint<"... c -> c ...">(dy, x); }, x, 13);
  }
  SUBCASE("dy a lazy expression, x given by its extents") {
    auto x = random_tensor<double>(extents<4, 5>{}, 14);
    auto dy = random_tensor<double>(extents<5, 4>{}, 15);
    auto dx = eval(rearrange_adjoint<"a b -> b a">(dy * 2.0, x.extents()));  // (A, B)
    for (index_t a = 0; a < 4; ++a)
      for (index_t b = 0; b < 5; ++b) CHECK(dx(a, b) == 2.0 * dy(b, a));
  }
}

TEST_CASE("repeat_adjoint: new axes, tile and repeat placement, ellipsis") {
  auto x = random_tensor<double>(extents<3, 4>{}, 20);  // (A, B)
  SUBCASE("a new axis") {
    check_einops([](const auto& x) { return repeat<"a b -> a b r">(x, axis<"r", 3>{}); },
                 [](const auto& dy, const auto& x) { return repeat_adjoint<"a b -> a b r">(dy, x, axis<"r", 3>{}); }, x, 21);
  }
  SUBCASE("tile (the copy index outer)") {
    // [snippet repeat]
    auto f = [](const auto& x) { return repeat<"a b -> a (r b)">(x, axis<"r", 2>{}); };  // (A, R·B)
    auto adjoint = [](const auto& dy, const auto& x) {
      return repeat_adjoint<"a b -> a (r b)">(dy, x, axis<"r", 2>{});  // (A, B): dy summed over r
    };
    // [end snippet]
    check_einops(f, adjoint, x, 22);
  }
  SUBCASE("repeat (the copy index inner), permuted") {
    check_einops([](const auto& x) { return repeat<"a b -> (b r) a">(x, axis<"r", 3>{}); },
                 [](const auto& dy, const auto& x) { return repeat_adjoint<"a b -> (b r) a">(dy, x, axis<"r", 3>{}); }, x, 23);
  }
  SUBCASE("several new axes, dynamic sizes") {
    auto xd = random_tensor<double>(dims<2>(3, 4), 24);
    check_einops([](const auto& x) { return repeat<"a b -> r a s b">(x, axis_size<"r">{2}, axis_size<"s">{3}); },
                 [](const auto& dy, const auto& x) { return repeat_adjoint<"a b -> r a s b">(dy, x, axis_size<"r">{2}, axis_size<"s">{3}); },
                 xd, 25);
  }
  SUBCASE("anonymous axes") {
    check_einops([](const auto& x) { return repeat<"a b -> a b 2">(x); },
                 [](const auto& dy, const auto& x) { return repeat_adjoint<"a b -> a b 2">(dy, x); }, x, 29);
    check_einops([](const auto& x) { return repeat<"a b -> (a 3) b">(x); },
                 [](const auto& dy, const auto& x) { return repeat_adjoint<"a b -> (a 3) b">(dy, x); }, x, 19);
  }
  SUBCASE("no new axis (a rearrange)") {
    check_einops([](const auto& x) { return repeat<"a b -> b a">(x); },
                 [](const auto& dy, const auto& x) { return repeat_adjoint<"a b -> b a">(dy, x); }, x, 26);
  }
  SUBCASE("ellipsis") {
    auto x3 = random_tensor<double>(extents<2, 3, 2>{}, 27);
    check_einops([](const auto& x) { return repeat<"... c -> (r ...) c">(x, axis<"r", 2>{}); },
                 [](const auto& dy, const auto& x) { return repeat_adjoint<"... c -> (r ...) c">(dy, x, axis<"r", 2>{}); }, x3, 28);
  }
}

namespace {

/// The finite-difference check of reduce<P, Op> for a given x (sum, mean, prod: linear in every
/// element; max, min: no kink within kink_step).
template <fixed_string P, fixed_string Op, class X, class... A>
void check_reduce(X& x, std::uint64_t seed, const A&... axes) {
  constexpr bool kinked = Op.view() == "max" || Op.view() == "min";
  check_einops([&](const auto& v) { return reduce<P, Op>(v, axes...); },
               [&](const auto& dy, const auto& v) { return reduce_adjoint<P, Op>(dy, v, axes...); }, x, seed,
               kinked ? kink_step : linear_step, kinked ? kink_tol : linear_tol);
}

template <fixed_string P, class X, class... A>
void check_every_reduction(X& x, std::uint64_t seed, const A&... axes) {
  SUBCASE("sum") { check_reduce<P, "sum">(x, seed, axes...); }
  SUBCASE("mean") { check_reduce<P, "mean">(x, seed, axes...); }
  SUBCASE("max") { check_reduce<P, "max">(x, seed, axes...); }
  SUBCASE("min") { check_reduce<P, "min">(x, seed, axes...); }
  SUBCASE("prod") { check_reduce<P, "prod">(x, seed, axes...); }
}

}  // namespace

TEST_CASE("reduce_adjoint: each reduction over one, several and all axes") {
  SUBCASE("one axis") {
    auto x = random_tensor<double>(extents<3, 4, 5>{}, 30);
    check_every_reduction<"a b c -> a c">(x, 31);
  }
  SUBCASE("several axes, the rest permuted") {
    auto x = random_tensor<double>(extents<2, 3, 2, 4>{}, 32);
    check_every_reduction<"a b c d -> d b">(x, 33);
  }
  SUBCASE("every axis") {
    auto x = random_tensor<double>(extents<3, 4>{}, 34);
    check_every_reduction<"a b ->">(x, 35);
  }
  SUBCASE("pooling (a split axis reduced), dynamic extents") {
    auto x = random_tensor<double>(dims<2>(6, 4), 36);
    check_every_reduction<"(a g) b -> a b">(x, 37, axis_size<"g">{3});
  }
  SUBCASE("ellipsis kept, unit axis added") {
    auto x = random_tensor<double>(extents<2, 3, 4>{}, 38);
    check_every_reduction<"... c -> ... ()">(x, 39);
  }
  SUBCASE("ellipsis reduced") {
    auto x = random_tensor<double>(extents<2, 3, 4>{}, 40);
    check_every_reduction<"b ... -> b">(x, 41);
  }
}

TEST_CASE("reduce_adjoint: prod with zeros") {
  // The product is linear in each element even at zeros: the finite differences still apply.
  auto x = random_tensor<double>(extents<3, 4>{}, 42);
  x(0, 1) = 0.0;                // one zero in row 0: only it has a gradient
  x(1, 0) = x(1, 3) = 0.0;      // two zeros in row 1: no gradient at all
  check_reduce<"a b -> a", "prod">(x, 43);
  tensor<double, extents<3>> dy;
  dy = 1.0;
  const auto dx = eval(reduce_adjoint<"a b -> a", "prod">(dy, x));
  CHECK(dx(0, 1) == doctest::Approx(x(0, 0) * x(0, 2) * x(0, 3)));
  CHECK(dx(0, 0) == 0.0);
  for (index_t b = 0; b < 4; ++b) CHECK(dx(1, b) == 0.0);
}

TEST_CASE("reduce_adjoint: max and min split dy evenly among ties") {
  // [snippet ties]
  tensor<double, extents<2, 4>> x;  // (A, B)
  x(0, 0) = 1, x(0, 1) = 3, x(0, 2) = 3, x(0, 3) = 3;  // max 3 three times
  x(1, 0) = 2, x(1, 1) = 5, x(1, 2) = 2, x(1, 3) = 4;  // max 5 once, min 2 twice
  tensor<double, extents<2>> dy;  // (A)
  dy(0) = 6, dy(1) = 10;
  const auto y = eval(reduce<"a b -> a", "max">(x));                    // (A)
  const auto dx = reduce_adjoint<"a b -> a", "max">(dy, x, y);          // (A, B), a tensor
  CHECK(dx(0, 0) == 0); CHECK(dx(0, 1) == 2); CHECK(dx(0, 2) == 2); CHECK(dx(0, 3) == 2);
  CHECK(dx(1, 0) == 0); CHECK(dx(1, 1) == 10); CHECK(dx(1, 2) == 0); CHECK(dx(1, 3) == 0);
  // [end snippet]
  const auto dmin = reduce_adjoint<"a b -> a", "min">(dy, x);  // y computed inside
  CHECK(dmin(0, 0) == 6); CHECK(dmin(0, 1) == 0); CHECK(dmin(0, 2) == 0); CHECK(dmin(0, 3) == 0);
  CHECK(dmin(1, 0) == 5); CHECK(dmin(1, 1) == 0); CHECK(dmin(1, 2) == 5); CHECK(dmin(1, 3) == 0);
  // Ties over several reduced axes: dy shared by all four equal maxima.
  tensor<double, extents<2, 2, 3>> t;
  t = 7.0;
  t(0, 1, 2) = 1.0, t(1, 0, 0) = -3.0;
  tensor<double, extents<3>> dt;
  dt(0) = 8, dt(1) = 4, dt(2) = 12;
  const auto dtx = reduce_adjoint<"a b c -> c", "max">(dt, t);
  CHECK(dtx(0, 0, 0) == 8.0 / 3); CHECK(dtx(1, 0, 0) == 0); CHECK(dtx(0, 1, 0) == 8.0 / 3);
  CHECK(dtx(0, 0, 2) == 4); CHECK(dtx(0, 1, 2) == 0); CHECK(dtx(1, 1, 2) == 4);
}

TEST_CASE("reduce_adjoint: sum and mean are lazy, mean divides by the number reduced") {
  auto x = random_tensor<double>(extents<2, 3, 4>{}, 50);
  auto dy = random_tensor<double>(extents<2, 4>{}, 51);
  // [snippet mean]
  auto dx = reduce_adjoint<"b s d -> b d", "mean">(dy, x.extents());  // (B, S, D), lazy
  const auto g = eval(dx);
  CHECK(g(1, 2, 3) == doctest::Approx(dy(1, 3) / 3));
  // [end snippet]
  static_assert(!array_like<decltype(dx)>);
  for (index_t b = 0; b < 2; ++b)
    for (index_t s = 0; s < 3; ++s)
      for (index_t d = 0; d < 4; ++d) CHECK(g(b, s, d) == dy(b, d) / 3);
}

TEST_CASE("einops adjoints: dy of the wrong shape is a shape_error naming both shapes") {
  auto x = random_tensor<double>(dims<3>(2, 3, 4), 60);
  tensor<double, dims<2>> dy(dims<2>(2, 3));
  dy = 1.0;
  CHECK_THROWS_WITH_AS(rearrange_adjoint<"a b c -> a (b c)">(dy, x),
                       "rearrange_adjoint<\"a b c -> a (b c)\">: dy has shape (2, 3) but the forward output has shape (2, 12)",
                       shape_error);
  CHECK_THROWS_WITH_AS((reduce_adjoint<"a b c -> a c", "sum">(dy, x)),
                       doctest::Contains("dy has shape (2, 3) but the forward output has shape (2, 4)"), shape_error);
  tensor<double, dims<4>> dy4(dims<4>(2, 3, 4, 3));
  dy4 = 1.0;
  CHECK_THROWS_WITH_AS(repeat_adjoint<"a b c -> a b c r">(dy4, x, axis_size<"r">{2}),
                       doctest::Contains("dy has shape (2, 3, 4, 3) but the forward output has shape (2, 3, 4, 2)"), shape_error);
  tensor<double, dims<2>> good(dims<2>(2, 4)), y_wrong(dims<2>(2, 5));
  good = 1.0, y_wrong = 1.0;
  CHECK_THROWS_WITH_AS((reduce_adjoint<"a b c -> a c", "max">(good, x, y_wrong)),
                       doctest::Contains("y has shape (2, 5) but the forward output has shape (2, 4)"), shape_error);
  // The forward's own errors stay einops' messages.
  CHECK_THROWS_AS(rearrange_adjoint<"a (b c) d -> a b c d">(dy4, x, axis_size<"b">{2}), pattern_error);
}

// ------------------------------------------------------------------------------------ einsum

namespace {

/// The finite-difference check of the adjoint of einsum<P> with respect to input K, for inputs xs
/// (random; input K is perturbed in place).
template <fixed_string P, int K, class... X>
void check_einsum(std::uint64_t seed, X&... xs) {
  auto inputs = std::tie(xs...);
  auto& x = std::get<K>(inputs);
  auto f = [&](const auto&) { return einsum<P>(xs...); };  // reads x through the reference
  const auto y = eval(einsum<P>(xs...));
  auto dy = random_tensor<double>(y.extents(), seed);
  const auto dx = einsum_adjoint<P, K>(dy, xs...);
  check_vjp(f, x, dy, dx, linear_step, linear_tol);
}

}  // namespace

TEST_CASE("einsum_adjoint: matmul, batched matmul, attention scores (GEMM contractions)") {
  SUBCASE("matmul") {
    auto a = random_tensor<double>(extents<3, 4>{}, 70);
    auto b = random_tensor<double>(extents<4, 5>{}, 71);
    check_einsum<"i j, j k -> i k", 0>(72, a, b);
    check_einsum<"i j, j k -> i k", 1>(73, a, b);
  }
  SUBCASE("batched matmul") {
    auto a = random_tensor<double>(extents<2, 3, 4>{}, 74);
    auto b = random_tensor<double>(extents<2, 4, 5>{}, 75);
    auto dy = random_tensor<double>(extents<2, 3, 5>{}, 76);
    // [snippet matmul]
    auto da = einsum_adjoint<"b i j, b j k -> b i k", 0>(dy, a, b);  // (B, I, J): einsum "b i k, b j k -> b i j"
    auto db = einsum_adjoint<"b i j, b j k -> b i k", 1>(dy, a, b);  // (B, J, K): einsum "b i k, b i j -> b j k"
    // [end snippet]
    static_assert(tensor_like<decltype(da)> && tensor_like<decltype(db)>);  // GEMM results
    check_einsum<"b i j, b j k -> b i k", 0>(76, a, b);
    check_einsum<"b i j, b j k -> b i k", 1>(76, a, b);
    // The GEMM's options pass through: einlm's own kernel on one thread gives the same values.
    gemm_options own_kernel;
    own_kernel.backend = gemm_backend::own;
    own_kernel.threads = 1;
    const auto da_one = einsum_adjoint<"b i j, b j k -> b i k", 0>(own_kernel, dy, a, b);  // (B, I, J)
    for (index_t i = 0; i < da.size(); ++i) CHECK(da_one.data()[i] == doctest::Approx(da.data()[i]).epsilon(1e-12));
  }
  SUBCASE("attention scores, dynamic extents") {
    auto q = random_tensor<double>(dims<4>(2, 2, 3, 4), 77);
    auto k = random_tensor<double>(dims<4>(2, 2, 5, 4), 78);
    check_einsum<"b h i d, b h j d -> b h i j", 0>(79, q, k);
    check_einsum<"b h i d, b h j d -> b h i j", 1>(80, q, k);
  }
}

TEST_CASE("einsum_adjoint: outer product, dot, multi-input chains") {
  SUBCASE("outer product") {
    auto u = random_tensor<double>(extents<3>{}, 81);
    auto v = random_tensor<double>(extents<4>{}, 82);
    check_einsum<"i, j -> i j", 0>(83, u, v);
    check_einsum<"i, j -> i j", 1>(84, u, v);
  }
  SUBCASE("dot product (a scalar dy)") {
    auto u = random_tensor<double>(extents<5>{}, 85);
    auto v = random_tensor<double>(extents<5>{}, 86);
    check_einsum<"i, i ->", 0>(87, u, v);
    check_einsum<"i, i ->", 1>(88, u, v);
  }
  SUBCASE("three inputs") {
    auto a = random_tensor<double>(extents<2, 3>{}, 89);
    auto b = random_tensor<double>(extents<3, 4>{}, 90);
    auto c = random_tensor<double>(extents<4, 2>{}, 91);
    check_einsum<"i j, j k, k l -> i l", 0>(92, a, b, c);
    check_einsum<"i j, j k, k l -> i l", 1>(93, a, b, c);
    check_einsum<"i j, j k, k l -> i l", 2>(94, a, b, c);
    // A scalar output of three inputs: dy multiplies the other two's einsum.
    check_einsum<"i j, j k, k i ->", 1>(95, a, b, c);
  }
  SUBCASE("a permuted output and a name summed in two inputs") {
    auto a = random_tensor<double>(extents<2, 3, 4>{}, 96);
    auto b = random_tensor<double>(extents<4, 3>{}, 97);
    check_einsum<"x y z, z y -> x", 0>(98, a, b);
    check_einsum<"x y z, z y -> x", 1>(99, a, b);
  }
}

TEST_CASE("einsum_adjoint: trace, diagonal and names summed in one input only (broadcasts)") {
  auto m = random_tensor<double>(extents<4, 4>{}, 100);
  SUBCASE("trace") {
    // [snippet trace]
    tensor<double, extents<>> dy;  // the gradient of a scalar
    dy() = 2.5;
    const auto dm = einsum_adjoint<"i i ->", 0>(dy, m);  // (I, I), a tensor: dy on the diagonal
    CHECK(dm(1, 1) == 2.5);
    CHECK(dm(1, 2) == 0.0);
    // [end snippet]
    check_einsum<"i i ->", 0>(101, m);
  }
  SUBCASE("diagonal") { check_einsum<"i i -> i", 0>(102, m); }
  SUBCASE("sum over one axis: a broadcast") {
    auto x = random_tensor<double>(extents<3, 5>{}, 103);
    check_einsum<"i j -> i", 0>(104, x);
    check_einsum<"i j ->", 0>(105, x);
  }
  SUBCASE("a diagonal times a vector") {
    auto v = random_tensor<double>(extents<4>{}, 106);
    check_einsum<"i i, i -> i", 0>(107, m, v);
    check_einsum<"i i, i -> i", 1>(108, m, v);
  }
  SUBCASE("a name only in one of two inputs, summed") {
    auto a = random_tensor<double>(extents<3, 4>{}, 109);
    auto b = random_tensor<double>(extents<4>{}, 110);
    check_einsum<"i j, k -> i", 0>(111, a, b);
    check_einsum<"i j, k -> i", 1>(112, a, b);
  }
}

TEST_CASE("einsum_adjoint: ellipsis, broadcast ellipsis parts") {
  SUBCASE("batched matmul over an ellipsis") {
    auto a = random_tensor<double>(extents<2, 2, 3, 4>{}, 120);
    auto b = random_tensor<double>(extents<2, 2, 4, 3>{}, 121);
    check_einsum<"... i j, ... j k -> ... i k", 0>(122, a, b);
    check_einsum<"... i j, ... j k -> ... i k", 1>(123, a, b);
  }
  SUBCASE("an input whose ellipsis covers fewer dimensions") {
    auto a = random_tensor<double>(extents<2, 3, 4>{}, 124);  // ellipsis (2, 3)
    auto b = random_tensor<double>(extents<3, 4>{}, 125);     // ellipsis (3): broadcast over 2
    check_einsum<"... d, ... d -> ...", 0>(126, a, b);
    check_einsum<"... d, ... d -> ...", 1>(127, a, b);
  }
  SUBCASE("ellipsis in the middle") {
    auto a = random_tensor<double>(extents<2, 3, 2, 4>{}, 128);
    auto w = random_tensor<double>(extents<4, 5>{}, 129);
    check_einsum<"b ... d, d e -> b ... e", 0>(130, a, w);
    check_einsum<"b ... d, d e -> b ... e", 1>(131, a, w);
  }
}

TEST_CASE("einsum_adjoint: length-1 axes broadcast against longer ones (summed, kept with length 1)") {
  SUBCASE("attention scores with a query shared by the batch, static extents") {
    auto q = random_tensor<double>(extents<1, 3, 4>{}, 160);  // (1, I, D): b broadcasts against k's 2
    auto k = random_tensor<double>(extents<2, 5, 4>{}, 161);  // (B, J, D)
    check_einsum<"b i d, b j d -> b i j", 0>(162, q, k);
    check_einsum<"b i d, b j d -> b i j", 1>(163, q, k);
    auto dy = random_tensor<double>(extents<2, 3, 5>{}, 164);
    const auto dq = einsum_adjoint<"b i d, b j d -> b i j", 0>(dy, q, k);
    static_assert(std::is_same_v<std::remove_cvref_t<decltype(dq)>, tensor<double, extents<1, 3, 4>>>);
  }
  SUBCASE("the same with run-time extents") {
    auto q = random_tensor<double>(dims<3>(1, 3, 4), 165);
    auto k = random_tensor<double>(dims<3>(2, 5, 4), 166);
    check_einsum<"b i d, b j d -> b i j", 0>(167, q, k);
    check_einsum<"b i d, b j d -> b i j", 1>(168, q, k);
    // Nothing broadcasts: the same code gives the plain gradient.
    auto q2 = random_tensor<double>(dims<3>(2, 3, 4), 169);
    check_einsum<"b i d, b j d -> b i j", 0>(170, q2, k);
  }
  SUBCASE("a row broadcast over the rows of a matrix, static and run-time extents") {
    // [snippet broadcast_of_one]
    auto row = random_tensor<double>(extents<1, 4>{}, 171);  // (1, J)
    auto m = random_tensor<double>(extents<3, 4>{}, 173);    // (I, J)
    auto dy = random_tensor<double>(extents<3, 4>{}, 174);   // (I, J)
    // einsum<"i j, i j -> i j">(row, m) has shape (3, 4): row's i broadcasts against m's.
    const auto drow = einsum_adjoint<"i j, i j -> i j", 0>(dy, row, m);  // (1, J): the sum over i
    CHECK(drow(0, 2) == doctest::Approx(dy(0, 2) * m(0, 2) + dy(1, 2) * m(1, 2) + dy(2, 2) * m(2, 2)));
    // [end snippet]
    auto v = random_tensor<double>(extents<4>{}, 172);  // (J)
    check_einsum<"i j, i j -> i j", 0>(175, row, m);
    check_einsum<"i j, i j -> i j", 1>(176, row, m);
    check_einsum<"i j, j -> i j", 0>(177, row, v);
    auto row_d = random_tensor<double>(dims<2>(1, 4), 178);
    auto m_d = random_tensor<double>(dims<2>(3, 4), 179);
    auto v_d = random_tensor<double>(dims<1>(4), 180);
    check_einsum<"i j, i j -> i j", 0>(181, row_d, m_d);
    check_einsum<"i j, j -> i j", 0>(182, row_d, v_d);
    check_einsum<"i j, i j -> i j", 0>(183, row, m_d);  // a static 1 against a run-time 3
  }
  SUBCASE("both inputs broadcast, on different axes") {
    auto col = random_tensor<double>(extents<3, 1>{}, 184);  // (I, 1)
    auto row = random_tensor<double>(dims<2>(1, 4), 185);    // (1, J)
    check_einsum<"i j, i j -> i j", 0>(186, col, row);
    check_einsum<"i j, i j -> i j", 1>(187, col, row);
    auto both = random_tensor<double>(dims<2>(1, 1), 188);   // (1, 1) against (3, 4)
    auto m = random_tensor<double>(dims<2>(3, 4), 189);
    check_einsum<"i j, i j -> i", 0>(190, both, m);
  }
  SUBCASE("a broadcast with a name summed in K only and a diagonal") {
    auto a = random_tensor<double>(extents<1, 3, 5>{}, 191);  // (1, J, K): k summed in a only
    auto b = random_tensor<double>(extents<2, 3>{}, 192);     // (I, J)
    check_einsum<"i j k, i j -> j", 0>(193, a, b);
    auto d = random_tensor<double>(extents<1, 3, 3>{}, 194);  // (1, J, J): a diagonal
    check_einsum<"i j j, i j -> i j", 0>(195, d, b);
  }
  SUBCASE("ellipsis dimensions of length 1") {
    auto a = random_tensor<double>(extents<2, 1, 3, 4>{}, 196);  // ellipsis (2, 1)
    auto b = random_tensor<double>(extents<5, 4, 3>{}, 197);     // ellipsis (5): (2, 1) against (5) is (2, 5)
    check_einsum<"... i j, ... j k -> ... i k", 0>(198, a, b);
    check_einsum<"... i j, ... j k -> ... i k", 1>(199, a, b);
    auto a_d = random_tensor<double>(dims<4>(2, 1, 3, 4), 200);
    check_einsum<"... i j, ... j k -> ... i k", 0>(201, a_d, b);
  }
}

TEST_CASE("einsum_adjoint: dy of the wrong shape is a shape_error") {
  auto a = random_tensor<double>(dims<2>(3, 4), 140);
  auto b = random_tensor<double>(dims<2>(4, 5), 141);
  tensor<double, dims<2>> dy(dims<2>(3, 6));
  dy = 1.0;
  CHECK_THROWS_WITH_AS((einsum_adjoint<"i j, j k -> i k", 0>(dy, a, b)),
                       "einsum_adjoint<\"i j, j k -> i k\", 0>: dy has shape (3, 6) but the forward output has shape (3, 5)",
                       shape_error);
  tensor<double, dims<2>> dy2(dims<2>(3, 5));
  dy2 = 1.0;
  // The forward's own shape errors are einsum's.
  CHECK_THROWS_AS((einsum_adjoint<"i j, i k -> i k", 0>(dy2, a, b)), shape_error);
}

TEST_CASE("the finite-difference check detects a wrong adjoint") {
  auto x = random_tensor<double>(extents<3, 4>{}, 150);
  auto dy = random_tensor<double>(extents<3>{}, 151);
  auto sum = [](const auto& v) { return reduce<"a b -> a", "sum">(v); };
  // The mean's adjoint is a quarter of the sum's: far outside the tolerance.
  CHECK(worst_vjp_error(sum, x, dy, reduce_adjoint<"a b -> a", "mean">(dy, x), linear_step) > 1e-3);
  CHECK(worst_vjp_error(sum, x, dy, reduce_adjoint<"a b -> a", "sum">(dy, x), linear_step) <= linear_tol);
  // A transposed gradient of a matmul.
  auto a = random_tensor<double>(extents<3, 3>{}, 152);
  auto b = random_tensor<double>(extents<3, 3>{}, 153);
  auto dm = random_tensor<double>(extents<3, 3>{}, 154);
  auto matmul = [&](const auto& v) { return einsum<"i j, j k -> i k">(v, b); };
  const auto da = einsum_adjoint<"i j, j k -> i k", 0>(dm, a, b);  // (I, J)
  const auto transposed = eval(rearrange<"i j -> j i">(da));
  CHECK(worst_vjp_error(matmul, a, dm, transposed, linear_step) > 1e-3);
  MESSAGE("largest finite-difference error relative to 1 + |L| over every check: ", largest_error_seen);
}
