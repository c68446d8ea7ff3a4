// Tests of einlm/nn/moe.hpp: the output, the auxiliary losses and every gradient against an
// independent PyTorch implementation (tools/make_moe_goldens.py, float64: softmax top-2 with a
// shared expert, Switch top-1 with capacity drops, sigmoid top-2 with a bias and the sequence-wise
// loss); the whole layer against central finite differences; invariants (one expert is the dense
// SwiGLU, dropless routing commutes with token order, the balance loss on hand-built routing,
// capacity drops, the bias update balancing the load); float against double; bad configurations
// and shapes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "einlm/core/safetensors.hpp"
#include "einlm/nn/moe.hpp"
#include "support/check.hpp"
#include "support/max_abs_diff.hpp"

using namespace einlm;
using test::max_abs_diff;

namespace {

template <class A>
double max_abs(const A& a) {
  double m = 0;
  for (index_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a.data()[i])));
  return m;
}

/// Fills every parameter uniformly in ±scale (the router in ±router_scale), from std::mt19937_64.
template <class T>
void randomise(nn::moe_parameters<T>& p, std::uint64_t seed, double scale = 0.4, double router_scale = 0.8) {
  std::uint64_t stream = seed;
  p.for_each_parameter([&](const std::string& name, auto& w) {
    const double s = name == "router.weight" ? router_scale : name == "router.bias" ? 0.1 : scale;
    const auto v = test::random_values<T>(static_cast<std::size_t>(w.size()), -s, s, ++stream);
    std::copy(v.begin(), v.end(), w.data());
  });
}

template <class T>
tensor<T, dims<2>> random_matrix(index_t rows, index_t cols, std::uint64_t seed, double scale = 1.0) {
  tensor<T, dims<2>> t(rows, cols);  // (rows, cols)
  const auto v = test::random_values<T>(static_cast<std::size_t>(rows * cols), -scale, scale, seed);
  std::copy(v.begin(), v.end(), t.data());
  return t;
}

/// Σ y ⊙ dy + the weighted auxiliary losses, in double.
template <class T>
double objective(const nn::moe_parameters<T>& p, const tensor<T, dims<2>>& x, const tensor<T, dims<2>>& dy,
                 index_t seq_len) {
  nn::moe_stats st;
  const auto y = nn::moe_layer<T>::forward(p, x, seq_len, &st);  // (N, D)
  double s = st.aux_loss;
  for (index_t i = 0; i < y.size(); ++i) s += static_cast<double>(y.data()[i]) * static_cast<double>(dy.data()[i]);
  return s;
}

std::string message_of(const nn::moe_layer_config& c) {
  try {
    c.validate();
  } catch (const nn::config_error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("moe_layer: output, losses and gradients equal PyTorch's") {
  for (const std::string name : {"softmax_top2", "switch_top1_capacity", "sigmoid_top2"}) {
    CAPTURE(name);
    const safetensors_file f(test::test_data_dir() + "/nn/moe_" + name + ".safetensors");
    auto number = [&](const std::string& key) { return std::stod(f.metadata().at(key)); };
    auto integer = [&](const std::string& key) { return static_cast<std::int64_t>(std::stoll(f.metadata().at(key))); };
    const nn::moe_layer_config c{
        .d_model = integer("d_model"), .num_experts = integer("num_experts"), .top_k = integer("top_k"),
        .num_shared_experts = integer("num_shared_experts"), .expert_d_ff = integer("expert_d_ff"),
        .router = f.metadata().at("router") == "sigmoid" ? nn::router_kind::sigmoid : nn::router_kind::softmax,
        .capacity_factor = number("capacity_factor"), .aux_loss_coef = number("aux_loss_coef"),
        .z_loss_coef = number("z_loss_coef"), .seq_aux_loss_coef = number("seq_aux_loss_coef")};
    nn::moe_parameters<double> p(c), grads(c);
    p.for_each_parameter([&](const std::string& n, auto& w) { f.load_into(n, w); });
    const auto x = f.load<double, dims<2>>("x");    // (N, D)
    const auto dy = f.load<double, dims<2>>("dy");  // (N, D)
    const auto expected_y = f.load<double, dims<2>>("y");  // (N, D)
    const auto seq_len = integer("seq_len");

    nn::moe_layer<double> layer;
    const auto y = layer.forward_train(p, x, seq_len);  // (N, D)
    const double y_error = max_abs_diff(y, expected_y);
    MESSAGE(name << ": y max error " << y_error);
    CHECK(y_error < 1e-12);
    const auto& st = layer.stats();
    CHECK(st.balance_loss == doctest::Approx(f.load<double, extents<>>("loss.balance")()).epsilon(1e-12));
    CHECK(st.z_loss == doctest::Approx(f.load<double, extents<>>("loss.z")()).epsilon(1e-12));
    CHECK(st.seq_balance_loss == doctest::Approx(f.load<double, extents<>>("loss.seq")()).epsilon(1e-12));
    CHECK(st.aux_loss == doctest::Approx(f.load<double, extents<>>("loss.aux")()).epsilon(1e-12));
    CHECK(st.dropped_slots == f.load<std::int64_t, extents<>>("dropped_slots")());
    const auto tokens = f.load<std::int64_t, dims<1>>("tokens_per_expert");  // (E,)
    for (index_t e = 0; e < c.num_experts; ++e) CHECK(st.tokens_per_expert[static_cast<std::size_t>(e)] == tokens(e));
    if (name == "switch_top1_capacity") CHECK(st.dropped_slots > 0);

    const auto dx = layer.backward(p, dy, grads);  // (N, D)
    double worst = max_abs_diff(dx, f.load<double, dims<2>>("grad.x")) / std::max(1.0, max_abs(dx));
    grads.for_each_parameter([&](const std::string& n, const auto& g) {
      CAPTURE(n);
      if (!nn::moe_parameters<double>::trainable(n)) {
        CHECK(max_abs(g) == 0);
        return;
      }
      std::remove_cvref_t<decltype(g)> expected(g.extents());
      f.load_into("grad." + n, expected);
      const double error = max_abs_diff(g, expected) / std::max(1.0, max_abs(expected));
      worst = std::max(worst, error);
      CHECK(error < 1e-12);
    });
    MESSAGE(name << ": gradients max error " << worst);
  }
}

TEST_CASE("moe_layer: the whole layer's gradient against central finite differences") {
  // Softmax top-2 with a shared expert, capacity on, and every loss weighted; and sigmoid top-2
  // with a bias. The inputs are random; the routing must not change under the step, which the
  // test checks (the routed counts are equal at both ends of every difference).
  for (const auto router : {nn::router_kind::softmax, nn::router_kind::sigmoid}) {
    CAPTURE(static_cast<int>(router));
    const nn::moe_layer_config c{.d_model = 6, .num_experts = 5, .top_k = 2, .num_shared_experts = 1,
                                 .expert_d_ff = 7, .router = router, .capacity_factor = 1.5,
                                 .aux_loss_coef = 0.1, .z_loss_coef = 0.05, .seq_aux_loss_coef = 0.2};
    nn::moe_parameters<double> p(c), grads(c);
    randomise(p, 11);
    const index_t N = 12, S = 4;
    auto x = random_matrix<double>(N, c.d_model, 5);        // (N, D)
    const auto dy = random_matrix<double>(N, c.d_model, 6);  // (N, D)
    nn::moe_layer<double> layer;
    layer.forward_train(p, x, S);
    const auto routed = layer.stats().tokens_per_expert;
    const auto dx = layer.backward(p, dy, grads);  // (N, D)
    const double h = 1e-6;
    double worst = 0;
    auto probe = [&](auto& w, const auto& g, index_t i) {
      const double saved = w.data()[i];
      w.data()[i] = saved + h;
      nn::moe_stats up_stats;
      nn::moe_layer<double>::forward(p, x, S, &up_stats);
      const double up = objective(p, x, dy, S);
      w.data()[i] = saved - h;
      const double down = objective(p, x, dy, S);
      w.data()[i] = saved;
      REQUIRE(up_stats.tokens_per_expert == routed);
      const double fd = (up - down) / (2 * h), ag = g.data()[i];
      worst = std::max(worst, std::abs(fd - ag) / std::max({std::abs(fd), std::abs(ag), 1e-3}));
    };
    for (index_t i = 0; i < x.size(); i += 5) probe(x, dx, i);
    for (index_t i = 0; i < p.router.size(); ++i) probe(p.router, grads.router, i);
    for (index_t i = 0; i < p.experts[1].w1.size(); i += 3) {
      probe(p.experts[1].w1, grads.experts[1].w1, i);
      probe(p.experts[3].w2, grads.experts[3].w2, i);
      probe(p.shared_experts[0].w3, grads.shared_experts[0].w3, i);
    }
    MESSAGE("worst relative error " << worst);
    CHECK(worst < 1e-6);
  }
}

TEST_CASE("moe_layer: one expert with top-1 is the dense SwiGLU feed-forward") {
  const nn::moe_layer_config c{.d_model = 8, .num_experts = 1, .top_k = 1, .expert_d_ff = 12};
  nn::moe_parameters<double> p(c);
  randomise(p, 3);
  const auto x = random_matrix<double>(10, 8, 4);  // (N, D)
  const auto& w = p.experts[0];
  const auto h1 = einsum<"n d, f d -> n f">(x, w.w1);  // (N, F)
  const auto h3 = einsum<"n d, f d -> n f">(x, w.w3);  // (N, F)
  const tensor<double, dims<2>> g = einlm::silu(h1) * h3;  // (N, F)
  const auto dense = einsum<"n f, d f -> n d">(g, w.w2);  // (N, D)
  CHECK(max_abs_diff(nn::moe_layer<double>::forward(p, x), dense) < 1e-14);
}

TEST_CASE("moe_layer: dropless routing commutes with the order of the tokens") {
  const nn::moe_layer_config c{.d_model = 8, .num_experts = 6, .top_k = 2, .num_shared_experts = 1, .expert_d_ff = 12};
  nn::moe_parameters<double> p(c);
  randomise(p, 5);
  const index_t N = 20;
  const auto x = random_matrix<double>(N, 8, 6);  // (N, D)
  std::vector<index_t> perm(static_cast<std::size_t>(N));
  for (index_t i = 0; i < N; ++i) perm[static_cast<std::size_t>(i)] = (7 * i + 3) % N;  // 7 is prime to 20
  tensor<double, dims<2>> xp(N, 8);  // (N, D)
  for (index_t i = 0; i < N; ++i)
    for (index_t d = 0; d < 8; ++d) xp(i, d) = x(perm[static_cast<std::size_t>(i)], d);
  const auto y = nn::moe_layer<double>::forward(p, x);    // (N, D)
  const auto yp = nn::moe_layer<double>::forward(p, xp);  // (N, D)
  double worst = 0;
  for (index_t i = 0; i < N; ++i)
    for (index_t d = 0; d < 8; ++d) worst = std::max(worst, std::abs(yp(i, d) - y(perm[static_cast<std::size_t>(i)], d)));
  CHECK(worst < 1e-14);
}

TEST_CASE("moe_layer: the balance loss on hand-built routing") {
  // Router = 3·I and one-hot tokens: token n's logits are 3 at its expert and 0 elsewhere, so its
  // probabilities are (e³, 1, 1, 1) / (e³ + 3) in some order and it goes to that expert.
  const nn::moe_layer_config c{.d_model = 4, .num_experts = 4, .top_k = 1, .expert_d_ff = 3};
  nn::moe_parameters<double> p(c);
  for (index_t e = 0; e < 4; ++e) p.router(e, e) = 3;
  const std::vector<index_t> to = {0, 0, 0, 1, 1, 2};  // expert 3 gets nothing
  tensor<double, dims<2>> x(6, 4);  // (N, D)
  x = 0.0;
  for (index_t n = 0; n < 6; ++n) x(n, to[static_cast<std::size_t>(n)]) = 1;
  nn::moe_stats st;
  nn::moe_layer<double>::forward(p, x, 0, &st);
  const double hi = std::exp(3.0) / (std::exp(3.0) + 3), lo = 1 / (std::exp(3.0) + 3);
  const double f[4] = {3.0 / 6, 2.0 / 6, 1.0 / 6, 0};
  double expected = 0;
  for (int e = 0; e < 4; ++e) {
    const double P = (f[e] * 6 * hi + (6 - f[e] * 6) * lo) / 6;  // mean probability of expert e
    expected += f[e] * P;
  }
  CHECK(st.balance_loss == doctest::Approx(4 * expected).epsilon(1e-14));
  CHECK(st.routed_per_expert == std::vector<std::int64_t>{3, 2, 1, 0});
  CHECK(st.router_entropy == doctest::Approx(-(hi * std::log(hi) + 3 * lo * std::log(lo))).epsilon(1e-14));
  CHECK(st.z_loss == doctest::Approx(std::pow(std::log(std::exp(3.0) + 3), 2)).epsilon(1e-14));
  // One sequence: the sequence-wise loss is the balance loss; two sequences of 3 average theirs.
  CHECK(st.seq_balance_loss == doctest::Approx(st.balance_loss).epsilon(1e-14));
}

TEST_CASE("moe_layer: capacity drops the late slots of an overloaded expert and counts them") {
  // Every token prefers expert 0; capacity 1.0 gives each expert ceil(10 / 2) = 5 slots.
  const nn::moe_layer_config c{.d_model = 4, .num_experts = 2, .top_k = 1, .expert_d_ff = 3, .capacity_factor = 1.0};
  nn::moe_parameters<double> p(c);
  randomise(p, 9);
  for (index_t d = 0; d < 4; ++d) {
    p.router(0, d) = 1;
    p.router(1, d) = -1;
  }
  auto x = random_matrix<double>(10, 4, 2);  // (N, D)
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = std::abs(x.data()[i]) + 0.1;
  nn::moe_stats st;
  const auto y = nn::moe_layer<double>::forward(p, x, 0, &st);  // (N, D)
  CHECK(st.capacity == 5);
  CHECK(st.dropped_slots == 5);
  CHECK(st.tokens_per_expert == std::vector<std::int64_t>{5, 0});
  CHECK(st.routed_per_expert == std::vector<std::int64_t>{10, 0});
  for (index_t n = 0; n < 10; ++n) {
    double row = 0;
    for (index_t d = 0; d < 4; ++d) row += std::abs(y(n, d));
    CHECK((n < 5 ? row > 0 : row == 0));
  }
}

TEST_CASE("update_router_bias: the auxiliary-loss-free bias balances a skewed router") {
  // [snippet moe_bias_balancing]
  const nn::moe_layer_config c{.d_model = 8, .num_experts = 4, .top_k = 1, .expert_d_ff = 4,
                               .router = nn::router_kind::sigmoid, .bias_update_rate = 0.05};
  nn::moe_parameters<float> p(c);
  randomise(p, 21);
  for (index_t d = 0; d < 8; ++d) p.router(0, d) += 1.5f;  // expert 0 is favoured
  p.router_bias = 0.0f;
  const auto x = random_matrix<float>(64, 8, 22);  // (N, D)
  nn::moe_stats st;
  nn::moe_layer<float>::forward(p, x, 0, &st);
  const auto first_max = *std::max_element(st.tokens_per_expert.begin(), st.tokens_per_expert.end());
  for (int step = 0; step < 30; ++step) {
    nn::moe_layer<float>::forward(p, x, 0, &st);
    nn::update_router_bias(p, st);
  }
  nn::moe_layer<float>::forward(p, x, 0, &st);
  const auto last_max = *std::max_element(st.tokens_per_expert.begin(), st.tokens_per_expert.end());
  CHECK(last_max < first_max);
  // [end snippet]
  MESSAGE("max load " << first_max << " → " << last_max << " of 64 tokens over 4 experts");
  CHECK(p.router_bias(0) < 0);
  nn::moe_parameters<float> softmax_params({.d_model = 8, .num_experts = 4, .expert_d_ff = 4});
  CHECK_THROWS_AS(nn::update_router_bias(softmax_params, st), nn::config_error);
}

TEST_CASE("moe_layer: float agrees with double") {
  const nn::moe_layer_config c{.d_model = 16, .num_experts = 6, .top_k = 2, .num_shared_experts = 1,
                               .expert_d_ff = 12, .router = nn::router_kind::sigmoid, .seq_aux_loss_coef = 0.1};
  nn::moe_parameters<double> pd(c), gd(c);
  nn::moe_parameters<float> pf(c), gf(c);
  randomise(pd, 31);
  randomise(pf, 31);
  const auto xd = random_matrix<double>(32, 16, 32);  // (N, D)
  const auto xf = random_matrix<float>(32, 16, 32);   // (N, D)
  const auto dyd = random_matrix<double>(32, 16, 33);  // (N, D)
  const auto dyf = random_matrix<float>(32, 16, 33);   // (N, D)
  nn::moe_layer<double> ld;
  nn::moe_layer<float> lf;
  const auto yd = ld.forward_train(pd, xd, 8);  // (N, D)
  const auto yf = lf.forward_train(pf, xf, 8);  // (N, D)
  REQUIRE(ld.stats().tokens_per_expert == lf.stats().tokens_per_expert);
  CHECK(max_abs_diff(yd, yf) < 1e-5 * std::max(1.0, max_abs(yd)));
  CHECK(lf.stats().aux_loss == doctest::Approx(ld.stats().aux_loss).epsilon(1e-5));
  const auto dxd = ld.backward(pd, dyd, gd);  // (N, D)
  const auto dxf = lf.backward(pf, dyf, gf);  // (N, D)
  CHECK(max_abs_diff(dxd, dxf) < 1e-5 * std::max(1.0, max_abs(dxd)));
  CHECK(max_abs_diff(gd.router, gf.router) < 1e-5 * std::max(1.0, max_abs(gd.router)));
  CHECK(max_abs_diff(gd.experts[2].w1, gf.experts[2].w1) < 1e-5 * std::max(1.0, max_abs(gd.experts[2].w1)));
}

TEST_CASE("moe_layer_config: bad configurations and shapes are rejected naming the field") {
  const nn::moe_layer_config good{.d_model = 8, .num_experts = 4, .top_k = 2, .expert_d_ff = 12};
  CHECK(message_of(good) == "no error");
  auto c = good;
  c.top_k = 5;
  CHECK(message_of(c).find("top_k must lie in [1, num_experts = 4], got 5") != std::string::npos);
  c = good;
  c.d_model = -1;
  CHECK(message_of(c).find("d_model must be positive, got -1") != std::string::npos);
  c = good;
  c.num_shared_experts = -2;
  CHECK(message_of(c).find("num_shared_experts must not be negative") != std::string::npos);
  c = good;
  c.expert_d_ff = 0;
  CHECK(message_of(c).find("expert_d_ff must be positive") != std::string::npos);
  c = good;
  c.capacity_factor = -0.5;
  CHECK(message_of(c).find("capacity_factor must be finite and not negative") != std::string::npos);
  c = good;
  c.bias_update_rate = 0.001;
  CHECK(message_of(c).find("bias_update_rate applies to the sigmoid router only") != std::string::npos);
  CHECK_THROWS_AS(nn::moe_parameters<float>{c}, nn::config_error);

  nn::moe_parameters<float> p(good), grads(good);
  // Parameter names, and the bias only for the sigmoid router.
  std::vector<std::string> names;
  p.for_each_parameter("layers.0.ffn.", [&](const std::string& n, const auto&) { names.push_back(n); });
  CHECK(names.size() == 1 + 3 * 4);
  CHECK(names[0] == "layers.0.ffn.router.weight");
  CHECK(names[1] == "layers.0.ffn.experts.0.w1.weight");
  CHECK(nn::moe_parameters<float>::trainable("layers.0.ffn.router.bias") == false);
  CHECK(nn::moe_parameters<float>::trainable(names[0]));

  const auto x = random_matrix<float>(6, 7, 1);  // (N, D): D is 7, not 8
  CHECK_THROWS_WITH_AS(nn::moe_layer<float>::forward(p, x), doctest::Contains("d_model = 8"), shape_error);
  const auto x8 = random_matrix<float>(6, 8, 1);  // (N, D)
  CHECK_THROWS_AS(nn::moe_layer<float>::forward(p, x8, 4), shape_error);  // 6 tokens, sequences of 4
  nn::moe_layer<float> layer;
  CHECK_THROWS_AS(layer.backward(p, x8, grads), value_error);  // no forward_train
}

TEST_CASE("moe_layer: a training step") {
  // [snippet moe_training_step]
  const nn::moe_layer_config config{.d_model = 16, .num_experts = 8, .top_k = 2, .num_shared_experts = 1,
                                    .expert_d_ff = 32, .aux_loss_coef = 0.01, .z_loss_coef = 1e-3};
  nn::moe_parameters<float> params(config), grads(config);
  randomise(params, 1);                                   // or load a checkpoint
  const auto x = random_matrix<float>(64, 16, 2);         // (N, D): 4 sequences of 16 tokens
  nn::moe_layer<float> layer;
  const auto y = layer.forward_train(params, x, /*seq_len=*/16);  // (N, D)
  const nn::moe_stats& stats = layer.stats();             // loads, drops, entropy, losses
  const auto dy = random_matrix<float>(64, 16, 3);        // (N, D): d(main loss)/dy
  const auto dx = layer.backward(params, dy, grads);      // (N, D); grads += d(main + aux)
  // [end snippet]
  CHECK(y.extent(0) == 64);
  CHECK(dx.extent(1) == 16);
  CHECK(stats.aux_loss > 0);
  CHECK(stats.router_entropy > 0);
  CHECK(stats.router_entropy <= std::log(8.0) + 1e-9);
  std::int64_t slots = 0;
  for (auto t : stats.tokens_per_expert) slots += t;
  CHECK(slots == 64 * 2);
}
