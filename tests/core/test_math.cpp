// Tests of einlm/core/math.hpp: every function, float and double, scalar and packet forms, against
// <cmath> evaluated in a wider type (long double), on random inputs over the function's useful
// range and on special values. The bounds are math.hpp's measured worst cases plus one ulp, for
// compilers that fuse multiply-adds (-march=native) and round differently. sqrt of packets is
// also checked bit for bit against std::sqrt inside kernels that simd::dispatch runs at every
// packet width this CPU has (random bit patterns: negatives, subnormals, infinities, NaNs).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <cstring>
#include <random>

#include "einlm/core/math.hpp"
#include "einlm/core/simd_dispatch.hpp"
#include "support/check.hpp"

namespace {

using einlm::test::ulp_distance;
namespace simd = einlm::simd;

template <class T>
T ref_round(long double r) {
  return static_cast<T>(r);
}

struct case_spec {
  const char* name;
  double lo, hi;                               // random input range
  std::function<long double(long double)> ref;  // reference in long double
  std::uint64_t float_ulps, double_ulps;        // allowed error
};

template <class T, class F>
void check_function(const case_spec& c, F f) {
  auto xs = einlm::test::random_values<T>(4096, c.lo, c.hi, 1234);
  // Special values and range ends.
  const T inf = std::numeric_limits<T>::infinity();
  for (T s : {T(0), T(-0.0), T(1), T(-1), T(0.5), T(1e-3), T(-1e-3), T(c.lo), T(c.hi), inf, -inf,
              std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::denorm_min(),
              std::numeric_limits<T>::min(), std::numeric_limits<T>::max(), -std::numeric_limits<T>::max()})
    xs.push_back(s);
  while (xs.size() % simd::width) xs.push_back(T(0.25));
  const std::uint64_t allowed = sizeof(T) == 4 ? c.float_ulps : c.double_ulps;
  std::uint64_t worst_scalar = 0, worst_packet = 0;
  T worst_x = 0;
  for (std::size_t i = 0; i < xs.size(); i += simd::width) {
    simd::packet<T> p;
    for (int l = 0; l < simd::width; ++l) p.set(l, xs[i + l]);
    const simd::packet<T> pr = f(p);
    for (int l = 0; l < simd::width; ++l) {
      const T x = xs[i + l];
      const long double r = c.ref(static_cast<long double>(x));
      const T expected = ref_round<T>(r);
      const T scalar = f(x);
      const auto ds = ulp_distance(scalar, expected);
      const auto dp = ulp_distance(pr[l], expected);
      if (ds > worst_scalar) { worst_scalar = ds; worst_x = x; }
      worst_packet = std::max(worst_packet, dp);
      // The packet form and the scalar form are the same code: equal results.
      CHECK_MESSAGE(ulp_distance(scalar, pr[l]) == 0, std::string(c.name), " x=", x, " scalar ", scalar, " packet ", pr[l]);
    }
  }
  INFO(std::string(c.name), std::string(sizeof(T) == 4 ? " float" : " double"), ": worst ", worst_scalar, " ulp at x=", worst_x);
  CHECK(worst_scalar <= allowed);
  CHECK(worst_packet <= allowed);
}

template <class T>
void check_all() {
  using L = long double;
  const case_spec cases[] = {
      {"exp", -110, 90, [](L x) { return std::exp(x); }, 2, 2},
      {"log", 1e-30, 1e30, [](L x) { return std::log(x); }, 2, 2},
      {"tanh", -12, 12, [](L x) { return std::tanh(x); }, 2, 2},
      {"sigmoid", -100, 100, [](L x) { return 1.0L / (1.0L + std::exp(-x)); }, 3, 3},
      // silu's results for x < -87 (float) are subnormal; see the separate check below.
      {"silu", -80, 100, [](L x) { return x / (1.0L + std::exp(-x)); }, 3, 3},
      // sqrt is correctly rounded; the long double reference rounds twice for doubles (1 ulp).
      {"sqrt", 0, 1e30, [](L x) { return std::sqrt(x); }, 0, 1},
      {"rsqrt", 1e-30, 1e30, [](L x) { return 1.0L / std::sqrt(x); }, 1, 1},
  };
  for (const auto& c : cases) {
    const std::string n = c.name;
    if (n == "exp") check_function<T>(c, [](auto x) { return einlm::math::exp(x); });
    if (n == "log") check_function<T>(c, [](auto x) { return einlm::math::log(x); });
    if (n == "tanh") check_function<T>(c, [](auto x) { return einlm::math::tanh(x); });
    if (n == "sigmoid") check_function<T>(c, [](auto x) { return einlm::math::sigmoid(x); });
    if (n == "silu") check_function<T>(c, [](auto x) { return einlm::math::silu(x); });
    if (n == "sqrt") check_function<T>(c, [](auto x) { return einlm::math::sqrt(x); });
    if (n == "rsqrt") check_function<T>(c, [](auto x) { return einlm::math::rsqrt(x); });
  }
}

}  // namespace

TEST_CASE("float functions are within their stated ulp bounds") { check_all<float>(); }
TEST_CASE("double functions are within their stated ulp bounds") { check_all<double>(); }

TEST_CASE("gelu on float: within 7 ulp for normal results, |x| times the smallest subnormal below") {
  using L = long double;
  const auto exact = [](L x) { return 0.5L * x * std::erfc(-x / std::sqrt(2.0L)); };
  // Both branches (|x| < 1, beyond), the far tail, and special values, scalar against packet.
  for (double range : {1.0, 4.0, 13.0})
    check_function<float>({"gelu", -range, range, exact, 7, 0}, [](auto x) { return einlm::math::gelu(x); });
  // A sweep of every 4099th float bit pattern with a result in the normal range (about 500,000).
  std::uint64_t worst = 0;
  float worst_x = 0;
  for (std::uint64_t bits = 0; bits < (std::uint64_t{1} << 32); bits += 4099) {
    const float x = einlm::detail::bit_cast<float>(static_cast<std::uint32_t>(bits));
    if (!(std::abs(x) <= 13.0f)) continue;
    const auto distance = ulp_distance(einlm::math::gelu(x), static_cast<float>(exact(x)));
    if (distance > worst) { worst = distance; worst_x = x; }
  }
  INFO("gelu sweep: worst ", worst, " ulp at x=", worst_x);
  CHECK(worst <= 7);
  // The inputs where the float polynomials are at their worst (6 ulp, found by checking all 2^32
  // floats), and the branch boundary.
  for (float x : {-1.84268844f, -1.38141072f, -1.31907165f, -1.8322047f, -1.0f, 1.0f, std::nextafter(-1.0f, 0.0f),
                  std::nextafter(1.0f, 0.0f)}) {
    CAPTURE(x);
    CHECK(ulp_distance(einlm::math::gelu(x), static_cast<float>(exact(x))) <= 7);
  }
  // A result below the normal range (x < −13.1) loses bits with e^{−x²/2}.
  for (float x : einlm::test::random_values<float>(2000, -14.5, -13.0, 7)) {
    const double expected = static_cast<double>(exact(x));
    const double error = std::abs(static_cast<double>(einlm::math::gelu(x)) - expected);
    if (std::abs(expected) < static_cast<double>(std::numeric_limits<float>::min()))
      CHECK(error <= std::abs(x) * static_cast<double>(std::numeric_limits<float>::denorm_min()));
    else
      CHECK(ulp_distance(einlm::math::gelu(x), static_cast<float>(expected)) <= 7);
  }
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(einlm::math::gelu(inf) == inf);
  CHECK(std::isnan(einlm::math::gelu(-inf)));  // −inf·0, as ½·x·erfc(−x/√2) gives
  CHECK(std::isnan(einlm::math::gelu(std::nanf(""))));
  CHECK(einlm::math::gelu(30.0f) == 30.0f);
  CHECK(einlm::math::gelu(-30.0f) == 0.0f);
  CHECK(std::signbit(einlm::math::gelu(-30.0f)));
  CHECK(std::signbit(einlm::math::gelu(-0.0f)));
  // Double stays on erfc in double.
  check_function<double>({"gelu", -6, 6, exact, 0, 64}, [](auto x) { return einlm::math::gelu(x); });
}

namespace {

// GELU's derivative Φ(x) + x·φ(x) in long double, and the error of a float result in ulps of the
// larger of its two terms (the derivative crosses 0 near x = −0.752, where an error relative to
// the result itself has no bound).
struct derivative_error {
  double ulps;       // error / ulp(max(Φ(x), |x|·φ(x)))
  bool normal_scale; // whether that larger term is a normal float
  double absolute;
};

derivative_error gelu_derivative_error(float x, float got) {
  const long double v = x;
  const long double phi = 0.5L * std::erfc(-v / std::sqrt(2.0L));
  const long double density = v * std::exp(-0.5L * v * v) / std::sqrt(2.0L * 3.14159265358979323846L);
  const long double scale = std::max(phi, std::abs(density));
  const long double absolute = std::abs(static_cast<long double>(got) - (phi + density));
  const bool normal = scale >= static_cast<long double>(std::numeric_limits<float>::min());
  const long double ulp = normal ? std::ldexp(1.0L, std::ilogb(scale) - 23) : 1.0L;
  return {static_cast<double>(absolute / ulp), normal, static_cast<double>(absolute)};
}

}  // namespace

TEST_CASE("gelu's derivative on float: within 8 ulp of its larger term, packets equal to scalars") {
  using einlm::math::detail::gelu_erf_derivative_float;
  // Every 4099th float bit pattern (about 1,000,000), in packets and one by one.
  std::vector<float> xs;
  for (std::uint64_t bits = 0; bits < (std::uint64_t{1} << 32); bits += 4099) {
    const float x = einlm::detail::bit_cast<float>(static_cast<std::uint32_t>(bits));
    if (!std::isnan(x)) xs.push_back(x);
  }
  // The inputs where the polynomial is at its worst (7.15 ulp without fused multiply-adds, 5.9
  // with them; found by checking all 2^32 floats), the derivative's zero, and its extremes.
  for (float x : {-0.0292699989f, -0.029269997f, -0.0100747542f, -0.0175294001f, -0.751791631f, -1.41421354f, 1.41421354f, 0.0f, -0.0f})
    xs.push_back(x);
  while (xs.size() % simd::width) xs.push_back(0.5f);
  double worst = 0, worst_tiny = 0;
  float worst_x = 0;
  int unequal = 0;
  for (std::size_t i = 0; i < xs.size(); i += simd::width) {
    const auto packet = gelu_erf_derivative_float(simd::load<float>(xs.data() + i));
    for (int l = 0; l < simd::width; ++l) {
      const float x = xs[i + l], got = gelu_erf_derivative_float(x);
      unequal += einlm::detail::bit_cast<std::uint32_t>(got) != einlm::detail::bit_cast<std::uint32_t>(packet[l]);
      const auto e = gelu_derivative_error(x, got);
      if (e.normal_scale && e.ulps > worst) { worst = e.ulps; worst_x = x; }
      if (!e.normal_scale) worst_tiny = std::max(worst_tiny, e.absolute);
    }
  }
  INFO("gelu derivative: worst ", worst, " ulp at x=", worst_x, "; below the normal range ", worst_tiny);
  CHECK(unequal == 0);
  CHECK(worst <= 8);
  CHECK(worst_tiny <= std::ldexp(1.0, -146));  // x < −13.3: e^{−x²/2} is subnormal
  // Near its zero the derivative is the difference of two terms of about 0.23 (ulp 2^-26).
  for (float x : einlm::test::random_values<float>(2000, -0.76, -0.74, 11))
    CHECK(gelu_derivative_error(x, gelu_erf_derivative_float(x)).absolute <= 8 * std::ldexp(1.0, -26));
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(gelu_erf_derivative_float(0.0f) == 0.5f);
  CHECK(gelu_erf_derivative_float(-0.0f) == 0.5f);
  CHECK(gelu_erf_derivative_float(inf) == 1.0f);
  CHECK(gelu_erf_derivative_float(-inf) == 0.0f);
  CHECK(gelu_erf_derivative_float(30.0f) == 1.0f);
  CHECK(gelu_erf_derivative_float(-30.0f) == 0.0f);
  CHECK(std::isnan(gelu_erf_derivative_float(std::nanf(""))));
}

TEST_CASE("gelu_tanh and pow on float are computed in double and rounded once") {
  using L = long double;
  // Reference in the equivalent form x·σ(2u): ½·x·(1 + tanh u) cancels to nothing for u < −22.
  const case_spec tanh_form{"gelu_tanh", -12, 12, [](L x) {
                              const L u = std::sqrt(2.0L / 3.14159265358979323846264338327950288L) * (x + 0.044715L * x * x * x);
                              return x / (1.0L + std::exp(-2.0L * u));
                            }, 1, 1};
  check_function<float>(tanh_form, [](auto x) { return einlm::math::gelu_tanh(x); });
  for (double p : {2.0, 3.0, -1.0, 0.5, 1.5, -2.5, 7.0}) {
    const case_spec pw{"pow", 0, 100, [p](L x) { return std::pow(x, static_cast<L>(p)); }, 1, 2};
    check_function<float>(pw, [p](auto x) { return einlm::math::pow(x, p); });
  }
  // Integer exponents keep the sign of negative bases.
  CHECK(einlm::math::pow(-2.0f, 3.0) == -8.0f);
  CHECK(einlm::math::pow(-2.0f, 2.0) == 4.0f);
  CHECK(std::isnan(einlm::math::pow(-2.0f, 0.5)));
}

TEST_CASE("special values") {
  using einlm::math::exp;
  using einlm::math::log;
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(exp(100.0f) == inf);
  CHECK(exp(-200.0f) == 0.0f);
  CHECK(exp(-inf) == 0.0f);
  CHECK(exp(inf) == inf);
  CHECK(std::isnan(exp(std::nanf(""))));
  // exp reaches the subnormals: e^-100 = 3.72e-44.
  CHECK(ulp_distance(exp(-100.0f), static_cast<float>(std::exp(-100.0))) <= 1);
  CHECK(log(0.0f) == -inf);
  CHECK(log(inf) == inf);
  CHECK(std::isnan(log(-1.0f)));
  const float tiny = std::numeric_limits<float>::denorm_min();
  CHECK(ulp_distance(log(tiny), static_cast<float>(std::log(static_cast<double>(tiny)))) <= 2);
  CHECK(einlm::math::tanh(30.0f) == 1.0f);
  CHECK(einlm::math::tanh(-30.0f) == -1.0f);
  CHECK(einlm::math::sigmoid(-200.0f) == 0.0f);
  CHECK(einlm::math::sigmoid(200.0f) == 1.0f);
  CHECK(einlm::math::abs(-0.0f) == 0.0f);
  CHECK(!std::signbit(einlm::math::abs(-0.0f)));
  CHECK(einlm::math::abs(-3) == 3);
}

TEST_CASE("silu with subnormal results: absolute error below |x| times the smallest subnormal") {
  for (float x : einlm::test::random_values<float>(2000, -103, -87, 99)) {
    const double expected = static_cast<double>(x) / (1.0 + std::exp(-static_cast<double>(x)));
    const double error = std::abs(static_cast<double>(einlm::math::silu(x)) - expected);
    CHECK(error <= std::abs(x) * static_cast<double>(std::numeric_limits<float>::denorm_min()));
  }
}

#if EINLM_HAS_PACKETS

namespace {

/// y = math::sqrt(x) over n elements, on packets of B bytes, then one by one.
template <class T>
struct sqrt_kernel {
  template <int B>
  static void run(einlm::index_t n, T* y, const T* x) {
    using V = simd::packet<T, B>;
    einlm::index_t i = 0;
    for (; i + V::size <= n; i += V::size) simd::store(y + i, einlm::math::sqrt(simd::load<T, B>(x + i)));
    for (; i < n; ++i) y[i] = einlm::math::sqrt(x[i]);
  }
};

/// Elements of math::sqrt over 2^18 random bit patterns of T (plus ±0, ±inf, NaN, −1) that differ
/// from std::sqrt's bits (any NaN matching any NaN), at packets of the current dispatch width.
template <class T, class Bits>
std::size_t sqrt_mismatches() {
  std::mt19937_64 rng(20261130);
  std::vector<T> x(std::size_t{1} << 18), y(x.size());
  for (auto& v : x) {
    const Bits b = static_cast<Bits>(rng());
    std::memcpy(&v, &b, sizeof v);
  }
  const T specials[] = {T(0), -T(0), std::numeric_limits<T>::infinity(), -std::numeric_limits<T>::infinity(),
                        std::numeric_limits<T>::quiet_NaN(), T(-1), std::numeric_limits<T>::denorm_min(), T(2)};
  std::copy(std::begin(specials), std::end(specials), x.begin() + 5);
  simd::dispatch<sqrt_kernel<T>>(static_cast<einlm::index_t>(x.size()) - 3, y.data(), x.data());  // a scalar tail
  std::size_t bad = 0;
  for (std::size_t i = 0; i + 3 < x.size(); ++i) {
    const T expected = std::sqrt(x[i]);
    if (std::memcmp(&expected, &y[i], sizeof(T)) != 0 && !(std::isnan(expected) && std::isnan(y[i]))) ++bad;
  }
  return bad;
}

}  // namespace

namespace {

/// y = math::gelu_tanh(x) over n floats, on packets of B bytes, then one by one.
struct gelu_tanh_kernel {
  template <int B>
  static void run(einlm::index_t n, float* y, const float* x) {
    using V = simd::packet<float, B>;
    einlm::index_t i = 0;
    for (; i + V::size <= n; i += V::size) simd::store(y + i, einlm::math::gelu_tanh(simd::load<float, B>(x + i)));
    for (; i < n; ++i) y[i] = einlm::math::gelu_tanh(x[i]);
  }
};

}  // namespace

TEST_CASE("gelu_tanh on float packets, at every dispatch width, is the scalar form's double computation") {
  // Random bit patterns (every magnitude, subnormals, infinities, NaNs) and specials.
  std::mt19937 rng(20261201);
  std::vector<float> x(std::size_t{1} << 17), y(x.size());
  for (auto& v : x) {
    const std::uint32_t b = static_cast<std::uint32_t>(rng());
    std::memcpy(&v, &b, sizeof v);
  }
  const float inf = std::numeric_limits<float>::infinity();
  const float specials[] = {0.0f, -0.0f, inf, -inf, std::nanf(""), 1e30f, -1e30f, -10.9f, -12.0f, 3.0f,
                            std::numeric_limits<float>::denorm_min(), -std::numeric_limits<float>::min()};
  std::copy(std::begin(specials), std::end(specials), x.begin() + 3);
  const auto scalar = [](float v) { return einlm::math::detail::gelu_tanh_double(v); };
  // The build's packets run the same double operations as the scalar form: the same bits.
  std::size_t unequal = 0;
  for (std::size_t i = 0; i + simd::width <= x.size(); i += simd::width) {
    const auto p = einlm::math::gelu_tanh(simd::load<float>(x.data() + i));
    for (int l = 0; l < simd::width; ++l) {
      const float want = scalar(x[i + l]), got = p[l];
      if (std::memcmp(&want, &got, sizeof want) != 0 && !(std::isnan(want) && std::isnan(got))) ++unequal;
    }
  }
  CHECK(unequal == 0);
  CHECK(std::isnan(einlm::math::gelu_tanh(simd::packet<float>(-inf))[0]));  // −inf·0, as the scalar form
  CHECK(einlm::math::gelu_tanh(simd::packet<float>(inf))[0] == inf);
  // Wider packets may fuse multiply-adds in double: within one float ulp of the scalar form.
  const int start = simd::dispatch_bytes();
  for (const int cap : {16, 32, 64}) {
    if (cap > start) break;
    const int bytes = simd::limit_dispatch_bytes(cap);
    CAPTURE(bytes);
    simd::dispatch<gelu_tanh_kernel>(static_cast<einlm::index_t>(x.size()) - 3, y.data(), x.data());  // a scalar tail
    std::size_t far = 0;
    for (std::size_t i = 0; i + 3 < x.size(); ++i) {
      const float want = scalar(x[i]);
      if (std::isnan(want) ? !std::isnan(y[i]) : ulp_distance(y[i], want) > 1) ++far;
    }
    CHECK(far == 0);
  }
  CHECK(simd::limit_dispatch_bytes(start) == start);
}

TEST_CASE("gelu and its derivative past x = 10 are x and 1, for every magnitude") {
  // The tail there is capped at x = 10 (no subnormal operands); the results are unchanged.
  using einlm::math::detail::gelu_erf_derivative_float;
  for (float x : einlm::test::random_values<float>(4000, 9.0, 40.0, 3)) {
    CHECK(einlm::math::gelu(x) == x);
    CHECK(gelu_erf_derivative_float(x) == 1.0f);
  }
  for (float x : {1e4f, 1e20f, 3e38f, std::numeric_limits<float>::max()}) {
    CHECK(einlm::math::gelu(x) == x);
    CHECK(einlm::math::gelu(simd::packet<float>(x))[0] == x);
    CHECK(gelu_erf_derivative_float(x) == 1.0f);
  }
}

TEST_CASE("sqrt of packets is the correctly rounded square root at every dispatch width, bit for bit") {
  const int start = simd::dispatch_bytes();
  for (const int cap : {16, 32, 64}) {
    if (cap > start) break;
    const int bytes = simd::limit_dispatch_bytes(cap);
    CAPTURE(bytes);
    CHECK(sqrt_mismatches<float, std::uint32_t>() == 0);
    CHECK(sqrt_mismatches<double, std::uint64_t>() == 0);
  }
  CHECK(simd::limit_dispatch_bytes(start) == start);
}

#endif
