// Tests of einlm/optim: the cosine schedule against CS336's 25-value list, warmup-stable-decay by
// its definition, gradient clipping against CS336's case (√125 → 8.944271e-4 per element) and
// random gradients (float, double, strided), and AdamW against CS336's test_adamw snapshot (1000
// steps of a 3→2 linear regression from the seed-42 weights; tolerance 1e-4 as in CS336) and
// against a double-precision transcription of torch.optim.AdamW's update on random data; its
// one-pass kernel against the three expressions it replaced, at every packet width; SGD and
// AdaGrad against torch.optim, and their one-pass kernels against their expressions likewise.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "einlm/core/npy.hpp"
#include "einlm/core/simd_dispatch.hpp"
#include "einlm/optim/adamw.hpp"
#include "einlm/optim/clip.hpp"
#include "einlm/optim/schedule.hpp"
#include "einlm/optim/sgd.hpp"
#include "einlm/core/safetensors.hpp"
#include "support/check.hpp"

using namespace einlm;

TEST_CASE("cosine schedule: CS336's 25 values") {
  // test_get_lr_cosine_schedule: α_max 1, α_min 0.1, T_w 7, T_c 21, it = 0..24.
  const double expected[] = {0,
                             0.14285714285714285,
                             0.2857142857142857,
                             0.42857142857142855,
                             0.5714285714285714,
                             0.7142857142857143,
                             0.8571428571428571,
                             1.0,
                             0.9887175604818206,
                             0.9554359905560885,
                             0.9018241671106134,
                             0.8305704108364301,
                             0.7452476826029011,
                             0.6501344202803414,
                             0.55,
                             0.44986557971965857,
                             0.3547523173970989,
                             0.26942958916356996,
                             0.19817583288938662,
                             0.14456400944391146,
                             0.11128243951817937,
                             0.1,
                             0.1,
                             0.1,
                             0.1};
  // [snippet cosine]
  const optim::cosine_schedule schedule{.max_lr = 1.0, .min_lr = 0.1, .warmup_iters = 7, .cosine_cycle_iters = 21};
  // [end snippet]
  schedule.check();
  for (int it = 0; it < 25; ++it) CHECK(schedule(it) == doctest::Approx(expected[it]).epsilon(1e-12));
  CHECK_THROWS_AS((optim::cosine_schedule{1.0, 0.1, 10, 5}.check()), value_error);
}

TEST_CASE("warmup-stable-decay and constant schedules") {
  const optim::wsd_schedule s{.max_lr = 2.0, .min_lr = 0.5, .warmup_iters = 4, .stable_iters = 6, .decay_iters = 3};
  CHECK(s(0) == 0.0);
  CHECK(s(2) == 1.0);
  CHECK(s(4) == 2.0);
  CHECK(s(10) == 2.0);
  CHECK(s(11) == doctest::Approx(2.0 - 1.5 / 3));
  CHECK(s(12) == doctest::Approx(2.0 - 3.0 / 3));
  CHECK(s(13) == 0.5);
  CHECK(s(100) == 0.5);
  CHECK(optim::constant_schedule{3e-4}(12345) == 3e-4);
  CHECK_THROWS_AS((optim::wsd_schedule{1.0, 0.0, -1, 0, 0}.check()), value_error);
}

TEST_CASE("gradient clipping: CS336's case") {
  // Five (5, 5) gradients of ones (the sixth parameter is frozen and has none): ‖g‖ = √125.
  std::vector<tensor<float, extents<5, 5>>> grads(5);
  for (auto& g : grads) g = 1.0f;
  tensor<float, extents<5, 5>> frozen_param;
  frozen_param = 2.0f;
  // [snippet clip]
  const double norm = optim::clip_grad_norm(0.01, grads[0], grads[1], grads[2], grads[3], grads[4]);
  // [end snippet]
  CHECK(norm == doctest::Approx(std::sqrt(125.0)).epsilon(1e-12));
  for (const auto& g : grads)
    for (index_t i = 0; i < 25; ++i) CHECK(std::abs(g.data()[i] - 0.0008944271109999231) <= 1e-6 * 1e-3);
  CHECK(frozen_param(4, 4) == 2.0f);
  // Below the threshold nothing changes.
  CHECK(optim::clip_grad_norm(1e9, grads[0]) == doctest::Approx(std::sqrt(25.0) * 0.0008944271109999231));
  CHECK(grads[0](0, 0) == doctest::Approx(0.0008944271109999231).epsilon(1e-6));
  CHECK_THROWS_AS(optim::clip_grad_norm(0.0, grads[0]), value_error);

  // The same over a run-time list.
  for (auto& g : grads) g = 1.0f;
  const double listed = optim::clip_grad_norm_each(0.01, [&](auto&& f) {
    for (auto& g : grads) f(g);
  });
  CHECK(listed == doctest::Approx(std::sqrt(125.0)).epsilon(1e-12));
  for (const auto& g : grads) CHECK(std::abs(g(2, 3) - 0.0008944271109999231) <= 1e-6 * 1e-3);
}

TEST_CASE("gradient clipping: random float, double and strided gradients") {
  const auto a0 = test::random_values<float>(6 * 7, -3, 3, 1);
  const auto b0 = test::random_values<double>(9, -3, 3, 2);
  tensor<float, extents<6, 7>> a;
  tensor<double, extents<9>> b;
  for (index_t i = 0; i < 42; ++i) a.data()[i] = a0[static_cast<std::size_t>(i)];
  for (index_t i = 0; i < 9; ++i) b.data()[i] = b0[static_cast<std::size_t>(i)];
  double ss_a = 0, ss_b = 0;
  for (auto x : a0) ss_a += double(x) * x;
  for (auto x : b0) ss_b += x * x;
  const double norm = std::sqrt(ss_a + ss_b);
  CHECK(optim::global_l2_norm(a, transpose<1, 0>(a), b) == doctest::Approx(std::sqrt(2 * ss_a + ss_b)).epsilon(1e-12));
  const double returned = optim::clip_grad_norm(1.5, transpose<1, 0>(a), b);
  CHECK(returned == doctest::Approx(norm).epsilon(1e-12));
  const double scale = 1.5 / (norm + optim::clip_eps);
  for (index_t i = 0; i < 42; ++i) CHECK(a.data()[i] == doctest::Approx(a0[static_cast<std::size_t>(i)] * scale).epsilon(1e-6));
  for (index_t i = 0; i < 9; ++i) CHECK(b.data()[i] == doctest::Approx(b0[static_cast<std::size_t>(i)] * scale).epsilon(1e-14));
  CHECK(optim::global_l2_norm(a, b) == doctest::Approx(1.5).epsilon(1e-6));
}

TEST_CASE("AdamW: CS336's test_adamw snapshot") {
  const auto fixtures = test::fixtures_dir();
  if (!fixtures) {
    MESSAGE("skipped: EINLM_FIXTURES_DIR is not set (reference fixtures)");
    return;
  }
  const std::string root = *fixtures + "/cs336/";
  // W = nn.Linear(3, 2, bias=False).weight after torch.manual_seed(42); x = 1000 × torch.rand(3).
  auto w = load_npy<float, extents<2, 3>>(root + "derived/adamw_init_weight.npy");
  const auto xs = load_npy<float, extents<1000, 3>>(root + "derived/adamw_inputs_x.npy");
  const auto expected = read_npz(root + "_snapshots/test_adamw.npz").at("array");
  // [snippet adamw]
  optim::adamw opt({.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01});
  tensor<float, extents<2, 3>> grad;  // (Out, In)
  for (index_t step = 0; step < 1000; ++step) {
    // loss = Σ (y − W x)², y = [x0 + x1, −x2]: dL/dW = −2 (y − W x) xᵀ
    const float x[3] = {xs(step, 0), xs(step, 1), xs(step, 2)};
    const float y[2] = {x[0] + x[1], -x[2]};
    for (index_t o = 0; o < 2; ++o) {
      const float residual = y[o] - (w(o, 0) * x[0] + w(o, 1) * x[1] + w(o, 2) * x[2]);
      for (index_t i = 0; i < 3; ++i) grad(o, i) = -2.0f * residual * x[i];
    }
    opt.begin_step(1e-3);
    opt.update("weight", w, grad);
  }
  // [end snippet]
  CHECK(opt.step() == 1000);
  const float* want = reinterpret_cast<const float*>(expected.data.data());
  for (index_t i = 0; i < 6; ++i) CHECK(std::abs(w.data()[i] - want[i]) <= 1e-4);
}

TEST_CASE("AdamW: torch.optim.AdamW's update, step by step, in double") {
  // A transcription of torch's _single_tensor_adamw in double, against einlm on double parameters.
  const std::size_t n = 37;
  auto p_ref = test::random_values<double>(n, -1, 1, 3);
  std::vector<double> m(n, 0.0), v(n, 0.0);
  tensor<double, extents<37>> p;
  for (std::size_t i = 0; i < n; ++i) p.data()[i] = p_ref[i];
  const double lr = 3e-3, b1 = 0.8, b2 = 0.95, eps = 1e-6, wd = 0.1;
  optim::adamw opt({.beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd});
  for (int t = 1; t <= 25; ++t) {
    const auto g = test::random_values<double>(n, -2, 2, 100 + static_cast<std::uint64_t>(t));
    tensor<double, extents<37>> grad;
    for (std::size_t i = 0; i < n; ++i) grad.data()[i] = g[i];
    const double step_lr = lr * (1.0 - 0.02 * t);
    for (std::size_t i = 0; i < n; ++i) {
      p_ref[i] *= 1 - step_lr * wd;
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      const double denom = std::sqrt(v[i]) / std::sqrt(1 - std::pow(b2, t)) + eps;
      p_ref[i] -= step_lr / (1 - std::pow(b1, t)) * m[i] / denom;
    }
    opt.begin_step(step_lr);
    opt.update("p", p, grad);
  }
  for (std::size_t i = 0; i < n; ++i) CHECK(p.data()[i] == doctest::Approx(p_ref[i]).epsilon(1e-13));
  const auto& mom = std::get<optim::adamw_moments<double>>(opt.state().at("p"));
  for (std::size_t i = 0; i < n; ++i) CHECK(mom.m.data()[i] == doctest::Approx(m[i]).epsilon(1e-13));
}

TEST_CASE_TEMPLATE("AdamW: the one-pass kernel equals the three expressions it replaced, at every packet width", T,
                   float, double) {
  // Sizes around the packet widths (scalar tails) and one past a threading unit; a strided
  // gradient goes through the flat copy first. Both paths: 25 steps of a schedule, then compared
  // (up to the fused multiply-adds a wider kernel may use).
  const double tolerance = std::is_same_v<T, float> ? 2e-6 : 1e-14;
  const int start = simd::dispatch_bytes();
  for (const int cap : {16, 32, 64}) {
    if (cap > start) break;
    CAPTURE(simd::limit_dispatch_bytes(cap));
    for (const index_t n : {index_t{1}, index_t{7}, index_t{16}, index_t{33}, index_t{4099}}) {
      CAPTURE(n);
      const auto init = test::random_values<T>(static_cast<std::size_t>(n), -1, 1, 11);
      tensor<T, dims<1>> p{dims<1>(n)}, p_ref{dims<1>(n)}, m_ref{dims<1>(n)}, v_ref{dims<1>(n)};  // (N,) each
      std::copy(init.begin(), init.end(), p.data());
      std::copy(init.begin(), init.end(), p_ref.data());
      m_ref = T(0);
      v_ref = T(0);
      const optim::adamw_options options{.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
      optim::adamw opt(options);
      for (int t = 1; t <= 25; ++t) {
        const auto g = test::random_values<T>(static_cast<std::size_t>(2 * n), -2, 2, 200 + static_cast<std::uint64_t>(t));
        tensor<T, dims<2>> pairs{dims<2>(n, 2)};  // (N, 2): the gradient is column 0, a strided view
        std::copy(g.begin(), g.end(), pairs.data());
        const auto grad = slice(pairs, full_extent, 0);  // (N,) stride 2
        const double lr = 1e-2 * (1.0 - 0.03 * t);
        opt.begin_step(lr);
        opt.update("p", p, grad, options.weight_decay);
        tensor<T, dims<1>> flat_g = eval(grad);  // (N,)
        optim::detail::adamw_expressions(as_view(p_ref), as_view(m_ref), as_view(v_ref), as_view(flat_g),
                                         optim::detail::adamw_coefficients<T>::of(options, lr, options.weight_decay, t));
      }
      const auto& mom = std::get<optim::adamw_moments<T>>(opt.state().at("p"));
      for (index_t i = 0; i < n; ++i) {
        CHECK(p.data()[i] == doctest::Approx(p_ref.data()[i]).epsilon(tolerance));
        CHECK(mom.m.data()[i] == doctest::Approx(m_ref.data()[i]).epsilon(tolerance));
        CHECK(mom.v.data()[i] == doctest::Approx(v_ref.data()[i]).epsilon(tolerance));
      }
    }
  }
  CHECK(simd::limit_dispatch_bytes(start) == start);
}

TEST_CASE("AdamW: errors name the parameter") {
  optim::adamw opt;
  tensor<float, extents<4>> p, g;
  p = 1.0f;
  g = 1.0f;
  CHECK_THROWS_WITH_AS(opt.update("w", p, g), "adamw: call begin_step(lr) before update()", value_error);
  opt.begin_step(0.1);
  tensor<float, extents<5>> g5;
  g5 = 1.0f;
  CHECK_THROWS_WITH_AS(opt.update("w", p, g5), doctest::Contains("parameter 'w' has shape (4,) but its gradient has shape (5,)"),
                       shape_error);
  opt.update("w", p, g);
  tensor<float, extents<5>> p5;
  p5 = 1.0f;
  CHECK_THROWS_WITH_AS(opt.update("w", p5, g5), doctest::Contains("parameter 'w' changed its element type or size"),
                       shape_error);
  CHECK_THROWS_AS(optim::adamw({.beta1 = 1.0}), value_error);
  CHECK_THROWS_AS(opt.begin_step(std::nan("")), value_error);
  // A per-parameter weight decay of 0 leaves a zero gradient's parameter unchanged.
  tensor<float, extents<4>> zero_g;
  zero_g = 0.0f;
  tensor<float, extents<4>> q;
  q = 3.0f;
  opt.update("q", q, zero_g, 0.0);
  CHECK(q(3) == 3.0f);
}

namespace {

/// Runs optimizer `opt` over the steps of tests/data/optim/sgd_adagrad.safetensors and compares
/// each step's parameters with torch.optim's; "b" is a no-weight-decay group, as in the script.
template <class Opt>
void check_against_torch(Opt opt, const std::string& name, const safetensors_file& f, double& worst) {
  auto a = f.load<double, extents<4, 5>>("init.a");  // (4, 5)
  auto b = f.load<double, extents<7>>("init.b");     // (7,)
  const auto lr = f.load<double, extents<6>>("lr");  // (6,)
  for (int s = 0; s < 6; ++s) {
    const auto ga = f.load<double, extents<4, 5>>("grad." + std::to_string(s) + ".a");  // (4, 5)
    const auto gb = f.load<double, extents<7>>("grad." + std::to_string(s) + ".b");     // (7,)
    opt.begin_step(lr(s));
    opt.update("a", a, ga);
    opt.update("b", b, gb, 0.0);
    const auto ea = f.load<double, extents<4, 5>>(name + "." + std::to_string(s) + ".a");  // (4, 5)
    const auto eb = f.load<double, extents<7>>(name + "." + std::to_string(s) + ".b");     // (7,)
    for (index_t i = 0; i < 20; ++i) worst = std::max(worst, std::abs(a.data()[i] - ea.data()[i]));
    for (index_t i = 0; i < 7; ++i) worst = std::max(worst, std::abs(b.data()[i] - eb.data()[i]));
  }
}

}  // namespace

TEST_CASE("SGD (plain, momentum with dampening, Nesterov) and AdaGrad equal torch.optim") {
  const safetensors_file f(test::test_data_dir() + "/optim/sgd_adagrad.safetensors");
  double worst = 0;
  // [snippet sgd]
  optim::sgd momentum({.momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01});
  optim::adagrad adagrad({.lr_decay = 0.05, .weight_decay = 0.01, .initial_accumulator_value = 0.1});
  // [end snippet]
  check_against_torch(optim::sgd({.weight_decay = 0.01}), "sgd_plain", f, worst);
  check_against_torch(std::move(momentum), "sgd_momentum", f, worst);
  check_against_torch(optim::sgd({.momentum = 0.8, .weight_decay = 0.02, .nesterov = true}), "sgd_nesterov", f, worst);
  check_against_torch(std::move(adagrad), "adagrad", f, worst);
  CHECK(worst < 1e-14);
  MESSAGE("SGD and AdaGrad against torch.optim: worst absolute difference " << worst);

  // Float parameters, strided gradients, errors.
  tensor<float, extents<3, 2>> w;
  w = 1.0f;
  tensor<float, extents<2, 3>> gt;
  gt = 0.5f;
  optim::sgd s({.momentum = 0.5});
  CHECK_THROWS_WITH_AS(s.update("w", w, transpose<1, 0>(gt)), "sgd: call begin_step(lr) before update()", value_error);
  s.begin_step(0.1);
  s.update("w", w, transpose<1, 0>(gt));
  CHECK(w(2, 1) == doctest::Approx(0.95));
  tensor<float, extents<2, 2>> wrong;
  CHECK_THROWS_WITH_AS(s.update("w", w, wrong), "sgd: parameter 'w' has shape (3, 2) but its gradient has shape (2, 2)",
                       shape_error);
  CHECK_THROWS_AS(optim::sgd({.momentum = 0.0, .nesterov = true}), value_error);
  CHECK_THROWS_AS(optim::adagrad({.eps = -1}), value_error);
  CHECK(s.state().count("w") == 1);
}

TEST_CASE_TEMPLATE("SGD and AdaGrad: the one-pass kernels equal the expressions they replaced, at every packet width",
                   T, float, double) {
  // As AdamW's case: sizes around the packet widths and past a threading unit, strided gradients,
  // a schedule of 12 steps; plain SGD, momentum with dampening, Nesterov, and AdaGrad.
  const double tolerance = std::is_same_v<T, float> ? 2e-6 : 1e-14;
  const int start = simd::dispatch_bytes();
  const optim::sgd_options sgd_forms[] = {{.weight_decay = 0.01},
                                          {.momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01},
                                          {.momentum = 0.8, .weight_decay = 0.02, .nesterov = true}};
  const optim::adagrad_options adagrad_options{.lr_decay = 0.05, .weight_decay = 0.01, .initial_accumulator_value = 0.1};
  for (const int cap : {16, 32, 64}) {
    if (cap > start) break;
    CAPTURE(simd::limit_dispatch_bytes(cap));
    for (const index_t n : {index_t{1}, index_t{7}, index_t{16}, index_t{33}, index_t{4099}}) {
      CAPTURE(n);
      for (int form = 0; form < 4; ++form) {
        CAPTURE(form);
        const auto init = test::random_values<T>(static_cast<std::size_t>(n), -1, 1, 13);
        tensor<T, dims<1>> p{dims<1>(n)}, p_ref{dims<1>(n)}, buffer_ref{dims<1>(n)};  // (N,) each
        std::copy(init.begin(), init.end(), p.data());
        std::copy(init.begin(), init.end(), p_ref.data());
        buffer_ref = static_cast<T>(form == 3 ? adagrad_options.initial_accumulator_value : 0.0);
        optim::sgd sgd(form < 3 ? sgd_forms[form] : optim::sgd_options{});
        optim::adagrad adagrad(adagrad_options);
        for (int t = 1; t <= 12; ++t) {
          const auto g = test::random_values<T>(static_cast<std::size_t>(2 * n), -2, 2, 300 + static_cast<std::uint64_t>(t));
          tensor<T, dims<2>> pairs{dims<2>(n, 2)};  // (N, 2): the gradient is column 0, a strided view
          std::copy(g.begin(), g.end(), pairs.data());
          const auto grad = slice(pairs, full_extent, 0);  // (N,) stride 2
          tensor<T, dims<1>> flat_g = eval(grad);          // (N,)
          const double lr = 1e-2 * (1.0 - 0.03 * t);
          if (form < 3) {
            const auto& o = sgd_forms[form];
            sgd.begin_step(lr);
            sgd.update("p", p, grad);
            optim::detail::sgd_expressions(as_view(p_ref), as_view(buffer_ref), as_view(flat_g),
                                           optim::detail::sgd_coefficients<T>::of(o, lr, o.weight_decay, t == 1));
          } else {
            adagrad.begin_step(lr);
            adagrad.update("p", p, grad);
            const optim::detail::adagrad_coefficients<T> k{
                static_cast<T>(lr / (1.0 + (t - 1) * adagrad_options.lr_decay)),
                static_cast<T>(adagrad_options.weight_decay), static_cast<T>(adagrad_options.eps)};
            optim::detail::adagrad_expressions(as_view(p_ref), as_view(buffer_ref), as_view(flat_g), k);
          }
        }
        const auto& state = form < 3 ? sgd.state() : adagrad.state();
        CHECK(state.count("p") == (form == 0 ? 0u : 1u));  // plain SGD keeps no buffer
        for (index_t i = 0; i < n; ++i) CHECK(p.data()[i] == doctest::Approx(p_ref.data()[i]).epsilon(tolerance));
        if (form == 0) continue;
        const auto& buffer = std::get<tensor<T, dims<1>, host>>(state.at("p"));  // (N,)
        for (index_t i = 0; i < n; ++i)
          CHECK(buffer.data()[i] == doctest::Approx(buffer_ref.data()[i]).epsilon(tolerance));
      }
    }
  }
  CHECK(simd::limit_dispatch_bytes(start) == start);
}
