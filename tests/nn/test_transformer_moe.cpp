// Tests of the mixture-of-experts transformer (nn/transformer.hpp built from an nn::moe_config, with
// the nn/moe.hpp layer in its MoE layers): parameter names and counts against
// nn/moe_accounting.hpp; the gradient of the whole objective (loss + auxiliary losses) against
// central finite differences in double for both routers; one expert with top-1 equals the dense
// model; logits with a KV cache equal logits without; training lowers the loss and moves the
// selection biases; a checkpoint round trip through train::fit keeps config.json and the biases.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "einlm/nn/moe_accounting.hpp"
#include "einlm/nn/transformer.hpp"
#include "einlm/optim/adamw.hpp"
#include "einlm/train/checkpoint.hpp"
#include "einlm/train/config_json.hpp"
#include "einlm/train/trainer.hpp"
#include "support/check.hpp"
#include "support/max_abs_diff.hpp"
#include "support/training_data.hpp"

using namespace einlm;
using test::max_abs_diff;

namespace {

/// Token ids (B, S) from Philox stream (4321, stream).
tensor<std::int64_t, dims<2>> random_tokens(index_t B, index_t S, std::int64_t vocab, std::uint64_t stream) {
  return test::random_tokens(B, S, vocab, 4321, stream);
}

/// Layer 0 dense, layers 1 and 2 MoE: 4 experts of 6, top-2, one shared expert.
nn::moe_config tiny_moe(nn::router_kind router) {
  return {.base = {.vocab_size = 13, .context_length = 8, .d_model = 8, .num_layers = 3, .num_heads = 2,
                   .num_kv_heads = 1, .d_ff = 12},
          .num_experts = 4,
          .top_k = 2,
          .num_shared_experts = 1,
          .expert_d_ff = 6,
          .first_dense_layers = 1,
          .router = router,
          .aux_loss_coef = 0.05,
          .z_loss_coef = 1e-2,
          .seq_aux_loss_coef = router == nn::router_kind::sigmoid ? 0.05 : 0.0};
}

/// Copies every parameter of `from` into `to` (same names and shapes).
template <class A, class B>
void copy_parameters(const A& from, B& to) {
  std::vector<const typename A::value_type*> src;
  from.for_each_parameter([&](const std::string&, const auto& w) { src.push_back(w.data()); });
  std::size_t i = 0;
  to.for_each_parameter([&](const std::string&, auto& w) {
    std::copy(src[i], src[i] + w.size(), w.data());
    ++i;
  });
}

}  // namespace

TEST_CASE("transformer_lm with experts: names, counts and initialisation") {
  const auto m = tiny_moe(nn::router_kind::sigmoid);
  nn::transformer_lm<float> model(m, 1);
  std::set<std::string> names;
  std::int64_t count = 0;
  model.for_each_parameter([&](const std::string& name, const auto& w) {
    names.insert(name);
    count += w.size();
  });
  CHECK(count == nn::moe_param_count(m));  // the model holds what the accounting counts
  for (const char* name : {"layers.0.ffn.w1.weight", "layers.1.ffn.router.weight", "layers.1.ffn.router.bias",
                           "layers.1.ffn.experts.3.w2.weight", "layers.2.ffn.shared_experts.0.w3.weight"})
    CHECK_MESSAGE(names.count(name) == 1, std::string(name));
  CHECK(names.count("layers.1.ffn.w1.weight") == 0);
  // The selection biases start at zero and are not trained by gradient.
  const auto& bias = model.parameters().layers[1].moe.router_bias;
  REQUIRE(bias.size() == 4);
  for (index_t e = 0; e < 4; ++e) CHECK(bias(e) == 0.0f);
  bool visited_bias = false;
  model.for_each_parameter_and_gradient([&](const std::string& name, auto&, auto&) {
    visited_bias = visited_bias || name.ends_with("router.bias");
  });
  CHECK_FALSE(visited_bias);
  // Routers and experts are initialised like the other projections: not zero.
  const auto& router = model.parameters().layers[2].moe.router;
  float largest = 0;
  for (index_t i = 0; i < router.size(); ++i) largest = std::max(largest, std::abs(router.data()[i]));
  CHECK(largest > 0.01f);

  auto bad = m;
  bad.mla = {.kv_lora_rank = 2, .qk_nope_head_dim = 2, .qk_rope_head_dim = 2, .v_head_dim = 2};
  CHECK_THROWS_AS(nn::transformer_lm<float>(bad, 1), nn::config_error);
  bad = m;
  bad.top_k = 5;
  CHECK_THROWS_WITH_AS(nn::transformer_lm<float>(bad, 1), "moe_config: top_k must be in [1, num_experts = 4], got 5",
                       nn::config_error);
}

TEST_CASE("transformer_lm with experts: gradients of loss + auxiliary losses against finite differences") {
  for (const auto router : {nn::router_kind::softmax, nn::router_kind::sigmoid}) {
    CAPTURE(static_cast<int>(router));
    const auto m = tiny_moe(router);
    nn::transformer_lm<double> model(m, 7);
    // Gains and (for sigmoid) biases away from their initial values, so that their effect is generic.
    model.for_each_parameter([&](const std::string& name, auto& w) {
      if (w.extents().rank() == 1) w = w + normal<double>(w.extents(), random_stream{77, name.size()}, 0.0, 0.2);
    });
    const auto inputs = random_tokens(2, 6, m.base.vocab_size, 1);   // (B, S)
    const auto targets = random_tokens(2, 6, m.base.vocab_size, 2);  // (B, S)
    const double z_loss = 1e-2;
    model.zero_grad();
    model.forward_backward(inputs, targets, z_loss);
    CHECK(model.aux_loss() > 0);
    const auto loads = model.routing_stats(1).routed_per_expert;
    auto objective = [&] {
      nn::transformer_lm<double> probe(m);
      copy_parameters(model, probe);
      const double loss = probe.forward_backward(inputs, targets, z_loss);
      CHECK(probe.routing_stats(1).routed_per_expert == loads);  // the routing did not change
      return loss + probe.aux_loss();
    };
    double worst = 0;
    int checked = 0;
    model.for_each_parameter_and_gradient([&](const std::string& name, auto& w, const auto& g) {
      CAPTURE(name);
      for (index_t i = 0; i < w.size(); i += std::max<index_t>(1, w.size() / 5)) {
        const double saved = w.data()[i], h = 1e-6;
        w.data()[i] = saved + h;
        const double up = objective();
        w.data()[i] = saved - h;
        const double down = objective();
        w.data()[i] = saved;
        const double numeric = (up - down) / (2 * h);
        const double err = std::abs(numeric - g.data()[i]) / std::max(1e-3, std::abs(numeric));
        worst = std::max(worst, err);
        CHECK(err < 1e-5);
        ++checked;
      }
    });
    CHECK(checked > 200);
    MESSAGE("finite differences: worst relative error " << worst << " over " << checked << " entries");
  }
}

TEST_CASE("transformer_lm with experts: one expert with top-1 is the dense model") {
  nn::moe_config m{.base = {.vocab_size = 13, .context_length = 8, .d_model = 8, .num_layers = 2, .num_heads = 2,
                            .d_ff = 12},
                   .num_experts = 1,
                   .top_k = 1,
                   .aux_loss_coef = 0.0,
                   .z_loss_coef = 0.0};
  nn::transformer_lm<double> moe(m, 3);
  nn::transformer_lm<double> dense(m.base, 3);
  // The dense model takes the MoE model's weights, its FFNs the single expert's.
  moe.for_each_parameter([&](const std::string& name, const auto& w) {
    std::string dense_name = name;
    if (const auto at = name.find("ffn.experts.0."); at != std::string::npos) dense_name.replace(at, 14, "ffn.");
    dense.for_each_parameter([&](const std::string& n, auto& d) {
      if (n == dense_name) std::copy(w.data(), w.data() + w.size(), d.data());
    });
  });
  const auto inputs = random_tokens(3, 7, 13, 3), targets = random_tokens(3, 7, 13, 4);  // (B, S) twice
  CHECK(max_abs_diff(moe.logits(inputs), dense.logits(inputs)) < 1e-13);
  moe.zero_grad();
  dense.zero_grad();
  CHECK(moe.forward_backward(inputs, targets) == doctest::Approx(dense.forward_backward(inputs, targets)).epsilon(1e-13));
  CHECK(max_abs_diff(moe.gradients().layers[1].moe.experts[0].w2, dense.gradients().layers[1].w2) < 1e-13);
  CHECK(max_abs_diff(moe.gradients().layers[0].q_proj, dense.gradients().layers[0].q_proj) < 1e-13);
}

TEST_CASE("transformer_lm with experts: logits with a KV cache equal logits without (dropless)") {
  nn::transformer_lm<double> model(tiny_moe(nn::router_kind::softmax), 5);
  const auto tokens = random_tokens(2, 8, 13, 9);  // (B, S)
  const auto full = model.logits(tokens);          // (B, S, V)
  auto cache = model.make_cache(2);
  index_t done = 0;
  double worst = 0;
  for (const index_t chunk : {3, 1, 2, 1, 1}) {
    const auto piece = eval(slice(tokens, full_extent, range{done, done + chunk}));  // (B, chunk)
    const auto part = model.logits(piece, cache);                                    // (B, chunk, V)
    for (index_t b = 0; b < 2; ++b)
      for (index_t s = 0; s < chunk; ++s)
        for (index_t v = 0; v < 13; ++v) worst = std::max(worst, std::abs(part(b, s, v) - full(b, done + s, v)));
    done += chunk;
  }
  CHECK(worst < 1e-12);
}

TEST_CASE("transformer_lm with experts: training lowers the loss and the selection biases move") {
  auto m = tiny_moe(nn::router_kind::sigmoid);
  m.bias_update_rate = 1e-2;
  nn::transformer_lm<float> model(m, 11);
  const auto inputs = random_tokens(4, 8, 13, 6), targets = random_tokens(4, 8, 13, 7);  // (B, S) twice
  optim::adamw opt({.weight_decay = 0.1});
  std::vector<double> losses;
  for (int step = 0; step < 30; ++step) {
    model.zero_grad();
    losses.push_back(model.forward_backward(inputs, targets));
    opt.begin_step(1e-2);
    model.for_each_parameter_and_gradient([&](const std::string& name, auto& w, auto& g) { opt.update(name, w, g); });
    model.update_router_biases();
  }
  CHECK(losses.back() < 0.5 * losses.front());
  const auto& bias = model.parameters().layers[1].moe.router_bias;
  double moved = 0;
  for (index_t e = 0; e < bias.size(); ++e) moved = std::max(moved, std::abs(static_cast<double>(bias(e))));
  CHECK(moved >= 1e-2);  // at least one update of ±γ
  const auto& stats = model.routing_stats(2);
  std::int64_t slots = 0;
  for (auto n : stats.tokens_per_expert) slots += n;
  CHECK(slots == 4 * 8 * m.top_k);  // dropless: every slot processed
}

TEST_CASE("transformer_lm with experts: train::fit writes the MoE config.json and resumes with the biases") {
  auto m = tiny_moe(nn::router_kind::sigmoid);
  m.bias_update_rate = 1e-3;
  std::vector<std::uint32_t> ids(3000);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::uint32_t>((i * 7 + i / 5) % 13);
  const auto data = train::token_dataset::from_ids(std::move(ids), "synthetic");
  const auto dir = (std::filesystem::temp_directory_path() / "einlm_test_transformer_moe").string();
  std::filesystem::remove_all(dir);
  train::trainer_options o{.steps = 4, .batch_size = 2, .context_length = 8, .max_lr = 3e-3, .warmup_steps = 1,
                           .seed = 3, .log_every = 1, .eval_every = 0};
  std::ostringstream log;
  nn::transformer_lm<float> whole(m, 2);
  train::fit(whole, data, nullptr, o, log);
  CHECK(log.str().find("aux ") != std::string::npos);

  auto first = o;
  first.steps = 2;
  first.out_dir = dir;
  nn::transformer_lm<float> part(m, 2);
  train::fit(part, data, nullptr, first, log);
  CHECK(train::load_model_config(dir + "/config.json") == m);
  nn::transformer_lm<float> resumed(train::load_model_config(dir + "/config.json"), 99);
  auto second = o;
  second.resume_dir = dir;
  train::fit(resumed, data, nullptr, second, log);
  double worst = 0;
  std::vector<const float*> expected;
  whole.for_each_parameter([&](const std::string&, const auto& w) { expected.push_back(w.data()); });
  std::size_t i = 0;
  resumed.for_each_parameter([&](const std::string&, const auto& w) {
    for (index_t j = 0; j < w.size(); ++j) worst = std::max(worst, double(std::abs(w.data()[j] - expected[i][j])));
    ++i;
  });
  CHECK(worst == 0.0);  // bit for bit, selection biases included
  std::filesystem::remove_all(dir);
}

TEST_CASE("upcycle: a dense model becomes an MoE model that computes the same function") {
  const nn::transformer_config dense_shape{.vocab_size = 13, .context_length = 8, .d_model = 8, .num_layers = 2,
                                           .num_heads = 2, .d_ff = 12};
  const auto tokens = random_tokens(2, 7, 13, 21);  // (B, S)
  // [snippet upcycle]
  nn::transformer_lm<double> dense(dense_shape, /*seed=*/5);  // or loaded from a checkpoint
  const nn::moe_config moe_shape{.base = dense_shape, .num_experts = 4, .top_k = 2, .expert_d_ff = 12};
  auto moe = nn::upcycle(dense, moe_shape, {.expert_noise = 0.0, .router_std = 0.02, .seed = 1});
  // [end snippet]
  // Four copies of each FFN, gates renormalised to sum to 1: the dense function, whatever the routing.
  CHECK(max_abs_diff(moe.logits(tokens), dense.logits(tokens)) < 1e-12);
  const auto& router = moe.parameters().layers[1].moe.router;
  double sum2 = 0;
  for (index_t i = 0; i < router.size(); ++i) sum2 += router.data()[i] * router.data()[i];
  CHECK(std::sqrt(sum2 / double(router.size())) == doctest::Approx(0.02).epsilon(0.35));
  CHECK(max_abs_diff(moe.parameters().layers[0].q_proj, dense.parameters().layers[0].q_proj) == 0.0);

  // With noise the experts differ from each other by about that much, and the model stays close.
  auto noisy = nn::upcycle(dense, moe_shape, {.expert_noise = 0.01, .seed = 2});
  const auto& experts = noisy.parameters().layers[0].moe.experts;
  const double spread = max_abs_diff(experts[0].w1, experts[1].w1);
  CHECK(spread > 0);
  CHECK(spread < 0.1);
  CHECK(max_abs_diff(noisy.logits(tokens), dense.logits(tokens)) < 0.05);

  auto other = moe_shape;
  other.base.d_ff = 16;
  CHECK_THROWS_WITH_AS(nn::upcycle(dense, other), "upcycle: the MoE configuration's base is not the dense model's shape",
                       nn::config_error);
  CHECK_THROWS_AS(nn::upcycle(moe, moe_shape), nn::config_error);  // already an MoE model
}
