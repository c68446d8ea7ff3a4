// Tests of einlm/expr/elementwise.hpp through the CPU executor: every operation against <cmath>
// in double on random data, for float, double, bf16 and fp16 tensors (16-bit results within one
// unit of their own rounding), broadcasting and its errors, type promotion, and the one-pass
// guarantee.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "einlm/expr.hpp"
#include "support/check.hpp"

using namespace einlm;
using test::ulp_distance;

namespace {

template <class T>
void fill_from(tensor<T, dims<2>>& t, const std::vector<double>& v) {
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = convert<T>(v[static_cast<std::size_t>(i)]);
}

// Distance in units of T's last place between a computed T and the exact value r.
template <class T>
double units_off(T got, double r) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    return static_cast<double>(ulp_distance(got, static_cast<T>(r)));
  } else {
    // 16-bit types: compare the bit patterns of the two nearest values.
    const T want = convert<T>(r);
    const float a = convert<float>(got), b = convert<float>(want);
    if (std::isnan(a) && std::isnan(b)) return 0;
    if (a == b) return 0;
    const auto ba = detail::bits_of(got), bb = detail::bits_of(want);
    const int sa = (ba & 0x8000) ? -(ba & 0x7fff) : (ba & 0x7fff), sb = (bb & 0x8000) ? -(bb & 0x7fff) : (bb & 0x7fff);
    return std::abs(sa - sb);
  }
}

// Double results of the GELU forms are computed in double without extra precision; their
// conditioning (≈ x² for the erf form) shows in the last bits.
struct unary_case {
  const char* name;
  double lo, hi;
  std::function<double(double)> ref;
  double float_units;   // allowed error for float results; 16-bit types allow 1
  double double_units;  // allowed error for double results
};

template <class T, class F>
void check_unary(const unary_case& c, F build) {
  // 7 × 13 elements: not a multiple of the packet width, so the scalar tail runs too.
  tensor<T, dims<2>> x(dims<2>(7, 13));
  const auto values = test::random_values<double>(static_cast<std::size_t>(x.size()), c.lo, c.hi, 77);
  fill_from(x, values);
  auto e = build(x);
  using R = typename decltype(e)::value_type;
  tensor<R, dims<2>> y = e;
  double worst = 0;
  for (index_t i = 0; i < x.size(); ++i) {
    const double in = convert<double>(x.data()[i]);
    worst = std::max(worst, units_off(y.data()[i], c.ref(in)));
  }
  const double allowed = is_half_v<T> ? 1.0 : (std::is_same_v<T, double> ? c.double_units : c.float_units);
  INFO(std::string(c.name), " on ", std::string(dtype_traits<T>::name), ": worst ", worst);
  CHECK(worst <= allowed);
}

template <class T>
void check_all_unary() {
  const double pi = 3.14159265358979323846;
  const unary_case cases[] = {
      {"exp", -20, 10, [](double x) { return std::exp(x); }, 2, 2},
      {"log", 1e-3, 1e3, [](double x) { return std::log(x); }, 2, 2},
      {"sqrt", 0, 100, [](double x) { return std::sqrt(x); }, 0, 0},
      {"rsqrt", 1e-3, 100, [](double x) { return 1 / std::sqrt(x); }, 1, 1},
      {"tanh", -6, 6, [](double x) { return std::tanh(x); }, 2, 2},
      {"sigmoid", -20, 20, [](double x) { return 1 / (1 + std::exp(-x)); }, 3, 3},
      {"silu", -20, 20, [](double x) { return x / (1 + std::exp(-x)); }, 3, 3},
      {"gelu", -6, 6, [](double x) { return 0.5 * x * std::erfc(-x / std::sqrt(2.0)); }, 7, 64},
      {"gelu_tanh", -6, 6, [pi](double x) { return x / (1 + std::exp(-2 * std::sqrt(2 / pi) * (x + 0.044715 * x * x * x))); }, 1, 4},
      {"relu", -5, 5, [](double x) { return x < 0 ? 0 : x; }, 0, 0},
      {"abs", -5, 5, [](double x) { return std::abs(x); }, 0, 0},
      {"neg", -5, 5, [](double x) { return -x; }, 0, 0},
      {"pow3", -4, 4, [](double x) { return x * x * x; }, 1, 1},
      {"pow1.5", 0, 9, [](double x) { return std::pow(x, 1.5); }, 1, 1},
  };
  for (const auto& c : cases) {
    const std::string n = c.name;
    if (n == "exp") check_unary<T>(c, [](auto& x) { return exp(x); });
    if (n == "log") check_unary<T>(c, [](auto& x) { return log(x); });
    if (n == "sqrt") check_unary<T>(c, [](auto& x) { return sqrt(x); });
    if (n == "rsqrt") check_unary<T>(c, [](auto& x) { return rsqrt(x); });
    if (n == "tanh") check_unary<T>(c, [](auto& x) { return tanh(x); });
    if (n == "sigmoid") check_unary<T>(c, [](auto& x) { return sigmoid(x); });
    if (n == "silu") check_unary<T>(c, [](auto& x) { return silu(x); });
    if (n == "gelu") check_unary<T>(c, [](auto& x) { return gelu(x); });
    if (n == "gelu_tanh") check_unary<T>(c, [](auto& x) { return gelu_tanh(x); });
    if (n == "relu") check_unary<T>(c, [](auto& x) { return relu(x); });
    if (n == "abs") check_unary<T>(c, [](auto& x) { return abs(x); });
    if (n == "neg") check_unary<T>(c, [](auto& x) { return -x; });
    if (n == "pow3") check_unary<T>(c, [](auto& x) { return pow(x, 3.0); });
    if (n == "pow1.5") check_unary<T>(c, [](auto& x) { return pow(x, 1.5); });
  }
}

template <class T>
void check_binary() {
  tensor<T, dims<2>> a(dims<2>(5, 11)), b(dims<2>(5, 11));
  const auto va = test::random_values<double>(55, -10, 10, 1), vb = test::random_values<double>(55, 0.5, 10, 2);
  fill_from(a, va);
  fill_from(b, vb);
  tensor<T, dims<2>> sum = a + b, diff = a - b, prod = a * b, quot = a / b, lo = minimum(a, b), hi = maximum(a, b),
                     sel = where(a > b, a, b * 2);
  tensor<bool, dims<2>> lt = a < b, ge = a >= b, eq = a == a, ne = a != b;
  for (index_t i = 0; i < a.size(); ++i) {
    const double x = convert<double>(a.data()[i]), y = convert<double>(b.data()[i]);
    // IEEE operations on the compute type are correctly rounded: float/double exactly; 16-bit
    // types are computed in float, then rounded once more.
    const double tol = is_half_v<T> ? 1 : 0;
    CHECK(units_off(sum.data()[i], x + y) <= tol);
    CHECK(units_off(diff.data()[i], x - y) <= tol);
    CHECK(units_off(prod.data()[i], x * y) <= tol);
    CHECK(units_off(quot.data()[i], x / y) <= tol);
    CHECK(convert<double>(lo.data()[i]) == std::min(x, y));
    CHECK(convert<double>(hi.data()[i]) == std::max(x, y));
    CHECK(units_off(sel.data()[i], x > y ? x : 2 * y) <= tol);
    CHECK(lt.data()[i] == (x < y));
    CHECK(ge.data()[i] == (x >= y));
    CHECK(eq.data()[i]);
    CHECK(ne.data()[i] == (x != y));
  }
}

}  // namespace

TEST_CASE("unary operations: float") { check_all_unary<float>(); }
TEST_CASE("unary operations: double") { check_all_unary<double>(); }
TEST_CASE("unary operations: bf16") { check_all_unary<bf16>(); }
TEST_CASE("unary operations: fp16") { check_all_unary<fp16>(); }

TEST_CASE("binary operations and comparisons") {
  check_binary<float>();
  check_binary<double>();
  check_binary<bf16>();
  check_binary<fp16>();
}

TEST_CASE("NaN propagates through minimum, maximum and relu") {
  tensor<float, extents<3>> a, b;
  a(0) = std::nanf("");
  a(1) = 1;
  a(2) = -1;
  b(0) = 0;
  b(1) = std::nanf("");
  b(2) = 2;
  tensor<float, extents<3>> lo = minimum(a, b), hi = maximum(a, b), r = relu(a);
  CHECK(std::isnan(lo(0)));
  CHECK(std::isnan(lo(1)));
  CHECK(lo(2) == -1);
  CHECK(std::isnan(hi(0)));
  CHECK(std::isnan(hi(1)));
  CHECK(hi(2) == 2);
  CHECK(std::isnan(r(0)));
  CHECK(r(2) == 0);
}

TEST_CASE("broadcasting follows NumPy") {
  // [snippet broadcast]
  tensor<float, extents<2, 1, 4>> a;
  tensor<float, extents<3, 1>> b;
  for (int i = 0; i < 8; ++i) a.data()[i] = static_cast<float>(i);
  for (int i = 0; i < 3; ++i) b.data()[i] = static_cast<float>(100 * i);
  auto e = a + b;
  static_assert(std::is_same_v<decltype(e)::extents_type, extents<2, 3, 4>>);
  // [end snippet]
  tensor<float, extents<2, 3, 4>> c = e;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) CHECK(c(i, j, k) == a(i, 0, k) + b(j, 0));
  // Scalars and rank-0 tensors broadcast against anything.
  tensor<float, extents<>> s;
  s() = 0.5f;
  tensor<float, extents<2, 1, 4>> d = a * s + 1.0f;
  CHECK(d(1, 0, 3) == 7 * 0.5f + 1);
  // Dynamic extents: 1 stretches, a mismatch throws naming the operation and the shapes.
  tensor<float, dims<2>> x(dims<2>(3, 4)), col(dims<2>(3, 1)), bad(dims<2>(2, 4));
  for (int i = 0; i < 12; ++i) x.data()[i] = static_cast<float>(i);
  for (int i = 0; i < 3; ++i) col.data()[i] = static_cast<float>(i + 1);
  tensor<float, dims<2>> scaled = x * col;
  CHECK(scaled(2, 3) == 11.0f * 3);
  CHECK_THROWS_WITH_AS(x + bad, "add: operands could not be broadcast together with shapes (3, 4) (2, 4)", shape_error);
  CHECK_THROWS_WITH_AS(where(x > 1.0f, x, bad), doctest::Contains("where: operands could not be broadcast together"),
                       shape_error);
  tensor<float, dims<2>> wrong(dims<2>(4, 3));
  CHECK_THROWS_WITH_AS(wrong = x * 2.0f, "assign: cannot store an expression of shape (3, 4) into a destination of shape (4, 3)",
                       shape_error);
}

TEST_CASE("assignment broadcasts into the destination, as NumPy's dst[...] = x") {
  tensor<float, dims<2>> m(dims<2>(2, 3));
  m = 1.5f;  // a number fills
  for (index_t i = 0; i < m.size(); ++i) CHECK(m.data()[i] == 1.5f);
  tensor<float, extents<3>> row;
  for (int j = 0; j < 3; ++j) row(j) = static_cast<float>(j);
  m = row * 2.0f;  // (3,) into (2, 3)
  CHECK(m(1, 2) == 4.0f);
  const auto b = eval(broadcast_to(row, extents<4, 3>{}));
  static_assert(std::is_same_v<std::remove_const_t<decltype(b)>::extents_type, extents<4, 3>>);
  CHECK(b(3, 1) == 1.0f);
  tensor<float, dims<1>> wrong(dims<1>(2));
  CHECK_THROWS_WITH_AS(m = wrong * 1.0f, "assign: cannot store an expression of shape (2,) into a destination of shape (2, 3)",
                       shape_error);
  CHECK_THROWS_WITH_AS(broadcast_to(wrong, dims<2>(3, 3)),
                       "broadcast_to: an expression of shape (2,) cannot be broadcast to shape (3, 3)", shape_error);
}

TEST_CASE("type promotion: numbers adopt the tensor's type, tensors promote as in PyTorch") {
  tensor<float, extents<2>> f;
  tensor<double, extents<2>> d;
  tensor<bf16, extents<2>> b;
  tensor<fp16, extents<2>> h;
  tensor<std::int32_t, extents<2>> i;
  tensor<bool, extents<2>> m;
  static_assert(std::is_same_v<decltype(f * 2.0)::value_type, float>);
  static_assert(std::is_same_v<decltype(b + 1)::value_type, bf16>);
  static_assert(std::is_same_v<decltype(i * 2)::value_type, std::int32_t>);
  static_assert(std::is_same_v<decltype(i * 2.5)::value_type, float>);
  static_assert(std::is_same_v<decltype(i / 2)::value_type, float>);
  static_assert(std::is_same_v<decltype(f + d)::value_type, double>);
  static_assert(std::is_same_v<decltype(b + h)::value_type, float>);
  static_assert(std::is_same_v<decltype(b + f)::value_type, float>);
  static_assert(std::is_same_v<decltype(i + f)::value_type, float>);
  static_assert(std::is_same_v<decltype(m + i)::value_type, std::int32_t>);
  static_assert(std::is_same_v<decltype(exp(i))::value_type, float>);
  static_assert(std::is_same_v<decltype(abs(i))::value_type, std::int32_t>);
  static_assert(std::is_same_v<decltype(f < 1.0)::value_type, bool>);
  static_assert(std::is_same_v<decltype(where(m, b, f))::value_type, float>);
  static_assert(std::is_same_v<decltype(cast<bf16>(f))::value_type, bf16>);
  i(0) = 7;
  i(1) = -3;
  tensor<float, extents<2>> q = i / 2;
  CHECK(q(0) == 3.5f);
  CHECK(q(1) == -1.5f);
}

TEST_CASE("casts round to nearest even and reach integers and bool") {
  tensor<float, extents<4>> x;
  x(0) = 1.00390625f;  // a bf16 tie
  x(1) = 1.01171875f;
  x(2) = -2.7f;
  x(3) = 0.0f;
  tensor<bf16, extents<4>> b = cast<bf16>(x);
  CHECK(detail::bits_of(b(0)) == 0x3f80);
  CHECK(detail::bits_of(b(1)) == 0x3f82);
  // A cast inside an expression rounds there, even though the value is carried as float.
  tensor<float, extents<4>> through = cast<bf16>(x) * 1.0f;
  CHECK(through(0) == 1.0f);
  tensor<std::int32_t, extents<4>> n = cast<std::int32_t>(x);
  CHECK(n(2) == -2);
  tensor<bool, extents<4>> nz = cast<bool>(x);
  CHECK(nz(2));
  CHECK(!nz(3));
  tensor<float, extents<4>> back = cast<float>(nz);
  CHECK(back(0) == 1.0f);
  CHECK(back(3) == 0.0f);
  tensor<bool, extents<4>> negated = !nz;
  CHECK(negated(3));
}

TEST_CASE("any expression tree is evaluated in exactly one pass") {
  cpu_executor ex;
  tensor<float, dims<2>> a(dims<2>(64, 100)), b(dims<2>(64, 100)), c(dims<2>(64, 100)), y(dims<2>(64, 100));
  ex.assign(a, arange<float>(a.extents(), -3, 0.001));
  ex.assign(b, full<float>(b.extents(), 2.0f));
  ex.assign(c, uniform<float>(c.extents(), {1, 2}));
  ex.reset_counters();
  ex.assign(y, where(a > 0.0f, silu(a) * b + c, exp(-abs(a)) / (c + 1.0f)) - tanh(cast<bf16>(a * c)));
  CHECK(ex.passes() == 1);
  for (index_t i = 0; i < y.size(); ++i) {
    const float av = a.data()[i], bv = b.data()[i], cv = c.data()[i];
    const double t = convert<double>(convert<bf16>(av * cv));
    const double expected = (av > 0 ? av / (1 + std::exp(-static_cast<double>(av))) * bv + cv
                                    : std::exp(-std::abs(static_cast<double>(av))) / (cv + 1.0)) - std::tanh(t);
    CHECK(std::abs(y.data()[i] - expected) <= 4e-6 * std::max(1.0, std::abs(expected)));
  }
  auto z = ex.eval(a * 2.0f);
  CHECK(ex.passes() == 2);
  CHECK(z(63, 99) == a(63, 99) * 2);
}
