// Tests of einlm/nn/backward.hpp: every backward pass against central finite differences in double
// (h = 1e-6) of a random linear functional ⟨w, f(x)⟩, so that dy = w; the error of a gradient is the
// largest |finite difference − analytic| over the perturbed elements, divided by the largest
// |analytic| element of that gradient. The tolerance is 1e-7; measured worst (g++ 12, x86-64):
// softmax 3.6e-10, rms_norm 2.7e-10, rope 3.1e-10, swiglu 2.1e-10, cross-entropy 4.1e-9 (z_loss 0.5),
// attention 3.4e-9. The float versions are checked against the double ones (normwise 1e-4, rope
// 1e-6; measured worst 3.2e-7), attention_forward against scaled_dot_product_attention with the kv
// heads repeated and a causal mask and its lse against a direct sum, the loss against
// nn::cross_entropy and a direct z-loss, and the shape and target errors. Each case reports its
// worst error as a MESSAGE.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "einlm/nn/backward.hpp"

#if EINLM_HAS_OPENMP
#include <omp.h>
#endif

using namespace einlm;

namespace {

constexpr double fd_step = 1e-6;
constexpr double fd_tolerance = 1e-7;
double worst_seen = 0;  // reported at the end of the finite-difference cases

/// A double tensor of normal values (mean 0, std `std_dev`) from Philox stream (seed, stream).
template <class E>
tensor<double, E> random_tensor(const E& e, std::uint64_t stream, double std_dev = 1.0) {
  tensor<double, E> t(e);  // like e
  for (index_t i = 0; i < t.size(); ++i)
    t.data()[i] = std_dev * normal_at<double>(random_stream{2026, stream}, static_cast<std::uint64_t>(i));
  return t;
}

/// Σ a ⊙ b over the elements of two arrays of one size.
template <class A, class B>
double dot(const A& a, const B& b) {
  REQUIRE(a.size() == b.size());
  double s = 0;
  for (index_t i = 0; i < a.size(); ++i) s += static_cast<double>(a.data()[i]) * static_cast<double>(b.data()[i]);
  return s;
}

/// The worst relative error of the analytic gradient `grad` of loss() with respect to x, by central
/// differences on every element (or on 64 random ones when x has more than 256).
template <class X, class G, class F>
double fd_error(X& x, const G& grad, F&& loss) {
  REQUIRE(x.size() == grad.size());
  std::vector<index_t> points;
  if (x.size() <= 256) {
    for (index_t i = 0; i < x.size(); ++i) points.push_back(i);
  } else {
    std::mt19937_64 rng(7);
    for (int j = 0; j < 64; ++j) points.push_back(static_cast<index_t>(rng() % static_cast<std::uint64_t>(x.size())));
  }
  double scale = 0;
  for (index_t i = 0; i < grad.size(); ++i) scale = std::max(scale, std::abs(static_cast<double>(grad.data()[i])));
  double worst = 0;
  for (const index_t i : points) {
    const double keep = x.data()[i];
    x.data()[i] = keep + fd_step;
    const double up = loss();
    x.data()[i] = keep - fd_step;
    const double down = loss();
    x.data()[i] = keep;
    const double fd = (up - down) / (2 * fd_step);
    worst = std::max(worst, std::abs(fd - static_cast<double>(grad.data()[i])) / std::max(scale, 1e-300));
  }
  worst_seen = std::max(worst_seen, worst);
  return worst;
}

/// max |a − b| / max |b| over two arrays of one size (float results against double ones).
template <class A, class B>
double normwise(const A& a, const B& b) {
  REQUIRE(a.size() == b.size());
  double diff = 0, scale = 0;
  for (index_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a.data()[i]) - static_cast<double>(b.data()[i])));
    scale = std::max(scale, std::abs(static_cast<double>(b.data()[i])));
  }
  return diff / std::max(scale, 1e-300);
}

double float_worst = 0;  // the worst float-against-double error, reported at the end

/// normwise for a float result against the double one, remembered for the report.
template <class A, class B>
double float_error(const A& a, const B& b) {
  const double e = normwise(a, b);
  float_worst = std::max(float_worst, e);
  return e;
}

/// Whether two arrays hold the same bits.
template <class A, class B>
bool same_bits(const A& a, const B& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), sizeof(*a.data()) * static_cast<std::size_t>(a.size())) == 0;
}

/// Reports and resets the worst finite-difference error of one test case.
void report(const char* what) {
  MESSAGE(std::string(what), ": worst relative error against finite differences ", worst_seen);
  worst_seen = 0;
}

template <class T, class X>
auto to_type(const X& x) {
  return eval(cast<T>(x));
}

template <class X>
auto to_float(const X& x) {
  return to_type<float>(x);
}

template <class E>
tensor<float, E> random_float(const E& e, std::uint64_t stream) {
  return to_float(random_tensor(e, stream));
}

/// k or v (B, Hkv, S, D) with each kv head repeated for the H / Hkv query heads that read it.
template <class K>
tensor<double, dims<4>> repeat_heads(const K& k, index_t H) {
  const index_t B = k.extent(0), G = k.extent(1), S = k.extent(2), D = k.extent(3);
  tensor<double, dims<4>> out(dims<4>(B, H, S, D));  // (B, H, S, D)
  for (index_t b = 0; b < B; ++b)
    for (index_t h = 0; h < H; ++h)
      for (index_t s = 0; s < S; ++s)
        for (index_t d = 0; d < D; ++d) out(b, h, s, d) = k(b, h / (H / G), s, d);
  return out;
}

}  // namespace

TEST_CASE("softmax_backward against finite differences") {
  auto x = random_tensor(extents<3, 7>{}, 1, 2.0);  // (R, D)
  const auto w = random_tensor(extents<3, 7>{}, 2);  // (R, D)
  const auto dx = nn::softmax_backward(nn::softmax(x), w);  // (R, D)
  static_assert(std::is_same_v<decltype(dx), const tensor<double, extents<3, 7>>>);
  CHECK(fd_error(x, dx, [&] { return dot(w, nn::softmax(x)); }) <= fd_tolerance);
  // 3-D with dynamic extents, and float against double.
  auto x3 = random_tensor(dims<3>(2, 3, 5), 3);  // (B, S, D)
  const auto w3 = random_tensor(dims<3>(2, 3, 5), 4);  // (B, S, D)
  const auto dx3 = nn::softmax_backward(nn::softmax(x3), w3);  // (B, S, D)
  CHECK(fd_error(x3, dx3, [&] { return dot(w3, nn::softmax(x3)); }) <= fd_tolerance);
  const auto dx3f = nn::softmax_backward(nn::softmax(to_float(x3)), to_float(w3));  // (B, S, D)
  static_assert(std::is_same_v<decltype(dx3f)::value_type, float>);
  CHECK(float_error(dx3f, dx3) <= 1e-4);
  report("softmax_backward");
}

TEST_CASE("rms_norm_backward against finite differences") {
  auto x = random_tensor(extents<2, 3, 8>{}, 5);  // (B, S, D)
  auto gain = random_tensor(extents<8>{}, 6, 0.3);  // (D,)
  for (index_t d = 0; d < 8; ++d) gain(d) += 1.0;
  const auto w = random_tensor(extents<2, 3, 8>{}, 7);  // (B, S, D)
  const double eps = 1e-5;
  const auto g = nn::rms_norm_backward(x, gain, w, eps);
  const auto& [dx, dgain] = g;
  static_assert(std::is_same_v<decltype(g.dx), tensor<double, extents<2, 3, 8>>>);
  static_assert(std::is_same_v<decltype(g.dgain), tensor<double, extents<8>>>);
  const auto loss = [&] { return dot(w, nn::rms_norm(x, gain, eps)); };
  CHECK(fd_error(x, dx, loss) <= fd_tolerance);
  CHECK(fd_error(gain, dgain, loss) <= fd_tolerance);
  // One row (rank 1), dynamic.
  auto x1 = random_tensor(dims<1>(6), 8);  // (D,)
  auto g1 = random_tensor(dims<1>(6), 9);  // (D,)
  const auto w1 = random_tensor(dims<1>(6), 10);  // (D,)
  const auto [dx1, dg1] = nn::rms_norm_backward(x1, g1, w1);
  const auto loss1 = [&] { return dot(w1, nn::rms_norm(x1, g1)); };
  CHECK(fd_error(x1, dx1, loss1) <= fd_tolerance);
  CHECK(fd_error(g1, dg1, loss1) <= fd_tolerance);
  // Float against double.
  const auto [dxf, dgf] = nn::rms_norm_backward(to_float(x), to_float(gain), to_float(w));
  CHECK(float_error(dxf, dx) <= 1e-4);
  CHECK(float_error(dgf, dgain) <= 1e-4);
  report("rms_norm_backward");
  // Errors.
  tensor<double, dims<1>> short_gain(dims<1>(7));
  CHECK_THROWS_WITH_AS(nn::rms_norm_backward(x, short_gain, w),
                       "rms_norm_backward: gain of shape (7,) does not match x of shape (2, 3, 8)", shape_error);
  tensor<double, dims<3>> bad_dy(dims<3>(2, 4, 8));
  CHECK_THROWS_WITH_AS(nn::rms_norm_backward(x, gain, bad_dy),
                       "rms_norm_backward: x of shape (2, 3, 8) does not match dy of shape (2, 4, 8)", shape_error);
}

TEST_CASE("rope_backward against finite differences") {
  auto x = random_tensor(extents<2, 5, 8>{}, 11);  // (B, S, D)
  const auto w = random_tensor(extents<2, 5, 8>{}, 12);  // (B, S, D)
  tensor<std::int64_t, extents<5>> pos;  // (S,)
  const std::int64_t values[] = {0, 3, 7, 12, 40};
  for (index_t s = 0; s < 5; ++s) pos(s) = values[s];
  const auto dx = nn::rope_backward(w, pos, 10000.0);  // (B, S, D)
  CHECK(fd_error(x, dx, [&] { return dot(w, nn::rope(x, pos, 10000.0)); }) <= fd_tolerance);
  // Positions per sequence (B, S), unsigned, and a small theta so that every pair turns a lot.
  tensor<std::uint32_t, extents<2, 5>> pos2;  // (B, S)
  for (index_t b = 0; b < 2; ++b)
    for (index_t s = 0; s < 5; ++s) pos2(b, s) = static_cast<std::uint32_t>(5 * s + 2 * b + 1);
  const auto dx2 = nn::rope_backward(w, pos2, 10.0);  // (B, S, D)
  CHECK(fd_error(x, dx2, [&] { return dot(w, nn::rope(x, pos2, 10.0)); }) <= fd_tolerance);
  // Backward undoes forward (a rotation's adjoint is its inverse).
  const auto back = nn::rope_backward(nn::rope(x, pos, 10000.0), pos, 10000.0);  // (B, S, D)
  CHECK(normwise(back, x) <= 1e-14);
  const auto dxf = nn::rope_backward(to_float(w), pos, 10000.0);  // (B, S, D)
  CHECK(float_error(dxf, dx) <= 1e-6);
  report("rope_backward");
}

/// The largest distance in units of the last place between same-typed float or bf16 arrays.
template <class A, class B>
std::int64_t max_ulp_distance(const A& a, const B& b) {
  using T = typename A::value_type;
  using bits = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int16_t>;
  REQUIRE(a.size() == b.size());
  std::int64_t worst = 0;
  for (index_t i = 0; i < a.size(); ++i) {
    bits x, y;
    std::memcpy(&x, a.data() + i, sizeof x);
    std::memcpy(&y, b.data() + i, sizeof y);
    if ((x < 0) != (y < 0)) return std::numeric_limits<std::int64_t>::max();  // (no zeros here)
    worst = std::max<std::int64_t>(worst, std::abs(std::int64_t{x} - std::int64_t{y}));
  }
  return worst;
}

TEST_CASE("swiglu_backward: the one-pass kernel for host tensors equals the expression form") {
  // Tensors take the one-pass kernel, views the expression form. 61 × 71 elements: whole packets,
  // a tail, and three parallel units. Both round once from the same float arithmetic; a compiler
  // that contracts multiply-adds in one form and not the other may move the last bit. The kernel
  // runs on the build's packets here, as the expression does (the next case compares the widths).
  const int start = simd::dispatch_bytes();
  simd::limit_dispatch_bytes(16);
  const auto check = [](auto zero) {
    using T = decltype(zero);
    const auto a64 = random_tensor(dims<2>(61, 71), 41, 3.0);  // (N, F)
    const auto b64 = random_tensor(dims<2>(61, 71), 42);       // (N, F)
    const auto dh64 = random_tensor(dims<2>(61, 71), 43);      // (N, F)
    const auto a = eval(cast<T>(a64));                         // (N, F)
    const auto b = eval(cast<T>(b64));                         // (N, F)
    const auto dh = eval(cast<T>(dh64));                       // (N, F)
    const auto [da, db] = nn::swiglu_backward(a, b, dh);
    const auto [da_expr, db_expr] = nn::swiglu_backward(a.view(), b.view(), dh.view());
    static_assert(std::is_same_v<typename decltype(da)::value_type, T>);
    CHECK(max_ulp_distance(da, da_expr) <= 2);
    CHECK(max_ulp_distance(db, db_expr) <= 2);
  };
  check(0.0f);
  check(bf16{});
  simd::limit_dispatch_bytes(start);
}

namespace {

/// f() with simd::dispatch limited to packets of `bytes` (16: the build's); the limit is then
/// restored.
template <class F>
auto at_packet_bytes(int bytes, F&& f) {
  const int before = simd::dispatch_bytes();
  simd::limit_dispatch_bytes(bytes);
  auto r = f();
  simd::limit_dispatch_bytes(before);
  return r;
}

/// The largest |a − b| / scale[i] over two float arrays.
double worst_scaled_difference(const float* a, const float* b, const std::vector<double>& scale) {
  double worst = 0;
  for (std::size_t i = 0; i < scale.size(); ++i)
    worst = std::max(worst, std::abs(double(a[i]) - double(b[i])) / scale[i]);
  return worst;
}

double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }
double normal_pdf(double x) { return std::exp(-0.5 * x * x) / std::sqrt(2.0 * 3.14159265358979323846); }

/// The element-wise kernels at packets of wide_bytes against the build's (see the next case).
void compare_packet_widths(int wide_bytes) {
  const auto shape = dims<2>(61, 71);
  const auto a = to_float(random_tensor(shape, 51, 3.0));   // (N, F)
  const auto b = to_float(random_tensor(shape, 52));        // (N, F)
  const auto dy = to_float(random_tensor(shape, 53));       // (N, F)
  const std::size_t n = static_cast<std::size_t>(a.size());
  const float eps = std::numeric_limits<float>::epsilon();
  // Exponential sums (softmax, attention, cross-entropy) over rows of every length up to 300.
  double worst_sum = 0, worst_exp = 0;
  for (index_t len : {1, 3, 4, 5, 8, 15, 16, 17, 31, 33, 64, 100, 128, 300}) {
    std::vector<float> narrow_out(static_cast<std::size_t>(len)), wide_out(narrow_out.size());
    const float narrow = at_packet_bytes(16, [&] { return nn::detail::exp_sum_row<true>(a.data(), narrow_out.data(), len, 0.7f, 1.5f); });
    const float wide = at_packet_bytes(wide_bytes, [&] { return nn::detail::exp_sum_row<true>(a.data(), wide_out.data(), len, 0.7f, 1.5f); });
    worst_sum = std::max(worst_sum, std::abs(double(wide) - narrow) / narrow / eps);
    // exp(t) moves by |t| units of rounding when its argument t = x · 0.7 − 1.5 does.
    for (index_t j = 0; j < len; ++j) {
      const double t = std::abs(0.7 * a.data()[j]) + 1.5;
      worst_exp = std::max(worst_exp, std::abs(double(wide_out[j]) - narrow_out[j]) / narrow_out[j] / eps / (1 + t));
    }
  }
  MESSAGE("exponential sums: worst " << worst_sum << " units of rounding; exponentials " << worst_exp << " × (1 + |t|)");
  CHECK(worst_sum <= 16);
  CHECK(worst_exp <= 4);
  // GELU and the SwiGLU hidden, float and bf16.
  const auto gelu_narrow = at_packet_bytes(16, [&] { return nn::detail::gelu_tensor(a); });       // (N, F)
  const auto gelu_wide = at_packet_bytes(wide_bytes, [&] { return nn::detail::gelu_tensor(a); });         // (N, F)
  const auto hidden_narrow = at_packet_bytes(16, [&] { return nn::detail::swiglu_hidden(a, b); });  // (N, F)
  const auto hidden_wide = at_packet_bytes(wide_bytes, [&] { return nn::detail::swiglu_hidden(a, b); });    // (N, F)
  std::vector<double> gelu_scale(n), hidden_scale(n), gelu_grad_scale(n), da_scale(n), db_scale(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double x = a.data()[i], y = b.data()[i], g = dy.data()[i], s = 1.0 / (1.0 + std::exp(-x));
    gelu_scale[i] = 4 * eps * std::max(std::abs(x) * normal_cdf(x), 1e-30);
    hidden_scale[i] = 4 * eps * std::max(std::abs(x * s * y), 1e-30);
    gelu_grad_scale[i] = 4 * eps * std::max(std::abs(g) * (normal_cdf(x) + std::abs(x) * normal_pdf(x)), 1e-30);
    da_scale[i] = 4 * eps * std::max(std::abs(g * y * s) * (1 + std::abs(x) * (1 - s)), 1e-30);
    db_scale[i] = 4 * eps * std::max(std::abs(g * x * s), 1e-30);
  }
  CHECK(worst_scaled_difference(gelu_wide.data(), gelu_narrow.data(), gelu_scale) <= 1);
  CHECK(worst_scaled_difference(hidden_wide.data(), hidden_narrow.data(), hidden_scale) <= 1);
  const auto a16 = eval(cast<bf16>(a)), b16 = eval(cast<bf16>(b));                                      // (N, F)
  const auto gelu16_narrow = at_packet_bytes(16, [&] { return nn::detail::gelu_tensor(a16); });          // (N, F)
  const auto gelu16_wide = at_packet_bytes(wide_bytes, [&] { return nn::detail::gelu_tensor(a16); });            // (N, F)
  const auto hidden16_narrow = at_packet_bytes(16, [&] { return nn::detail::swiglu_hidden(a16, b16); });  // (N, F)
  const auto hidden16_wide = at_packet_bytes(wide_bytes, [&] { return nn::detail::swiglu_hidden(a16, b16); });    // (N, F)
  CHECK(max_ulp_distance(gelu16_wide, gelu16_narrow) <= 1);
  CHECK(max_ulp_distance(hidden16_wide, hidden16_narrow) <= 1);
  // Their gradients.
  const auto gelu_grad_narrow = at_packet_bytes(16, [&] { return nn::gelu_backward(a, dy); });  // (N, F)
  const auto gelu_grad_wide = at_packet_bytes(wide_bytes, [&] { return nn::gelu_backward(a, dy); });    // (N, F)
  CHECK(worst_scaled_difference(gelu_grad_wide.data(), gelu_grad_narrow.data(), gelu_grad_scale) <= 1);
  // Views go through a float copy, tensors are read in place: the same arithmetic, the same bits.
  CHECK(max_ulp_distance(nn::gelu_backward(a.view(), dy.view()), nn::gelu_backward(a, dy)) == 0);
  const auto [da_narrow, db_narrow] = at_packet_bytes(16, [&] { return nn::swiglu_backward(a, b, dy); });
  const auto [da_wide, db_wide] = at_packet_bytes(wide_bytes, [&] { return nn::swiglu_backward(a, b, dy); });
  CHECK(worst_scaled_difference(da_wide.data(), da_narrow.data(), da_scale) <= 1);
  CHECK(worst_scaled_difference(db_wide.data(), db_narrow.data(), db_scale) <= 1);
}

}  // namespace

TEST_CASE("element-wise kernels on this CPU's wider packets agree with the build's packets") {
  // simd::dispatch runs the exponential sums, GELU, the SwiGLU hidden and their gradients
  // compiled for AVX-512 or AVX2 where the CPU has them; each width the CPU runs (within the
  // EINLM_SIMD_BYTES cap) is compared with the build's. The same arithmetic up to multiply-add
  // contraction and the lane order of sums: within a few units of rounding of the terms that
  // make each result (the terms, not the result, near a zero of a gradient). 61 × 71 elements:
  // whole packets of every width, tails, three parallel units; inputs spread to ±9.
  const int start = simd::dispatch_bytes();
  for (const int cap : {32, 64}) {
    if (cap > start) break;
    const int wide_bytes = at_packet_bytes(cap, [] { return simd::dispatch_bytes(); });
    if (wide_bytes <= simd::width * 4) continue;
    MESSAGE("comparing " << wide_bytes << "-byte packets with the build's " << simd::width * 4 << "-byte packets");
    compare_packet_widths(wide_bytes);
  }
}

TEST_CASE("silu and swiglu_backward against finite differences") {
  auto a = random_tensor(extents<3, 6>{}, 13, 2.0);  // (N, F)
  auto b = random_tensor(extents<3, 6>{}, 14);  // (N, F)
  const auto w = random_tensor(extents<3, 6>{}, 15);  // (N, F)
  const auto s = nn::silu(a);  // (N, F)
  static_assert(std::is_same_v<decltype(s), const tensor<double, extents<3, 6>>>);
  for (index_t i = 0; i < a.size(); ++i)
    CHECK(s.data()[i] == doctest::Approx(a.data()[i] / (1 + std::exp(-a.data()[i]))).epsilon(1e-14));
  const auto [da, db] = nn::swiglu_backward(a, b, w);
  const auto loss = [&] { return dot(w, eval(einlm::silu(a) * b)); };
  CHECK(fd_error(a, da, loss) <= fd_tolerance);
  CHECK(fd_error(b, db, loss) <= fd_tolerance);
  const auto [daf, dbf] = nn::swiglu_backward(to_float(a), to_float(b), to_float(w));
  CHECK(float_error(daf, da) <= 1e-4);
  CHECK(float_error(dbf, db) <= 1e-4);
  report("swiglu_backward");
  tensor<double, dims<2>> narrow(dims<2>(3, 5));
  CHECK_THROWS_WITH_AS(nn::swiglu_backward(a, narrow, w), "swiglu_backward: a of shape (3, 6) does not match b of shape (3, 5)",
                       shape_error);
}

TEST_CASE("cross_entropy_with_grad against finite differences and cross_entropy") {
  auto logits = random_tensor(extents<2, 3, 7>{}, 16, 3.0);  // (B, S, V)
  tensor<std::int32_t, extents<2, 3>> targets;  // (B, S)
  for (index_t i = 0; i < 6; ++i) targets.data()[i] = static_cast<std::int32_t>((5 * i + 2) % 7);
  for (const double z : {0.0, 1e-3, 0.5}) {
    CAPTURE(z);
    const auto [loss, dlogits] = nn::cross_entropy_with_grad(logits, targets, z);
    static_assert(std::is_same_v<decltype(dlogits), const tensor<double, extents<2, 3, 7>>>);
    const auto value = [&] { return nn::cross_entropy_with_grad(logits, targets, z).loss; };
    CHECK(fd_error(logits, dlogits, value) <= fd_tolerance);
    if (z == 0.0) CHECK(loss == doctest::Approx(nn::cross_entropy(logits, targets)).epsilon(1e-14));
    const auto f = nn::cross_entropy_with_grad(to_float(logits), targets, z);
    CHECK(f.loss == doctest::Approx(loss).epsilon(1e-6));
    CHECK(float_error(f.dlogits, dlogits) <= 1e-4);
  }
  report("cross_entropy_with_grad");
  // A lazy expression as the logits gives what its evaluated tensor gives.
  const auto doubled = eval(logits * 2.0);  // (B, S, V)
  const auto lazy = nn::cross_entropy_with_grad(logits * 2.0, targets, 1e-3);
  const auto direct = nn::cross_entropy_with_grad(doubled, targets, 1e-3);
  CHECK(lazy.loss == direct.loss);
  CHECK(normwise(lazy.dlogits, direct.dlogits) == 0.0);
  // z-loss: the term is z · mean(lse²).
  const auto plain = nn::cross_entropy_with_grad(logits, targets).loss;
  const auto lse = [&](index_t row) {
    double m = -1e300, s = 0;
    for (index_t v = 0; v < 7; ++v) m = std::max(m, logits.data()[row * 7 + v]);
    for (index_t v = 0; v < 7; ++v) s += std::exp(logits.data()[row * 7 + v] - m);
    return m + std::log(s);
  };
  double mean_sq = 0;
  for (index_t r = 0; r < 6; ++r) mean_sq += lse(r) * lse(r) / 6;
  CHECK(nn::cross_entropy_with_grad(logits, targets, 1e-3).loss == doctest::Approx(plain + 1e-3 * mean_sq).epsilon(1e-13));
  // Errors.
  targets(1, 2) = 7;
  CHECK_THROWS_WITH_AS(nn::cross_entropy_with_grad(logits, targets),
                       "cross_entropy_with_grad: target 7 of row 5 is outside the vocabulary [0, 7)", value_error);
  tensor<std::int32_t, dims<2>> wrong(dims<2>(2, 4));
  wrong = std::int32_t{0};
  CHECK_THROWS_WITH_AS(nn::cross_entropy_with_grad(logits, wrong),
                       "cross_entropy_with_grad: logits of shape (2, 3, 7) do not match targets of shape (2, 4)",
                       shape_error);
}

TEST_CASE("cross_entropy and cross_entropy_with_grad on wide rows, threaded, strided and in bf16, against a reference in double") {
  // 120 rows of 1003 logits: enough work for the threaded row loop, and a vocabulary that is not a
  // multiple of the packet width.
  constexpr index_t B = 3, S = 40, V = 1003, rows = B * S;
  const auto wide = random_tensor(dims<3>(B, S, V + 5), 17, 4.0);                         // (B, S, V + 5)
  const auto logits = eval(slice(wide, full_extent, full_extent, range{0, V}));            // (B, S, V)
  tensor<std::int64_t, dims<2>> targets(dims<2>(B, S));                                   // (B, S)
  for (index_t i = 0; i < rows; ++i) targets.data()[i] = (i * 7919 + 13) % V;
  const double z = 1e-2;
  const auto as_double = [](auto v) {
    if constexpr (std::is_same_v<decltype(v), bf16>) return static_cast<double>(convert<float>(v));
    else return static_cast<double>(v);
  };
  // The reference from its definition, in double, from the logits as given (x: row-major rows).
  const auto reference = [&](const auto& x, double z_coefficient) {
    std::vector<double> grad(static_cast<std::size_t>(rows * V));
    double loss = 0;
    for (index_t r = 0; r < rows; ++r) {
      const auto at = [&](index_t v) { return as_double(x.data()[r * V + v]); };
      double m = -1e300, sum = 0;
      for (index_t v = 0; v < V; ++v) m = std::max(m, at(v));
      for (index_t v = 0; v < V; ++v) sum += std::exp(at(v) - m);
      const double lse = m + std::log(sum);
      const index_t t = targets.data()[r];
      loss += (lse - at(t) + z_coefficient * lse * lse) / rows;
      for (index_t v = 0; v < V; ++v)
        grad[static_cast<std::size_t>(r * V + v)] =
            (std::exp(at(v) - lse) * (1 + 2 * z_coefficient * lse) - (v == t ? 1.0 : 0.0)) / rows;
    }
    return std::pair{loss, grad};
  };
  const auto worst = [&](const auto& got, const std::vector<double>& want) {
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
      diff = std::max(diff, std::abs(as_double(got.data()[i]) - want[i]));
      scale = std::max(scale, std::abs(want[i]));
    }
    return diff / scale;
  };
  // double, contiguous
  const auto [want_loss, want_grad] = reference(logits, z);
  const auto d = nn::cross_entropy_with_grad(logits, targets, z);
  CHECK(d.loss == doctest::Approx(want_loss).epsilon(1e-13));
  CHECK(worst(d.dlogits, want_grad) <= 1e-13);
  // double, a strided view (rows 1008 apart): the element-wise path, the same values
  const auto strided = nn::cross_entropy_with_grad(slice(wide, full_extent, full_extent, range{0, V}), targets, z);
  CHECK(strided.loss == doctest::Approx(want_loss).epsilon(1e-13));
  CHECK(worst(strided.dlogits, want_grad) <= 1e-13);
  // float: lse ≈ 15 here, and its rounding (|lse|·2^-24 ≈ 1e-6) is every probability's relative error
  const auto f = nn::cross_entropy_with_grad(to_float(logits), targets, z);
  CHECK(f.loss == doctest::Approx(want_loss).epsilon(1e-6));
  CHECK(worst(f.dlogits, want_grad) <= 2e-6);
  // bf16: the reference from the rounded logits; each gradient is rounded to bf16 (8 significant
  // bits) once.
  const auto h = eval(cast<bf16>(logits));                                                 // (B, S, V)
  const auto [want_h_loss, want_h_grad] = reference(h, z);
  const auto g = nn::cross_entropy_with_grad(h, targets, z);
  CHECK(g.loss == doctest::Approx(want_h_loss).epsilon(1e-6));
  CHECK(worst(g.dlogits, want_h_grad) <= 1.0 / 256);
  // Logits handed over: the gradient is written over them, the same bits as above.
  for (const bool half : {false, true}) {
    CAPTURE(half);
    const auto check_in_place = [&](auto given, const auto& out_of_place) {
      const auto* storage = given.data();
      const auto moved = nn::cross_entropy_with_grad(std::move(given), targets, z);
      CHECK(moved.dlogits.data() == storage);
      CHECK(moved.loss == out_of_place.loss);
      CHECK(std::memcmp(moved.dlogits.data(), out_of_place.dlogits.data(), out_of_place.dlogits.bytes()) == 0);
    };
    if (half) check_in_place(eval(cast<bf16>(logits)), g);
    else check_in_place(to_float(logits), f);
  }
  // A bad target is found before anything is written: the logits handed over stay as they were.
  auto kept_logits = to_float(logits);                                                     // (B, S, V)
  const auto copy = to_float(logits);                                                      // (B, S, V)
  auto bad_targets = eval(targets * std::int64_t{1});                                      // (B, S)
  bad_targets(2, 39) = V;
  CHECK_THROWS_WITH_AS(nn::cross_entropy_with_grad(std::move(kept_logits), bad_targets, z),
                       "cross_entropy_with_grad: target 1003 of row 119 is outside the vocabulary [0, 1003)", value_error);
  CHECK(std::memcmp(kept_logits.data(), copy.data(), copy.bytes()) == 0);
  // The loss alone (nn::cross_entropy, which validation runs): contiguous, strided, float, bf16.
  const double plain = reference(logits, 0.0).first;
  CHECK(nn::cross_entropy(logits, targets) == doctest::Approx(plain).epsilon(1e-13));
  CHECK(nn::cross_entropy(slice(wide, full_extent, full_extent, range{0, V}), targets) == doctest::Approx(plain).epsilon(1e-13));
  CHECK(nn::cross_entropy(to_float(logits), targets) == doctest::Approx(plain).epsilon(1e-6));
  CHECK(nn::cross_entropy(h, targets) == doctest::Approx(reference(h, 0.0).first).epsilon(1e-6));
}

namespace {

struct attention_case {
  index_t B, H, G, S, D;
};

void check_attention(const attention_case& c, bool causal) {
  CAPTURE(c.B);
  CAPTURE(c.H);
  CAPTURE(c.G);
  CAPTURE(c.S);
  CAPTURE(c.D);
  CAPTURE(causal);
  auto q = random_tensor(dims<4>(c.B, c.H, c.S, c.D), 20);  // (B, H, S, D)
  auto k = random_tensor(dims<4>(c.B, c.G, c.S, c.D), 21);  // (B, Hkv, S, D)
  auto v = random_tensor(dims<4>(c.B, c.G, c.S, c.D), 22);  // (B, Hkv, S, D)
  const auto w = random_tensor(dims<4>(c.B, c.H, c.S, c.D), 23);  // (B, H, S, D)
  const auto [out, lse] = nn::attention_forward(q, k, v, causal);
  static_assert(std::is_same_v<decltype(out), const tensor<double, dims<4>>>);
  static_assert(std::is_same_v<decltype(lse), const tensor<double, dims<3>>>);

  // out against scaled_dot_product_attention with the kv heads repeated; lse by hand.
  tensor<bool, dims<4>> mask(dims<4>(c.B, c.H, c.S, c.S));  // (B, H, S, S)
  for (index_t i = 0; i < mask.size(); ++i) mask.data()[i] = !causal || i % c.S <= (i / c.S) % c.S;
  const auto kx = repeat_heads(k, c.H);  // (B, H, S, D)
  const auto vx = repeat_heads(v, c.H);  // (B, H, S, D)
  const auto reference = nn::scaled_dot_product_attention(q, kx, vx, mask);  // (B, H, S, D)
  CHECK(normwise(out, reference) <= 1e-14);
  double lse_error = 0;
  for (index_t b = 0; b < c.B; ++b)
    for (index_t h = 0; h < c.H; ++h)
      for (index_t i = 0; i < c.S; ++i) {
        double sum = 0;
        for (index_t j = 0; j < (causal ? i + 1 : c.S); ++j) {
          double s = 0;
          for (index_t d = 0; d < c.D; ++d) s += q(b, h, i, d) * kx(b, h, j, d);
          sum += std::exp(s / std::sqrt(static_cast<double>(c.D)));
        }
        lse_error = std::max(lse_error, std::abs(std::log(sum) - lse(b, h, i)));
      }
  CHECK(lse_error <= 1e-13);

  const auto [dq, dk, dv] = nn::attention_backward(q, k, v, out, lse, w, causal);
  const auto loss = [&] { return dot(w, nn::attention_forward(q, k, v, causal).out); };
  CHECK(fd_error(q, dq, loss) <= fd_tolerance);
  CHECK(fd_error(k, dk, loss) <= fd_tolerance);
  CHECK(fd_error(v, dv, loss) <= fd_tolerance);

  // Float against double, from float's own forward.
  const auto qf = to_float(q), kf = to_float(k), vf = to_float(v), wf = to_float(w);  // (B, H|Hkv, S, D)
  const auto [outf, lsef] = nn::attention_forward(qf, kf, vf, causal);
  static_assert(std::is_same_v<decltype(lsef), const tensor<float, dims<3>>>);
  CHECK(float_error(outf, out) <= 1e-5);
  const auto [dqf, dkf, dvf] = nn::attention_backward(qf, kf, vf, outf, lsef, wf, causal);
  CHECK(float_error(dqf, dq) <= 1e-4);
  CHECK(float_error(dkf, dk) <= 1e-4);
  CHECK(float_error(dvf, dv) <= 1e-4);
}

}  // namespace

TEST_CASE("attention_forward and attention_backward against finite differences") {
  // Multi-head, grouped-query (H = 4, Hkv = 2), multi-query (Hkv = 1); S not a power of two.
  for (const attention_case c : {attention_case{2, 2, 2, 5, 4}, attention_case{1, 4, 2, 7, 4},
                                 attention_case{2, 4, 1, 6, 8}, attention_case{1, 3, 3, 1, 2}})
    for (const bool causal : {true, false}) check_attention(c, causal);
  report("attention_backward");
  MESSAGE("worst float-against-double error (normwise) of every case so far: ", float_worst);
}

namespace {

/// Causal attention by the definition, in double, for q (B, H, Sq, D) and k, v (B, Hkv, Sk, D)
/// already repeated to H heads: query i sees keys 0 … Sk − Sq + i. With dout, also the
/// gradients (dq, dk, dv per query head: the caller sums dk, dv over a group).
struct naive_attention {
  tensor<double, dims<4>> out, dq, dk, dv;  // (B, H, Sq, D), (B, H, Sq, D), (B, H, Sk, D) twice
  tensor<double, dims<3>> lse;              // (B, H, Sq)
};

template <class Q, class K, class V>
naive_attention naive_causal_attention(const Q& q, const K& k, const V& v, const tensor<double, dims<4>>* dout) {
  const index_t B = q.extent(0), H = q.extent(1), Sq = q.extent(2), D = q.extent(3), Sk = k.extent(2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  naive_attention r{tensor<double, dims<4>>(dims<4>(B, H, Sq, D)), tensor<double, dims<4>>(dims<4>(B, H, Sq, D)),
                    tensor<double, dims<4>>(dims<4>(B, H, Sk, D)), tensor<double, dims<4>>(dims<4>(B, H, Sk, D)),
                    tensor<double, dims<3>>(dims<3>(B, H, Sq))};
  r.dq = 0.0;
  r.dk = 0.0;
  r.dv = 0.0;
  std::vector<double> p(static_cast<std::size_t>(Sk)), dp(static_cast<std::size_t>(Sk));
  for (index_t b = 0; b < B; ++b)
    for (index_t h = 0; h < H; ++h)
      for (index_t i = 0; i < Sq; ++i) {
        const index_t visible = Sk - Sq + i + 1;
        double mx = -1e300;
        for (index_t j = 0; j < visible; ++j) {
          double s = 0;
          for (index_t d = 0; d < D; ++d) s += q(b, h, i, d) * k(b, h, j, d);
          p[static_cast<std::size_t>(j)] = s * scale;
          mx = std::max(mx, s * scale);
        }
        double sum = 0;
        for (index_t j = 0; j < visible; ++j) sum += std::exp(p[static_cast<std::size_t>(j)] - mx);
        r.lse(b, h, i) = mx + std::log(sum);
        for (index_t j = 0; j < visible; ++j) p[static_cast<std::size_t>(j)] = std::exp(p[static_cast<std::size_t>(j)] - r.lse(b, h, i));
        for (index_t d = 0; d < D; ++d) {
          double o = 0;
          for (index_t j = 0; j < visible; ++j) o += p[static_cast<std::size_t>(j)] * v(b, h, j, d);
          r.out(b, h, i, d) = o;
        }
        if (!dout) continue;
        double delta = 0;
        for (index_t d = 0; d < D; ++d) delta += (*dout)(b, h, i, d) * r.out(b, h, i, d);
        for (index_t j = 0; j < visible; ++j) {
          double g = 0;
          for (index_t d = 0; d < D; ++d) g += (*dout)(b, h, i, d) * v(b, h, j, d);
          dp[static_cast<std::size_t>(j)] = p[static_cast<std::size_t>(j)] * (g - delta) * scale;  // dS·scale
        }
        for (index_t j = 0; j < visible; ++j)
          for (index_t d = 0; d < D; ++d) {
            r.dq(b, h, i, d) += dp[static_cast<std::size_t>(j)] * k(b, h, j, d);
            r.dk(b, h, j, d) += dp[static_cast<std::size_t>(j)] * q(b, h, i, d);
            r.dv(b, h, j, d) += p[static_cast<std::size_t>(j)] * (*dout)(b, h, i, d);
          }
      }
  return r;
}

/// The per-query-head gradient (B, H, S, D) of k or v summed over each group: (B, Hkv, S, D).
tensor<double, dims<4>> sum_groups(const tensor<double, dims<4>>& g, index_t G) {
  const index_t B = g.extent(0), H = g.extent(1), S = g.extent(2), D = g.extent(3);
  tensor<double, dims<4>> out(dims<4>(B, G, S, D));  // (B, Hkv, S, D)
  out = 0.0;
  for (index_t b = 0; b < B; ++b)
    for (index_t h = 0; h < H; ++h)
      for (index_t s = 0; s < S; ++s)
        for (index_t d = 0; d < D; ++d) out(b, h / (H / G), s, d) += g(b, h, s, d);
  return out;
}

}  // namespace

TEST_CASE("causal attention of more than 48 positions runs in blocks of query rows, with the same values") {
  // Past 48 query rows a causal attention computes its scores block by block over the keys each
  // block sees (not the whole square): every element against the definition, and finite
  // differences. S = 49 (one row past a block), 100 (a short last block), 150; MHA, GQA, MQA.
  for (const attention_case c : {attention_case{2, 2, 2, 49, 4}, attention_case{1, 4, 2, 100, 8},
                                 attention_case{2, 3, 1, 150, 4}}) {
    CAPTURE(c.S);
    CAPTURE(c.G);
    auto q = random_tensor(dims<4>(c.B, c.H, c.S, c.D), 70);  // (B, H, S, D)
    auto k = random_tensor(dims<4>(c.B, c.G, c.S, c.D), 71);  // (B, Hkv, S, D)
    auto v = random_tensor(dims<4>(c.B, c.G, c.S, c.D), 72);  // (B, Hkv, S, D)
    const auto w = random_tensor(dims<4>(c.B, c.H, c.S, c.D), 73);  // (B, H, S, D)
    const auto [out, lse] = nn::attention_forward(q, k, v, true);
    const auto ref = naive_causal_attention(q, repeat_heads(k, c.H), repeat_heads(v, c.H), &w);
    CHECK(normwise(out, ref.out) <= 1e-14);
    CHECK(normwise(lse, ref.lse) <= 1e-14);
    const auto [dq, dk, dv] = nn::attention_backward(q, k, v, out, lse, w, true);
    CHECK(normwise(dq, ref.dq) <= 1e-13);
    CHECK(normwise(dk, sum_groups(ref.dk, c.G)) <= 1e-13);
    CHECK(normwise(dv, sum_groups(ref.dv, c.G)) <= 1e-13);
    const auto loss = [&] { return dot(w, nn::attention_forward(q, k, v, true).out); };
    CHECK(fd_error(q, dq, loss) <= fd_tolerance);
    CHECK(fd_error(k, dk, loss) <= fd_tolerance);
    CHECK(fd_error(v, dv, loss) <= fd_tolerance);
    // Float: the blocked float kernels against the double definition.
    const auto qf = to_float(q), kf = to_float(k), vf = to_float(v), wf = to_float(w);  // (B, H|Hkv, S, D)
    const auto [outf, lsef] = nn::attention_forward(qf, kf, vf, true);
    CHECK(float_error(outf, ref.out) <= 1e-5);
    CHECK(float_error(lsef, ref.lse) <= 1e-5);
    const auto [dqf, dkf, dvf] = nn::attention_backward(qf, kf, vf, outf, lsef, wf, true);
    CHECK(float_error(dqf, ref.dq) <= 1e-4);
    CHECK(float_error(dkf, sum_groups(ref.dk, c.G)) <= 1e-4);
    CHECK(float_error(dvf, sum_groups(ref.dv, c.G)) <= 1e-4);
  }
  report("blocked causal attention");

  // Strided and lazy inputs are copied first, bf16 is computed in float: the same kernels.
  {
    const auto wide = random_tensor(dims<4>(1, 4, 100, 12), 77);                             // (B, H, S, 12)
    const auto q = slice(wide, full_extent, full_extent, full_extent, range{2, 10});         // (B, H, S, D) strided
    const auto q_array = eval(q);                                                            // (B, H, S, D)
    const auto k = random_tensor(dims<4>(1, 2, 100, 8), 78);                                 // (B, Hkv, S, D)
    const auto v = random_tensor(dims<4>(1, 2, 100, 8), 79);                                 // (B, Hkv, S, D)
    const auto from_array = nn::attention_forward(q_array, k, v, true);
    const auto from_view = nn::attention_forward(q, k, v, true);
    const auto from_expression = nn::attention_forward(q_array * 1.0, k, v, true);
    CHECK(normwise(from_view.out, from_array.out) == 0.0);
    CHECK(normwise(from_expression.out, from_array.out) == 0.0);
    const auto dout = slice(wide, full_extent, full_extent, full_extent, range{4, 12});     // (B, H, S, D) strided
    const auto g_array = nn::attention_backward(q_array, k, v, from_array.out, from_array.lse, eval(dout), true);
    const auto g_view = nn::attention_backward(q, k, v, from_array.out, from_array.lse, dout, true);
    CHECK(normwise(g_view.dq, g_array.dq) == 0.0);
    CHECK(normwise(g_view.dk, g_array.dk) == 0.0);
    CHECK(normwise(g_view.dv, g_array.dv) == 0.0);

    const auto qf = to_float(q_array), kf = to_float(k), vf = to_float(v), df = to_float(eval(dout));  // (B, H|Hkv, S, D)
    const auto qb = eval(cast<bf16>(qf)), kb = eval(cast<bf16>(kf)), vb = eval(cast<bf16>(vf));      // (B, H|Hkv, S, D)
    const auto qr = eval(cast<float>(qb)), kr = eval(cast<float>(kb)), vr = eval(cast<float>(vb));   // (B, H|Hkv, S, D)
    const auto [out, lse] = nn::attention_forward(qb, kb, vb, true);
    static_assert(std::is_same_v<decltype(out)::value_type, bf16>);
    const auto [outr, lser] = nn::attention_forward(qr, kr, vr, true);
    CHECK(normwise(lse, lser) <= 1e-6);
    CHECK(normwise(eval(cast<float>(out)), outr) <= 1e-2);
    const auto [dq, dk, dv] = nn::attention_backward(qb, kb, vb, out, lse, eval(cast<bf16>(df)), true);
    static_assert(std::is_same_v<decltype(dk)::value_type, bf16>);
    const auto [dqr, dkr, dvr] = nn::attention_backward(qr, kr, vr, outr, lser, df, true);
    CHECK(normwise(eval(cast<float>(dq)), dqr) <= 3e-2);
    CHECK(normwise(eval(cast<float>(dk)), dkr) <= 3e-2);
    CHECK(normwise(eval(cast<float>(dv)), dvr) <= 3e-2);

#if EINLM_HAS_OPENMP
    // The heads are shared out in chunks, one per thread: the same bits on any number of threads.
    const int threads = omp_get_max_threads();
    const auto wide_q = to_float(random_tensor(dims<4>(2, 6, 100, 8), 80));  // (B, H, S, D): 12 query heads
    const auto wide_kv = to_float(random_tensor(dims<4>(2, 3, 100, 8), 81)); // (B, Hkv, S, D)
    omp_set_num_threads(1);
    const auto one = nn::attention_forward(wide_q, wide_kv, wide_kv, true);
    const auto one_g = nn::attention_backward(wide_q, wide_kv, wide_kv, one.out, one.lse, wide_q, true);
    omp_set_num_threads(3);
    const auto three = nn::attention_forward(wide_q, wide_kv, wide_kv, true);
    const auto three_g = nn::attention_backward(wide_q, wide_kv, wide_kv, one.out, one.lse, wide_q, true);
    omp_set_num_threads(threads);
    CHECK(same_bits(one.out, three.out));
    CHECK(same_bits(one.lse, three.lse));
    CHECK(same_bits(one_g.dq, three_g.dq));
    CHECK(same_bits(one_g.dk, three_g.dk));
    CHECK(same_bits(one_g.dv, three_g.dv));
#endif
  }

  // More keys than queries (a cache's prefill after 70 positions): 60 queries see 70 + i + 1 keys.
  // The keys and values are views of a longer cache (positions 0 … 129 of 140), read in place;
  // with their heads sliced out of a wider array they are copied first. Both give the definition.
  const auto q = random_tensor(dims<4>(2, 4, 60, 8), 74);          // (B, H, Sq, D)
  const auto k_cache = random_tensor(dims<4>(2, 3, 140, 8), 75);   // (B, 3, C, D)
  const auto v_cache = random_tensor(dims<4>(2, 3, 140, 8), 76);   // (B, 3, C, D)
  const auto k = slice(k_cache, full_extent, range{0, 2}, range{0, 130}, full_extent);  // (B, Hkv, Sk, D) strided
  const auto v = slice(v_cache, full_extent, range{0, 2}, range{0, 130}, full_extent);  // (B, Hkv, Sk, D) strided
  const auto k_rows = slice(k_cache, full_extent, range{1, 2}, range{0, 130}, full_extent);  // (B, 1, Sk, D)
  const auto v_rows = slice(v_cache, full_extent, range{1, 2}, range{0, 130}, full_extent);  // (B, 1, Sk, D)
  for (const bool grouped : {true, false}) {
    CAPTURE(grouped);
    const auto [out, lse] = grouped ? nn::attention_forward(q, k, v, true) : nn::attention_forward(q, k_rows, v_rows, true);
    const auto ref = grouped ? naive_causal_attention(q, repeat_heads(k, 4), repeat_heads(v, 4), nullptr)
                             : naive_causal_attention(q, repeat_heads(k_rows, 4), repeat_heads(v_rows, 4), nullptr);
    CHECK(normwise(out, ref.out) <= 1e-14);
    CHECK(normwise(lse, ref.lse) <= 1e-14);
  }
}

TEST_CASE("attention with static extents, and its shape errors") {
  const auto q = random_float(extents<1, 4, 6, 8>{}, 30);  // (B, H, S, D)
  const auto k = random_float(extents<1, 2, 6, 8>{}, 31);  // (B, Hkv, S, D)
  const auto v = random_float(extents<1, 2, 6, 8>{}, 32);  // (B, Hkv, S, D)
  const auto dout = random_float(extents<1, 4, 6, 8>{}, 33);  // (B, H, S, D)
  // [snippet attention_backward]
  const auto [out, lse] = nn::attention_forward(q, k, v, /*causal=*/true);         // (B, H, S, D), (B, H, S)
  const auto [dq, dk, dv] = nn::attention_backward(q, k, v, out, lse, dout, true);  // like q, k, v
  // [end snippet]
  static_assert(std::is_same_v<decltype(out), const tensor<float, extents<1, 4, 6, 8>>>);
  static_assert(std::is_same_v<decltype(dq), const tensor<float, extents<1, 4, 6, 8>>>);
  static_assert(std::is_same_v<decltype(dk), const tensor<float, extents<1, 2, 6, 8>>>);
  static_assert(std::is_same_v<decltype(dv), const tensor<float, extents<1, 2, 6, 8>>>);
  // The same problem with dynamic extents gives the same numbers.
  tensor<float, dims<4>> qd(dims<4>(1, 4, 6, 8)), kd(dims<4>(1, 2, 6, 8)), vd(dims<4>(1, 2, 6, 8));
  assign(qd, q);
  assign(kd, k);
  assign(vd, v);
  const auto fd = nn::attention_forward(qd, kd, vd, true);
  CHECK(normwise(fd.out, out) == 0.0);
  const auto gd = nn::attention_backward(qd, kd, vd, fd.out, fd.lse, dout, true);
  CHECK(normwise(gd.dq, dq) == 0.0);
  CHECK(normwise(gd.dk, dk) == 0.0);
  CHECK(normwise(gd.dv, dv) == 0.0);

  tensor<float, dims<4>> k3(dims<4>(1, 3, 6, 8));  // H = 4 is not a multiple of Hkv = 3
  CHECK_THROWS_WITH_AS(nn::attention_forward(qd, k3, k3, true),
                       "attention_forward: q of shape (1, 4, 6, 8), k of shape (1, 3, 6, 8) and v of shape (1, 3, 6, 8) "
                       "do not fit (B, H, Sq, Dh), (B, Hkv, Sk, Dh) with H a multiple of Hkv and Sq ≤ Sk",
                       shape_error);
  CHECK_THROWS_AS(nn::attention_forward(qd, kd, k3, true), shape_error);
  tensor<float, dims<3>> bad_lse(dims<3>(1, 4, 5));
  CHECK_THROWS_WITH_AS(nn::attention_backward(qd, kd, vd, fd.out, bad_lse, fd.out, true),
                       "attention_backward: lse of shape (1, 4, 5) does not match (B, H, S) of shape (1, 4, 6)",
                       shape_error);
  tensor<float, dims<4>> bad_out(dims<4>(1, 4, 6, 7));
  CHECK_THROWS_AS(nn::attention_backward(qd, kd, vd, bad_out, fd.lse, fd.out, true), shape_error);
}

TEST_CASE("attention_forward with more keys than queries: the queries are the last positions") {
  // Decoding against a KV cache: q holds the last 3 of 7 positions.
  const auto q = random_tensor(extents<2, 4, 7, 8>{}, 40);   // (B, H, S, D)
  const auto k = random_tensor(extents<2, 2, 7, 8>{}, 41);   // (B, Hkv, S, D)
  const auto v = random_tensor(extents<2, 2, 7, 8>{}, 42);   // (B, Hkv, S, D)
  const auto full = nn::attention_forward(q, k, v, /*causal=*/true);
  const auto q_last = eval(slice(q, full_extent, full_extent, range{4, 7}, full_extent));  // (B, H, 3, D)
  const auto tail = nn::attention_forward(q_last, k, v, /*causal=*/true);
  double worst = 0;
  for (index_t b = 0; b < 2; ++b)
    for (index_t h = 0; h < 4; ++h)
      for (index_t i = 0; i < 3; ++i) {
        worst = std::max(worst, std::abs(tail.lse(b, h, i) - full.lse(b, h, i + 4)));
        for (index_t d = 0; d < 8; ++d) worst = std::max(worst, std::abs(tail.out(b, h, i, d) - full.out(b, h, i + 4, d)));
      }
  CHECK(worst < 1e-14);
  // Not causal: every query sees all 7 keys.
  const auto open = nn::attention_forward(q_last, k, v, /*causal=*/false);
  const auto open_full = nn::attention_forward(q, k, v, /*causal=*/false);
  CHECK(std::abs(open.out(1, 3, 0, 5) - open_full.out(1, 3, 4, 5)) < 1e-14);
  // More queries than keys does not fit.
  const auto k_short = eval(slice(k, full_extent, full_extent, range{0, 2}, full_extent));  // (B, Hkv, 2, D)
  CHECK_THROWS_AS(nn::attention_forward(q_last, k_short, k_short, true), shape_error);
}

TEST_CASE("bf16 inputs compute in float and round once") {
  const auto q = random_float(dims<4>(1, 2, 5, 4), 50);  // (B, H, S, D)
  const auto k = random_float(dims<4>(1, 1, 5, 4), 51);  // (B, Hkv, S, D)
  const auto v = random_float(dims<4>(1, 1, 5, 4), 52);  // (B, Hkv, S, D)
  const auto qb = eval(cast<bf16>(q)), kb = eval(cast<bf16>(k)), vb = eval(cast<bf16>(v));  // (B, H|Hkv, S, D)
  const auto qr = eval(cast<float>(qb)), kr = eval(cast<float>(kb)), vr = eval(cast<float>(vb));  // (B, H|Hkv, S, D)
  const auto [out, lse] = nn::attention_forward(qb, kb, vb, true);
  static_assert(std::is_same_v<decltype(out)::value_type, bf16>);
  static_assert(std::is_same_v<decltype(lse)::value_type, float>);
  const auto [outr, lser] = nn::attention_forward(qr, kr, vr, true);
  CHECK(normwise(lse, lser) <= 1e-6);
  CHECK(normwise(eval(cast<float>(out)), outr) <= 1e-2);
  const auto [dq, dk, dv] = nn::attention_backward(qb, kb, vb, out, lse, out, true);
  static_assert(std::is_same_v<decltype(dk)::value_type, bf16>);
  const auto [dqr, dkr, dvr] = nn::attention_backward(qr, kr, vr, outr, lser, outr, true);
  CHECK(normwise(eval(cast<float>(dq)), dqr) <= 3e-2);
  CHECK(normwise(eval(cast<float>(dv)), dvr) <= 3e-2);
  const auto y = nn::softmax(qb);  // (B, H, S, D)
  const auto dx = nn::softmax_backward(y, qb);  // (B, H, S, D)
  static_assert(std::is_same_v<decltype(dx)::value_type, bf16>);
  const auto [da, db] = nn::swiglu_backward(qb, qb, qb);
  static_assert(std::is_same_v<decltype(db)::value_type, bf16>);
}

TEST_CASE("softmax_backward shape errors") {
  tensor<float, dims<2>> y(dims<2>(3, 4)), dy(dims<2>(1, 4));
  CHECK_THROWS_WITH_AS(nn::softmax_backward(y, dy), "softmax_backward: y of shape (3, 4) does not match dy of shape (1, 4)",
                       shape_error);
}

// Run with --no-skip: attention_forward + attention_backward at B = 8, H = 4, S = 128, Dh = 32 in float.
TEST_CASE("attention timing" * doctest::skip()) {
  const index_t B = 8, H = 4, S = 128, D = 32;
  const auto q = random_float(dims<4>(B, H, S, D), 40);  // (B, H, S, D)
  const auto k = random_float(dims<4>(B, H, S, D), 41);  // (B, H, S, D)
  const auto v = random_float(dims<4>(B, H, S, D), 42);  // (B, H, S, D)
  const auto dout = random_float(dims<4>(B, H, S, D), 43);  // (B, H, S, D)
  double best_forward = 1e30, best_backward = 1e30;
  for (int rep = 0; rep < 10; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto f = nn::attention_forward(q, k, v, true);
    const auto t1 = std::chrono::steady_clock::now();
    const auto g = nn::attention_backward(q, k, v, f.out, f.lse, dout, true);
    const auto t2 = std::chrono::steady_clock::now();
    best_forward = std::min(best_forward, std::chrono::duration<double, std::milli>(t1 - t0).count());
    best_backward = std::min(best_backward, std::chrono::duration<double, std::milli>(t2 - t1).count());
    CHECK(std::isfinite(g.dq.data()[0]));
  }
  MESSAGE("attention_forward ", best_forward, " ms, attention_backward ", best_backward, " ms (best of 10)");
}

TEST_CASE("layer_norm, layer_norm_backward, gelu_backward and relu_backward against finite differences") {
  auto x = random_tensor(extents<2, 3, 8>{}, 60, 2.0);  // (B, S, D)
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] += 0.5;  // a non-zero mean
  auto gain = random_tensor(extents<8>{}, 61, 0.3);  // (D,)
  auto bias = random_tensor(extents<8>{}, 62, 0.3);  // (D,)
  for (index_t d = 0; d < 8; ++d) gain(d) += 1.0;
  const auto w = random_tensor(extents<2, 3, 8>{}, 63);  // (B, S, D)
  // Forward: zero mean and unit variance before the gain and bias (biased variance, eps 1e-5).
  const auto y = nn::layer_norm(x, gain, bias);  // (B, S, D)
  for (index_t b = 0; b < 2; ++b)
    for (index_t s = 0; s < 3; ++s) {
      double mean = 0, var = 0;
      for (index_t d = 0; d < 8; ++d) mean += x(b, s, d) / 8;
      for (index_t d = 0; d < 8; ++d) var += (x(b, s, d) - mean) * (x(b, s, d) - mean) / 8;
      for (index_t d = 0; d < 8; ++d)
        CHECK(y(b, s, d) == doctest::Approx((x(b, s, d) - mean) / std::sqrt(var + 1e-5) * gain(d) + bias(d)).epsilon(1e-12));
    }
  const auto [dx, dgain, dbias] = nn::layer_norm_backward(x, gain, w);
  const auto loss = [&] { return dot(w, nn::layer_norm(x, gain, bias)); };
  CHECK(fd_error(x, dx, loss) <= fd_tolerance);
  CHECK(fd_error(gain, dgain, loss) <= fd_tolerance);
  CHECK(fd_error(bias, dbias, loss) <= fd_tolerance);
  const auto [dxf, dgf, dbf] = nn::layer_norm_backward(to_float(x), to_float(gain), to_float(w));
  CHECK(float_error(dxf, dx) <= 1e-4);
  CHECK(float_error(dgf, dgain) <= 1e-4);
  CHECK(float_error(dbf, dbias) <= 1e-4);
  tensor<double, dims<1>> short_gain(dims<1>(7));
  CHECK_THROWS_WITH_AS(nn::layer_norm_backward(x, short_gain, w),
                       "layer_norm_backward: gain of shape (7,) does not match x of shape (2, 3, 8)", shape_error);

  // GELU (erf form) and ReLU; ReLU away from its kink.
  auto a = random_tensor(extents<4, 9>{}, 64, 2.0);  // (N, D)
  const auto wa = random_tensor(extents<4, 9>{}, 65);  // (N, D)
  const auto dgelu = nn::gelu_backward(a, wa);         // (N, D)
  const auto gelu_loss = [&] { return dot(wa, eval(gelu(a))); };
  CHECK(fd_error(a, dgelu, gelu_loss) <= fd_tolerance);
  for (index_t i = 0; i < a.size(); ++i)
    if (std::abs(a.data()[i]) < 1e-3) a.data()[i] = 0.5;
  const auto drelu = nn::relu_backward(a, wa);  // (N, D)
  const auto relu_loss = [&] { return dot(wa, eval(relu(a))); };
  CHECK(fd_error(a, drelu, relu_loss) <= fd_tolerance);
  CHECK(float_error(nn::gelu_backward(to_float(a), to_float(wa)), nn::gelu_backward(a, wa)) <= 1e-5);
  report("layer_norm, gelu, relu");
}

/// max |a − b| / max |b| for arrays of any floating element types (bf16 included).
template <class A, class B>
double normwise_any(const A& a, const B& b) {
  REQUIRE(a.size() == b.size());
  double diff = 0, scale = 0;
  for (index_t i = 0; i < a.size(); ++i) {
    const double x = convert<double>(a.data()[i]), y = convert<double>(b.data()[i]);
    diff = std::max(diff, std::abs(x - y));
    scale = std::max(scale, std::abs(y));
  }
  return diff / std::max(scale, 1e-300);
}

/// The norms' row kernels (host tensors) against their expressions, for one element type T: rows
/// of widths with and without whole packets, one row and enough rows for several blocks, at every
/// packet width the CPU runs. tolerance: normwise, relative to the largest element. Widths 1 and 2
/// are left out: there LayerNorm's dx (and RMSNorm's at width 1) is zero up to rounding, a
/// cancellation whose leftover differs with multiply-add contraction.
template <class T>
void compare_norm_rows(double tolerance) {
  double worst = 0;
  for (const index_t d : {3, 5, 16, 17, 64, 100, 128, 300}) {
    for (const index_t rows : {1, 3, 257}) {
      const auto shape = dims<2>(rows, d);
      auto xd = random_tensor(shape, 70, 2.0);  // (N, D)
      for (index_t i = 0; i < xd.size(); ++i) xd.data()[i] += 0.7;  // a non-zero mean
      auto gd = random_tensor(dims<1>(d), 72, 0.5);  // (D,)
      for (index_t i = 0; i < d; ++i) gd.data()[i] += 1.0;
      const auto x = to_type<T>(xd);                                        // (N, D)
      const auto dy = to_type<T>(random_tensor(shape, 71));                 // (N, D)
      const auto gain = to_type<T>(gd);                                     // (D,)
      const auto bias = to_type<T>(random_tensor(dims<1>(d), 73, 0.5));     // (D,)
      const auto rms_y = nn::detail::rms_norm_expression(x, gain, 1e-5);                  // (N, D)
      const auto ln_y = nn::detail::layer_norm_expression(x, gain, bias, 1e-5);           // (N, D)
      const auto rms_g = nn::detail::rms_norm_backward_expression(x, gain, dy, 1e-5);
      const auto ln_g = nn::detail::layer_norm_backward_expression(x, gain, dy, 1e-5);
      for (const int cap : {16, 32, 64}) {
        if (cap > simd::dispatch_bytes()) break;
        const auto errors = at_packet_bytes(cap, [&] {
          const auto rg = nn::rms_norm_backward(x, gain, dy);
          const auto lg = nn::layer_norm_backward(x, gain, dy);
          return std::vector<double>{
              normwise_any(nn::rms_norm(x, gain), rms_y),       normwise_any(nn::layer_norm(x, gain, bias), ln_y),
              normwise_any(rg.dx, rms_g.dx),                    normwise_any(rg.dgain, rms_g.dgain),
              normwise_any(lg.dx, ln_g.dx),                     normwise_any(lg.dgain, ln_g.dgain),
              normwise_any(lg.dbias, ln_g.dbias)};
        });
        for (std::size_t k = 0; k < errors.size(); ++k) {
          const double e = errors[k];
          INFO("width " << d << ", " << rows << " rows, " << cap << "-byte packets, result " << k);
          CHECK(e <= tolerance);
          worst = std::max(worst, e);
        }
      }
    }
  }
  MESSAGE(static_cast<int>(sizeof(T) * 8) << "-bit: worst normwise difference from the expressions " << worst);
}

TEST_CASE("rms_norm and layer_norm: the row kernels agree with the expressions, and sum the same on any thread count") {
  // The kernels run on host tensors; a view of the same data takes the expressions' path (checked
  // here to be that path). double and float differ from the expressions by the order of the sums
  // only; bf16 rounds the same float results once.
  compare_norm_rows<double>(1e-13);
  compare_norm_rows<float>(2e-6);
  compare_norm_rows<bf16>(4e-3);  // one bf16 rounding step (2⁻⁸) at the largest element
  const auto x = to_float(random_tensor(dims<3>(4, 300, 96), 74));  // (B, S, D): 8 blocks of rows
  const auto dy = to_float(random_tensor(dims<3>(4, 300, 96), 75));  // (B, S, D)
  const auto gain = to_float(random_tensor(dims<1>(96), 76));        // (D,)
  const auto bias = to_float(random_tensor(dims<1>(96), 77));        // (D,)
  CHECK(same_bits(nn::rms_norm(as_view(x), gain), nn::detail::rms_norm_expression(x, gain, 1e-5)));
  CHECK(same_bits(nn::layer_norm(as_view(x), gain, bias), nn::detail::layer_norm_expression(x, gain, bias, 1e-5)));
#if EINLM_HAS_OPENMP
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const auto one_rms = nn::rms_norm_backward(x, gain, dy);
  const auto one_ln = nn::layer_norm_backward(x, gain, dy);
  omp_set_num_threads(3);
  const auto three_rms = nn::rms_norm_backward(x, gain, dy);
  const auto three_ln = nn::layer_norm_backward(x, gain, dy);
  omp_set_num_threads(threads);
  CHECK(same_bits(one_rms.dx, three_rms.dx));
  CHECK(same_bits(one_rms.dgain, three_rms.dgain));
  CHECK(same_bits(one_ln.dgain, three_ln.dgain));
  CHECK(same_bits(one_ln.dbias, three_ln.dbias));
#endif
  // The forward passes' shape errors.
  const auto short_gain = to_float(random_tensor(dims<1>(95), 78));  // (D − 1,)
  CHECK_THROWS_WITH_AS(nn::rms_norm(x, short_gain), "rms_norm: gain of shape (95,) does not match x of shape (4, 300, 96)",
                       shape_error);
  CHECK_THROWS_WITH_AS(nn::layer_norm(x, gain, short_gain),
                       "layer_norm: bias of shape (95,) does not match x of shape (4, 300, 96)", shape_error);
}

TEST_CASE("gelu_backward in float: within 2.5e-7 of the exact derivative from -12 to 12, in packets and tails alike") {
  // 4003 points (not a multiple of any packet width): every lane position and the scalar tail.
  constexpr index_t n = 4003;
  tensor<float, extents<n>> x, ones;  // (n,) twice
  for (index_t i = 0; i < n; ++i) {
    x(i) = -12.0f + 24.0f * static_cast<float>(i) / static_cast<float>(n - 1);
    ones(i) = 1.0f;
  }
  const auto d = nn::gelu_backward(x, ones);  // (n,)
  double worst = 0;
  for (index_t i = 0; i < n; ++i) {
    const double v = x(i);
    const double exact = 0.5 * std::erfc(-v / std::sqrt(2.0)) + v * std::exp(-0.5 * v * v) / std::sqrt(2.0 * M_PI);
    worst = std::max(worst, std::abs(static_cast<double>(d(i)) - exact));
  }
  MESSAGE("gelu_backward (float): worst absolute error " << worst);
  CHECK(worst <= 2.5e-7);  // 2.3e-7 over all floats (tests/core/test_math.cpp bounds it in ulps)
  // Scaled by dy, and through bf16 storage (computed in float).
  tensor<float, extents<n>> dy;  // (n,)
  for (index_t i = 0; i < n; ++i) dy(i) = static_cast<float>(i % 17) - 8.0f;
  const auto scaled = nn::gelu_backward(x, dy);  // (n,)
  int wrong = 0;
  for (index_t i = 0; i < n; ++i) wrong += std::abs(scaled(i) - dy(i) * d(i)) > 1e-6f * std::abs(dy(i));
  CHECK(wrong == 0);
  const tensor<bf16, extents<n>> xb(cast<bf16>(x)), dyb(cast<bf16>(dy));
  const auto db = nn::gelu_backward(xb, dyb);  // (n,)
  double worst_b = 0;
  for (index_t i = 0; i < n; ++i) {
    const double v = convert<double>(xb(i)), g = convert<double>(dyb(i));
    const double exact = g * (0.5 * std::erfc(-v / std::sqrt(2.0)) + v * std::exp(-0.5 * v * v) / std::sqrt(2.0 * M_PI));
    worst_b = std::max(worst_b, std::abs(convert<double>(db(i)) - exact) / std::max(1.0, std::abs(exact)));
  }
  CHECK(worst_b <= 1.0 / 128);  // bf16's rounding of the product
}
